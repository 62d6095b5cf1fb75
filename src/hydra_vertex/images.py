"""Local, content-addressed "images": an app's source snapshot plus the Python it runs with.

On Google Cloud the training image is built by Cloud Build and pinned by digest; its Dockerfile (or
the components image) is the environment. On one machine an image is a directory,
``images_root()/<digest>/``, holding

- ``workdir/``: the source snapshot, the files Cloud Build would upload: what ``.gcloudignore``,
  else ``.dockerignore``, else ``.gitignore`` (root files, gitignore syntax; a ``.dockerignore``
  pattern is anchored at the root, as Docker reads it) lets through, never
  :data:`ALWAYS_EXCLUDED`;
- ``bin/``: ``python``, ``python3`` and ``hydra-vertex-shim`` for the image's interpreter, first on
  the trial's ``PATH`` (so ``python`` in ``app.command`` is the image's interpreter);
- ``image.json``: what the emulator needs to run it (:func:`runtime`): ``workdir``, ``bin`` and
  ``path`` (first on ``PATH``), ``env`` (``VIRTUAL_ENV``), the ``environment`` it was built with,
  and ``container``: the source's ``Dockerfile`` read at build time (``WORKDIR``, ``ENV``,
  ``ENTRYPOINT``, ``CMD``; :mod:`hydra_vertex.dockerfile`), or null without one.

The interpreter (:func:`resolve_environment`) is ``app.python`` when the job names one; else a
virtual environment built from the source's ``requirements.txt`` (or ``app.requirements``) with
hydra-vertex's core added (:mod:`hydra_vertex.envs`), cached by content; else hydra-vertex's own.
Its reference is ``hydra-vertex.local/<name>@sha256:<digest>``: the digest covers every snapshot
file's relative path, mode and bytes, and the environment; an unchanged app is a cache hit.
The emulator runs a trial of such an image in its ``workdir`` (as a container starts in WORKDIR).

A *linked* image (:func:`link_local`, the Hydra sweeper's local trials) is no snapshot: its
``workdir`` links to a directory as it is, and ``bin/`` runs a given interpreter.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra_vertex.dockerfile import ContainerConfig
from hydra_vertex.errors import HydraVertexError

__all__ = [
    "ALWAYS_EXCLUDED",
    "Environment",
    "ImageError",
    "LocalImage",
    "Runtime",
    "build_local",
    "images_root",
    "link_local",
    "list_images",
    "resolve_local",
    "runtime",
    "snapshot_files",
]

class ImageError(HydraVertexError):
    """A local image cannot be built or resolved."""


IMAGE_HOST = "hydra-vertex.local"
_REF_RE = re.compile(
    rf"^{re.escape(IMAGE_HOST)}/(?P<name>[a-z0-9][a-z0-9._/-]*)@sha256:(?P<digest>[0-9a-f]{{64}})$"
)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
#: Never part of a snapshot, whatever the ignore files say: what hydra-vertex, Hydra and W&B write
#: next to the app, version control, and caches and virtual environments.
ALWAYS_EXCLUDED = (
    ".git/", ".hydra-vertex/", "outputs/", "multirun/", "wandb/", "/SUMMARY.json", "/report.html",
    "__pycache__/", "*.pyc", "*.pyo", ".venv/", "venv/", ".mypy_cache/", ".pytest_cache/",
    ".ruff_cache/", "node_modules/", "*.egg-info/",
)
#: The first of these at the source's root decides what the snapshot takes (as Cloud Build's
#: upload would: gcloud reads .gcloudignore; without one, the Docker and git rules apply).
IGNORE_FILES = (".gcloudignore", ".dockerignore", ".gitignore")
_INCLUDE = "#!include:"
LAST_USED = "last-used"
BIN = "bin"
DOCKERFILE = "Dockerfile"


@dataclass(frozen=True)
class Environment:
    """The interpreter of an image: ``kind`` is ``python`` (``app.python``), ``venv`` (built from
    requirements) or ``tool`` (hydra-vertex's own, resolved by the emulator when it runs)."""

    kind: str
    python: str = ""
    requirements: str = ""
    key: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "python": self.python, "requirements": self.requirements}


TOOL_ENVIRONMENT = Environment("tool")


@dataclass(frozen=True)
class LocalImage:
    ref: str
    name: str
    digest: str
    workdir: Path
    cached: bool
    environment: Environment = field(default=TOOL_ENVIRONMENT, compare=False)


@dataclass(frozen=True)
class Runtime:
    """How a process of an image starts: its working directory, what goes first on ``PATH``
    (``os.pathsep``-joined), the variables the image sets, and its Dockerfile's ``ENTRYPOINT``
    and ``CMD`` (None when it sets none)."""

    cwd: Path
    path: str
    env: dict[str, str]
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None


