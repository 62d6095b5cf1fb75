"""Virtual environments for local images, built from an app's requirements and cached by content.

An environment lives in ``envs_root()/<key>/`` (``$HYDRA_VERTEX_ENVS``, else
``~/.cache/hydra-vertex/envs``). Its key covers the requirements file (and the files it includes
with ``-r``/``-c``), the Python version, the installer, the constraint files named by
``PIP_CONSTRAINT``/``UV_CONSTRAINT`` and the core's own requirements: an unchanged app rebuilds
nothing. When hydra-vertex itself changed (an upgrade, an edit of an editable install), only its
core wheel is installed again into the cached environment (``--no-deps``, seconds).

It is built with ``uv`` when that is on ``PATH`` (``uv venv`` + ``uv pip install``), else with
``python -m venv`` + pip, in one resolver run over the app's requirements and hydra-vertex's core,
so that a conflict with the core (``hydra-core``, ``omegaconf``) is the installer's own message.
Each installer reads its own configuration (pip.conf and ``PIP_*``; uv.toml and ``UV_*``); the
constraint files of the other one are passed with ``-c`` too, so a site pin (a CPU-only torch)
holds either way.

hydra-vertex's core reaches the environment as a wheel made from the running package
(:func:`core_wheel`): the same code as the tool, whether it is installed from a wheel or editable
from a checkout, with no index to fetch it from, and with the core's own requirements (those of the
installed distribution without an extra) resolved together with the app's.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hydra_vertex.images import ImageError

ENVS_ENV = "HYDRA_VERTEX_ENVS"
COMPLETE = ".hydra-vertex-env.json"
#: The core install (pyproject.toml's dependencies), when the distribution's metadata is missing.
_CORE_FALLBACK = ("hydra-core>=1.3.2", "omegaconf>=2.3.0", "pyyaml>=6.0",
                  "cloudml-hypertune>=0.1.0.dev6")
#: Subpackages left out of the core wheel: they need the cloud extras and no trial imports them.
_NOT_CORE = ("components", "pipelines")
_CHECK = (
    "import hydra_vertex, hydra_vertex.shim, hydra_vertex.reporting; "
    "print(hydra_vertex.__version__)"
)


@dataclass(frozen=True)
class BuiltEnv:
    key: str
    path: Path
    python: Path


def envs_root() -> Path:
    explicit = os.environ.get(ENVS_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hydra-vertex" / "envs"


def installer() -> str:
    return "uv" if shutil.which("uv") else "pip"


# -- hydra-vertex's core as a wheel -------------------------------------------------------------
def core_requires() -> list[str]:
    """The core requirements of the installed hydra-vertex (no extras)."""
    from importlib import metadata

    try:
        reqs = metadata.requires("hydra-vertex") or []
    except metadata.PackageNotFoundError:
        return list(_CORE_FALLBACK)
    core = [r for r in reqs if ";" not in r or "extra" not in r.split(";", 1)[1]]
    return core or list(_CORE_FALLBACK)


def _package_files() -> list[tuple[str, Path]]:
    import hydra_vertex

    package = Path(hydra_vertex.__file__).parent
    out = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if (
            not path.is_file()
            or "__pycache__" in rel.parts
            or path.suffix in (".pyc", ".pyo")
            or rel.parts[0] in _NOT_CORE
        ):
            continue
        out.append((f"hydra_vertex/{rel.as_posix()}", path))
    return out


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def core_wheel() -> Path:
    """A wheel of the running ``hydra_vertex`` package (its core), made once per content."""
    from hydra_vertex import __version__

    files = [(name, path.read_bytes()) for name, path in _package_files()]
    requires = core_requires()
    h = hashlib.sha256()
    for name, data in files:
        h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    h.update("\n".join(requires).encode())
    target = envs_root() / "wheels" / h.hexdigest()[:20]
    wheel = target / f"hydra_vertex-{__version__}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    info = f"hydra_vertex-{__version__}.dist-info"
    meta = [
        "Metadata-Version: 2.1", "Name: hydra-vertex", f"Version: {__version__}",
        "Summary: hydra-vertex's core (the shim and the reporting callback), made from the "
        "running tool", "Requires-Python: >=3.11", *(f"Requires-Dist: {r}" for r in requires),
    ]
    extra = {
        f"{info}/METADATA": ("\n".join(meta) + "\n").encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hydra-vertex\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{info}/entry_points.txt": b"[console_scripts]\n"
        b"hydra-vertex-shim = hydra_vertex.shim:main\n",
    }
    entries = [*files, *extra.items()]
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in entries) + f"{info}/RECORD,,\n"
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target, suffix=".tmp")
    os.close(fd)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [*entries, (f"{info}/RECORD", record.encode())]:
            z.writestr(name, data)
    os.replace(tmp, wheel)
    return wheel


# -- keys ----------------------------------------------------------------------------------------
def constraint_files() -> list[Path]:
    """The files ``PIP_CONSTRAINT`` and ``UV_CONSTRAINT`` name (space-separated, as pip reads)."""
    out: list[Path] = []
    for var in ("PIP_CONSTRAINT", "UV_CONSTRAINT"):
        for item in os.environ.get(var, "").split():
            path = Path(item.removeprefix("file://"))
            if path not in out:
                out.append(path)
    return out


def _requirement_bytes(path: Path, seen: set[Path] | None = None) -> bytes:
    """The file's bytes, followed by those of the files it includes (``-r``/``-c``)."""
    seen = seen if seen is not None else set()
    if path in seen:
        return b""
    seen.add(path)
    data = path.read_bytes()
    out = data
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0] in ("-r", "-c", "--requirement", "--constraint"):
            included = (path.parent / parts[1].strip()).resolve()
            if included.is_file():
                out += b"\0" + _requirement_bytes(included, seen)
    return out


