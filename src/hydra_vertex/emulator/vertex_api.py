"""The Vertex AI v1 subset: custom jobs, tuning jobs, pipeline jobs and schedules.

:func:`routes` is the table (method + path template -> handler); each route names the Google
method it serves, and a test checks them against the HTTP rules the ``aiplatform_v1`` client
library ships. Handlers see the request and the store only; they parse bodies as proto-JSON into
the ``aiplatform_v1`` types (unknown fields -> 400) and render resources through the same types
(enums as numbers when the client sends ``$alt=json;enum-encoding=int``, as the SDK does).

A list's parent may be ``projects/-/locations/-`` (any project, any location), as AIP-159 spells
reading across collections; the emulator's own progress display lists that way. Lists take
``filter`` (AIP-160), ``orderBy``, ``readMask`` and opaque page tokens (:mod:`listing`); deletes
answer an Operation that stays readable (:mod:`operations`).

Names: a malformed project, location or id is 400 (ids: digits for custom and tuning jobs and
schedules, ``[a-z0-9][a-z0-9-]*`` for pipeline jobs); a well-formed one that does not exist is 404.
Each trial of a tuning job names its CustomJob (``trials[].customJob``): the id is the tuning
job's id followed by the trial's id, and ``GET customJobs/<that id>`` answers a CustomJob made
from the trial (its spec with the trial's arguments, state and times); those are not listed, and
cancel/delete go to the tuning job.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from hydra_vertex import images
from hydra_vertex.emulator import listing, pipelines, schedules
from hydra_vertex.emulator.devices import DevicePool
from hydra_vertex.emulator.operations import Operations
from hydra_vertex.emulator.router import Answer, ApiError, Request, Route, json_body
from hydra_vertex.emulator.runners import TERMINAL_JOB_STATES
from hydra_vertex.emulator.seeds import job_seed
from hydra_vertex.emulator.store import COLLECTIONS, Store, now, valid_id

# Vertex documents no ceiling on parallel_trial_count (its quotas bound the machines instead);
# this one keeps a burst of trial processes from swamping one machine (docs/emulator.md).
MAX_PARALLEL_TRIALS = 64
MAX_EXACT_INT = 2**53  # trial parameter values are doubles (google.protobuf.Value)
MAX_GRID_POINTS = 100_000
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NUMERIC_ID = re.compile(r"^[0-9]{1,24}$")
_TUNING_ID_DIGITS = 18  # Store.new_id: 10**17 <= id < 10**18
_SERVICE = "google.cloud.aiplatform.v1"

MESSAGE_TYPES = {
    "customJobs": "CustomJob",
    "hyperparameterTuningJobs": "HyperparameterTuningJob",
    "pipelineJobs": "PipelineJob",
    "schedules": "Schedule",
}
_SERVICES = {
    "customJobs": "JobService",
    "hyperparameterTuningJobs": "JobService",
    "pipelineJobs": "PipelineService",
    "schedules": "ScheduleService",
}
if set(MESSAGE_TYPES) != set(COLLECTIONS):  # pragma: no cover - a new collection needs a type
    raise RuntimeError(f"MESSAGE_TYPES {sorted(MESSAGE_TYPES)} != COLLECTIONS {COLLECTIONS}")
_JOB_OUTPUTS = ("startTime", "endTime", "error", "trials", "webAccessUris")
_RUN_OUTPUTS = ("startTime", "endTime", "error", "jobDetail")
_SCHEDULE_OUTPUTS = ("lastPauseTime", "lastResumeTime", "lastScheduledRunResponse")
_UPDATABLE = {
    "displayName",
    "cron",
    "startTime",
    "endTime",
    "maxRunCount",
    "maxConcurrentRunCount",
    "allowQueueing",
    "catchUp",
    "createPipelineJobRequest",
}


def parse_message(collection: str, body: bytes) -> Any:
    """Parse a request body into the aiplatform_v1 type; unknown fields are rejected (400)."""
    from google.cloud.aiplatform_v1 import types

    cls = getattr(types, MESSAGE_TYPES[collection])
    try:
        text = body.decode("utf-8")
        json.loads(text)
        return cls.from_json(text, ignore_unknown_fields=False)
    except Exception as e:
        raise ApiError(400, f"invalid {MESSAGE_TYPES[collection]} body: {e}") from None


def to_proto_json(collection: str, resource: dict[str, Any], ints: bool = True) -> dict[str, Any]:
    """Render a stored resource through the proto type (drops internal ``_`` keys)."""
    from google.cloud.aiplatform_v1 import types

    cls = getattr(types, MESSAGE_TYPES[collection])
    msg = cls.from_json(json.dumps(_public(resource)), ignore_unknown_fields=True)
    out: dict[str, Any] = json.loads(
        cls.to_json(msg, use_integers_for_enums=ints, always_print_fields_with_no_presence=False)
    )
    return out


def _public(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _public(v) for k, v in obj.items() if not k.startswith("_")}
    if isinstance(obj, list):
        return [_public(v) for v in obj]
    return obj


def _ints(request: Request) -> bool:
    return "enum-encoding=int" in request.query.get("$alt", "")


def terminal_states(collection: str) -> tuple[str, ...]:
    return pipelines.TERMINAL if collection == pipelines.COLLECTION else TERMINAL_JOB_STATES


class VertexApi:
    """Handlers over the store. ``start_runner(collection, job_id)`` carries a created job out;
    ``resolve_image(uri)`` is the local directory of an image (None: not runnable here)."""

    def __init__(
        self,
        store: Store,
        start_runner: Callable[[str, str], None],
        resolve_image: Callable[[str], Path | None],
        seed: int | None = None,
        devices: DevicePool | None = None,
        on_cancel: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.start_runner = start_runner
        self.resolve_image = resolve_image
        self.seed = seed
        self.operations = Operations(store.root)
        self.devices = devices if devices is not None else DevicePool()
        self.on_cancel = on_cancel  # wakes the job's runner at once

    # -- the table -------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        routes = [route for c in COLLECTIONS for route in self._collection_routes(c)]
        return routes + self.operations.routes()

    def _collection_routes(self, collection: str) -> list[Route]:
        kind, service = MESSAGE_TYPES[collection], f"{_SERVICE}.{_SERVICES[collection]}"
        parent = f"/v1/projects/{{project}}/locations/{{location}}/{collection}"
        item = f"{parent}/{{job_id}}"

        def route(method: str, template: str, rpc: str, fn: Callable[..., Answer]) -> Route:
            return Route(method, template, partial(fn, collection), f"{service}.{rpc}")

        out = [
            route("POST", parent, f"Create{kind}", self.create),
            route("GET", parent, f"List{kind}s", self.list),
            route("GET", item, f"Get{kind}", self.get),
            route("DELETE", item, f"Delete{kind}", self.delete),
        ]
        if collection == schedules.COLLECTION:
            out += [
                route("PATCH", item, "UpdateSchedule", self.update_schedule),
                route("POST", f"{item}:pause", "PauseSchedule", self.pause_schedule),
                route("POST", f"{item}:resume", "ResumeSchedule", self.resume_schedule),
            ]
        else:
            out.append(route("POST", f"{item}:cancel", f"Cancel{kind}", self.cancel))
        return out

    # -- names -----------------------------------------------------------------------------------
    @staticmethod
    def _parent(request: Request, project: str, location: str, wildcard: bool = False) -> str:
        for what, segment in (("project", project), ("location", location)):
            if not _SEGMENT.match(segment) and not (wildcard and segment == "-"):
                raise ApiError(
                    400,
                    f"{what} {segment!r} in {request.path!r} is malformed: lowercase letters, "
                    "digits and hyphens" + (", or '-' for all" if wildcard else ""),
                )
        return f"projects/{project}/locations/{location}"

    @staticmethod
    def _check_id(collection: str, job_id: str) -> None:
        """400 for an id that no resource of ``collection`` can have."""
        if collection == pipelines.COLLECTION:
            if not valid_id(job_id):
                raise ApiError(
                    400,
                    f"pipeline job id {job_id!r} is malformed: 1-128 lowercase letters, digits "
                    "or hyphens, starting with a letter or digit",
                )
        elif not _NUMERIC_ID.match(job_id):
            raise ApiError(
                400, f"{MESSAGE_TYPES[collection]} id {job_id!r} is malformed: it is a number"
            )

    def _record(
        self, request: Request, collection: str, project: str, location: str, job_id: str
    ) -> dict[str, Any]:
        self._parent(request, project, location)
        self._check_id(collection, job_id)
        rec = self.store.get(collection, job_id)
        if rec is None:
            if collection == "customJobs" and self._trial_of(job_id) is not None:
                tuning_id, trial_id = self._trial_of(job_id) or ("", "")
                raise ApiError(
                    400,
                    f"CustomJob {job_id} runs trial {trial_id} of HyperparameterTuningJob "
                    f"{tuning_id}: cancel or delete the tuning job",
                    "FAILED_PRECONDITION",
                )
            raise ApiError(404, f"{MESSAGE_TYPES[collection]} {job_id} not found")
        return rec

    # -- trials' custom jobs ---------------------------------------------------------------------
    def _trial_of(self, job_id: str) -> tuple[str, str] | None:
        """``(tuning job id, trial id)`` when ``job_id`` names a trial's CustomJob."""
        if len(job_id) <= _TUNING_ID_DIGITS or not job_id.isdigit():
            return None
        tuning_id, trial_id = job_id[:_TUNING_ID_DIGITS], job_id[_TUNING_ID_DIGITS:]
        rec = self.store.get("hyperparameterTuningJobs", tuning_id)
        trials = (rec or {}).get("resource", {}).get("trials", [])
        return (tuning_id, trial_id) if any(t.get("id") == trial_id for t in trials) else None

    def _trial_custom_job(self, job_id: str) -> dict[str, Any] | None:
        found = self._trial_of(job_id)
        if found is None:
            return None
        rec = self.store.get("hyperparameterTuningJobs", found[0])
        assert rec is not None
        return trial_custom_job(rec["resource"], found[1])

    # -- handlers --------------------------------------------------------------------------------
    def create(self, collection: str, request: Request, project: str, location: str) -> Answer:
        parent = self._parent(request, project, location)
        msg = parse_message(collection, request.body)
        data = to_proto_json(collection, json.loads(request.body.decode()), ints=False)
        if collection == pipelines.COLLECTION:
            job_id = request.query.get("pipelineJobId", "")
            created = self.create_pipeline_run(parent, data, job_id, "")
        elif collection == schedules.COLLECTION:
            created = self._create_schedule(parent, data)
        else:
            created = self._create_job(collection, parent, msg, data)
        return 200, to_proto_json(collection, created, _ints(request))

    def _create_job(
        self, collection: str, parent: str, msg: Any, data: dict[str, Any]
    ) -> dict[str, Any]:
        self._validate(collection, msg)
        job_id = self.store.new_id(collection)
        _created(data, f"{parent}/{collection}/{job_id}", "JOB_STATE_PENDING", _JOB_OUTPUTS)
        internal = {"seed": job_seed(data.get("labels", {}), self.seed)}
        self.store.put(collection, job_id, {"resource": data, "internal": internal})
        self.start_runner(collection, job_id)
        return data

    def create_pipeline_run(
        self, parent: str, data: dict[str, Any], job_id: str, schedule: str
    ) -> dict[str, Any]:
        """Create and start a pipeline job (from a request, or fired by a schedule)."""
        pipelines.validate(data)
        if job_id:
            if not valid_id(job_id):
                raise ApiError(
                    400,
                    f"pipeline_job_id {job_id!r} must be 1-128 lowercase letters, digits or "
                    "hyphens, starting with a letter or digit",
                )
            if self.store.get(pipelines.COLLECTION, job_id) is not None:
                raise ApiError(409, f"pipeline job {job_id!r} already exists")
        else:
            job_id = self.store.new_id(pipelines.COLLECTION)
        _created(data, f"{parent}/pipelineJobs/{job_id}", "PIPELINE_STATE_PENDING", _RUN_OUTPUTS)
        if schedule:
            data["scheduleName"] = schedule
        self.store.put(pipelines.COLLECTION, job_id, {"resource": data, "internal": {}})
        self.start_runner(pipelines.COLLECTION, job_id)
        return data

    def _create_schedule(self, parent: str, data: dict[str, Any]) -> dict[str, Any]:
        schedules.validate(data)
        job_id = self.store.new_id(schedules.COLLECTION)
        _created(data, f"{parent}/schedules/{job_id}", "ACTIVE", _SCHEDULE_OUTPUTS)
        data["startedRunCount"] = "0"
        if not data.get("maxConcurrentRunCount"):
            data["maxConcurrentRunCount"] = "1"
        first = schedules.first_run_time(data)
        if first:
            data["nextRunTime"] = first
        self.store.put(schedules.COLLECTION, job_id, {"resource": data, "internal": {}})
        return data

    def _validate(self, collection: str, msg: Any) -> None:
        if not msg.display_name:
            raise ApiError(400, "display_name is required")
        job_spec = msg.job_spec if collection == "customJobs" else msg.trial_job_spec
        field = "job_spec" if collection == "customJobs" else "trial_job_spec"
        if not job_spec.worker_pool_specs:
            raise ApiError(400, f"{field}.worker_pool_specs must hold at least one worker pool")
        pool = job_spec.worker_pool_specs[0]
        if not pool.container_spec.image_uri:
            raise ApiError(
                400,
                f"{field}.worker_pool_specs[0].container_spec.image_uri is "
                "required (python_package_spec is not supported by the emulator)",
            )
        uri = pool.container_spec.image_uri
        workdir = self.resolve_image(uri)
        if workdir is None:
            raise ApiError(
                400,
                f"image {uri!r} is not runnable locally: build it with the local "
                "image builder or map it with --image NAME=DIR",
                "FAILED_PRECONDITION",
            )
        if not pool.container_spec.command:
            try:
                entrypoint = images.runtime(workdir).entrypoint
            except images.ImageError as e:
                raise ApiError(400, f"image {uri!r}: {e}") from None
            if not entrypoint:
                raise ApiError(
                    400,
                    f"{field}.worker_pool_specs[0].container_spec.command is empty and image "
                    f"{uri!r} has no ENTRYPOINT (no Dockerfile with one in {str(workdir)!r}): "
                    "give a command, or an ENTRYPOINT in the image's Dockerfile",
                )
        too_many = self.devices.refusal(  # more GPUs per process than this machine has
            pool.machine_spec.accelerator_count,
            f"{field}.worker_pool_specs[0].machine_spec.accelerator_count",
        )
        if too_many:
            raise ApiError(400, too_many)
        for name in ("timeout", "max_wait_duration"):
            duration = getattr(job_spec.scheduling, name)
            if duration is not None and duration.total_seconds() < 0:
                raise ApiError(
                    400,
                    f"{field}.scheduling.{name} must not be negative, got "
                    f"{duration.total_seconds():g}s",
                )
        if collection == "hyperparameterTuningJobs":
            self._validate_tuning(msg)

    @staticmethod
    def _validate_tuning(msg: Any) -> None:
        """The budget and the study of a tuning job: counts in range, every bound a number the
        suggester can work with (400 naming the field otherwise)."""
        if msg.max_trial_count <= 0:
            raise ApiError(400, f"max_trial_count must be > 0, got {msg.max_trial_count}")
        if msg.parallel_trial_count <= 0:
            raise ApiError(400, f"parallel_trial_count must be > 0, got {msg.parallel_trial_count}")
        if msg.parallel_trial_count > msg.max_trial_count:
            raise ApiError(
                400,
                f"parallel_trial_count ({msg.parallel_trial_count}) must not exceed "
                f"max_trial_count ({msg.max_trial_count})",
            )
        if msg.parallel_trial_count > MAX_PARALLEL_TRIALS:
            raise ApiError(
                400,
                f"parallel_trial_count is {msg.parallel_trial_count}; the emulator runs at most "
                f"{MAX_PARALLEL_TRIALS} trials at once on one machine (docs/emulator.md)",
            )
        if msg.max_failed_trial_count < 0:
            raise ApiError(400, "max_failed_trial_count must be >= 0")
        if not msg.study_spec.metrics:
            raise ApiError(400, "study_spec.metrics must hold at least one metric")
        if not msg.study_spec.parameters:
            raise ApiError(400, "study_spec.parameters must not be empty")
        from hydra_vertex.emulator import suggester
        from hydra_vertex.errors import HydraVertexError
        from hydra_vertex.search_space import SearchSpace

        try:
            space = SearchSpace.from_study_spec(msg.study_spec, source="study_spec")
        except HydraVertexError as e:
            raise ApiError(400, str(e)) from None
        for p in space.params:
            where = f"study_spec.parameters {p.parameter_id!r}"
            if p.kind == "DOUBLE" and not (
                math.isfinite(float(p.high) - float(p.low))
                and math.isfinite(float(p.high) + float(p.low))
            ):
                raise ApiError(
                    400,
                    f"{where}: double_value_spec [{p.low!r}, {p.high!r}] overflows "
                    "(max_value - min_value must be a finite double): narrow the bounds",
                )
            if p.kind == "INTEGER" and max(abs(int(p.low)), abs(int(p.high))) > MAX_EXACT_INT:
                raise ApiError(
                    400,
                    f"{where}: integer_value_spec [{p.low}, {p.high}] is out of range: trial "
                    f"values travel as doubles, exact only within +-2**53 ({MAX_EXACT_INT})",
                )
        if space.algorithm == "grid":
            points = suggester.grid_size(msg.study_spec)
            if points > MAX_GRID_POINTS:
                raise ApiError(
                    400,
                    f"study_spec: GRID_SEARCH over {points:.3g} points; the emulator enumerates "
                    f"at most {MAX_GRID_POINTS} (narrow the INTEGER ranges or use another "
                    "algorithm)",
                )

    def get(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        if collection == "customJobs" and self.store.get(collection, job_id) is None:
            self._parent(request, project, location)
            self._check_id(collection, job_id)
            trial_job = self._trial_custom_job(job_id)
            if trial_job is not None:
                return 200, to_proto_json(collection, trial_job, _ints(request))
        rec = self._record(request, collection, project, location, job_id)
        return 200, render(collection, rec["resource"], _ints(request))

    def list(self, collection: str, request: Request, project: str, location: str) -> Answer:
        parent = self._parent(request, project, location, wildcard=True)
        items = [
            r["resource"]
            for _id, r in self.store.items(collection)
            if _under(r["resource"]["name"], project, location)
        ]
        ints = _ints(request)
        body = listing.page(
            collection, MESSAGE_TYPES[collection], parent, items, request.query,
            lambda r: render(collection, r, ints),
        )
        return 200, body

    def cancel(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        self._record(request, collection, project, location, job_id)
        terminal = terminal_states(collection)
        cancelling = (
            "PIPELINE_STATE_CANCELLING"
            if collection == pipelines.COLLECTION
            else "JOB_STATE_CANCELLING"
        )

        def fn(rec: dict[str, Any]) -> None:
            state = rec["resource"].get("state")
            if state in terminal:
                raise ApiError(
                    400,
                    f"job {job_id} is already {state}; it cannot be cancelled",
                    "FAILED_PRECONDITION",
                )
            if state != cancelling:
                rec["resource"]["state"] = cancelling
                rec["resource"]["updateTime"] = now()

        self.store.update(collection, job_id, fn)
        if self.on_cancel is not None:
            self.on_cancel(collection, job_id)
        return 200, {}

    def delete(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        rec = self._record(request, collection, project, location, job_id)
        state = rec["resource"].get("state")
        if collection != schedules.COLLECTION and state not in terminal_states(collection):
            raise ApiError(
                400, f"job {job_id} is {state}; cancel it before deleting it", "FAILED_PRECONDITION"
            )
        self.store.delete(collection, job_id)
        return 200, self.operations.deleted(rec["resource"]["name"])

    # -- schedules -------------------------------------------------------------------------------
    def pause_schedule(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        self._record(request, collection, project, location, job_id)
        self.store.update(collection, job_id, partial(_pause_resume, job_id, True, None))
        return 200, {}

    def resume_schedule(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        """``ResumeScheduleRequest.catch_up`` (default false) also sets the schedule's
        ``catch_up``, as Vertex documents; with it false, runs missed while paused are skipped."""
        self._record(request, collection, project, location, job_id)
        body = json_body(request.body)
        catch_up = bool(body.get("catchUp", body.get("catch_up", False)))
        self.store.update(collection, job_id, partial(_pause_resume, job_id, False, catch_up))
        return 200, {}

    def update_schedule(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        """PATCH with ``updateMask``: the named fields of the body replace the stored ones. As on
        Vertex, runs due before the update that have not started are skipped; runs already
        created go on."""
        rec = self._record(request, collection, project, location, job_id)
        paths = [p.strip() for p in request.query.get("updateMask", "").split(",") if p.strip()]
        if not paths:
            raise ApiError(400, "update_mask is required: name the fields to update")
        fields = [_camel(p) for p in paths]
        unknown = [p for p, f in zip(paths, fields, strict=True) if f not in _UPDATABLE]
        if unknown:
            raise ApiError(
                400,
                f"update_mask: {unknown} cannot be updated; updatable fields: "
                f"{sorted(_UPDATABLE)}",
            )
        state = rec["resource"].get("state")
        if state not in ("ACTIVE", "PAUSED", "COMPLETED"):
            raise ApiError(
                400, f"schedule {job_id} is {state}; it cannot be updated", "FAILED_PRECONDITION"
            )
        parse_message(collection, request.body)
        body = to_proto_json(collection, json.loads(request.body.decode()), ints=False)
        updated = dict(rec["resource"])
        for f in fields:
            if f in body:
                updated[f] = body[f]
            else:
                updated.pop(f, None)
        schedules.validate(updated)
        stamp = now()

        def fn(r: dict[str, Any]) -> None:
            r["resource"] = {**updated, "updateTime": stamp}
            r["internal"]["lastFire"] = stamp  # due runs before the update are skipped
            r["resource"].pop("nextRunTime", None)
            first = schedules.first_run_time(r["resource"], stamp)
            if first:
                r["resource"]["nextRunTime"] = first

        new = self.store.update(collection, job_id, fn)
        return 200, to_proto_json(collection, new["resource"], _ints(request))


def _pause_resume(
    job_id: str, pause: bool, catch_up: bool | None, rec: dict[str, Any]
) -> None:
    res = rec["resource"]
    verb, wanted_from = ("paused", "ACTIVE") if pause else ("resumed", "PAUSED")
    if res.get("state") != wanted_from:
        raise ApiError(
            400,
            f"schedule {job_id} is {res.get('state')}; only a {wanted_from} schedule can be "
            f"{verb}",
            "FAILED_PRECONDITION",
        )
    stamp = now()
    res["state"] = "PAUSED" if pause else "ACTIVE"
    res["updateTime"] = stamp
    res["lastPauseTime" if pause else "lastResumeTime"] = stamp
    if catch_up is not None:
        res["catchUp"] = catch_up
        if not catch_up:
            rec["internal"]["lastFire"] = stamp  # runs missed while paused are not replayed


def _created(data: dict[str, Any], name: str, state: str, output_only: tuple[str, ...]) -> None:
    """A new resource's name, state and times; what the client sent in output-only fields goes."""
    for field in output_only:
        data.pop(field, None)
    stamp = now()
    data.update(name=name, state=state, createTime=stamp, updateTime=stamp)


def _camel(path: str) -> str:
    head, *rest = path.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _under(name: str, project: str, location: str) -> bool:
    parts = name.split("/")
    return (
        len(parts) >= 4
        and project in ("-", parts[1])
        and location in ("-", parts[3])
    )


def render(collection: str, resource: dict[str, Any], ints: bool) -> dict[str, Any]:
    """A stored resource as the API answers it (a tuning job's trials name their CustomJobs)."""
    if collection == "hyperparameterTuningJobs" and resource.get("trials"):
        job_id = resource["name"].rsplit("/", 1)[-1]
        parent = resource["name"].rsplit("/", 2)[0]
        resource = dict(resource)
        resource["trials"] = [
            {**t, "customJob": f"{parent}/customJobs/{job_id}{t['id']}"}
            for t in resource["trials"]
        ]
    return to_proto_json(collection, resource, ints)


_TRIAL_JOB_STATES = {
    "REQUESTED": "JOB_STATE_PENDING",
    "ACTIVE": "JOB_STATE_RUNNING",
    "STOPPING": "JOB_STATE_RUNNING",
    "SUCCEEDED": "JOB_STATE_SUCCEEDED",
    "INFEASIBLE": "JOB_STATE_FAILED",
}


def trial_custom_job(tuning_job: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """The CustomJob a trial ran as: the trial job spec with the trial's arguments after the
    container's args (what the trial's process got), the trial's state and times."""
    from hydra_vertex.emulator.trial_loop import trial_args
    from hydra_vertex.search_space import SearchSpace

    trial = next(t for t in tuning_job.get("trials", []) if t.get("id") == trial_id)
    job_id = tuning_job["name"].rsplit("/", 1)[-1]
    parent = tuning_job["name"].rsplit("/", 2)[0]
    spec = json.loads(json.dumps(tuning_job.get("trialJobSpec") or {}))
    params = {p["parameterId"]: p.get("value") for p in trial.get("parameters", [])}
    try:
        from google.cloud.aiplatform_v1 import types

        study = types.StudySpec.from_json(json.dumps(tuning_job.get("studySpec") or {}))
        args = trial_args(params, SearchSpace.from_study_spec(study, source="study_spec"))
    except Exception:  # a spec that no longer parses: the values as they were stored
        args = [f"--{k}={v}" for k, v in params.items()]
    pools = spec.get("workerPoolSpecs") or [{}]
    container = pools[0].setdefault("containerSpec", {})
    container["args"] = [*container.get("args", []), *args]
    state = _TRIAL_JOB_STATES.get(str(trial.get("state")), "JOB_STATE_PENDING")
    job: dict[str, Any] = {
        "name": f"{parent}/customJobs/{job_id}{trial_id}",
        "displayName": f"{tuning_job.get('displayName', '')} trial {trial_id}",
        "jobSpec": spec,
        "state": state,
        "labels": tuning_job.get("labels") or {},
    }
    for field in ("startTime", "endTime"):
        if trial.get(field):
            job[field] = trial[field]
    job["createTime"] = trial.get("startTime") or tuning_job.get("createTime")
    job["updateTime"] = trial.get("endTime") or job["createTime"]
    if state == "JOB_STATE_FAILED":
        job["error"] = {"code": 9, "message": str(trial.get("infeasibleReason", ""))}
    return {k: v for k, v in job.items() if v}
