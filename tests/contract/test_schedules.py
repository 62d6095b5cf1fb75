"""Pipeline job schedules: create, pause, resume, update, delete, through PipelineJobSchedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _backend import Backend

NEVER_SOON = "0 0 1 1 *"  # once a year: nothing fires while the test runs


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-step pipeline, compiled by kfp (a template Vertex and the emulator both accept)."""
    from echo_pipeline import echo_pipeline
    from kfp import compiler

    path = tmp_path_factory.mktemp("pipeline") / "echo.json"
    compiler.Compiler().compile(echo_pipeline, str(path))
    return path


def test_pause_resume_update(aiplatform: Any, backend: Backend, template: Path) -> None:
    job = aiplatform.PipelineJob(
        display_name="contract-echo",
        template_path=str(template),
        pipeline_root=f"{backend.bucket}/pipeline-root",
    )
    schedule = job.create_schedule(
        cron=NEVER_SOON, display_name="contract-schedule", max_run_count=1
    )
    try:
        assert schedule.state.name == "ACTIVE"
        assert schedule.gca_resource.next_run_time  # from creation, before any run fires
        schedule.pause()
        assert aiplatform.PipelineJobSchedule.get(schedule.resource_name).state.name == "PAUSED"
        schedule.resume()
        got = aiplatform.PipelineJobSchedule.get(schedule.resource_name)
        assert got.state.name == "ACTIVE"
        assert got.gca_resource.last_pause_time and got.gca_resource.last_resume_time
        got.update(display_name="contract-renamed", cron="0 0 2 1 *", max_run_count=2)
        got = aiplatform.PipelineJobSchedule.get(schedule.resource_name)
        assert got.display_name == "contract-renamed"
        assert got.cron == "0 0 2 1 *" and got.max_run_count == 2
        assert got.state.name == "ACTIVE" and got.gca_resource.started_run_count == 0
    finally:
        schedule.delete()
