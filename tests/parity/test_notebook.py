"""The SDK calls of Google's notebook "Run hyperparameter tuning for a TensorFlow model"
(vertex-ai-samples), extracted cell by cell into ``vendored/vertex_ai_samples/``, run top to
bottom: ``aiplatform.init``, a CustomJob whose worker pool gives only ``image_uri`` (the image
built from the notebook's own Dockerfile: ``ENTRYPOINT ["python", "-m", "trainer.task"]``), a
HyperparameterTuningJob of 10 trials, 3 in parallel, ``run()``, then the clean-up cell's
``hp_job.delete()``."""

from __future__ import annotations

import runpy
from typing import Any

import pytest
from google.api_core import exceptions
from parity_support import NOTEBOOK_IMAGE, VENDORED


def test_the_notebooks_sdk_calls(sdk: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cells = runpy.run_path(
        str(VENDORED / "vertex_ai_samples" / "hyperparameter_tuning_tensorflow.py")
    )
    assert cells["IMAGE_URI"] == NOTEBOOK_IMAGE
    hp_job = cells["hp_job"]
    final = hp_job.gca_resource  # as run() last read it (the job itself is deleted by now)
    assert final.state.name == "JOB_STATE_SUCCEEDED"
    trials = final.trials
    assert len(trials) == 10
    for trial in trials:
        assert trial.state.name == "SUCCEEDED", trial.infeasible_reason
        values = {p.parameter_id: p.value for p in trial.parameters}
        assert set(values) == {"learning_rate", "momentum", "num_units"}
        assert values["num_units"] in (64, 128, 512)
        [metric] = trial.final_measurement.metrics
        assert metric.metric_id == "accuracy" and 0 < metric.value < 1
    assert capsys.readouterr().out == ""  # the clean-up cell prints an exception if delete fails
    with pytest.raises(exceptions.NotFound):
        sdk.HyperparameterTuningJob.get(hp_job.resource_name)
