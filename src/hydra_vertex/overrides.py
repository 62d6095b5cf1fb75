"""Trial values -> Hydra override strings (pure functions, stdlib only, no Hydra import).

Used by the argument shim (``hydra-vertex-shim``) at the start of every trial and by best-trial
selection, which turns the winning trial's parameters into the overrides of the retrain run.

How a value is written (:func:`format_value`):

- INTEGER and integer DISCRETE: ``256``, ``"256.0"``, ``"2.56e2"`` -> ``256``; ``64.5`` is an
  error.
- DOUBLE and float DISCRETE: ``repr(float(x))`` (``0.1``, ``-0.5``, ``1e-05``), which Hydra parses
  back to the identical float; NaN and infinities are errors.
- CATEGORICAL: the typed choice value. Strings are emitted bare only when they are identifier-like
  (``cnn``, ``resnet/18``) and cannot be read as anything else (``null``, ``true``, ``nan``...);
  otherwise they are single-quoted with two layers of escaping: OmegaConf's (``${`` becomes
  ``\\${``, so interpolations stay literal) and then Hydra's quoted-string escaping (quotes, and
  backslashes in front of a quote or of the closing quote). The composed config holds exactly the
  string Vertex sent.

How trial arguments are found in the command line (:func:`convert_argv`): see its docstring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from hydra_vertex.errors import ShimError
from hydra_vertex.search_space import Param, SearchSpace, category_string

Value = str | int | float

#: Tolerance for "the value is inside the declared space" checks.
TOLERANCE = 1e-9

#: Hydra's own command-line flags (``--name`` / ``--name=value``): never trial arguments.
HYDRA_FLAGS = frozenset(
    {
        "help",
        "hydra-help",
        "version",
        "cfg",
        "resolve",
        "package",
        "run",
        "multirun",
        "shell-completion",
        "config-path",
        "config-name",
        "config-dir",
        "experimental-rerun",
        "info",
    }
)

REPORT_CALLBACK = "hydra_vertex.reporting.ReportCallback"
_CALLBACK_KEY = "hydra.callbacks.hydra_vertex_report"

# Bare strings Hydra reads back unchanged: identifier-like, no keyword of the primitive grammar.
_BARE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-./]*")
_KEYWORDS = frozenset({"null", "true", "false", "nan", "inf", "infinity"})
_INTERPOLATION_RE = re.compile(r"(\\*)\$\{")
_QUOTE_RE = re.compile(r"(\\*)(')")
_TRAILING_BACKSLASHES_RE = re.compile(r"(\\*)\Z")  # \Z: "$" also matches before a final "\n"
_INT_RE = re.compile(r"[+-]?[0-9]+")


# ------------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------------


def quote_string(text: str) -> str:
    """Hydra override text for ``text`` such that the composed config holds exactly ``text``."""
    if _BARE_RE.fullmatch(text) and text.lower() not in _KEYWORDS:
        return text
    # OmegaConf: in a string holding "${", backslashes before "${" escape each other and "\${" is
    # a literal "${"; other backslashes are literal.
    escaped = _INTERPOLATION_RE.sub(lambda m: m.group(1) * 2 + "\\${", text)
    # Hydra's quoted strings: backslashes before a quote (or the closing quote) escape each other.
    escaped = _QUOTE_RE.sub(lambda m: m.group(1) * 2 + "\\'", escaped)
    escaped = _TRAILING_BACKSLASHES_RE.sub(lambda m: m.group(1) * 2, escaped, count=1)
    return f"'{escaped}'"


#: Values longer than this are shortened in error messages (the line stays readable).
_SHOWN_CHARS = 80


def shown(raw: object) -> str:
    """``repr(raw)``, shortened to its start and its length when it is long."""
    text = repr(raw)
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(str(raw))} characters)"


def _number(param: Param, raw: Value) -> int | float:
    """The trial value as a finite number (an exact ``int`` for plain integer text)."""
    if isinstance(raw, bool):
        raise ShimError(f"parameter {param.parameter_id!r}: expected a number, got {raw!r}")
    number: int | float
    if isinstance(raw, int | float):
        number = raw
    elif param.is_int and _INT_RE.fullmatch(raw.strip()):
        try:
            number = int(raw.strip())
        except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits())
            raise ShimError(
                f"parameter {param.parameter_id!r}: value {shown(raw)} is outside the declared "
                f"space; it must lie in [{param.low!r}, {param.high!r}]"
                if param.kind == "INTEGER"
                else f"parameter {param.parameter_id!r}: value {shown(raw)} is not one of the "
                f"DISCRETE values {list(param.values)}"
            ) from None
    else:
        try:
            number = float(raw)
        except ValueError:
            raise ShimError(
                f"parameter {param.parameter_id!r}: {shown(raw)} is not a number "
                f"({param.kind} parameter)"
            ) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ShimError(
            f"parameter {param.parameter_id!r}: {shown(raw)} is not a finite number; NaN and "
            f"infinities cannot be trial values"
        )
    return number


def _describe(param: Param) -> str:
    if param.kind in ("DOUBLE", "INTEGER"):
        return f"{param.kind} from {param.low!r} to {param.high!r}"
    if param.kind == "DISCRETE":
        return f"DISCRETE values {list(param.values)}"
    return f"categories {list(param.categories)}"


def _check_in_space(param: Param, value: float, raw: Value) -> None:
    if param.kind in ("DOUBLE", "INTEGER"):
        assert param.low is not None and param.high is not None
        slack = TOLERANCE * max(1.0, abs(float(param.low)), abs(float(param.high)))
        if float(param.low) - slack <= value <= float(param.high) + slack:
            return
        rule = f"it must lie in [{param.low!r}, {param.high!r}]"
    else:  # DISCRETE
        if any(abs(value - float(v)) <= TOLERANCE * max(1.0, abs(float(v))) for v in param.values):
            return
        rule = f"it must be one of the DISCRETE values {list(param.values)}"
    raise ShimError(
        f"parameter {param.parameter_id!r}: value {shown(raw)} is outside the declared space; "
        f"{rule}"
    )


def format_value(param: Param, raw: Value) -> str:
    """The Hydra override value text for one trial value (as the Vertex API or argv gives it)."""
    if param.kind == "CATEGORICAL":
        category = raw if isinstance(raw, str) else category_string(raw)
        if category not in param.categories:
            raise ShimError(
                f"parameter {param.parameter_id!r}: {shown(category)} is not one of its "
                f"categories {list(param.categories)}"
            )
        typed = param.category_value(category)
        if isinstance(typed, bool):
            return "true" if typed else "false"
        if isinstance(typed, int):
            return str(typed)
        if isinstance(typed, float):
            return repr(typed)
        return quote_string(typed)
    number = _number(param, raw)
    if param.is_int:
        if isinstance(number, float) and not number.is_integer():
            raise ShimError(
                f"parameter {param.parameter_id!r} is an integer ({_describe(param)}), but the "
                f"trial value {shown(raw)} is not a whole number"
            )
        as_int = int(number)
        try:
            as_float = float(as_int)
        except OverflowError:  # beyond any float, so beyond any declared bound
            as_float = math.inf if as_int > 0 else -math.inf
        _check_in_space(param, as_float, raw)
        return str(as_int)
    as_float = float(number)
    _check_in_space(param, as_float, raw)
    return repr(as_float)


def trial_overrides(space: SearchSpace, values: Mapping[str, Value]) -> list[str]:
    """``parameter_id -> value`` to Hydra overrides (``key=value``, ``+key=value`` for new keys).

    The overrides follow the order of ``values``.
    """
    declared = space.by_parameter_id()
    unknown = [pid for pid in values if pid not in declared]
    if unknown:
        raise ShimError(
            f"undeclared trial parameter(s) {unknown}; the search space ({space.source or 'given'})"
            f" declares {sorted(declared)}"
        )
    out = []
    for pid, raw in values.items():
        param = declared[pid]
        out.append(f"{param.override_key}={format_value(param, raw)}")
    return out


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------


def _split_trial_args(
    space: SearchSpace, argv: Sequence[str]
) -> tuple[list[str], list[tuple[str, str]]]:
    declared = space.by_parameter_id()
    trial: list[tuple[str, str]] = []
    i = len(argv) - 1
    while i >= 1:  # argv[0] is the program: never a trial argument
        token = argv[i]
        if token.startswith("--") and "=" in token:
            name, value = token[2:].split("=", 1)
            if name in declared:
                trial.append((name, value))
                i -= 1
                continue
            if name in HYDRA_FLAGS or not name:
                break
            raise ShimError(
                f"undeclared trial argument {shown(token.split('=', 1)[0])} (in {shown(token)}); "
                f"only "
                f"parameters of the search space ({space.source or 'given'}) are converted: "
                f"{sorted(declared)}"
            )
        prev = argv[i - 1] if i >= 2 else ""
        if prev.startswith("--") and prev[2:] in declared:
            trial.append((prev[2:], token))
            i -= 2
            continue
        break
    trial.reverse()
    # A declared --P left in the app part means the trailing run was cut short by an argument
    # that is not a trial argument (e.g. an undeclared `--key value`): say which one.
    for arg in argv[1 : i + 1]:
        if arg.startswith("--") and arg[2:].split("=", 1)[0] in declared:
            raise ShimError(
                f"trial argument {shown(arg)} is followed by {shown(argv[i])}, which is not a "
                f"trial argument of the search space ({space.source or 'given'}); Vertex appends "
                f"the trial arguments last, so everything after them must be declared parameters: "
                f"{sorted(declared)}"
            )
    seen: set[str] = set()
    for name, _ in trial:
        if name in seen:
            raise ShimError(
                f"trial parameter {name!r} is given more than once: "
                f"{shown([f'--{n}={v}' for n, v in trial if n == name])}"
            )
        seen.add(name)
    return list(argv[: i + 1]), trial


def convert_argv(space: SearchSpace, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``APP_COMMAND... [TRIAL_ARGS...]`` into the app part and the trial overrides.

    Vertex appends the trial arguments after the container's own arguments, so they are found by
    scanning from the end. The trial region is the longest trailing run of

    - ``--P=VALUE`` with ``P`` a declared ``parameter_id`` (the value is everything after the
      first ``=``), or
    - ``--P VALUE`` (two tokens) with ``P`` declared; ``VALUE`` is taken as is, even when it starts
      with ``-`` (``-0.5``) or ``--``.

    The scan stops at the first token that is neither (an app flag such as ``--verbose``, an
    already-converted ``key=value``, a Hydra flag such as ``--config-name=x``, a positional); that
    token and everything before it are the app command and are returned byte-identical. The
    program (``argv[0]``) is never a trial argument. Inside the region, an undeclared
    ``--KEY=VALUE`` (``KEY`` not one of Hydra's own flags) is an error that lists the declared
    parameters, and so is a parameter given twice. A declared ``--P`` left in the app part is an
    error too: the run was cut short by an argument that is not a trial argument (an undeclared
    ``--key value``, a ``key=value`` after the trial arguments), and the message names it.

    Returns ``(app_args, overrides)``: the command is ``app_args + overrides``.
    """
    if not argv:
        raise ShimError("no app command given after '--'")
    app, trial = _split_trial_args(space, argv)
    return app, trial_overrides(space, dict(trial))