def env_key(requirements: Path, tool: str) -> str:
    h = hashlib.sha256()
    h.update(_requirement_bytes(requirements.resolve()))
    h.update(f"\0{platform.python_implementation()} {platform.python_version()}".encode())
    h.update(f"\0{sys.base_prefix}\0{tool}\0{';'.join(core_requires())}".encode())
    for path in constraint_files():
        with contextlib.suppress(OSError):
            h.update(b"\0" + str(path).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:32]


# -- build ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a second build of the same key waits for the first
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure(requirements: Path, log: Callable[[str], None] | None = None) -> BuiltEnv:
    """The environment for ``requirements``: from the cache, or built now (progress to ``log``)."""
    if not requirements.is_file():
        raise ImageError(f"requirements file {str(requirements)!r} does not exist")
    requirements = requirements.resolve()
    tool = installer()
    wheel = core_wheel()
    key = env_key(requirements, tool)
    path = envs_root() / key
    python = path / "bin" / "python"
    built = BuiltEnv(key, path, python)
    if _core_of(path) == str(wheel):
        return built
    say = log or (lambda line: None)
    with _lock(envs_root() / f".{key}.lock"):
        current = _core_of(path)
        if current == str(wheel):
            return built
        if current is not None:  # the environment is there; hydra-vertex changed since
            say(f"installing this hydra-vertex into the image's environment {path} ...")
            _refresh_core(path, wheel, tool, say)
            _mark(path, requirements, tool, wheel)
            return built
        shutil.rmtree(path, ignore_errors=True)  # a build that was interrupted
        started = time.monotonic()
        say(f"building the image's Python environment from {requirements} with {tool} ...")
        try:
            _build(path, requirements, wheel, tool, say)
            check_interpreter(str(python), f"the environment built from {requirements}")
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        _mark(path, requirements, tool, wheel)
        say(f"built the environment {path} in {time.monotonic() - started:.0f}s")
    return built


