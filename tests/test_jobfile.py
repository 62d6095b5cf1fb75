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
