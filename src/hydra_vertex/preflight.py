"""Pre-flight: compose the app's config for every branch of the space before any trial runs.

A trial costs minutes to hours; a typo in a search-space key (``model.c`` for ``model.C``) costs
every trial of its branch. Before the tuning job starts, ``hydra-vertex run --local`` runs the
trial's own command line, in the image (its working directory, its interpreter, the shim), with
Hydra's ``--cfg job`` added: Hydra composes the config with a sample value of every parameter and
prints it without running the task. That takes seconds.

It runs once per branch of the space: one per option of each categorical parameter that selects a
config group (a top-level key) or has conditional children, with the children of that option.
When a branch does not compose, the error is one line: for a parameter absent from the config (and
not marked ``+``), the key, the config file it would live in and the closest existing key
(:mod:`difflib`); else Hydra's own deciding line. ``HYDRA_VERTEX_PREFLIGHT=0`` skips it (an app
command that is not a Hydra app taking ``--cfg``).
"""

from __future__ import annotations

import concurrent.futures
import difflib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_vertex.errors import HydraVertexError
from hydra_vertex.images import Runtime
from hydra_vertex.search_space import Param, SearchSpace

__all__ = ["PreflightError", "branches", "check", "enabled"]

SKIP_ENV = "HYDRA_VERTEX_PREFLIGHT"
TIMEOUT_SECONDS = 300.0
_MISSING_RES = (
    re.compile(r"Could not override '([^']+)'"),
    re.compile(r"Key '[^']+' is not in struct\s+full_key: (\S+)"),
)
_ROW_RE = re.compile(r"^\|(?P<cells>.*)\|\s*$")


class PreflightError(HydraVertexError):
    """The app's config does not compose with the search space's parameters."""


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(SKIP_ENV, "1")
    return value.strip().lower() not in ("0", "false", "no", "off")


# -- branches ------------------------------------------------------------------------------------
def _sample(p: Param) -> Any:
    if p.kind == "CATEGORICAL":
        return p.categories[0]
    if p.kind == "DISCRETE":
        return p.values[0]
    return p.low


def _branching(space: SearchSpace) -> list[Param]:
    parents = {p.parent for p in space.params if p.parent is not None}
    return [
        p
        for p in space.params
        if p.parent is None
        and (p.key in parents or (p.kind == "CATEGORICAL" and "." not in p.key))
    ]


def _options(p: Param) -> list[Any]:
    if p.kind == "CATEGORICAL":
        return list(p.categories)
    if p.kind == "DISCRETE":
        return list(p.values)
    assert p.low is not None and p.high is not None
    return list(range(int(p.low), int(p.high) + 1))[:50]


def _active(space: SearchSpace, chosen: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter whose parent's value (if any) enables it, parents first."""
    out: dict[str, Any] = {}
    for p in space.params:  # parents come before their children
        if p.parent is not None:
            if p.parent not in out:
                continue
            parent = space.param(p.parent)
            value = out[p.parent]
            wanted = {str(v) for v in p.parent_values}
            if str(value) not in wanted and not (
                parent.kind != "CATEGORICAL" and any(float(v) == float(value) for v in wanted)
            ):
                continue
        out[p.key] = chosen.get(p.key, _sample(p))
    return out


def branches(space: SearchSpace) -> list[dict[str, Any]]:
    """The parameter values to compose: each option of a branching parameter (with the children
    it enables and the other parameters at a sample value), without repeats."""
    out: list[dict[str, Any]] = []
    for p in _branching(space) or [None]:
        for option in _options(p) if p is not None else [None]:
            values = _active(space, {p.key: option} if p is not None else {})
            if values not in out:
                out.append(values)
    return out


def _trial_arg(p: Param, value: Any) -> str:
    """``--id=value`` as Vertex would send it (the emulator's formatting)."""
    if p.kind == "CATEGORICAL":
        text = str(value)
    elif p.kind == "INTEGER":
        text = str(int(value))
    else:
        text = repr(float(value))
    return f"--{p.parameter_id}={text}"


# -- running -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Result:
    values: dict[str, Any]
    returncode: int
    stdout: str
    stderr: str


def _env(runtime: Runtime) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYDRA_VERTEX_EMULATOR", "CLOUD_ML_", "AIP_"))
    }
    env.update(runtime.env)
    env["PATH"] = runtime.path + os.pathsep + env.get("PATH", "")
    env.setdefault("WANDB_MODE", "disabled")
    return env


