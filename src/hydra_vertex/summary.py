"""``SUMMARY.json``: what a run found, written even when it failed part-way.

Fields (design.md fixes the first five): ``best_trial_id``, ``best_value``, ``best_overrides``,
``trials`` (each ``id``, ``state``, ``parameters``, ``value``, ``infeasible_reason`` (the whole
record: the deciding line, then the log's last lines), ``reason`` (the deciding line alone) and
``output_dir`` (the trial's Hydra output directory); from the emulator also ``stopped_early``,
``stop_reason``, ``saved_steps``, ``saved_seconds`` and ``devices``), ``model_dir``; and
``early_stopping`` (``stopped_trials``, ``saved_steps``, ``saved_seconds``: the totals), ``status``
(``succeeded``/``failed``/``cancelled``), ``error``, ``name``, ``metric``, ``direction``,
``best_parameters``, ``retrain_overrides``, ``model_uri``, ``retrain_value`` (the metric the
retrain's run returned, when its metric file has it: see docs/report.md), ``model_dir_empty`` (true
when the retrain wrote nothing under ``AIP_MODEL_DIR``; null when there was no retrain),
``retrain_output_dir`` (the retrain's Hydra output directory), ``image_uri``, ``tuning_job``,
``retrain_job``, ``elapsed_seconds``, ``log`` (the pipeline job's, in the emulator's state),
``trial_logs`` (the emulator's directory of per-trial logs), ``report`` (the HTML report).
``model_dir`` stays a string. No string holds an ANSI escape sequence.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from hydra_vertex.files import atomic_write_text
from hydra_vertex.reasons import strip_ansi
from hydra_vertex.trials import TrialResult


def _clean(value: Any) -> Any:
    """``value`` with ANSI escape sequences removed from every string in it."""
    if isinstance(value, str):
        return strip_ansi(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass
class Summary:
    name: str
    metric: str
    direction: str
    status: str = "running"
    error: str | None = None
    best_trial_id: str | None = None
    best_value: float | None = None
    best_overrides: list[str] = field(default_factory=list)
    best_parameters: dict[str, Any] = field(default_factory=dict)
    retrain_overrides: list[str] = field(default_factory=list)
    trials: list[TrialResult] = field(default_factory=list)
    model_dir: str | None = None
    model_dir_empty: bool | None = None
    retrain_value: float | None = None
    retrain_output_dir: str | None = None
    model_uri: str | None = None
    image_uri: str | None = None
    tuning_job: str | None = None
    retrain_job: str | None = None
    elapsed_seconds: float = 0.0
    log: str | None = None
    trial_logs: str | None = None
    report: str | None = None

    def to_dict(self) -> dict[str, Any]:
        from hydra_vertex.trials import early_stopping_totals

        data = asdict(self)
        data["early_stopping"] = early_stopping_totals(self.trials)
        return cast(dict[str, Any], _clean(data))

    def write(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return out
