"""The Python API: what the ``hydra-vertex`` command does, callable from code.

.. code-block:: python

    import hydra_vertex

    summary = hydra_vertex.run("examples/digits/job.yaml")           # on this machine
    job = hydra_vertex.submit("job.yaml")                            # a Vertex AI Pipelines run
    sched = hydra_vertex.schedule("job.yaml", cron="0 3 * * 1")      # weekly re-tuning
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_vertex import jobfile
from hydra_vertex.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.aiplatform import PipelineJob, PipelineJobSchedule

    from hydra_vertex.summary import Summary

__all__ = ["compile", "pipeline_job", "run", "schedule", "submit"]


def run(
    job_file: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    state_dir: str | os.PathLike[str] | None = None,
    progress: str = "quiet",
) -> Summary:
    """Run build -> tune -> best trial -> retrain on this machine (the local emulator).

    Returns the :class:`~hydra_vertex.summary.Summary` (``status`` ``failed`` with ``error`` when
    a step failed; what finished is in it). ``output`` also writes it as JSON. Ctrl-C (or
    SIGTERM) cancels the run's pipeline job, waits for it, then raises ``KeyboardInterrupt``
    (``SystemExit(143)``).
    """
    from hydra_vertex.local_run import run_local

    return run_local(job_file, output=output, state_dir=state_dir, progress=progress)


def compile(
    output: str | os.PathLike[str] = "tune_and_retrain.json",
    components_image: str | None = None,
) -> Path:
    """Write the generic compiled pipeline (the checked-in template is this output)."""
    from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE
    from hydra_vertex.pipelines.tune_and_retrain import compile_template

    return compile_template(output, components_image or DEFAULT_COMPONENTS_IMAGE)


def check_cron(cron: str) -> str:
    """``cron``, checked: five fields, optionally after ``TZ=Zone/Name`` (as Vertex accepts)."""
    from hydra_vertex.cron import CronError, parse

    try:
        parse(cron)
    except CronError as e:
        raise UsageError(f"--cron {cron!r}: {e}") from None
    return cron.strip()


def pipeline_job(
    job_file: str | os.PathLike[str],
    *,
    source_uri: str,
    components_image: str | None = None,
    template_path: str | None = None,
) -> PipelineJob:
    """The ``aiplatform.PipelineJob`` for a job file (built, not submitted).

    ``source_uri`` is the app's source as the build step takes it (a ``gs://`` tarball on Google
    Cloud). Call after ``aiplatform.init`` (``submit`` does it).
    """
    from hydra_vertex.local_run import load_space

    spec, space, _ = load_space(jobfile.load(job_file))
    return _pipeline_job(
        spec,
        space.to_mapping(),
        source_uri=source_uri,
        components_image=components_image,
        template_path=template_path,
    )


def _pipeline_job(
    spec: jobfile.JobSpec,
    space_data: Any,
    *,
    source_uri: str,
    components_image: str | None,
    template_path: str | None,
) -> PipelineJob:
    from google.cloud import aiplatform

    from hydra_vertex.pipelines.job_request import TEMPLATE, request

    run = request(spec, space_data, source_uri)
    if template_path is None:
        template_path = str(TEMPLATE)
        if components_image:
            template_path = str(
                compile(
                    Path(tempfile.mkdtemp(prefix="hydra-vertex-")) / "pipeline.json",
                    components_image,
                )
            )
    else:
        from hydra_vertex.registry import resolve_template_path

        template_path = resolve_template_path(template_path)
    return aiplatform.PipelineJob(
        display_name=run.display_name,
        template_path=template_path,
        pipeline_root=run.pipeline_root,
        parameter_values=run.parameter_values,
        project=spec.vertex.project,
        location=spec.vertex.region,
        enable_caching=False,
        labels=run.labels,
        encryption_spec_key_name=run.encryption_key,
    )


def ensure_bucket(staging_bucket: str, project: str, region: str) -> None:
    """Create the staging bucket (in ``region``) unless it exists, as ``PipelineJob.submit``
    does for its root (without the SDK's IAM step, which needs Resource Manager)."""
    from hydra_vertex.cloud_build import storage_client

    name = staging_bucket.removeprefix("gs://").split("/", 1)[0]
    client = storage_client(project)
    if client.lookup_bucket(name) is None:
        client.create_bucket(name, location=region)


def _prepare(
    job_file: str | os.PathLike[str], components_image: str | None, template: str | None
) -> tuple[jobfile.JobSpec, PipelineJob]:
    """The job file and its search space, checked; then the source, uploaded; then the
    ``PipelineJob`` that runs it."""
    from hydra_vertex.cloud_build import upload_source
    from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE
    from hydra_vertex.local_run import load_space
    from hydra_vertex.vertex import init_aiplatform

    # every value is checked before anything is uploaded; the sweeper's budget applies
    spec, space, notes = load_space(jobfile.load(job_file))
    for note in notes:
        print(f"hydra-vertex: {note}", file=sys.stderr)
    space_data = space.to_mapping()
    init_aiplatform(
        spec.vertex.project, spec.vertex.region, staging_bucket=spec.vertex.staging_bucket
    )
    ensure_bucket(spec.vertex.staging_bucket, spec.vertex.project, spec.vertex.region)
    source_uri = upload_source(
        spec.source,
        spec.vertex.staging_bucket,
        spec.name,
        spec.vertex.project,
        base_image=components_image or DEFAULT_COMPONENTS_IMAGE,
    )
    job = _pipeline_job(
        spec,
        space_data,
        source_uri=source_uri,
        components_image=components_image,
        template_path=template,
    )
    return spec, job


def submit(
    job_file: str | os.PathLike[str],
    *,
    components_image: str | None = None,
    template: str | None = None,
    wait: bool = False,
) -> PipelineJob:
    """Upload the app's source and start a Vertex AI Pipelines run of the template."""
    spec, job = _prepare(job_file, components_image, template)
    job.submit(service_account=spec.vertex.service_account)
    if wait:
        job.wait()
    return job


def schedule(
    job_file: str | os.PathLike[str],
    cron: str,
    *,
    components_image: str | None = None,
    template: str | None = None,
    max_run_count: int | None = None,
    max_concurrent_run_count: int = 1,
) -> PipelineJobSchedule:
    """A Vertex AI Pipelines schedule that runs the template on ``cron``."""
    cron = check_cron(cron)
    if max_run_count is not None and max_run_count < 1:
        raise UsageError(f"--max-runs must be >= 1, got {max_run_count}")
    spec, job = _prepare(job_file, components_image, template)
    return job.create_schedule(
        cron=cron,
        display_name=f"{spec.name}-schedule",
        max_run_count=max_run_count,
        max_concurrent_run_count=max_concurrent_run_count,
        service_account=spec.vertex.service_account,
    )
