"""The Vertex AI v1 subset: custom jobs, tuning jobs, pipeline jobs and schedules.

:func:`routes` is the table (method + path template -> handler); each route names the Google
method it serves, and a test checks them against the HTTP rules the ``aiplatform_v1`` client
library ships. Handlers see the request and the store only; they parse bodies as proto-JSON into
the ``aiplatform_v1`` types (unknown fields -> 400) and render resources through the same types
(enums as numbers when the client sends ``$alt=json;enum-encoding=int``, as the SDK does).

A list's parent may be ``projects/-/locations/-`` (any project, any location), as AIP-159 spells
reading across collections; the emulator's own progress display lists that way.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from hydra_vertex.emulator import pipelines, schedules
from hydra_vertex.emulator.devices import DevicePool
from hydra_vertex.emulator.router import Answer, ApiError, Request, Route, json_body
from hydra_vertex.emulator.runners import TERMINAL_JOB_STATES
from hydra_vertex.emulator.seeds import job_seed
from hydra_vertex.emulator.store import COLLECTIONS, Store, now, valid_id

DEFAULT_PAGE_SIZE = 100
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
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
    ) -> None:
        self.store = store
        self.start_runner = start_runner
        self.resolve_image = resolve_image
        self.seed = seed
        self.devices = devices if devices is not None else DevicePool()

    # -- the table -------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        return [route for c in COLLECTIONS for route in self._collection_routes(c)]

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
        for segment in (project, location):
            if not _SEGMENT.match(segment) and not (wildcard and segment == "-"):
                raise ApiError(404, f"no resource at {request.path!r}")
        return f"projects/{project}/locations/{location}"

    def _record(
        self, request: Request, collection: str, project: str, location: str, job_id: str
    ) -> dict[str, Any]:
        self._parent(request, project, location)
        rec = self.store.get(collection, job_id) if valid_id(job_id) else None
        if rec is None:
            raise ApiError(404, f"{MESSAGE_TYPES[collection]} {job_id} not found")
        return rec

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
        if self.resolve_image(uri) is None:
            raise ApiError(
                400,
                f"image {uri!r} is not runnable locally: build it with the local "
                "image builder or map it with --image NAME=DIR",
                "FAILED_PRECONDITION",
            )
        too_many = self.devices.refusal(  # more GPUs per process than this machine has
            pool.machine_spec.accelerator_count,
            f"{field}.worker_pool_specs[0].machine_spec.accelerator_count",
        )
        if too_many:
            raise ApiError(400, too_many)
        if collection == "hyperparameterTuningJobs":
            if msg.max_trial_count <= 0:
                raise ApiError(400, f"max_trial_count must be > 0, got {msg.max_trial_count}")
            if msg.parallel_trial_count <= 0:
                raise ApiError(
                    400, f"parallel_trial_count must be > 0, got {msg.parallel_trial_count}"
                )
            if msg.max_failed_trial_count < 0:
                raise ApiError(400, "max_failed_trial_count must be >= 0")
            if len(msg.study_spec.metrics) != 1:
                raise ApiError(
                    400,
                    "study_spec.metrics must hold exactly one metric, got "
                    f"{len(msg.study_spec.metrics)}",
                )
            if not msg.study_spec.parameters:
                raise ApiError(400, "study_spec.parameters must not be empty")
            from hydra_vertex.errors import HydraVertexError
            from hydra_vertex.search_space import SearchSpace

            try:
                SearchSpace.from_study_spec(msg.study_spec, source="study_spec")
            except HydraVertexError as e:
                raise ApiError(400, str(e)) from None

    def get(
        self, collection: str, request: Request, project: str, location: str, job_id: str
    ) -> Answer:
        rec = self._record(request, collection, project, location, job_id)
        return 200, to_proto_json(collection, rec["resource"], _ints(request))

    def list(self, collection: str, request: Request, project: str, location: str) -> Answer:
        self._parent(request, project, location, wildcard=True)
        query = request.query
        items = [
            r["resource"]
            for _id, r in self.store.items(collection)
            if _under(r["resource"]["name"], project, location)
        ]
        items = [r for r in items if matches_filter(r, query.get("filter", ""))]
        items.sort(key=lambda r: (r.get("createTime", ""), r["name"]), reverse=True)
        try:
            size = int(query.get("pageSize") or DEFAULT_PAGE_SIZE)
            start = int(query.get("pageToken") or 0)
        except ValueError:
            raise ApiError(400, "pageSize and pageToken must be integers") from None
        size = max(1, min(size, 1000))
        ints = _ints(request)
        out: dict[str, Any] = {
            collection: [to_proto_json(collection, r, ints) for r in items[start : start + size]]
        }
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return 200, out

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
        name = rec["resource"]["name"]
        return 200, {
            "name": f"{name}/operations/{secrets.randbelow(10**18)}",
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                "genericMetadata": {"createTime": now(), "updateTime": now()},
            },
        }

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
            r["resource"].pop("nextRunTime", None)
            r["internal"]["lastFire"] = stamp  # due runs before the update are skipped

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


_FILTER_TERM = re.compile(
    r"^\s*(labels\.[A-Za-z0-9_-]+|display_name|displayName|schedule_name|scheduleName)\s*=\s*"
    r'"([^"]*)"\s*$'
)
_FILTER_FIELDS = {"display_name": "displayName", "schedule_name": "scheduleName"}


def matches_filter(resource: dict[str, Any], text: str) -> bool:
    """The subset of AIP-160 list filters the clients here send: ``labels.KEY="V"``,
    ``display_name="V"`` and ``schedule_name="V"`` joined by ``AND``. Other terms are not
    understood and are ignored (see docs/emulator.md)."""
    if not text.strip():
        return True
    for term in re.split(r"\s+AND\s+", text.strip()):
        m = _FILTER_TERM.match(term)
        if m is None:
            continue
        field, value = m.group(1), m.group(2)
        if field.startswith("labels."):
            if (resource.get("labels") or {}).get(field[len("labels.") :]) != value:
                return False
        elif resource.get(_FILTER_FIELDS.get(field, field)) != value:
            return False
    return True