def images_root() -> Path:
    """Where local images live: ``$HYDRA_VERTEX_IMAGES`` or ``~/.cache/hydra-vertex/images``."""
    explicit = os.environ.get("HYDRA_VERTEX_IMAGES")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hydra-vertex" / "images"


# -- the snapshot --------------------------------------------------------------------------------
def _read_ignore(source: Path, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
    try:
        lines = (source / name).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    out: list[str] = []
    for line in lines:
        if line.startswith(_INCLUDE):  # gcloud's "#!include:.gitignore"
            included = line[len(_INCLUDE) :].strip()
            if included and included not in seen:
                out += _read_ignore(source, included, seen | {name})
            continue
        out.append(line)
    return out


def _docker_to_git(lines: list[str]) -> list[str]:
    """.dockerignore patterns as gitignore ones: Docker anchors every pattern at the root."""
    out = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = pattern.removeprefix("./").lstrip("/")
        if not pattern.startswith("**"):
            pattern = "/" + pattern
        out.append(("!" if negate else "") + pattern)
    return out


def ignore_rules(source: str | os.PathLike[str]) -> tuple[str | None, list[str]]:
    """(the ignore file in use, or None; its patterns as gitignore lines)."""
    src = Path(source)
    for name in IGNORE_FILES:
        if (src / name).is_file():
            lines = _read_ignore(src, name)
            return name, _docker_to_git(lines) if name == ".dockerignore" else lines
    return None, []


def snapshot_files(source: str | os.PathLike[str]) -> list[Path]:
    """The files of a snapshot of ``source`` (sorted; regular files, no links)."""
    import pathspec

    src = Path(source)
    _, lines = ignore_rules(src)
    user = pathspec.GitIgnoreSpec.from_lines(lines)
    always = pathspec.GitIgnoreSpec.from_lines(ALWAYS_EXCLUDED)

    def excluded(rel: str) -> bool:
        return always.match_file(rel) or user.match_file(rel)

    out: list[Path] = []
    for root, dirs, files in os.walk(src):
        base = Path(root).relative_to(src).as_posix()
        prefix = "" if base == "." else base + "/"
        dirs[:] = sorted(d for d in dirs if not excluded(f"{prefix}{d}/"))
        for f in sorted(files):
            p = Path(root) / f
            if p.is_symlink() or not p.is_file() or excluded(prefix + f):
                continue
            out.append(p)
    return out


_files = snapshot_files  # the name hydra_vertex.cloud_build uses


def source_digest(source: str | os.PathLike[str]) -> str:
    """SHA-256 over the sorted (relative path, executable bit, content) of the snapshot's files."""
    src = Path(source)
    h = hashlib.sha256()
    for p in snapshot_files(src):
        rel = p.relative_to(src).as_posix()
        h.update(rel.encode("utf-8") + b"\0")
        h.update(b"x" if os.access(p, os.X_OK) else b"-")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# -- the environment -----------------------------------------------------------------------------
def resolve_environment(
    source: Path,
    python: str | os.PathLike[str] | None = None,
    requirements: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Environment:
    """The image's interpreter: ``python``; else a venv from ``requirements`` (default: the
    source's ``requirements.txt``), built or taken from the cache; else hydra-vertex's own."""
    from hydra_vertex import envs

    if python is not None:
        interpreter = Path(python)
        if interpreter.is_dir():
            interpreter = interpreter / "bin" / "python"
        envs.check_interpreter(str(interpreter), "app.python")
        return Environment("python", str(interpreter), key=f"python:{interpreter}")
    req = Path(requirements) if requirements is not None else source / "requirements.txt"
    if requirements is None and not req.is_file():
        return TOOL_ENVIRONMENT
    built = envs.ensure(req, log=log)
    return Environment("venv", str(built.python), str(req), key=f"venv:{built.key}")


def _wrappers(bin_dir: Path, python: str) -> None:
    """``python``, ``python3`` and ``hydra-vertex-shim`` that run the image's interpreter."""
    import shlex

    bin_dir.mkdir(parents=True, exist_ok=True)
    quoted = shlex.quote(python)
    scripts = {
        "python": f'exec {quoted} "$@"',
        "python3": f'exec {quoted} "$@"',
        "hydra-vertex-shim": f'exec {quoted} -m hydra_vertex.shim "$@"',
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n# the image's interpreter (hydra-vertex)\n{body}\n")
        path.chmod(0o755)


def _venv_root(python: str) -> Path | None:
    root = Path(python).parent.parent
    return root if (root / "pyvenv.cfg").is_file() else None


# -- build ---------------------------------------------------------------------------------------
def build_local(
    source: str | os.PathLike[str],
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    python: str | os.PathLike[str] | None = None,
    requirements: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> LocalImage:
    """Snapshot ``source`` with its environment as a local image; unchanged, the cached one.

    ``log`` receives progress lines while an environment is built.
    """
    src = Path(source).resolve()
    if not src.is_dir():
        raise ImageError(f"image source {str(source)!r} is not a directory (check 'app.source')")
    _check_name(name)
    environment = resolve_environment(src, python, requirements, log)
    digest = source_digest(src)
    dockerfile = src / DOCKERFILE
    if dockerfile.is_file() and dockerfile not in snapshot_files(src):  # ignored, yet it counts
        digest = hashlib.sha256(digest.encode() + b"\0" + dockerfile.read_bytes()).hexdigest()
    if environment.kind != "tool":  # a tool image keeps the digest of its source alone
        digest = hashlib.sha256(f"{digest}\0{environment.key}".encode()).hexdigest()

    def fill(tmp: Path) -> dict[str, Any]:
        for p in snapshot_files(src):
            dest = tmp / "workdir" / p.relative_to(src)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
        (tmp / "workdir").mkdir(exist_ok=True)
        info: dict[str, Any] = {"source": str(src), "ignore_file": ignore_rules(src)[0]}
        info["container"] = _container(src)  # the Dockerfile's WORKDIR, ENV, ENTRYPOINT, CMD
        if environment.kind != "tool":
            info.update(_environment_info(tmp, environment))
        return info

    return _publish(root, name, digest, environment, fill)


def link_local(
    directory: str | os.PathLike[str],
    name: str,
    python: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
) -> LocalImage:
    """An image that *is* ``directory`` (its ``workdir`` links there: no snapshot) and runs with
    the interpreter ``python``.

    The Hydra sweeper's local trials run in it: the app as it is in the current directory, with
    the interpreter that started the sweep, as ``python APP.py`` would. Any emulator on this
    machine (started here or in another process) resolves it, as it resolves a built image. Its
    digest covers the directory's path and the interpreter, not the files, which are live.
    """
    src = Path(directory).resolve()
    if not src.is_dir():
        raise ImageError(f"image directory {str(directory)!r} is not a directory")
    _check_name(name)
    interpreter = str(Path(python).absolute())
    environment = Environment("python", interpreter, key=f"python:{interpreter}")
    digest = hashlib.sha256(f"link\0{src}\0{interpreter}".encode()).hexdigest()

    def fill(tmp: Path) -> dict[str, Any]:
        (tmp / "workdir").symlink_to(src, target_is_directory=True)
        # the app as it is: its directory and interpreter, never its Dockerfile's settings
        info = {"source": str(src), "link": True, "container": None}
        return {**info, **_environment_info(tmp, environment)}

    return _publish(root, name, digest, environment, fill)


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ImageError(
            f"image name {name!r} must match {_NAME_RE.pattern} (lowercase letters, digits, . _ -)"
        )


def _environment_info(tmp: Path, environment: Environment) -> dict[str, Any]:
    """The wrappers of an image with its own interpreter, and how ``image.json`` records them."""
    _wrappers(tmp / BIN, environment.python)
    venv = _venv_root(environment.python)
    return {
        "environment": environment.to_dict(),
        # Run with: PATH = <image>/<bin> : <path...> : $PATH, and these variables.
        "bin": BIN,
        "path": [os.path.dirname(environment.python)],
        "env": {"VIRTUAL_ENV": str(venv)} if venv is not None else {},
    }


def _publish(
    root: str | os.PathLike[str] | None,
    name: str,
    digest: str,
    environment: Environment,
    fill: Callable[[Path], dict[str, Any]],
) -> LocalImage:
    """The image ``digest``: the cached one, else one ``fill`` writes into a temporary directory
    (returning what ``image.json`` adds), renamed into place (a concurrent identical build wins)."""
    base = Path(root) if root is not None else images_root()
    target = base / digest
    ref = f"{IMAGE_HOST}/{name}@sha256:{digest}"
    if (target / "image.json").is_file():
        _touch(target)
        return LocalImage(ref, name, digest, target / "workdir", True, environment)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=base))
    try:
        info: dict[str, Any] = {"ref": ref, "name": name, "digest": digest, "created": time.time()}
        info.update(fill(tmp))
        info["workdir"] = "workdir"
        (tmp / "image.json").write_text(json.dumps(info, indent=2))
        (tmp / LAST_USED).touch()
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "image.json").is_file():  # not a concurrent identical build
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return LocalImage(ref, name, digest, target / "workdir", False, environment)


def _touch(image_dir: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only loses the "last use" column
        (image_dir / LAST_USED).touch()


# -- run -----------------------------------------------------------------------------------------
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


def runtime(workdir: Path) -> Runtime:
    """How to start a process of the image whose working directory is ``workdir``.

    An image with its own environment puts its ``bin/`` and its interpreter's directory first on
    ``PATH`` (and ``VIRTUAL_ENV`` for a virtual environment); any other directory (an image built
    without one, a directory mapped with ``--image``) runs with hydra-vertex's own interpreter.

    A ``Dockerfile`` (recorded in ``image.json`` at build time; read from a mapped directory)
    adds its ``ENTRYPOINT``, ``CMD``, ``ENV`` (a ``$VAR`` it does not define is expanded against
    this process's environment, ``PATH`` as the image's process will see it) and ``WORKDIR``
    (:mod:`hydra_vertex.dockerfile`: container paths under the copied build context are paths in
    ``workdir``). :class:`ImageError` when that Dockerfile cannot be read.
    """
    image_dir = workdir.parent
    try:
        info = json.loads((image_dir / "image.json").read_text())
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    if info.get("bin"):
        _touch(image_dir)
        path = [str(image_dir / str(info["bin"])), *(str(p) for p in info.get("path") or [])]
        env = {str(k): str(v) for k, v in (info.get("env") or {}).items()}
        base = Runtime(workdir, os.pathsep.join(path), env)
    else:
        base = Runtime(workdir, os.path.dirname(sys.executable), {})
    if "container" in info:
        recorded = info["container"]
        config = None if recorded is None else ContainerConfig.from_json(recorded)
    else:
        config = _container_config(workdir)
    if config is None:
        return base
    return _with_container(base, config.localized(workdir))


def _with_container(base: Runtime, config: ContainerConfig) -> Runtime:
    from hydra_vertex.dockerfile import expand

    environ = dict(os.environ)
    environ["PATH"] = base.path + os.pathsep + environ.get("PATH", "")
    environ.update(base.env)
    env = dict(base.env)
    for key, value in config.env:  # in order: a later ENV sees the earlier ones
        env[key] = environ[key] = expand(value, environ)
    cwd = Path(config.workdir)
    cwd.mkdir(parents=True, exist_ok=True)  # as Docker creates a WORKDIR that is not there
    return Runtime(cwd, base.path, env, config.entrypoint, config.cmd)


def _container_config(source: Path) -> ContainerConfig | None:
    from hydra_vertex.dockerfile import DockerfileError, parse_file

    dockerfile = source / DOCKERFILE
    if not dockerfile.is_file():
        return None
    try:
        return parse_file(dockerfile)
    except DockerfileError as e:
        raise ImageError(str(e)) from None


def _container(source: Path) -> dict[str, Any] | None:
    config = _container_config(source)
    return None if config is None else config.to_json()


# -- the cache -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageInfo:
    ref: str
    path: Path
    size: int
    created: float
    last_used: float
    environment: dict[str, str]


def dir_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def list_images(root: str | os.PathLike[str] | None = None) -> list[ImageInfo]:
    """The local images, most recently used first."""
    base = Path(root) if root is not None else images_root()
    out = []
    for image_dir in base.iterdir() if base.is_dir() else []:
        meta = image_dir / "image.json"
        if not meta.is_file():
            continue
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        created = float(info.get("created") or meta.stat().st_mtime)
        try:
            last = (image_dir / LAST_USED).stat().st_mtime
        except OSError:
            last = created
        out.append(
            ImageInfo(
                ref=str(info.get("ref", image_dir.name)),
                path=image_dir,
                size=dir_size(image_dir),
                created=created,
                last_used=last,
                environment=dict(info.get("environment") or {"kind": "tool"}),
            )
        )
    return sorted(out, key=lambda i: -i.last_used)


def prune(keep: int, root: str | os.PathLike[str] | None = None) -> list[ImageInfo]:
    """Remove all but the ``keep`` most recently used images (and half-built leftovers older than
    an hour); returns the removed ones. Environments no image uses any more go too
    (:func:`hydra_vertex.envs.prune_unused`)."""
    base = Path(root) if root is not None else images_root()
    images = list_images(base)
    removed = images[keep:]
    for image in removed:
        shutil.rmtree(image.path, ignore_errors=True)
    from hydra_vertex import envs

    envs.prune_unused({i.environment.get("python", "") for i in images[:keep]})
    for leftover in base.glob(".*-*") if base.is_dir() else []:
        if leftover.is_dir() and time.time() - leftover.stat().st_mtime > 3600:
            shutil.rmtree(leftover, ignore_errors=True)
    return removed
