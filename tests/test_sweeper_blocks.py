"""Sweep configs read as written: hydra-optuna-sweeper / lightning-hydra-template blocks, nulls,
the budget keys, the ignored keys (one line each), the refused ones, and keys the shim cannot honour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex import jobfile
from hydra_vertex import search_space as ss
from hydra_vertex.errors import SearchSpaceError
from hydra_vertex.local_run import load_space

LHT = Path(__file__).parent / "apps" / "lightning_template"
OPTUNA = LHT / "configs" / "hparams_search" / "mnist_optuna.yaml"


def _sweeper(**block: Any) -> dict[str, Any]:
    return {
        "optimized_metric": "val/acc_best",
        "hydra": {"mode": "MULTIRUN", "sweeper": {"direction": "maximize", "params": {"lr": "interval(0.1, 1)"}, **block}},
    }


def test_the_lightning_template_block_reads_as_written() -> None:
    data = yaml.safe_load(OPTUNA.read_text())
    assert data["hydra"]["sweeper"]["storage"] is None and data["hydra"]["sweeper"]["study_name"] is None
    space = ss.from_mapping(data, source="mnist_optuna.yaml")
    assert (space.metric, space.direction) == ("val/acc_best", "maximize")
    assert [p.key for p in space.params] == [
        "model.optimizer.lr", "data.batch_size", "model.net.lin1_size", "model.net.lin2_size", "model.net.lin3_size",
    ]
    settings = ss.sweeper_settings(data, source="mnist_optuna.yaml")
    assert (settings.n_trials, settings.n_jobs, settings.max_failure_rate) == (20, 1, None)
    # sampler is set (TPESampler): one line; storage/study_name are null: nothing to say.
    assert len(settings.notes) == 1 and "'sampler' is ignored" in settings.notes[0]
    assert "mnist_optuna.yaml (hydra.sweeper)" in settings.notes[0]


def test_the_pipeline_gets_the_space_as_data_without_nulls() -> None:
    space = ss.from_mapping(yaml.safe_load(OPTUNA.read_text()), source="x")
    data = space.to_mapping()

    def nulls(node: Any) -> int:
        if isinstance(node, dict):
            return sum(nulls(v) for v in node.values())
        if isinstance(node, list):
            return sum(nulls(v) for v in node)
        return int(node is None)

    assert nulls(data) == 0
    assert ss.from_mapping(data, source="x") == space
    full = yaml.safe_load((Path(__file__).parent.parent / "examples" / "digits" / "search_space.yaml").read_text())
    digits = ss.from_mapping(full)
    assert ss.from_mapping(digits.to_mapping()) == digits  # conditional children too


@pytest.mark.parametrize(
    ("block", "notes"),
    [
        pytest.param({"storage": "sqlite:///x.db"}, ["'storage' is ignored"], id="storage"),
        pytest.param({"study_name": "s"}, ["'study_name' is ignored"], id="study-name"),
        pytest.param({"sampler": {"_target_": "optuna.samplers.TPESampler"}, "storage": None}, ["'sampler' is ignored"], id="sampler"),
        pytest.param({"n_trials": None, "n_jobs": None, "max_failure_rate": None, "sampler": None}, [], id="all-null"),
        pytest.param({"_target_": "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"}, [], id="target"),
        pytest.param({"search_space": {"x": 1}}, ["'search_space' is not read"], id="unknown-key"),
    ],
)
def test_ignored_keys_get_one_line_each(block: dict[str, Any], notes: list[str]) -> None:
    settings = ss.sweeper_settings(_sweeper(**block), source="c.yaml")
    assert len(settings.notes) == len(notes)
    for note, needle in zip(settings.notes, notes, strict=True):
        assert needle in note and "\n" not in note


@pytest.mark.parametrize(
    ("data", "match"),
    [
        pytest.param(
            _sweeper(custom_search_space="my_app.space.define"),
            r"custom_search_space \('my_app.space.define'\) is not supported: .*hydra.sweeper.params.*when",
            id="custom-search-space",
        ),
        pytest.param(_sweeper(n_trials=0), r"'n_trials' must be an integer >= 1, got 0", id="n-trials"),
        pytest.param(_sweeper(n_jobs="4"), r"'n_jobs' must be an integer >= 1, got '4'", id="n-jobs"),
        pytest.param(_sweeper(max_failure_rate=1.5), r"'max_failure_rate' must be a number from 0 to 1, got 1.5", id="rate"),
        pytest.param({"direction": "minimize", "params": {"x": "interval(0, 1)"}}, r"c.yaml: 'metric' is missing", id="no-metric-file"),
        pytest.param(
            {"hydra": {"sweeper": {"direction": "minimize", "params": {"x": "interval(0, 1)"}}}},
            r"'metric' is missing.*hydra.sweeper.metric, or a top-level optimized_metric", id="no-metric-config",
        ),
    ],
)
def test_refused_blocks_name_the_key(data: dict[str, Any], match: str) -> None:
    with pytest.raises(SearchSpaceError, match=match):
        ss.from_mapping(data, source="c.yaml")
        ss.sweeper_settings(data, source="c.yaml")


def test_a_sweeper_metric_wins_over_optimized_metric() -> None:
    data = _sweeper(metric="val/loss")
    assert ss.from_mapping(data).metric == "val/loss"


@pytest.mark.parametrize(
    ("key", "match"),
    [
        pytest.param("++model.lr", r"'\+\+' \(add or override\) cannot be tuned", id="plus-plus"),
        pytest.param("~model.lr", r"'~' deletes a key", id="delete"),
        pytest.param("model/encoder", r"nested config-group path \('/'\)", id="group-path"),
        pytest.param("db@backup", r"package override \('@'\)", id="package"),
        pytest.param("+hydra.job.chdir", r"'hydra\.\*' keys configure Hydra itself", id="plus-hydra"),
        pytest.param("hydra", r"'hydra\.\*' keys configure Hydra itself", id="hydra"),
        pytest.param("_global_.hydra.run.dir", r"'_global_' is a package name", id="global"),
        pytest.param("_global_.lr", r"'_global_' is a package name", id="global-key"),
        pytest.param("model..lr", r"a parameter is a dotted config key", id="empty-segment"),
        pytest.param("lr$", r"a parameter is a dotted config key", id="odd-character"),
    ],
)
def test_keys_the_shim_cannot_honour_are_refused(key: str, match: str) -> None:
    with pytest.raises(SearchSpaceError, match=match) as e:
        ss.from_mapping({"metric": "m", "direction": "minimize", "params": {key: "interval(0.1, 1)"}}, source="s.yaml")
    assert "s.yaml" in str(e.value) and repr(key) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("key", ["model.lr", "+model.dropout", "layers.0.size", "model", "my-key.sub_key"])
def test_honourable_keys_pass(key: str) -> None:
    assert ss.from_mapping({"metric": "m", "direction": "minimize", "params": {key: "interval(0.1, 1)"}})


def _job(
    tmp_path: Path, tuning: dict[str, Any] | None, sweeper: dict[str, Any]
) -> tuple[jobfile.JobSpec, list[str]]:
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(_sweeper(**sweeper)))
    data: dict[str, Any] = {
        "name": "app", "app": {"source": ".", "command": ["python", "app.py"]}, "search_space": "sweep.yaml",
    }
    if tuning is not None:
        data["tuning"] = tuning
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    spec, _, notes = load_space(jobfile.load(tmp_path / "job.yaml"))
    return spec, notes


@pytest.mark.parametrize(
    ("tuning", "sweeper", "expected", "note"),
    [
        pytest.param(None, {"n_trials": 20, "n_jobs": 4}, (20, 4, 0), "max_trials=20 (from n_trials), tuning.parallel_trials=4 (from n_jobs)", id="sweeper-sets-the-budget"),
        pytest.param({"max_trials": 6}, {"n_trials": 20, "n_jobs": 4}, (6, 4, 0), "parallel_trials=4 (from n_jobs)", id="job-file-wins"),
        pytest.param({"max_trials": 3}, {"n_jobs": 8}, (3, 3, 0), "parallel_trials=3 (from n_jobs)", id="n-jobs-capped-by-max-trials"),
        pytest.param(None, {"n_trials": 1}, (1, 1, 0), "max_trials=1 (from n_trials)", id="default-parallel-capped"),
        pytest.param(None, {"n_trials": 10, "max_failure_rate": 0.25}, (10, 2, 3), "max_failed_trials=3 (from max_failure_rate)", id="failure-rate"),
        pytest.param(None, {"n_trials": 10, "max_failure_rate": 0.0}, (10, 2, 1), "max_failed_trials=1", id="no-failure-allowed"),
        pytest.param(None, {"max_failure_rate": 1.0}, (12, 2, 0), "max_failed_trials=0", id="rate-one-is-the-service"),
        pytest.param({"max_failed_trials": 5}, {"max_failure_rate": 0.0}, (12, 2, 5), None, id="job-file-failures-win"),
        pytest.param(None, {"n_trials": None, "n_jobs": None}, (12, 2, 0), None, id="nulls-change-nothing"),
    ],
)
def test_n_trials_and_n_jobs_fill_what_the_job_file_leaves_unset(
    tmp_path: Path,
    tuning: dict[str, Any] | None,
    sweeper: dict[str, Any],
    expected: tuple[int, int, int],
    note: str | None,
) -> None:
    spec, notes = _job(tmp_path, tuning, sweeper)
    t = spec.tuning
    assert (t.max_trials, t.parallel_trials, t.max_failed_trials) == expected
    used = [n for n in notes if "(from " in n]
    if note is None:
        assert used == []
    else:
        assert len(used) == 1 and note in used[0] and "sweep.yaml (hydra.sweeper)" in used[0]


@pytest.mark.parametrize(
    ("sampler", "name", "algorithm"),
    [
        pytest.param(None, "", "bayesian", id="none"),
        pytest.param({"_target_": "optuna.samplers.TPESampler", "seed": 1}, "tpe", "bayesian", id="tpe"),
        pytest.param({"_target_": "optuna.samplers.RandomSampler"}, "random", "random", id="random"),
        pytest.param({"_target_": "optuna.samplers.GridSampler", "_partial_": True}, "grid", "grid", id="grid"),
        pytest.param({"_target_": "optuna.samplers.GPSampler"}, "gp", "bayesian", id="gp"),
        pytest.param({"_target_": "hydra_plugins.hydra_optuna_sweeper.config.raise_motpe_removed"}, "motpe", "bayesian", id="motpe"),
        pytest.param("random", "random", "random", id="option-name"),
    ],
)
def test_a_sampler_maps_to_a_vertex_algorithm(sampler: Any, name: str, algorithm: str) -> None:
    assert ss.sampler_algorithm(sampler) == (name, algorithm)


def test_a_random_sampler_is_random_search_and_its_seed_the_tuning_seed(tmp_path: Path) -> None:
    data = _sweeper(sampler={"_target_": "optuna.samplers.RandomSampler", "seed": 7})
    assert ss.from_mapping(data).algorithm == "random"
    settings = ss.sweeper_settings(data, source="c.yaml")
    assert settings.notes == () and settings.seed == 7  # it has an effect: nothing to warn about
    explicit = _sweeper(sampler={"_target_": "optuna.samplers.RandomSampler"}, algorithm="grid", params={"lr": "choice(1, 2)"})
    assert ss.from_mapping(explicit).algorithm == "grid"
    assert "'algorithm: grid' chooses" in ss.sweeper_settings(explicit, source="c.yaml").notes[0]
