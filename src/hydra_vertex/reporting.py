"""Report a Hydra app's objective to a Vertex AI tuning trial through ``cloudml-hypertune``.

Three pieces:

- :class:`ReportCallback`, a Hydra callback (the shim switches it on with
  ``++hydra.callbacks.hydra_vertex_report._target_=hydra_vertex.reporting.ReportCallback``)
  that reports the task function's return value, or ``value[key]`` of a returned mapping, as the
  final measurement. A missing, ``None``, NaN, infinite or non-numeric objective is never
  reported: the callback prints one ``hydra-vertex: ...`` line to stderr and the process exits 1,
  so the trial fails.
- :func:`report`, for intermediate measurements (early stopping needs them).
- :func:`wandb_trial_env`, the W&B grouping variables of a trial (applied by the callback's
  ``on_job_start`` without overriding what the user set; the user's tags are kept and the
  parameter tags added). The callback also writes the trial's parameters to a W&B config file and
  applies :mod:`hydra_vertex.wandb_runs` (run directory, offline without a key,
  ``WANDB_DISABLED``).

All reports of one process go through one ``hypertune.HyperTune`` instance: the package rewrites
the whole metric file from its in-memory queue on every report, so a second instance would erase
the first one's entries.

Imports stay cheap: Hydra's callback base class and the small ``hypertune`` module only.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from hydra_vertex.errors import ReportingError

if TYPE_CHECKING:
    from hydra.core.utils import JobReturn
    from hypertune import HyperTune
    from omegaconf import DictConfig

__all__ = [
    "DEFAULT_METRIC",
    "ReportCallback",
    "check_objective",
    "report",
    "wandb_trial_env",
]

#: cloudml-hypertune's default metric tag.
DEFAULT_METRIC = "training/hptuning/metric"
#: Environment variable naming the tag that :func:`report` uses when none is given.
METRIC_ENV = "HYDRA_VERTEX_METRIC"
_METRIC_FILE_ENV = "CLOUD_ML_HP_METRIC_FILE"
_WANDB_TAG_MAX = 64  # W&B rejects longer tags
# Older job specs passed the job file's tags here; they are merged into WANDB_TAGS.
_USER_TAGS_ENV = "HYDRA_VERTEX_WANDB_TAGS"

_state: dict[str, Any] = {"hypertune": None, "path": None, "last_step": None}


def _hypertune() -> HyperTune:
    """The process's single ``HyperTune`` (a new one only when the metric file path changes)."""
    path = os.environ.get(_METRIC_FILE_ENV)
    if path is not None and not os.path.dirname(path):
        # hypertune calls os.makedirs(dirname(path)), which fails for a bare file name.
        path = os.path.abspath(path)
        os.environ[_METRIC_FILE_ENV] = path
    if _state["hypertune"] is None or _state["path"] != path:
        import hypertune

        _state["hypertune"] = hypertune.HyperTune()
        _state["path"] = path
    ht: HyperTune = _state["hypertune"]
    return ht


def _fail(message: str) -> ReportingError:
    return ReportingError(message)


def check_objective(value: object, what: str = "objective") -> float:
    """Return ``value`` as a finite float, or raise :class:`ReportingError` saying why not.

    Accepts real numbers (``int``, ``float``, NumPy scalars) and 0-d objects with ``item()``
    (a NumPy array or a torch tensor); rejects ``bool``, ``None``, NaN and infinities.
    """
    if value is None:
        raise _fail(
            f"the {what} is None: the task function must return a finite number "
            "(or a mapping holding one); the trial fails and nothing is reported"
        )
    if not isinstance(value, numbers.Real) and callable(getattr(value, "item", None)):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            value = value.item()  # type: ignore[attr-defined]
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(
            f"the {what} {value!r} (type {type(value).__name__}) is not a real number; "
            "return an int or float (bool is not accepted); the trial fails and nothing is reported"
        )
    number = float(value)
    if not math.isfinite(number):
        raise _fail(
            f"the {what} is {number!r}: NaN and infinite values are never reported; "
            "the trial fails so that Vertex does not rank it"
        )
    return number


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or int(step) < 0:
        raise ReportingError(f"step {step!r} must be a non-negative int")
    return int(step)


def _send(metric: str, value: float, step: int) -> None:
    _hypertune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=metric, metric_value=value, global_step=step
    )


