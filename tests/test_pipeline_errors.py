"""A failed pipeline task's reason is the most specific line its log holds (fast: on log text as
kfp.local writes it, through the emulator's own reason for a failed component)."""

from __future__ import annotations

from pathlib import Path

from hydra_vertex.emulator.pipeline_events import _failure
from hydra_vertex.reasons import deciding_line

# The end of a pipeline log whose launch_tuning component got the emulator's 400 (captured from a
# run asking for 2 GPUs per trial with HYDRA_VERTEX_GPUS=0), kfp's colours included.
REFUSED = """\
    Traceback (most recent call last):
      File ".../google/cloud/aiplatform_v1/services/job_service/transports/rest.py", line 5392, in __call__
        raise core_exceptions.from_http_response(response)
    google.api_core.exceptions.BadRequest: 400 POST http://127.0.0.1:37089/v1/projects/local-project/locations/us-central1/hyperparameterTuningJobs?%24alt=json%3Benum-encoding%3Dint: trial_job_spec.worker_pool_specs[0].machine_spec.accelerator_count is 2 but this machine has 1 GPU (0; from HYDRA_VERTEX_GPUS): ask for at most 1, or name more devices with --gpus or HYDRA_VERTEX_GPUS

10:18:16.584 - ERROR - Task \x1b[96m'launch-tuning'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
"""
# The same as a component's own task log holds it (the traceback not indented by kfp's logger)
TASK_LOG = "\n".join(line.removeprefix("    ") for line in REFUSED.splitlines())
MESSAGE = (
    "trial_job_spec.worker_pool_specs[0].machine_spec.accelerator_count is 2 but this machine "
    "has 1 GPU (0; from HYDRA_VERTEX_GPUS): ask for at most 1, or name more devices with "
    "--gpus or HYDRA_VERTEX_GPUS"
)


def test_an_api_error_answer_is_the_line_shown() -> None:
    assert deciding_line(TASK_LOG) == MESSAGE


def test_our_own_error_wins_and_a_plain_one_is_the_fallback(tmp_path: Path) -> None:
    log = tmp_path / "task.log"
    log.write_text(REFUSED + "hydra_vertex.errors.TuningError: curves-tuning: no trial succeeded\n")
    assert _failure(log, 1) == f"curves-tuning: no trial succeeded\nits log: {log}"
    log.write_text("Traceback (most recent call last):\n  File 'x'\nValueError: bad value\n")
    assert _failure(log, 1).splitlines()[0].startswith("ValueError: bad value")
    log.write_text(TASK_LOG)
    assert _failure(log, 1).splitlines()[0].startswith(MESSAGE)
