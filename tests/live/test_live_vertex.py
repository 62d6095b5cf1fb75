"""Opt-in: the digits example submitted to a real Google Cloud project (docs/vertex.md).

Set HYDRA_VERTEX_LIVE_PROJECT, HYDRA_VERTEX_LIVE_REGION and HYDRA_VERTEX_LIVE_BUCKET (gs://...),
optionally HYDRA_VERTEX_LIVE_COMPONENTS_IMAGE (else the components image is built from this checkout)
and HYDRA_VERTEX_LIVE_SERVICE_ACCOUNT, then run ``pytest -m live tests/live``. It costs money.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REQUIRED = ("HYDRA_VERTEX_LIVE_PROJECT", "HYDRA_VERTEX_LIVE_REGION", "HYDRA_VERTEX_LIVE_BUCKET")
DIGITS = Path(__file__).resolve().parents[2] / "examples" / "digits"
PIPELINE_JOB_RE = re.compile(r"projects/[^/\s]+/locations/[^/\s]+/pipelineJobs/[^/\s\"']+")

pytestmark = [
    pytest.mark.live,
    pytest.mark.timeout(3 * 3600),
    pytest.mark.skipif(
        not all(os.environ.get(v) for v in REQUIRED),
        reason="live Vertex AI test: set "
        + ", ".join(v for v in REQUIRED if not os.environ.get(v))
        + " (see docs/vertex.md)",
    ),
]


def test_digits_on_vertex(tmp_path: Path) -> None:
    from google.cloud import aiplatform

    project = os.environ["HYDRA_VERTEX_LIVE_PROJECT"]
    region = os.environ["HYDRA_VERTEX_LIVE_REGION"]
    bucket = os.environ["HYDRA_VERTEX_LIVE_BUCKET"].rstrip("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_VERTEX_EMULATOR")}
    env.pop("STORAGE_EMULATOR_HOST", None)  # every call goes to Google

    components = os.environ.get("HYDRA_VERTEX_LIVE_COMPONENTS_IMAGE")
    if not components:
        from hydra_vertex.cloud_build import build_components_image

        components = build_components_image(project, region, bucket)

    app = tmp_path / "digits"
    shutil.copytree(DIGITS, app, ignore=shutil.ignore_patterns("outputs", "multirun", "wandb"))
    (app / "requirements.txt").write_text("scikit-learn>=1.4\n")  # not in the components image
    job = yaml.safe_load((DIGITS / "job.yaml").read_text())
    job["tuning"].update(max_trials=2, parallel_trials=2)
    job["vertex"] = {
        "project": project,
        "region": region,
        "staging_bucket": f"{bucket}/live-{int(time.time())}",
        "machine_type": "n1-standard-4",
        "service_account": os.environ.get("HYDRA_VERTEX_LIVE_SERVICE_ACCOUNT") or None,
    }
    (app / "job.yaml").write_text(yaml.safe_dump(job))

    hydra_vertex = Path(sys.executable).with_name("hydra-vertex")
    submitted = subprocess.run(
        [str(hydra_vertex), "submit", str(app / "job.yaml"), "--components-image", components],
        env=env, capture_output=True, text=True, timeout=3600,
    )
    assert submitted.returncode == 0, submitted.stderr
    found = PIPELINE_JOB_RE.search(submitted.stdout + submitted.stderr)
    assert found, f"no pipeline job name in the output of submit:\n{submitted.stdout}"

    aiplatform.init(project=project, location=region)
    pipeline_job = aiplatform.PipelineJob.get(found.group(0))
    pipeline_job.wait()
    succeeded = aiplatform.gapic.PipelineState.PIPELINE_STATE_SUCCEEDED
    assert pipeline_job.state == succeeded, pipeline_job.gca_resource.error

    outputs = {
        key: value
        for task in pipeline_job.gca_resource.job_detail.task_details
        for key, value in task.execution.metadata.items()
        if key.endswith("best_overrides")
    }
    assert outputs, "no task of the pipeline output best_overrides"
    assert any(value for value in outputs.values()), outputs
