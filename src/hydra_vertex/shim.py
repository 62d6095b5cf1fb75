"""``hydra-vertex-shim``: start a Hydra app inside a Vertex AI tuning trial.

Usage::

    hydra-vertex-shim --search-space FILE -- APP_COMMAND... [TRIAL_ARGS...]
    hydra-vertex-shim --search-space-json JSON -- APP_COMMAND... [TRIAL_ARGS...]
    hydra-vertex-shim --retrain -- APP_COMMAND...

``--search-space-json`` carries the parsed space (``SearchSpace.to_dict()``) inline: the
pipeline's trials use it, so the space need not be a file inside the image.

The shim loads the search space (from the content-hash cache, so Hydra is not imported), turns the
trailing trial arguments Vertex appended (``--lr=0.01``, ``--lr 0.01``) into Hydra overrides
(:mod:`hydra_vertex.overrides`), adds the per-trial output directory, ``hydra.mode=RUN`` and the
reporting callback, and replaces itself with the app (``os.execvp``, no shell): the app's exit code
and signals are the shim's own. ``--retrain`` (the final training) converts nothing: it adds
``hydra.mode=RUN``, under the emulator the output directory, and, when ``HYDRA_VERTEX_METRIC``
names the study's metric (the retrain step sets it), the reporting callback in its lenient mode.
An app command with ``-m`` is refused: a trial is one run. Errors print one line
(``hydra-vertex-shim: error: ...``) and exit 2; an app command that cannot be started exits 127
(not found) or 126 (not executable), as a shell would. Every error is one line; an unexpected one
(a bug) too, with its exception type, unless ``HYDRA_VERTEX_DEBUG=1`` asks for the traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

PROG = "hydra-vertex-shim"
USAGE = (
    f"usage: {PROG} (--search-space FILE | --search-space-json JSON) -- APP_COMMAND... "
    f"[TRIAL_ARGS...]\n       {PROG} --retrain -- APP_COMMAND..."
)
_JSON_PREFIX = "json:"
_RETRAIN = "retrain:"
#: Set for the app: the reporting callback then says so when the app's config selects MULTIRUN.
FORCED_RUN_ENV = "HYDRA_VERTEX_FORCED_RUN"
#: In ``--retrain`` mode: the study's metric; the reporting callback then records the retrain's
#: final value (a value it cannot report is a warning there, not a failure). (The same variable
#: as :data:`hydra_vertex.reporting.METRIC_ENV`, not imported: the shim stays light.)
METRIC_ENV = "HYDRA_VERTEX_METRIC"
#: In ``--retrain`` mode, for a study with several metrics: all of them, as a JSON list.
METRICS_ENV = "HYDRA_VERTEX_METRICS"


class _Usage(Exception):
    pass


def _parse(argv: Sequence[str]) -> tuple[str, list[str]]:
    space: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if space is None:
                raise _Usage(
                    "--search-space FILE (or --search-space-json JSON, or --retrain) is required"
                )
            command = list(argv[i + 1 :])
            if not command:
                raise _Usage("no app command after '--'")
            return space, command
        if arg == "--search-space":
            if i + 1 >= len(argv):
                raise _Usage("--search-space needs a FILE")
            space = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--search-space="):
            space = arg.split("=", 1)[1]
            i += 1
            continue
        if arg == "--retrain":
            space = _RETRAIN
            i += 1
            continue
        if arg == "--search-space-json":
            if i + 1 >= len(argv):
                raise _Usage("--search-space-json needs a JSON document")
            space = _JSON_PREFIX + argv[i + 1]
            i += 2
            continue
        raise _Usage(f"unexpected argument {arg!r} before '--'")
    raise _Usage("missing '--' before the app command")


def _one_line(text: str, limit: int = 2000) -> str:
    line = " ".join(text.split("\n"))
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


def _error(message: str, code: int = 2) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return code


def _study_metrics() -> list[str] | None:
    """The metrics of a multi-objective study, from :data:`METRICS_ENV` (None: one metric)."""
    import json

    try:
        metrics = json.loads(os.environ.get(METRICS_ENV) or "null")
    except ValueError:
        return None
    if isinstance(metrics, list) and len(metrics) > 1:
        return [str(m) for m in metrics]
    return None


def build_command(space_file: str, command: Sequence[str]) -> list[str]:
    """The app command line the shim executes (app args + trial overrides + shim overrides)."""
    from hydra_vertex.overrides import (
        OUTPUT_DIR_ENV,
        check_run_mode,
        convert_argv,
        report_overrides,
        run_overrides,
        shim_overrides,
    )
    from hydra_vertex.search_space import load_cached, load_json

    if space_file == _RETRAIN:
        check_run_mode(command)
        out = [*command, *run_overrides(command, os.environ.get(OUTPUT_DIR_ENV) or None)]
        metric = os.environ.get(METRIC_ENV)
        if metric:  # the retrain step names the study's metric: record the final value too
            out += report_overrides(metric, strict=False, metrics=_study_metrics())
        return out
    if space_file.startswith(_JSON_PREFIX):
        space = load_json(space_file[len(_JSON_PREFIX) :], source="--search-space-json")
    else:
        space = load_cached(space_file)
    app, overrides = convert_argv(space, command)
    check_run_mode(app)
    return [*app, *overrides, *shim_overrides(space, app, os.environ)]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE + "\n")
        return 0
    try:
        space_file, command = _parse(args)
    except _Usage as e:
        return _error(f"{e}\n{USAGE}")
    from hydra_vertex.errors import HydraVertexError

    try:
        final = build_command(space_file, command)
    except HydraVertexError as e:
        return _error(_one_line(str(e)))
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("HYDRA_VERTEX_DEBUG"):
            raise
        return _error(f"internal error: {type(e).__name__}: {_one_line(str(e))} "
                      "(HYDRA_VERTEX_DEBUG=1 shows the traceback)")  # fmt: skip
    if any("\x00" in arg for arg in final):
        where = next(a for a in final if "\x00" in a)
        return _error(f"the app command cannot hold a NUL character: {_one_line(repr(where))}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[FORCED_RUN_ENV] = "1"
    try:
        os.execvp(final[0], final)
    except FileNotFoundError:
        return _error(f"cannot start the app: {final[0]!r} not found", 127)
    except PermissionError:
        return _error(f"cannot start the app: {final[0]!r} is not executable", 126)
    except OSError as e:
        return _error(f"cannot start the app {final[0]!r}: {e.strerror}", 126)
    return 0  # pragma: no cover - execvp does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