def _user_sets(app_args: Sequence[str], key: str) -> bool:
    return any(a.lstrip("+~").split("=", 1)[0] == key for a in app_args)


#: Where the emulator wants a process's Hydra output directory (an absolute path under the
#: run's directory, so that outputs never land inside the cached image). Unset on Vertex AI.
OUTPUT_DIR_ENV = "HYDRA_VERTEX_OUTPUT_DIR"
_PYTHON_ARG_OPTIONS = frozenset({"-W", "-X", "--check-hash-based-pycs"})


def run_dir(environ: Mapping[str, str]) -> str | None:
    """The per-trial Hydra output directory, or None outside a tuning trial.

    ``$HYDRA_VERTEX_OUTPUT_DIR`` when the emulator sets it, else
    ``outputs/hpt/<CLOUD_ML_JOB_ID>/trial-<CLOUD_ML_TRIAL_ID>`` (relative to the working directory).
    """
    trial_id = environ.get("CLOUD_ML_TRIAL_ID")
    if not trial_id:
        return None
    if environ.get(OUTPUT_DIR_ENV):
        return environ[OUTPUT_DIR_ENV]
    job_id = environ.get("CLOUD_ML_JOB_ID") or "local"
    return f"outputs/hpt/{job_id}/trial-{trial_id}"


