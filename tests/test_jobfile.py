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
