"""Local, content-addressed "images": a snapshot of an app's source that the emulator can run.

On Google Cloud the training image is built by Cloud Build and pinned by digest. On one machine an
image is a directory: the app's source copied under ``images_root()/<digest>/workdir`` with an
``image.json`` beside it. Its reference is ``hydra-vertex.local/<name>@sha256:<digest>``; the digest
covers every file's relative path, mode and bytes, so an unchanged source is a cache hit.
The emulator runs a trial of such an image in its ``workdir`` (as a container starts in WORKDIR).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hydra_vertex.errors import HydraVertexError

IMAGE_HOST = "hydra-vertex.local"
_REF_RE = re.compile(
    rf"^{re.escape(IMAGE_HOST)}/(?P<name>[a-z0-9][a-z0-9._/-]*)@sha256:(?P<digest>[0-9a-f]{{64}})$"
)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_IGNORED_DIRS = {
    ".git", "__pycache__", ".venv", "venv", "outputs", "multirun", "wandb", ".hydra-vertex",
    ".mypy_cache", ".pytest_cache", ".ruff_cache", "node_modules",
}


class ImageError(HydraVertexError):
    """A local image cannot be built or resolved."""


@dataclass(frozen=True)
class LocalImage:
    ref: str
    name: str
    digest: str
    workdir: Path
    cached: bool


def images_root() -> Path:
    """Where local images live: ``$HYDRA_VERTEX_IMAGES`` or ``~/.cache/hydra-vertex/images``."""
    explicit = os.environ.get("HYDRA_VERTEX_IMAGES")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hydra-vertex" / "images"


def _files(source: Path) -> list[Path]:
    out: list[Path] = []
    for root, dirs, files in os.walk(source):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS and not d.endswith(".egg-info"))
        for f in sorted(files):
            p = Path(root) / f
            if p.is_symlink() or not p.is_file() or f.endswith((".pyc", ".pyo")):
                continue
            out.append(p)
    return out


def source_digest(source: str | os.PathLike[str]) -> str:
    """SHA-256 over the sorted (relative path, executable bit, content) of the source's files."""
    src = Path(source)
    h = hashlib.sha256()
    for p in _files(src):
        rel = p.relative_to(src).as_posix()
        h.update(rel.encode("utf-8") + b"\0")
        h.update(b"x" if os.access(p, os.X_OK) else b"-")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def build_local(
    source: str | os.PathLike[str], name: str, root: str | os.PathLike[str] | None = None
) -> LocalImage:
    """Snapshot ``source`` as a local image; an unchanged source returns the cached image."""
    src = Path(source).resolve()
    if not src.is_dir():
        raise ImageError(f"image source {str(source)!r} is not a directory (check 'app.source')")
    if not _NAME_RE.match(name):
        raise ImageError(
            f"image name {name!r} must match {_NAME_RE.pattern} (lowercase letters, digits, . _ -)"
        )
    base = Path(root) if root is not None else images_root()
    digest = source_digest(src)
    target = base / digest
    ref = f"{IMAGE_HOST}/{name}@sha256:{digest}"
    if (target / "image.json").is_file():
        return LocalImage(ref, name, digest, target / "workdir", cached=True)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=base))
    try:
        for p in _files(src):
            dest = tmp / "workdir" / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        (tmp / "workdir").mkdir(exist_ok=True)
        (tmp / "image.json").write_text(
            json.dumps({"ref": ref, "name": name, "digest": digest, "source": str(src)}, indent=2)
        )
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "image.json").is_file():  # not a concurrent identical build
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LocalImage(ref, name, digest, target / "workdir", cached=False)


def parse_ref(image_uri: str) -> tuple[str, str] | None:
    """``(name, digest)`` for a local image reference, else None."""
    m = _REF_RE.match(image_uri)
    return (m["name"], m["digest"]) if m else None


def resolve_local(image_uri: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The working directory of a locally built image, or None if this is not one we built."""
    parsed = parse_ref(image_uri)
    if parsed is None:
        return None
    base = Path(root) if root is not None else images_root()
    workdir = base / parsed[1] / "workdir"
    return workdir if (base / parsed[1] / "image.json").is_file() else None