def _core_of(path: Path) -> str | None:
    """The core wheel a complete environment holds; None when it is not complete."""
    try:
        return str(json.loads((path / COMPLETE).read_text())["core_wheel"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mark(path: Path, requirements: Path, tool: str, wheel: Path) -> None:
    (path / COMPLETE).write_text(
        json.dumps(
            {
                "requirements": str(requirements),
                "python": platform.python_version(),
                "installer": tool,
                "core_wheel": str(wheel),
                "created": time.time(),
            },
            indent=2,
        )
    )


def _refresh_core(path: Path, wheel: Path, tool: str, say: Callable[[str], None]) -> None:
    python = path / "bin" / "python"
    if tool == "uv":
        argv = [shutil.which("uv") or "uv", "pip", "install", "--python", str(python),
                "--reinstall-package", "hydra-vertex", "--no-deps", str(wheel)]
    else:
        argv = [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                "--progress-bar", "off", "--force-reinstall", "--no-deps", str(wheel)]
    with open(path.parent / f"{path.name}.build.log", "a", encoding="utf-8") as log:
        lines = _stream(argv, path, log, say)
    if lines is not None:
        raise ImageError(
            f"installing hydra-vertex into the image's environment {path} failed: "
            f"{_install_error(lines)}"
        )


def _build(
    path: Path, requirements: Path, wheel: Path, tool: str, say: Callable[[str], None]
) -> None:
    python = path / "bin" / "python"
    extra_constraints: list[str] = []
    foreign = "UV_CONSTRAINT" if tool == "pip" else "PIP_CONSTRAINT"
    for item in os.environ.get(foreign, "").split():
        extra_constraints += ["-c", item.removeprefix("file://")]
    if tool == "uv":
        uv = shutil.which("uv") or "uv"
        steps = [
            [uv, "venv", "--python", sys.executable, str(path)],
            [uv, "pip", "install", "--python", str(python), "-r", str(requirements), str(wheel),
             *extra_constraints],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(path)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check",
             "--progress-bar", "off", "-r", str(requirements), str(wheel), *extra_constraints],
        ]
    path.mkdir(parents=True, exist_ok=True)
    log_path = path.parent / f"{path.name}.build.log"
    with open(log_path, "w", encoding="utf-8") as log:
        for argv in steps:
            log.write("$ " + " ".join(argv) + "\n")
            log.flush()
            lines = _stream(argv, requirements.parent, log, say)
            if lines is not None:
                raise ImageError(
                    f"building the image's environment from {requirements} failed: "
                    f"{_install_error(lines)} (the installer's log: {log_path})"
                )


def _stream(
    argv: list[str], cwd: Path, log: object, say: Callable[[str], None]
) -> list[str] | None:
    """Run one step, copying its output to the log and to ``say``; None on success, else the
    output's lines."""
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)  # the tool's own venv must not be the target
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace",
        )
    except OSError as e:
        raise ImageError(f"cannot run {argv[0]!r} to build the image's environment: {e}") from None
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        log.write(line)  # type: ignore[attr-defined]
        stripped = line.rstrip()
        if stripped:
            lines.append(stripped)
            say(stripped)
    return None if proc.wait() == 0 else lines


def _install_error(lines: list[str]) -> str:
    """The installer's own reason: pip's first ``ERROR:`` line (with the conflict's causes), or
    uv's ``×`` line and what follows."""
    from hydra_vertex.reasons import strip_ansi

    clean = [strip_ansi(line) for line in lines]
    for i, line in enumerate(clean):
        if line.startswith(("ERROR:", "error:", "×")):
            text = line.strip().rstrip(".")
            for follow in clean[i + 1 : i + 6]:
                part = follow.strip(" ╰─▶│").rstrip(".")
                if follow.startswith(("ERROR:", "To fix", "hint:")) or not part:
                    break
                if follow.startswith((" ", "\t", "╰", "│", "The conflict")):
                    text += (" " if text.endswith(":") else "; ") + part
            return text
    return clean[-1] if clean else "no output"


def check_interpreter(python: str, what: str) -> str:
    """``python``'s hydra-vertex version; an ImageError (one line, how to fix it) when it cannot
    import hydra-vertex's shim and reporting."""
    try:
        done = subprocess.run(
            [python, "-c", _CHECK], capture_output=True, text=True, timeout=120,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ImageError(f"{what}: cannot run {python!r}: {e}") from None
    if done.returncode != 0:
        from hydra_vertex.reasons import deciding_line

        why = deciding_line(done.stderr, done.stdout) or f"exit code {done.returncode}"
        raise ImageError(
            f"{what}: {python} cannot import hydra_vertex ({why}); install hydra-vertex's core "
            f"into it ('{python} -m pip install {core_wheel()}'), or leave app.python out to let "
            f"hydra-vertex build an environment from the app's requirements.txt"
        )
    return done.stdout.strip()


def prune_unused(used_pythons: set[str]) -> list[Path]:
    """Remove the environments whose interpreter no image uses; returns them."""
    root = envs_root()
    removed = []
    for path in root.iterdir() if root.is_dir() else []:
        if not path.is_dir() or path.name == "wheels" or path.name.startswith("."):
            continue
        if str(path / "bin" / "python") not in used_pythons:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                (root / f"{path.name}.build.log").unlink()
            removed.append(path)
    return removed
