"""JOB.yaml parsing: the bundled example loads; every bad field gets an error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex import jobfile
from hydra_vertex.errors import JobFileError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "job.yaml"


def test_example_job_loads() -> None:
    job = jobfile.load(EXAMPLE)
    assert job.name == "digits"
    assert job.command == ["python", "train.py"]
    assert job.source == EXAMPLE.parent.resolve()
    assert (job.tuning.max_trials, job.tuning.parallel_trials) == (12, 2)
    assert job.retrain_overrides == ["val_fraction=0.1"]


def base(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "s.yaml").write_text("metric: m\ndirection: minimize\nparams: {x: interval(0, 1)}\n")
    return {"name": "app", "app": {"source": ".", "command": ["python", "app.py"]}, "search_space": "s.yaml"}


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        pytest.param({"name": "My App"}, r"'name' must match", id="name"),
        pytest.param({"nme": "x"}, r"unknown key\(s\) \['nme'\]", id="unknown-top"),
        pytest.param({"app": {"source": "nope", "command": ["x"]}}, r"'app.source' must be a directory", id="source"),
        pytest.param({"app": {"source": ".", "command": []}}, r"'app.command' must be a non-empty list", id="command"),
        pytest.param({"search_space": "missing.yaml"}, r"'search_space' must be an existing file", id="space"),
        pytest.param({"tuning": {"max_trials": 0}}, r"'tuning.max_trials' must be an integer >= 1, got 0", id="max-trials"),
        pytest.param({"tuning": {"max_trials": 2, "parallel_trials": 3}}, r"must not exceed 'tuning.max_trials' \(2\)", id="parallel>max"),
        pytest.param({"tuning": {"max_trials": "ten"}}, r"'tuning.max_trials' must be an integer", id="type"),
        pytest.param({"tuning": {"budget": 3}}, r"unknown key\(s\) \['budget'\] in 'tuning'", id="unknown-tuning"),
        pytest.param({"retrain": {"overrides": "a=1"}}, r"'retrain.overrides' must be a list", id="overrides"),
        pytest.param({"vertex": {"staging_bucket": "/tmp/x"}}, r"'vertex.staging_bucket' must be a gs:// URI", id="bucket"),
        pytest.param({"wandb": {"projct": "x"}}, r"unknown key\(s\) \['projct'\] in 'wandb'", id="wandb"),
        pytest.param({"vertex": {"accelerator_type": "NVIDIA_TESLA_T5"}}, r"'vertex.accelerator_type' must be an aiplatform_v1 AcceleratorType name, got 'NVIDIA_TESLA_T5'; did you mean 'NVIDIA_TESLA_T4'\?", id="accelerator"),
        pytest.param({"vertex": {"accelerator_count": 2}}, r"'vertex.accelerator_count' needs 'accelerator_type'", id="count"),
        pytest.param({"vertex": {"scheduling_strategy": "PREEMPTIBLE"}}, r"'vertex.scheduling_strategy' must be one of \['STANDARD', 'SPOT', 'FLEX_START'\]", id="strategy"),
        pytest.param({"vertex": {"boot_disk_size_gb": 20}}, r"'vertex.boot_disk_size_gb' must be an integer in \[100, 64000\], got 20", id="disk"),
        pytest.param({"vertex": {"labels": {"Team": "a"}}}, r"'vertex.labels.Team' is not a valid label key", id="label"),
        pytest.param({"vertex": {"encryption_key": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"}}, r"'vertex.encryption_key' must be in the jobs' region 'us-central1'", id="key-region"),
        pytest.param({"vertex": {"gpu": "T4"}}, r"unknown key\(s\) \['gpu'\] in 'vertex'", id="unknown-vertex"),
        pytest.param({"retrain": {"vertex": {"network": "x"}}}, r"unknown key\(s\) \['network'\] in 'retrain.vertex'", id="retrain-not-machine"),
        pytest.param({"retrain": {"vertex": {"accelerator_type": "L4"}}}, r"'retrain.vertex.accelerator_type' .*did you mean 'NVIDIA_L4'", id="retrain-accelerator"),
        pytest.param({"retrain": {"vertex": {"max_wait_duration": 60}}}, r"'retrain.vertex.max_wait_duration' applies only with scheduling_strategy FLEX_START", id="retrain-whole"),
        pytest.param({"tuning": {"algorithm": "vizier"}}, r"'tuning.algorithm' must be one of \['bayesian', 'grid', 'random'\]", id="algorithm"),
        pytest.param({"tuning": {"early_stopping": "convex"}}, r"'tuning.early_stopping.rule' must be one of \['median', 'decay_curve'\]", id="early-stopping"),
    ],
)
def test_bad_fields(tmp_path: Path, patch: dict[str, Any], match: str) -> None:
    data = {**base(tmp_path), **patch}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(JobFileError, match=match) as e:
        jobfile.load(path)
    assert str(path) in str(e.value)


def test_command_may_be_a_string(tmp_path: Path) -> None:
    data = {**base(tmp_path), "app": {"source": ".", "command": "python 'my app.py'"}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    assert jobfile.load(tmp_path / "job.yaml").command == ["python", "my app.py"]


def test_vertex_settings_reach_the_spec(tmp_path: Path) -> None:
    data = {
        **base(tmp_path),
        "tuning": {"algorithm": "random", "measurement_selection": "best", "early_stopping": "median"},
        "retrain": {"vertex": {"accelerator_count": 1, "scheduling_strategy": "standard"}},
        "vertex": {
            "machine_type": "n1-standard-8",
            "accelerator_type": "nvidia-tesla-t4",
            "accelerator_count": 2,
            "boot_disk_type": "pd-ssd",
            "boot_disk_size_gb": 200,
            "replica_count": 2,
            "scheduling_strategy": "SPOT",
            "network": "projects/123/global/networks/vpc",
            "reserved_ip_ranges": ["vertex-range"],
            "encryption_key": "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k",
            "labels": {"team": "vision"},
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    job = jobfile.load(path)
    m = job.vertex.machine
    assert job.vertex.machine_type == "n1-standard-8"
    assert (m.accelerator_type, m.accelerator_count, m.scheduling_strategy) == ("NVIDIA_TESLA_T4", 2, "SPOT")
    assert (m.boot_disk_type, m.boot_disk_size_gb, m.replica_count) == ("pd-ssd", 200, 2)
    assert job.retrain_vertex == {"accelerator_count": 1, "scheduling_strategy": "STANDARD"}
    r = job.retrain_machine
    assert (r.accelerator_type, r.accelerator_count, r.scheduling_strategy, r.replica_count) == (
        "NVIDIA_TESLA_T4", 1, "STANDARD", 2
    )
    assert job.vertex.job.to_dict() == {k: data["vertex"][k] for k in ("network", "reserved_ip_ranges", "encryption_key", "labels")}
    assert job.tuning.options.to_dict() == {
        "algorithm": "random",
        "measurement_selection": "best",
        "early_stopping": {"rule": "median", "use_elapsed_duration": False},
    }


def test_a_job_file_without_vertex_settings_keeps_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(base(tmp_path)))
    job = jobfile.load(path)
    assert job.vertex.machine.to_dict() == {"machine_type": "n1-standard-4"}
    assert job.vertex.job.to_dict() == {} and job.retrain_vertex == {}
    assert job.tuning.options.to_dict() == {}


def test_the_apps_environment_settings(tmp_path: Path) -> None:
    import sys

    data = base(tmp_path)
    (tmp_path / "reqs.txt").write_text("pyyaml\n")
    data["app"]["requirements"] = "reqs.txt"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    job = jobfile.load(tmp_path / "job.yaml")
    assert job.requirements == (tmp_path / "reqs.txt").resolve() and job.python is None
    assert job.tuning_keys == frozenset()

    venv = Path(sys.prefix)  # a virtual environment directory stands for its bin/python
    data["app"] = {"source": ".", "command": ["python", "app.py"], "python": str(venv)}
    data["tuning"] = {"max_trials": 4}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(data))
    job = jobfile.load(tmp_path / "job.yaml")
    assert job.python == venv / "bin" / "python" and job.requirements is None
    assert job.tuning_keys == frozenset({"max_trials"})


@pytest.mark.parametrize(
    ("app", "match"),
    [
        pytest.param({"python": "nowhere/bin/python"}, r"'app.python' must be an existing interpreter", id="python"),
        pytest.param({"requirements": "missing.txt"}, r"'app.requirements' must be an existing file", id="requirements"),
        pytest.param({"python": "python3", "requirements": "s.yaml"}, r"set 'app.python' .* or 'app.requirements'", id="both"),
        pytest.param({"pyhton": "python3"}, r"unknown key\(s\) \['pyhton'\] in 'app'", id="typo"),
    ],
)
def test_bad_environment_settings(tmp_path: Path, app: dict[str, Any], match: str) -> None:
    data = base(tmp_path)
    data["app"].update(app)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(JobFileError, match=match) as e:
        jobfile.load(path)
    assert str(path) in str(e.value)