def app_args_start(app_args: Sequence[str]) -> int:
    """Where the app's own arguments start: after the program, and after ``python``'s options and
    script (``python -u train.py -m``: at ``-m``; ``python -m pkg.train -m``: the second ``-m``)."""
    if not app_args:
        return 0
    name = app_args[0].rsplit("/", 1)[-1]
    if not name.startswith("python"):
        return 1
    i = 1
    while i < len(app_args):
        arg = app_args[i]
        if arg in ("-m", "-c"):
            return min(i + 2, len(app_args))
        if arg in _PYTHON_ARG_OPTIONS:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        return i + 1  # after the script
    return len(app_args)


def _hydra_args(app_args: Sequence[str]) -> list[str]:
    return list(app_args[app_args_start(app_args) :])


def check_run_mode(app_args: Sequence[str]) -> None:
    """A trial (and the retrain) is one Hydra run: ``-m``/``--multirun`` in the app command, or
    ``hydra.mode=MULTIRUN``, would make it a sweep of its own. Raises :class:`ShimError`."""
    for arg in _hydra_args(app_args):
        key, _, value = arg.partition("=")
        if arg in ("-m", "--multirun") or (
            key.lstrip("+") == "hydra.mode" and value.strip().upper() == "MULTIRUN"
        ):
            raise ShimError(
                f"the app command has {arg!r}: a trial is one Hydra run and the sweep is the "
                f"tuning job's; remove it from app.command"
            )


