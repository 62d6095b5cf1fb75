"""A Hugging Face ``Trainer`` callback that reports every evaluation as an intermediate
measurement, so that early stopping (Vertex's, or the emulator's) has a learning curve to judge::

    from hydra_vertex.hf import ReportEvaluationCallback

    trainer = Trainer(..., callbacks=[ReportEvaluationCallback("eval_loss")])

Each ``on_evaluate`` reports ``metrics[metric]`` at the trainer's ``global_step`` through
:func:`hydra_vertex.reporting.report` (the tuning metric's tag), from the main process only, and
only in a tuning trial (``CLOUD_ML_TRIAL_ID`` set): a plain run writes no metric file. A
non-finite value is not reported (one ``hydra-vertex:`` line on stderr); training goes on.

Imports ``transformers``: only Hugging Face apps import this module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from transformers import TrainerCallback

from hydra_vertex.errors import ReportingError
from hydra_vertex.reporting import report

__all__ = ["ReportEvaluationCallback"]


class ReportEvaluationCallback(TrainerCallback):
    """Report ``metric`` (default ``eval_loss``) of every evaluation at its global step."""

    def __init__(self, metric: str = "eval_loss") -> None:
        self.metric = metric

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not os.environ.get("CLOUD_ML_TRIAL_ID") or not state.is_world_process_zero:
            return
        if not metrics or self.metric not in metrics:
            return
        try:
            report(metrics[self.metric], step=int(state.global_step))
        except ReportingError as err:
            print(f"hydra-vertex: {err}; not reported", file=sys.stderr, flush=True)
