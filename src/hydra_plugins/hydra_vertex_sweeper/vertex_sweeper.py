"""``hydra/sweeper=vertex``: tune a Hydra app with Vertex AI hyperparameter tuning (or the local
emulator) from Hydra's own command line.

Thin, as Hydra's own sweeper plugins are: Hydra imports this module whenever it scans its plugins,
so the work (and hydra-vertex, the Google clients, the emulator) loads lazily from ``_impl`` when a
sweep starts.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class VertexSweeper(Sweeper):
    """Runs the sweep as one Vertex AI ``HyperparameterTuningJob`` (see ``config.py``)."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self._impl: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        from hydra_plugins.hydra_vertex_sweeper._impl import VertexSweeperImpl

        self._impl = VertexSweeperImpl(self.settings)
        self._impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._impl.sweep(arguments)
