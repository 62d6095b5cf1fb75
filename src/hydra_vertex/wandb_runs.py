"""W&B settings of a job's process: where runs go, offline without a key, ``WANDB_DISABLED``.

The W&B client and the Hugging Face ``WandbCallback`` read ``WANDB_*`` variables when the run
starts. :func:`run_env` says which ones a tuning trial or the retrain should add to what the job
got from the job file (``steps.common.wandb_env``):

- ``WANDB_DISABLED`` set to a true value (``true``, ``1``, ``yes``): ``WANDB_MODE=disabled`` and
  ``WANDB_LOG_MODEL=false``, so nothing is written to W&B or staged for it (today's transformers
  no longer reads ``WANDB_DISABLED`` itself).
- no ``WANDB_MODE`` and no W&B API key (``WANDB_API_KEY``, or a ``~/.netrc`` entry for the W&B
  host, which ``wandb login`` writes): ``WANDB_MODE=offline``. Runs are written to disk and
  uploaded later with ``wandb sync``.
- no ``WANDB_DIR``: the directory above ``AIP_MODEL_DIR`` (a trial's ``<base>/<trial id>/``, the
  retrain's ``<base>/``) when that is a local path, or its ``/gcs/`` mount on Vertex. Runs then
  land in ``<that>/wandb/``, next to the job's model, instead of the image's working directory.

:func:`trial_config_file` writes a trial's parameters as a W&B config file and returns
``WANDB_SWEEP_PARAM_PATH`` for it: the parameters then sit in the trial run's config.

:class:`WandbEnvCallback` applies :func:`run_env` when a Hydra job starts; the reporting callback
of tuning trials does the same. List it in an app's config (``hydra.callbacks``) to cover the
retrain and plain runs too.

Imports stay cheap (no ``wandb`` import): the shim's trials load this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

__all__ = [
    "WandbEnvCallback",
    "apply",
    "has_api_key",
    "is_disabled",
    "run_env",
    "trial_config_file",
    "wandb_dir",
]

_TRUE = {"1", "true", "yes", "on", "y"}
_DEFAULT_HOST = "api.wandb.ai"
#: The trial-parameter file written next to the trial's Hydra output.
TRIAL_CONFIG_NAME = "wandb_trial_config.yaml"
#: The variable through which ``wandb.init`` loads :func:`trial_config_file`'s file.
PARAMS_ENV = "WANDB_SWEEP_PARAM_PATH"


def is_disabled(environ: Mapping[str, str]) -> bool:
    """``WANDB_DISABLED`` is true, or ``WANDB_MODE`` is already ``disabled``."""
    return (
        environ.get("WANDB_DISABLED", "").strip().lower() in _TRUE
        or environ.get("WANDB_MODE", "").strip().lower() == "disabled"
    )


def _host(environ: Mapping[str, str]) -> str:
    from urllib.parse import urlparse

    base = environ.get("WANDB_BASE_URL", "").strip()
    return (urlparse(base).hostname if base else None) or _DEFAULT_HOST


def has_api_key(environ: Mapping[str, str]) -> bool:
    """A W&B API key is at hand: ``WANDB_API_KEY``, or a netrc entry for the W&B host."""
    if environ.get("WANDB_API_KEY", "").strip():
        return True
    import netrc

    path = environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(_host(environ))
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(auth and auth[2])


def wandb_dir(environ: Mapping[str, str]) -> str | None:
    """The directory above ``AIP_MODEL_DIR`` as a local path, or None when there is none."""
    model_dir = environ.get("AIP_MODEL_DIR", "").strip()
    if not model_dir:
        return None
    if model_dir.startswith("gs://"):
        mount = "/gcs/" + model_dir[len("gs://") :]
        if not os.path.isdir("/gcs"):
            return None
        model_dir = mount
    elif "://" in model_dir:
        return None
    return str(Path(model_dir.rstrip("/")).parent.resolve())


def run_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The W&B variables to set in ``environ`` (see the module's docstring); nothing to drop."""
    out: dict[str, str] = {}
    if is_disabled(environ):
        # A disabled run still stages WANDB_LOG_MODEL's model files on disk: no model either.
        out.update(WANDB_MODE="disabled", WANDB_LOG_MODEL="false", WANDB_WATCH="false")
    elif not environ.get("WANDB_MODE") and not has_api_key(environ):
        out["WANDB_MODE"] = "offline"
    if not environ.get("WANDB_DIR"):
        directory = wandb_dir(environ)
        if directory:
            out["WANDB_DIR"] = directory
    return {k: v for k, v in out.items() if environ.get(k) != v}


def apply(environ: dict[str, str] | os._Environ[str] | None = None) -> dict[str, str]:
    """Set :func:`run_env`'s variables in ``environ`` (``os.environ``); create ``WANDB_DIR``."""
    env = os.environ if environ is None else environ
    changes = run_env(env)
    env.update(changes)
    directory = env.get("WANDB_DIR")
    if directory and not is_disabled(env):
        with contextlib.suppress(OSError):  # W&B then says itself that it cannot write there
            os.makedirs(directory, exist_ok=True)
    return changes


def trial_config_file(
    directory: str | os.PathLike[str],
    parameters: Mapping[str, object],
    environ: Mapping[str, str],
) -> dict[str, str]:
    """Write the trial's parameters as a W&B config file; return ``{PARAMS_ENV: its path}``.

    The file (``wandb_trial_config.yaml`` in ``directory``, the trial's own Hydra output
    directory) holds one entry per parameter under its Hydra key (``optimizer.lr: 0.001``) plus
    ``hpt_trial_id`` and ``hpt_job_id``. ``wandb.init`` loads it into the run's config through
    ``WANDB_SWEEP_PARAM_PATH``, the variable a W&B sweep agent uses for a sweep run's parameters
    (``WANDB_CONFIG_PATHS`` no longer loads from the environment in wandb 0.31).
    """
    import yaml

    values: dict[str, Any] = {str(k): _plain(v) for k, v in parameters.items()}
    for name, var in (("hpt_trial_id", "CLOUD_ML_TRIAL_ID"), ("hpt_job_id", "CLOUD_ML_JOB_ID")):
        if environ.get(var):
            values[name] = environ[var]
    path = Path(directory) / TRIAL_CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"wandb_version": 1, **{k: {"value": v} for k, v in values.items()}}
    path.write_text(yaml.safe_dump(document, sort_keys=True), encoding="utf-8")
    return {PARAMS_ENV: str(path.resolve())}


def _plain(value: object) -> object:
    """A YAML-safe copy of an override value (Hydra may give lists, dicts, or other types)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


class WandbEnvCallback(Callback):
    """A Hydra callback applying :func:`apply` when the job starts (before ``wandb.init``)."""

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        apply()
