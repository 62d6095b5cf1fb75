"""Read an offline W&B run back from disk: its name, group, tags, config, summary and artifacts.

An offline run (``WANDB_MODE=offline``) is a directory ``offline-run-<time>-<id>/`` holding
``run-<id>.wandb``: the W&B client's record log (a LevelDB-style log of ``wandb_internal``
protobuf records), which ``wandb sync`` uploads later. :func:`read_run` parses it with the
protobuf classes that the ``wandb`` package ships, so a tuning study can be checked (and its
model loaded) without a W&B account:

.. code-block:: python

    from hydra_vertex.wandb_offline import find_runs, read_run

    for run_dir in find_runs("outputs/"):
        run = read_run(run_dir)
        print(run.name, run.group, run.job_type, run.tags, run.config, run.summary)
    model_dir = run.download_artifact("model-mytask-retrain", "model")

An offline run's artifact files stay where the client staged them (the manifest's
``local_path``); :meth:`OfflineRun.download_artifact` copies them out, as
``run.use_artifact(name).download()`` does online.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["OfflineArtifact", "OfflineRun", "find_runs", "read_records", "read_run"]

_HEADER = struct.Struct("<4sHB")  # ":W&B", magic 0xBEE1, version
_RECORD = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def find_runs(root: str | Path) -> list[Path]:
    """Every offline run directory under ``root`` (``.../wandb/offline-run-*``), oldest first."""
    runs = [p.parent for p in Path(root).rglob("offline-run-*/run-*.wandb")]
    return sorted(set(runs), key=lambda p: p.name)


def read_records(path: str | Path) -> Iterator[bytes]:
    """The serialized records of a ``.wandb`` file, in order."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        return
    ident, magic, _version = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path}: not a W&B run file (header {ident!r}, magic {magic:#x})")
    pos = _HEADER.size
    pending = bytearray()
    while pos + _RECORD.size <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD.size:
            pos += left_in_block  # the block's tail is padding
            continue
        _crc, length, kind = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        if kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK if pos % _BLOCK else 0  # zero padding
            continue
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield bytes(chunk)
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            pending += chunk
            yield bytes(pending)
            pending = bytearray()
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos - length}")


@dataclass
class OfflineArtifact:
    name: str
    type: str
    aliases: list[str]
    metadata: dict[str, Any]
    files: dict[str, str]  # path in the artifact -> local copy

    def download(self, root: str | Path) -> Path:
        """Copy the artifact's files to ``root`` (as ``Artifact.download()`` does); return it."""
        out = Path(root)
        for name, local in self.files.items():
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        return out


@dataclass
class OfflineRun:
    path: Path
    id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    entity: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[OfflineArtifact] = field(default_factory=list)
    exit_code: int | None = None

    def artifact(self, name: str) -> OfflineArtifact:
        """The logged artifact ``name[:version or alias]`` (``model-x:v1``, ``model-x:latest``).

        Versions count the run's own logs of that name from ``v0``, as W&B numbers them for a
        new artifact; no suffix means ``latest``.
        """
        base, _, which = name.partition(":")
        found = [a for a in self.artifacts if a.name == base]
        if not found:
            have = ", ".join(sorted({a.name for a in self.artifacts})) or "none"
            raise KeyError(f"run {self.name!r} logged no artifact {base!r} (it logged: {have})")
        if not which or which == "latest":
            return found[-1]
        if which[0] == "v" and which[1:].isdigit() and int(which[1:]) < len(found):
            return found[int(which[1:])]
        for artifact in reversed(found):
            if which in artifact.aliases:
                return artifact
        raise KeyError(
            f"run {self.name!r}: artifact {base!r} has no version or alias {which!r} "
            f"(versions v0..v{len(found) - 1}, "
            f"aliases {sorted({x for a in found for x in a.aliases})})"
        )

    def download_artifact(self, name: str, root: str | Path) -> Path:
        return self.artifact(name).download(root)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _items(items: Any) -> Iterator[tuple[str, Any]]:
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        yield key, _value(item.value_json)


def read_run(run_dir: str | Path) -> OfflineRun:
    """Parse the ``run-*.wandb`` file of an offline run directory."""
    from wandb.proto import wandb_internal_pb2 as pb

    directory = Path(run_dir)
    files = sorted(directory.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{directory}: no run-*.wandb file (is it an offline W&B run?)")
    run = OfflineRun(path=directory)
    for raw in read_records(files[0]):
        record = pb.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.id, run.name, run.group = r.run_id, r.display_name, r.run_group
            run.job_type, run.project, run.entity = r.job_type, r.project, r.entity
            run.tags = list(r.tags)
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
            for item in record.config.remove:
                run.config.pop(item.key, None)
        elif kind == "summary":
            run.summary.update(_items(record.summary.update))
            for item in record.summary.remove:
                run.summary.pop(item.key, None)
        elif kind == "history":
            row = dict(_items(record.history.item))
            run.history.append(row)
        elif kind == "artifact":
            run.artifacts.append(_artifact(record.artifact))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    last: dict[str, Any] = {}  # the summary defaults to the last logged value of each key
    for row in run.history:
        last.update((k, v) for k, v in row.items() if not k.startswith("_"))
    run.summary = {**last, **run.summary}
    return run


def _artifact(a: Any) -> OfflineArtifact:
    files = {e.path: e.local_path for e in a.manifest.contents if e.local_path}
    metadata = _value(a.metadata) if a.metadata else {}
    return OfflineArtifact(
        name=a.name,
        type=a.type,
        aliases=list(a.aliases),
        metadata=metadata if isinstance(metadata, dict) else {},
        files=files,
    )