def run_overrides(app_args: Sequence[str], directory: str | None) -> list[str]:
    """``hydra.mode=RUN`` (an app config that selects MULTIRUN still runs once) and, with a
    ``directory``, ``hydra.run.dir``; each unless the app command sets it itself."""
    out: list[str] = []
    if directory is not None and not _user_sets(app_args, "hydra.run.dir"):
        out.append(f"hydra.run.dir={quote_string(directory)}")
    if not _user_sets(app_args, "hydra.mode"):
        out.append("hydra.mode=RUN")
    return out


def shim_overrides(
    space: SearchSpace, app_args: Sequence[str], environ: Mapping[str, str]
) -> list[str]:
    """The overrides the shim adds to every trial.

    - ``hydra.run.dir`` = :func:`run_dir` when ``CLOUD_ML_TRIAL_ID`` is set and the app command
      does not set ``hydra.run.dir`` itself; parallel trials never share an output directory.
    - ``hydra.mode=RUN``: one run per trial, also when the app's config selects MULTIRUN (as
      lightning-hydra-template's ``hparams_search`` configs do).
    - the reporting callback (``hydra_vertex.reporting.ReportCallback``) with the space's metric.
      ``++`` so that an app config that already lists the callback is overridden, not an error.
    """
    metrics = space.metrics if space.multi_objective else None
    return [
        *run_overrides(app_args, run_dir(environ)),
        *report_overrides(space.metric, metrics=metrics),
    ]


def report_overrides(
    metric: str, *, strict: bool = True, metrics: Sequence[str] | None = None
) -> list[str]:
    """The reporting callback with ``metric`` as its tag (``++``: an app config that already
    lists it is overridden, not an error). ``strict=False`` (the retrain): an objective that
    cannot be reported is a warning, not a failure. ``metrics``: every metric of a
    multi-objective study (the task function returns one value per metric)."""
    out = [
        f"++{_CALLBACK_KEY}._target_={REPORT_CALLBACK}",
        f"++{_CALLBACK_KEY}.metric={quote_string(metric)}",
    ]
    if metrics:
        listed = ",".join(quote_string(m) for m in metrics)
        out.append(f"++{_CALLBACK_KEY}.metrics=[{listed}]")
    if not strict:
        out.append(f"++{_CALLBACK_KEY}.strict=false")
    return out
