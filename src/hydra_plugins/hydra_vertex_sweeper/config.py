"""The ``hydra/sweeper: vertex`` config and its ``hydra/sweeper/sampler`` options.

Hydra imports this module on every start of every Hydra app in the environment (plugin discovery),
so it imports nothing but Hydra's ConfigStore: hydra-vertex itself loads only when a sweep runs.

The keys of a hydra-optuna-sweeper block are accepted as written (``params``, ``direction``,
``n_trials``, ``n_jobs``, ``max_failure_rate``, ``sampler``, ``storage``, ``study_name``,
``custom_search_space``), and so are the sampler options selected the optuna plugin's way
(``override hydra/sweeper/sampler: tpe``): a config written for that plugin runs by changing only
the sweeper. hydra-vertex's own settings sit beside them, under the job file's section names
(``tuning``, ``wandb``, ``vertex``) and ``retrain``/``retrain_overrides``.
"""

# No ``from __future__ import annotations`` here: Hydra's plugin scanner executes this module
# before it is in sys.modules, where dataclasses looks string annotations up (and OmegaConf reads
# the field types from them).
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore

#: The sampler options of hydra-optuna-sweeper and the Optuna class each one names. Vertex AI runs
#: ``random`` and ``grid`` as its RANDOM_SEARCH and GRID_SEARCH; every other one becomes Vertex's
#: default, Bayesian optimization (with a warning line).
SAMPLERS = {
    "tpe": "optuna.samplers.TPESampler",
    "random": "optuna.samplers.RandomSampler",
    "grid": "optuna.samplers.GridSampler",
    "gp": "optuna.samplers.GPSampler",
    "cmaes": "optuna.samplers.CmaEsSampler",
    "nsgaii": "optuna.samplers.NSGAIISampler",
    "motpe": "optuna.samplers.MOTPESampler",
    "qmc": "optuna.samplers.QMCSampler",
}


@dataclass
class VertexSweeperConf:
    _target_: str = "hydra_plugins.hydra_vertex_sweeper.vertex_sweeper.VertexSweeper"
    # Hydra instantiates a sweeper's config recursively: the sampler (an Optuna ``_target_``) is
    # read as a setting, never instantiated (Optuna need not be installed).
    _recursive_: bool = False
    # No sampler unless a config selects one (``override hydra/sweeper/sampler: tpe``); _self_
    # first, so that a selected option replaces ``sampler: null`` below.
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"sampler": None}])

    # -- hydra-optuna-sweeper's keys ------------------------------------------------------------
    #: The search space in Hydra's sweep grammar (sweep overrides on the command line add to it).
    params: Optional[Dict[str, Any]] = None
    #: minimize | maximize
    direction: Any = "minimize"
    #: The metric the app reports (a key of a returned mapping); default: the config's
    #: ``optimized_metric``, else ``objective`` (the task function's return value).
    metric: Optional[str] = None
    #: The budget: trials in all, and trials at a time.
    n_trials: int = 20
    n_jobs: int = 2
    #: The share of failed trials that fails the sweep (as hydra-optuna-sweeper: 0.0 = any).
    max_failure_rate: float = 0.0
    #: Read for its kind (random, grid, else Bayesian) and ``seed`` (the local engine's seed).
    sampler: Any = None
    #: The name of the tuning job (default: the app's name, ``hydra.job.name``).
    study_name: Optional[str] = None
    #: Accepted and ignored (a warning line each): Vertex AI keeps the trials.
    storage: Any = None
    #: Refused: Vertex AI needs the whole space up front.
    custom_search_space: Optional[str] = None

    # -- hydra-vertex's own ---------------------------------------------------------------------
    #: bayesian | grid | random (default: from the sampler, else bayesian).
    algorithm: Optional[str] = None
    #: last | best
    measurement_selection: Optional[str] = None
    #: Retrain the winner once the search is done (``retrain_overrides`` added to its overrides).
    retrain: bool = False
    retrain_overrides: List[str] = field(default_factory=list)
    #: The job file's sections, same keys: ``tuning`` (seed, timeout_seconds, early_stopping,
    #: max_failed_trials, ...), ``wandb``, ``vertex`` (project, region, staging_bucket,
    #: machine and job settings; ``image_uri``) and ``retrain_vertex`` (the retrain's machine).
    tuning: Dict[str, Any] = field(default_factory=dict)
    wandb: Dict[str, Any] = field(default_factory=dict)
    vertex: Dict[str, Any] = field(default_factory=dict)
    retrain_vertex: Dict[str, Any] = field(default_factory=dict)


def _register() -> None:
    cs = ConfigStore.instance()
    cs.store(group="hydra/sweeper", name="vertex", node=VertexSweeperConf, provider="hydra-vertex")
    for name, target in SAMPLERS.items():
        if _stored(cs, "hydra/sweeper/sampler", name):
            continue  # hydra-optuna-sweeper's own option: it keeps working unchanged
        # A plain mapping: any key an optuna sampler config sets (seed, n_startup_trials ...)
        # composes, as it does with hydra-optuna-sweeper.
        cs.store(
            group="hydra/sweeper/sampler",
            name=name,
            node={"_target_": target, "seed": None},
            provider="hydra-vertex",
        )


def _stored(cs: ConfigStore, group: str, name: str) -> bool:
    from hydra.plugins.config_source import ConfigLoadError

    try:
        cs.load(f"{group}/{name}.yaml")
    except ConfigLoadError:
        return False
    return True


_register()
