"""Schedules: cron-driven pipeline runs (``projects.locations.schedules``).

Policies (kept here, in one place):

- ``cron`` is five fields, optionally prefixed ``TZ=Zone/Name`` or ``CRON_TZ=Zone/Name`` (as
  Vertex accepts); fire times are computed with croniter in that zone (UTC otherwise), from
  ``start_time`` (or the creation time) on, and never after ``end_time``.
- At most ``max_run_count`` runs; then the schedule is COMPLETED (so is one past its end time).
- ``max_concurrent_run_count`` (default 1) runs at once: a run that is due while that many of the
  schedule's runs are active waits (``allow_queueing``) or is skipped.
- Exactly once, across restarts: before a run is created, the schedule records the fire time and
  the run's id (``<schedule id>-<n>``); the run is created with that id. A restart finds a recorded
  run that does not exist yet and creates it; a recorded fire time is never fired again.
- Catch-up: fire times missed while the emulator was down (or the schedule PAUSED, unless
  ``catch_up``) are not replayed one by one: one run is started for the latest missed time, and
  the schedule carries on from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from hydra_vertex.emulator.router import ApiError
from hydra_vertex.emulator.store import Record, Store, now

COLLECTION = "schedules"
TICK_SECONDS = 1.0
_ACTIVE_PIPELINE = (
    "PIPELINE_STATE_QUEUED",
    "PIPELINE_STATE_PENDING",
    "PIPELINE_STATE_RUNNING",
    "PIPELINE_STATE_CANCELLING",
)


def parse_cron(cron: str) -> tuple[str, ZoneInfo]:
    """``(expression, zone)``; 400 naming ``cron`` when it is not a valid cron expression."""
    from hydra_vertex.cron import CronError, parse

    try:
        return parse(cron)
    except CronError as e:
        raise ApiError(400, f"cron: {cron!r}: {e}") from None


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def next_fire(cron: str, after: datetime) -> datetime:
    from croniter import croniter

    expression, zone = parse_cron(cron)
    it = croniter(expression, after.astimezone(zone))
    nxt: datetime = it.get_next(datetime)
    return nxt.astimezone(UTC)


def latest_due(cron: str, after: datetime, now_: datetime) -> datetime | None:
    """The latest fire time in ``(after, now_]``, or None (the catch-up rule: one run)."""
    due = None
    t = next_fire(cron, after)
    while t <= now_:
        due = t
        t = next_fire(cron, t)
    return due


def first_run_time(schedule: dict[str, Any], after: str | None = None) -> str | None:
    """When a new schedule (or one just updated at ``after``) fires first, as the scheduler
    will compute it: the next cron time after ``after``, else ``startTime``, else ``createTime``;
    None when that is past ``endTime``."""
    base = (
        parse_time(after)
        or parse_time(schedule.get("startTime"))
        or parse_time(schedule.get("createTime"))
        or datetime.now(UTC)
    )
    upcoming = next_fire(str(schedule["cron"]), base)
    end = parse_time(schedule.get("endTime"))
    return None if end is not None and upcoming > end else iso(upcoming)


def validate(schedule: dict[str, Any]) -> None:
    parse_cron(str(schedule.get("cron", "")))
    if not schedule.get("displayName"):
        raise ApiError(400, "display_name is required")
    request = schedule.get("createPipelineJobRequest")
    if not isinstance(request, dict) or not request.get("pipelineJob"):
        raise ApiError(400, "create_pipeline_job_request.pipeline_job is required")
    for field in ("maxRunCount", "maxConcurrentRunCount"):
        if int(schedule.get(field) or 0) < 0:
            raise ApiError(400, f"{field} must be >= 0")
    start, end = parse_time(schedule.get("startTime")), parse_time(schedule.get("endTime"))
    if start and end and end <= start:
        raise ApiError(400, "end_time must be after start_time")
    from hydra_vertex.emulator import pipelines

    pipelines.validate(request["pipelineJob"], "create_pipeline_job_request.pipeline_job")


CreateRun = Callable[[str, dict[str, Any], str, str], None]


class Scheduler(threading.Thread):
    """Fires due runs once a second. ``create_run(parent, pipeline_job, job_id, schedule)``."""

    def __init__(self, store: Store, create_run: CreateRun) -> None:
        super().__init__(name="schedules", daemon=True)
        self.store = store
        self.create_run = create_run
        self.stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.tick(datetime.now(UTC))
            self.stop_event.wait(TICK_SECONDS)

    def tick(self, now_: datetime) -> None:
        with self._lock:
            for sid, rec in self.store.items(COLLECTION):
                try:
                    self._step(sid, rec, now_)
                except Exception:  # one broken schedule must not stop the others
                    import logging

                    logging.getLogger("hydra_vertex.emulator").exception("schedule %s", sid)

    def _active_runs(self, name: str) -> int:
        return sum(
            1
            for _, r in self.store.items("pipelineJobs")
            if r["resource"].get("scheduleName") == name
            and r["resource"].get("state") in _ACTIVE_PIPELINE
        )

    def _step(self, sid: str, rec: Record, now_: datetime) -> None:
        res, internal = rec["resource"], rec["internal"]
        pending = internal.get("pending")
        if pending:  # recorded before a stop, not created yet: create it now (exactly once)
            self._create(sid, rec, pending)
            return
        if res.get("state") != "ACTIVE":
            return
        started = int(res.get("startedRunCount") or 0)
        max_runs = int(res.get("maxRunCount") or 0)
        end = parse_time(res.get("endTime"))
        base = (
            parse_time(internal.get("lastFire"))
            or parse_time(res.get("startTime"))
            or parse_time(res.get("createTime"))
            or now_
        )
        upcoming = next_fire(res["cron"], base)
        if (max_runs and started >= max_runs) or (end is not None and upcoming > end):
            self._set(sid, state="COMPLETED")
            return
        due = latest_due(res["cron"], base, now_)
        if due is None:
            if res.get("nextRunTime") != iso(upcoming):
                self._set(sid, nextRunTime=iso(upcoming))
            return
        limit = int(res.get("maxConcurrentRunCount") or 1)
        if self._active_runs(res["name"]) >= limit:
            if not res.get("allowQueueing"):
                self._set(sid, internal_fields={"lastFire": iso(due)})  # skipped
            return  # queued: fires when a slot frees up
        run_id = f"{sid}-{started + 1}"

        def record(r: Record) -> None:
            r["internal"].update(lastFire=iso(due), pending=run_id)
            r["resource"].update(
                startedRunCount=str(started + 1),
                lastScheduledRunResponse={"scheduledRunTime": iso(due)},
                nextRunTime=iso(next_fire(res["cron"], due)),
                updateTime=now(),
            )

        rec = self.store.update(COLLECTION, sid, record)
        self._create(sid, rec, run_id)

    def _create(self, sid: str, rec: Record, run_id: str) -> None:
        res = rec["resource"]
        request = res["createPipelineJobRequest"]
        if self.store.get("pipelineJobs", run_id) is None:
            job = dict(request["pipelineJob"])
            try:
                self.create_run(request.get("parent", ""), job, run_id, res["name"])
            except ApiError as e:
                res_error = f"run {run_id} could not be created: {e.message}"
                self._set(
                    sid,
                    lastScheduledRunResponse={
                        **(res.get("lastScheduledRunResponse") or {}),
                        "runResponse": res_error,
                    },
                )
                self.store.update(COLLECTION, sid, lambda r: r["internal"].pop("pending", None))
                return
        job_name = f"{request.get('parent', '')}/pipelineJobs/{run_id}"

        def done(r: Record) -> None:
            r["internal"].pop("pending", None)
            last = r["resource"].get("lastScheduledRunResponse") or {}
            r["resource"]["lastScheduledRunResponse"] = {**last, "runResponse": job_name}
            started = int(r["resource"].get("startedRunCount") or 0)
            max_runs = int(r["resource"].get("maxRunCount") or 0)
            if max_runs and started >= max_runs:
                r["resource"]["state"] = "COMPLETED"

        self.store.update(COLLECTION, sid, done)

    def _set(self, sid: str, internal_fields: dict[str, Any] | None = None, **fields: Any) -> None:
        def fn(r: Record) -> None:
            r["resource"].update(fields)
            r["resource"]["updateTime"] = now()
            if internal_fields:
                r["internal"].update(internal_fields)

        self.store.update(COLLECTION, sid, fn)
