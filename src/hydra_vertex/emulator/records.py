"""The shape of a stored job record: the small schema every job file must fit to be served.

``Store`` asks :func:`problem` about each job file it loads; a record it refuses is quarantined
(``STATE_DIR/quarantine/``) instead of stopping the emulator, answering 500 on every list of its
collection, or crashing its runner. A record is::

    {"resource": <the resource as proto-JSON>, "internal": {<the emulator's own notes>}}

- ``resource.name`` is ``projects/P/locations/L/<collection>/<id>`` with the file's own id;
- ``resource.state`` is a state name of the collection's type (``JobState``, ``PipelineState``,
  ``Schedule.State``);
- the resource renders through its ``aiplatform_v1`` type, as every get and list renders it;
- the internal notes the runners read have their types (``pid``: int, ``seed``: int, ...).
"""

from __future__ import annotations

import re
from typing import Any

from hydra_vertex.emulator import pipelines, schedules

_SEGMENT = r"[a-z0-9][a-z0-9-]{0,62}"
#: Internal notes the runners and the scheduler read, and their types (others are not checked).
_INTERNAL: dict[str, tuple[type, ...]] = {
    "pid": (int,),
    "start": (str, int, type(None)),
    "seed": (int,),
    "pids": (dict,),
    "pending": (str, type(None)),
    "lastFire": (str, type(None)),
}


def _state_names(collection: str) -> frozenset[str]:
    from google.cloud.aiplatform_v1 import types

    enum: Any
    if collection == pipelines.COLLECTION:
        enum = types.PipelineState
    elif collection == schedules.COLLECTION:
        enum = types.Schedule.State
    else:
        enum = types.JobState
    return frozenset(enum.__members__)


def problem(collection: str, job_id: str, record: Any) -> str | None:
    """Why ``record`` (the file ``jobs/<collection>/<job_id>.json``) cannot be served, or None."""
    if not isinstance(record, dict):
        return f"a record is a JSON object, got {type(record).__name__}"
    resource, internal = record.get("resource"), record.get("internal")
    if not isinstance(resource, dict):
        return f"'resource' must be an object, got {type(resource).__name__}"
    if not isinstance(internal, dict):
        return f"'internal' must be an object, got {type(internal).__name__}"
    name = resource.get("name")
    tail = f"{re.escape(collection)}/{re.escape(job_id)}"
    pattern = f"projects/{_SEGMENT}/locations/{_SEGMENT}/{tail}"
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        return f"'resource.name' must be projects/P/locations/L/{collection}/{job_id}, got {name!r}"
    state = resource.get("state")
    if state not in _state_names(collection):
        return f"'resource.state' {state!r} is not a state of {collection}"
    for key, kinds in _INTERNAL.items():
        if key in internal and (
            not isinstance(internal[key], kinds) or isinstance(internal[key], bool)
        ):
            return f"'internal.{key}' has the wrong type ({type(internal[key]).__name__})"
    from hydra_vertex.emulator.vertex_api import to_proto_json

    try:
        to_proto_json(collection, resource)
    except Exception as e:  # whatever the proto parser says: it is what a get would say
        return f"'resource' is not a valid {collection} resource: {str(e)[:200]}"
    return None
