"""kfp v2 test pipelines from kubeflow/pipelines (``sdk/python/test_data/pipelines/``), with a
condition, loops (over a pipeline input, a task output and a constant), an exit handler, and
artifacts passed between lightweight Python components: compiled with kfp, submitted with
``aiplatform.PipelineJob`` and run to their end on the emulator. The exit-handler pipeline fails
by design (its ``fail_op`` exits 1; the exit task still runs), as it does on Vertex."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from parity_support import load

from hydra_vertex.emulator import EmulatorHandle

# vendored module -> (pipeline function, parameter values, the state it ends in)
PIPELINES: dict[str, tuple[str, dict[str, Any], str]] = {
    "pipeline_with_condition": ("my_pipeline", {}, "PIPELINE_STATE_SUCCEEDED"),
    "pipeline_with_loops": (
        "my_pipeline",
        {"loop_parameter": ["a", "b"]},
        "PIPELINE_STATE_SUCCEEDED",
    ),
    "pipeline_with_exit_handler": ("my_pipeline", {}, "PIPELINE_STATE_FAILED"),
    "lightweight_python_functions_pipeline": (
        "pipeline",
        {"message": "parity"},
        "PIPELINE_STATE_SUCCEEDED",
    ),
}
TERMINAL = ("PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED")


def test_kfp_test_pipelines_run_through_pipeline_job(
    sdk: Any, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    from kfp import compiler

    jobs = {}
    for module, (function, values, _) in PIPELINES.items():
        template = tmp_path / f"{module}.json"
        pipeline = getattr(load(f"kfp_pipelines/{module}.py"), function)
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(template))
        job = sdk.PipelineJob(
            display_name=module.replace("_", "-"),
            template_path=str(template),
            pipeline_root="gs://parity-bucket/pipeline-root",
            parameter_values=values,
            enable_caching=False,
        )
        job.submit()  # all at once: they run side by side
        jobs[module] = job
    deadline = time.monotonic() + 240
    for module, job in jobs.items():
        while (state := sdk.PipelineJob.get(job.resource_name).state.name) not in TERMINAL:
            assert time.monotonic() < deadline, f"{module} is still {state}"
            time.sleep(0.5)
        got = sdk.PipelineJob.get(job.resource_name)
        assert state == PIPELINES[module][2], (module, got.gca_resource.error.message)
    failed = sdk.PipelineJob.get(jobs["pipeline_with_exit_handler"].resource_name)
    assert "fail-op" in failed.gca_resource.error.message
    # the artifacts pipeline wrote its Model where Vertex would: under the pipeline root
    root = emulator.storage_root / "parity-bucket" / "pipeline-root"
    models = [p for p in root.rglob("model") if p.is_file()]
    assert models and "dataset_one_contents: parity" in models[0].read_text()
