"""Long-running operations (``google.longrunning.Operations``) of the Vertex resources served.

The emulator carries out a delete at once and answers its Operation done (``response``: Empty,
``metadata``: ``DeleteOperationMetadata``); the Operation stays readable afterwards under the
resource's name, as on Vertex: ``GET``/``:wait``/``DELETE``/``:cancel`` on
``.../{collection}/{id}/operations/{op}`` and the list ``.../{collection}/{id}/operations``, and the
same at the location (``projects/*/locations/*/operations[/{op}]``). Every route exists under
``/v1/`` and under ``/ui/``: the GAPIC clients' operations mixin (what ``operation.result()``
polls with) sends the ``/ui/`` form first.

Operations persist as ``STATE_DIR/operations/<id>.json`` (atomic writes), so a restart keeps
them. Cancelling a done operation changes nothing (it answers Empty).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from hydra_vertex.emulator.listing import paginate, param
from hydra_vertex.emulator.router import Answer, ApiError, Request, Route
from hydra_vertex.emulator.store import COLLECTIONS, atomic_write_json, now

_OPS = "google.longrunning.Operations"
_ID = re.compile(r"^[0-9]{1,24}$")
_SEGMENT = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_RESOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_EMPTY = {"@type": "type.googleapis.com/google.protobuf.Empty"}
_DELETE_METADATA = "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata"


class Operations:
    """The operations of one state directory, and their routes."""

    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / "operations"
        self._lock = threading.Lock()
        self._ops: dict[str, dict[str, Any]] = {}
        for path in self.root.glob("*.json") if self.root.is_dir() else []:
            if path.is_symlink() or not _ID.match(path.stem):
                continue
            try:
                self._ops[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue

    # -- records ---------------------------------------------------------------------------------
    def deleted(self, resource_name: str) -> dict[str, Any]:
        """The done Operation of the delete of ``resource_name`` (recorded, then answered)."""
        stamp = now()
        return self._add(
            resource_name,
            {
                "done": True,
                "response": dict(_EMPTY),
                "metadata": {
                    "@type": _DELETE_METADATA,
                    "genericMetadata": {"createTime": stamp, "updateTime": stamp},
                },
            },
        )

    def _add(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            op_id = str(10**17 + secrets.randbelow(9 * 10**17))
            while op_id in self._ops:
                op_id = str(10**17 + secrets.randbelow(9 * 10**17))
            op = {"name": f"{parent}/operations/{op_id}", **body}
            atomic_write_json(self.root / f"{op_id}.json", op)
            self._ops[op_id] = op
            return dict(op)

    def _find(self, parent: str, op_id: str) -> tuple[str, dict[str, Any]]:
        if not _ID.match(op_id):
            raise ApiError(400, f"operation id {op_id!r} is malformed: it must be a number")
        with self._lock:
            op = self._ops.get(op_id)
        if op is None or not _belongs(op["name"], parent):
            raise ApiError(404, f"operation {parent}/operations/{op_id} not found")
        return op_id, dict(op)

    # -- handlers --------------------------------------------------------------------------------
    def get(self, request: Request, **names: str) -> Answer:
        return 200, self._find(_parent(**names), names["operation_id"])[1]

    def wait(self, request: Request, **names: str) -> Answer:
        """Every operation here is done when it is answered: waiting returns at once."""
        return 200, self._find(_parent(**names), names["operation_id"])[1]

    def cancel(self, request: Request, **names: str) -> Answer:
        self._find(_parent(**names), names["operation_id"])
        return 200, {}

    def delete(self, request: Request, **names: str) -> Answer:
        op_id, _ = self._find(_parent(**names), names["operation_id"])
        with self._lock:
            self._ops.pop(op_id, None)
            (self.root / f"{op_id}.json").unlink(missing_ok=True)
        return 200, {}

    def list_(self, request: Request, **names: str) -> Answer:
        parent = _parent(**names)
        if param(request.query, "filter"):
            raise ApiError(
                400, "filter is not supported on operations here (every operation is done)"
            )
        with self._lock:
            ops = sorted(
                (dict(op) for op in self._ops.values() if _belongs(op["name"], parent)),
                key=lambda op: op["name"],
            )
        window, token = paginate(len(ops), request.query, ["operations", parent])
        out: dict[str, Any] = {"operations": ops[window]}
        if token:
            out["nextPageToken"] = token
        return 200, out

    # -- the table -------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        out: list[Route] = []
        for prefix in ("/v1", "/ui"):
            location = f"{prefix}/projects/{{project}}/locations/{{location}}"
            for owner in [location, *(f"{location}/{c}/{{job_id}}" for c in COLLECTIONS)]:
                collection = f"{owner}/operations"
                item = f"{collection}/{{operation_id}}"
                table: list[tuple[str, str, str, Callable[..., Answer]]] = [
                    ("GET", item, "GetOperation", self.get),
                    ("DELETE", item, "DeleteOperation", self.delete),
                    ("POST", f"{item}:wait", "WaitOperation", self.wait),
                    ("POST", f"{item}:cancel", "CancelOperation", self.cancel),
                    ("GET", collection, "ListOperations", self.list_),
                ]
                kind = owner.rsplit("/", 2)[-2] if owner != location else ""
                out += [
                    Route(method, path, partial(fn, collection=kind), f"{_OPS}.{rpc}")
                    for method, path, rpc, fn in table
                ]
        return out


def _parent(
    project: str, location: str, collection: str = "", job_id: str = "", **_: str
) -> str:
    for what, segment in (("project", project), ("location", location)):
        if not _SEGMENT.match(segment):
            raise ApiError(400, f"{what} {segment!r} is malformed")
    parent = f"projects/{project}/locations/{location}"
    if collection:
        if not _RESOURCE_ID.match(job_id):
            raise ApiError(400, f"{collection} id {job_id!r} is malformed")
        parent = f"{parent}/{collection}/{job_id}"
    return parent


def _belongs(name: str, parent: str) -> bool:
    """``name`` is an operation of ``parent`` (a resource, or a location: any of its resources)."""
    if not name.startswith(parent + "/"):
        return False
    rest = name[len(parent) + 1 :].split("/")
    location_level = parent.count("/") == 3
    return rest[0] == "operations" or (location_level and len(rest) == 4)