def report(value: float, step: int | None = None, metric: str | None = None) -> None:
    """Report an intermediate measurement (for early stopping) through cloudml-hypertune.

    ``metric`` defaults to ``$HYDRA_VERTEX_METRIC`` (set by :class:`ReportCallback` to its own
    tag when the job starts, unless already set), then cloudml-hypertune's default tag. ``step``
    defaults to the previous step + 1 (0 for the first report). NaN, infinite or non-numeric
    values raise :class:`ReportingError` and are not reported.
    """
    number = check_objective(value, what="reported value")
    last = _state["last_step"]
    resolved_step = _check_step(step) if step is not None else (0 if last is None else last + 1)
    tag = metric or os.environ.get(METRIC_ENV) or DEFAULT_METRIC
    _send(tag, number, resolved_step)
    _state["last_step"] = resolved_step if last is None else max(last, resolved_step)


def objective_from_return(value: object, name: str) -> float:
    """The objective inside a task function's return value (``value[name]`` for a mapping)."""
    if isinstance(value, Mapping):
        if name not in value:
            keys = ", ".join(repr(k) for k in value) or "none"
            raise ReportingError(
                f"the task function returned a mapping without the key {name!r} "
                f"(available keys: {keys}); set the callback's key or metric to one of them"
            )
        return check_objective(value[name], what=f"objective {name!r}")
    return check_objective(value)


def _sanitize_tag(text: str) -> str:
    # WANDB_TAGS is comma-separated, so a comma inside a tag would split it.
    return text.replace(",", ";").strip()[:_WANDB_TAG_MAX]


def _tag_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def wandb_trial_env(
    environ: Mapping[str, str], parameters: Mapping[str, object] | None = None
) -> dict[str, str]:
    """The W&B grouping variables for a tuning trial, to set in ``environ``.

    Empty unless ``CLOUD_ML_TRIAL_ID`` is set. ``WANDB_RUN_GROUP`` is the tuning job
    (``CLOUD_ML_JOB_ID``, when set), ``WANDB_NAME`` is ``trial-<id>``, ``WANDB_JOB_TYPE`` is
    ``hpt-trial``; each of these is left out when ``environ`` already sets it. ``WANDB_TAGS`` is
    the user's tags (``WANDB_TAGS`` already set, e.g. from the job file) followed by one
    ``key=value`` tag per trial parameter (sorted; commas become ``;``, at most 64 characters each,
    as W&B requires), without repeats; it is left out when that changes nothing.
    """
    trial = environ.get("CLOUD_ML_TRIAL_ID")
    if not trial:
        return {}
    wanted: dict[str, str] = {"WANDB_NAME": f"trial-{trial}", "WANDB_JOB_TYPE": "hpt-trial"}
    job = environ.get("CLOUD_ML_JOB_ID")
    if job:
        wanted["WANDB_RUN_GROUP"] = job
    out = {k: v for k, v in wanted.items() if k not in environ}
    tags = _tag_list(environ.get("WANDB_TAGS"))
    for tag in _tag_list(environ.get(_USER_TAGS_ENV)):
        if tag not in tags:
            tags.append(tag)
    for key, value in sorted((parameters or {}).items()):
        tag = _sanitize_tag(f"{key}={value}")
        if tag and tag not in tags:
            tags.append(tag)
    merged = ",".join(tags)
    if merged and merged != environ.get("WANDB_TAGS"):
        out["WANDB_TAGS"] = merged
    return out