def _run(argv: list[str], runtime: Runtime, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            argv, cwd=runtime.cwd, env=_env(runtime), capture_output=True, text=True,
            errors="replace", timeout=timeout, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise PreflightError(
            f"pre-flight: {' '.join(argv[:6])} ... did not print the app's config within "
            f"{timeout:.0f}s (skip the pre-flight with {SKIP_ENV}=0)"
        ) from None
    except OSError as e:
        raise PreflightError(f"pre-flight: cannot run {argv[0]!r}: {e}") from None


def _compose(
    space: SearchSpace,
    app_command: Sequence[str],
    values: Mapping[str, Any],
    runtime: Runtime,
    timeout: float,
    what: str = "job",
) -> subprocess.CompletedProcess[str]:
    args = [_trial_arg(space.param(k), v) for k, v in values.items()]
    shim = [
        "hydra-vertex-shim",
        "--search-space-json",
        json.dumps(space.to_dict(), sort_keys=True),
        "--",
    ]
    from hydra_vertex.overrides import app_args_start

    flag = ["--cfg", "job"] if what == "job" else ["--info", "all"]
    at = app_args_start(app_command)  # Hydra's flags before its overrides (argparse)
    command = [*app_command[:at], *flag, *app_command[at:]]
    return _run([*shim, *command, *args], runtime, timeout)


def check(
    space: SearchSpace,
    app_command: Sequence[str],
    runtime: Runtime,
    *,
    timeout: float = TIMEOUT_SECONDS,
    workers: int = 2,
) -> tuple[int, float]:
    """Compose every branch; ``(branches, seconds)``, or :class:`PreflightError` (one line)."""
    started = time.monotonic()
    todo = branches(space)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        done = list(
            pool.map(
                lambda values: _Result(values, *_outputs(
                    _compose(space, app_command, values, runtime, timeout)
                )),
                todo,
            )
        )
    for result in done:
        if result.returncode != 0:
            raise PreflightError(_explain(space, app_command, result, runtime, timeout))
    return len(todo), time.monotonic() - started


def _outputs(proc: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout, proc.stderr


# -- explaining ----------------------------------------------------------------------------------
def _overrides_text(space: SearchSpace, values: Mapping[str, Any]) -> str:
    from hydra_vertex.overrides import trial_overrides

    try:
        return " ".join(
            trial_overrides(space, {space.param(k).parameter_id: v for k, v in values.items()})
        )
    except HydraVertexError:
        return " ".join(f"{k}={v}" for k, v in values.items())


def _explain(
    space: SearchSpace,
    app_command: Sequence[str],
    result: _Result,
    runtime: Runtime,
    timeout: float,
) -> str:
    from hydra_vertex.reasons import deciding_line, strip_ansi

    line = deciding_line(result.stderr, result.stdout) or f"exit code {result.returncode}"
    key = _missing_key(strip_ansi(result.stderr))
    composed = _overrides_text(space, result.values)
    param = next((p for p in space.params if p.key == key), None)
    if key is None or param is None or param.new_key:
        return (
            f"pre-flight: the app's config does not compose with a sample of the search space "
            f"({space.source}): {line} [composed with: {composed}]"
        )
    groups = {k: v for k, v in result.values.items() if k in {p.key for p in _branching(space)}}
    keys, where = _config_keys(space, app_command, groups, runtime, timeout, key)
    close = _closest(key, keys)
    hint = f"the closest existing key is {close!r}" if close else "no similar key exists"
    return (
        f"pre-flight: parameter {key!r} of {space.source} is not in the app's config "
        f"({where}, composed with {composed}); {hint}; a key the config lacks needs '+' "
        f"('+{key}')"
    )


def _missing_key(error: str) -> str | None:
    """The key Hydra says is not in the config, from its error text."""
    for pattern in _MISSING_RES:
        m = pattern.search(error)
        if m:
            return m.group(1)
    return None


def _closest(key: str, keys: Sequence[str]) -> str | None:
    lowered = {k.lower(): k for k in keys}
    if key.lower() in lowered:
        return lowered[key.lower()]
    found = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.5)
    return found[0] if found else None


def _flatten(node: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(node, Mapping):
        for k, v in node.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            out.append(key)
            out += _flatten(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _flatten(v, f"{prefix}.{i}")
    return out


def _config_keys(
    space: SearchSpace,
    app_command: Sequence[str],
    groups: Mapping[str, Any],
    runtime: Runtime,
    timeout: float,
    key: str,
) -> tuple[list[str], str]:
    """The keys of the config composed with the branch's group choices only, and the file that
    ``key`` would live in (Hydra's defaults list and search path, from ``--info all``)."""
    import yaml

    proc = _compose(space, app_command, groups, runtime, timeout, what="info")
    if proc.returncode != 0:
        return [], "the app's primary config"
    text = proc.stdout
    keys: list[str] = []
    marker = text.find("\nConfig\n******\n")
    if marker >= 0:
        try:
            keys = _flatten(yaml.safe_load(text[marker + len("\nConfig\n******\n") :]))
        except yaml.YAMLError:
            keys = []
    return keys, _config_file(text, key, runtime.cwd)


def _table(text: str, title: str) -> list[list[str]]:
    """The rows (cells) of one of ``--info``'s tables, without its header."""
    start = text.find(f"\n{title}\n")
    if start < 0:
        return []
    rows: list[list[str]] = []
    rules = 0
    for line in text[start:].splitlines()[2:]:
        if line.startswith("---"):
            rules += 1
            if rules == 2:
                break
            continue
        m = _ROW_RE.match(line)
        if m and rules == 1:
            rows.append([cell.strip() for cell in m["cells"].split("|")])
        elif not m and rules == 0 and not line.startswith("*"):
            break
    return rows


def _config_file(text: str, key: str, cwd: Path) -> str:
    """The config file whose package holds ``key``: the longest package that prefixes it, else
    the primary config (the one whose parent is ``<root>``)."""
    rows = [
        r for r in _table(text, "Defaults List") if len(r) >= 4 and not r[0].startswith("hydra")
    ]
    search = [
        r[1].removeprefix("file://")
        for r in _table(text, "Config search path")
        if len(r) >= 2 and r[1].startswith("file://")
    ]
    best: tuple[int, str] | None = None
    for path, package, _self, parent in (r[:4] for r in rows):
        pkg = "" if package in ("", "_global_") else package
        if pkg and not (key == pkg or key.startswith(pkg + ".")):
            continue
        if not pkg and parent != "<root>":
            continue  # a _global_ overlay (an experiment): the primary config is the answer
        if best is None or len(pkg) > best[0]:
            best = (len(pkg), path)
    if best is None:
        return "the app's primary config"
    for directory in search:
        file = Path(directory) / f"{best[1]}.yaml"
        if file.is_file():
            try:
                return str(file.relative_to(cwd))
            except ValueError:
                return str(file)
    return f"config {best[1]!r}"


# -- in the sweeper's process --------------------------------------------------------------------
def check_in_process(
    space: SearchSpace,
    compose: Callable[[list[str]], Any],
    where: Callable[[str], str],
) -> int:
    """Compose every branch of the space with ``compose(overrides)`` (the Hydra sweeper passes its
    config loader: the app's own composition, in this process, in milliseconds); returns the
    number of branches, or raises :class:`PreflightError` whose line starts with ``where(key)``
    for a parameter absent from the config."""
    todo = branches(space)
    for values in todo:
        overrides = _overrides_list(space, values)
        try:
            compose(overrides)
        except Exception as e:  # Hydra's composition errors, whatever their class
            raise PreflightError(
                _explain_in_process(space, compose, where, values, _error_text(e))
            ) from None
    return len(todo)


def _overrides_list(space: SearchSpace, values: Mapping[str, Any]) -> list[str]:
    from hydra_vertex.overrides import trial_overrides

    return trial_overrides(space, {space.param(k).parameter_id: v for k, v in values.items()})


def _error_text(e: BaseException) -> str:
    parts = [str(e)]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) not in parts[0]:
        parts.append(str(cause))
    return "\n".join(parts)


def _explain_in_process(
    space: SearchSpace,
    compose: Callable[[list[str]], Any],
    where: Callable[[str], str],
    values: Mapping[str, Any],
    error: str,
) -> str:
    key = _missing_key(error)
    composed = " ".join(_overrides_list(space, values))
    param = next((p for p in space.params if p.key == key), None)
    if key is None or param is None or param.new_key:
        first = next((line.strip() for line in error.splitlines() if line.strip()), error)
        return f"the app's config does not compose with {composed}: {first}"
    groups = {k: v for k, v in values.items() if k in {p.key for p in _branching(space)}}
    keys: list[str] = []
    try:
        from omegaconf import OmegaConf

        config = compose(_overrides_list(space, groups))
        keys = [k for k in _flatten(OmegaConf.to_container(config)) if not k.startswith("hydra")]
    except Exception:
        keys = []
    close = _closest(key, keys)
    hint = f"the closest existing key is {close!r}" if close else "no similar key exists"
    return (
        f"{where(key)}: not in the app's config (composed with {composed}); {hint}; a key the "
        f"config lacks needs '+' ('+{key}')"
    )