def _trial_parameters(config: DictConfig, only: list[str] | None) -> dict[str, object]:
    """The task overrides of this run (``hydra.*`` excluded), as ``{key: value}``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    raw = OmegaConf.select(config, "hydra.overrides.task", default=None) or []
    try:
        parsed = OverridesParser.create().parse_overrides([str(o) for o in raw])
    except Exception:  # an unparsable override only costs the tags
        return {}
    out: dict[str, object] = {}
    for override in parsed:
        key = override.key_or_group
        if key.startswith("hydra.") or key == "hydra" or override.is_delete():
            continue
        if only is not None and key not in only:
            continue
        try:
            out[key] = override.value()
        except Exception:
            continue
    return out


class ReportCallback(Callback):
    """Report the task function's return value as the trial's final measurement.

    ``metric`` is the hypertune tag (the search space's ``metric``); ``key`` picks the value out
    of a returned mapping (default: ``metric``). ``params`` optionally limits the W&B tags to these
    override keys (default: every non-``hydra.*`` task override). ``strict=False`` (what the
    shim sets for the retrain): an objective that cannot be reported prints a warning and the run
    ends as it would without the callback.
    """

    def __init__(
        self,
        metric: str = DEFAULT_METRIC,
        key: str | None = None,
        params: list[str] | None = None,
        strict: bool = True,
    ) -> None:
        self.metric = str(metric)
        self.key = None if key is None else str(key)
        self.params = None if params is None else [str(p) for p in params]
        self.strict = bool(strict)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra_vertex.shim import FORCED_RUN_ENV

        if os.environ.pop(FORCED_RUN_ENV, None) and _config_selects_multirun(config):
            print(
                "hydra-vertex: warning: the app's config selects hydra.mode=MULTIRUN (as an "
                "hparams_search config does); a trial is one run, so it runs with hydra.mode=RUN "
                "and the tuning job does the sweeping",
                file=sys.stderr,
                flush=True,
            )

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        _state["last_step"] = None  # steps count per job (a local multirun runs several)
        os.environ.setdefault(METRIC_ENV, self.metric)
        if not os.environ.get("CLOUD_ML_TRIAL_ID"):
            return
        _wandb_trial_setup(config, _trial_parameters(config, self.params))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status != JobStatus.COMPLETED:
            return  # the app's own exception already fails the trial
        try:
            value = objective_from_return(job_return.return_value, self.key or self.metric)
        except ReportingError as err:
            if not self.strict:  # the retrain: its model matters more than the number
                print(f"hydra-vertex: warning: {err}; the run's value is not recorded",
                      file=sys.stderr, flush=True)
                return
            print(f"hydra-vertex: {err}", file=sys.stderr, flush=True)
            if _is_multirun(config):
                raise  # Hydra turns it into a warning; the sweep goes on without this value
            # Hydra downgrades a callback's Exception to a warning (exit 0): leave with 1 ourselves.
            raise SystemExit(1) from err
        last = _state["last_step"]
        _send(self.metric, value, 0 if last is None else last + 1)


def _wandb_trial_setup(config: DictConfig, parameters: Mapping[str, object]) -> None:
    """Name, group and tag the trial's W&B run; its parameters into the run's config.

    Also points W&B at the trial's output directory, offline without an API key, disabled by
    ``WANDB_DISABLED`` (:mod:`hydra_vertex.wandb_runs`). Nothing here imports ``wandb``.
    """
    from omegaconf import OmegaConf

    from hydra_vertex import wandb_runs

    os.environ.update(wandb_trial_env(os.environ, parameters))
    wandb_runs.apply()
    if wandb_runs.is_disabled(os.environ) or os.environ.get(wandb_runs.PARAMS_ENV):
        return
    output_dir = OmegaConf.select(config, "hydra.runtime.output_dir", default=None)
    directory = output_dir or os.environ.get("WANDB_DIR") or os.getcwd()
    try:
        os.environ.update(wandb_runs.trial_config_file(directory, parameters, os.environ))
    except OSError as err:  # the run still logs; only the parameters are missing from its config
        print(f"hydra-vertex: cannot write the W&B trial config: {err}", file=sys.stderr)


def _config_selects_multirun(config: DictConfig) -> bool:
    """Whether the app's config, without the shim's ``hydra.mode=RUN``, would run a sweep.

    Composes the config once more (the shim cannot know without Hydra); any failure says no.
    """
    try:
        from hydra.core.global_hydra import GlobalHydra
        from hydra.types import RunMode

        hydra_cfg = config.hydra
        overrides = [
            str(o)
            for o in [*hydra_cfg.overrides.hydra, *hydra_cfg.overrides.task]
            if str(o).split("=", 1)[0].lstrip("+~") != "hydra.mode"
        ]
        composed = GlobalHydra.instance().config_loader().load_configuration(
            config_name=hydra_cfg.job.config_name,
            overrides=overrides,
            run_mode=RunMode.MULTIRUN,
            validate_sweep_overrides=False,
        )
        return bool(composed.hydra.mode == RunMode.MULTIRUN)
    except Exception:
        return False


def _is_multirun(config: DictConfig) -> bool:
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    return OmegaConf.select(config, "hydra.mode", default=None) == RunMode.MULTIRUN
