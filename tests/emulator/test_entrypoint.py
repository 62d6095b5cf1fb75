"""Images with an entrypoint: a local image's Dockerfile (WORKDIR, ENV, ENTRYPOINT, CMD) with
Vertex's rules (``command`` replaces ENTRYPOINT, ``args`` replace CMD, trial arguments last),
through the real SDK; a worker pool with neither a command nor an ENTRYPOINT is refused at create.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex import images
from hydra_vertex.emulator import EmulatorHandle, connect, start

ENTRY_IMAGE = "us-docker.pkg.dev/p/r/entry:latest"
BARE_IMAGE = "us-docker.pkg.dev/p/r/bare:latest"
BROKEN_IMAGE = "local/broken"
SHOW = """
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                  "greeting": os.environ.get("GREETING"), "lib": os.environ.get("LIB_DIR")}))
"""
DOCKERFILE = """\
FROM python:3.12-slim
WORKDIR /app
COPY . /app
ENV GREETING="hello from the image" \\
    LIB_DIR=/app/lib
WORKDIR /app/lib
ENTRYPOINT ["python", "/app/show.py", "--from-entrypoint"]
CMD ["--from-cmd"]
"""


def _image(directory: Path, dockerfile: str | None) -> Path:
    directory.mkdir(parents=True)
    (directory / "show.py").write_text(SHOW)
    (directory / "lib").mkdir()
    if dockerfile is not None:
        (directory / "Dockerfile").write_text(dockerfile)
    return directory


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Directories mapped with ``--image NAME=DIR``: with a Dockerfile, without, a broken one."""
    root = tmp_path_factory.mktemp("images")
    return {
        ENTRY_IMAGE: _image(root / "entry", DOCKERFILE),
        BARE_IMAGE: _image(root / "bare", None),
        BROKEN_IMAGE: _image(root / "broken", "FROM python:3.12\nSHELL bash\nENTRYPOINT x\n"),
    }


@pytest.fixture(scope="module")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, image_dirs: dict[str, Path]
) -> Iterator[EmulatorHandle]:
    mapped = {name: str(path) for name, path in image_dirs.items()}
    with start(tmp_path_factory.mktemp("state"), images=mapped, seed=0) as handle:
        yield handle


@pytest.fixture
def sdk(emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import jobs

    monkeypatch.setattr(jobs, "_JOB_WAIT_TIME", 0.5)  # the SDK's poll interval
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    connect(
        emulator.state_dir, project="entry-project", location="us-central1",
        staging_bucket="gs://entry-bucket/staging",
    )
    return aiplatform


def _pool(image: str, **container: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {"image_uri": image, **container},
        }
    ]


def _output(emulator: EmulatorHandle, job: Any) -> dict[str, Any]:
    job_id = job.resource_name.rsplit("/", 1)[-1]
    out = (emulator.state_dir / "runs" / job_id / "stdout.log").read_text()
    return dict(json.loads(out.strip().splitlines()[-1]))


def _wait_all(sdk: Any, jobs: list[Any]) -> None:
    deadline = time.monotonic() + 180
    for job in jobs:
        while True:
            state = sdk.CustomJob.get(job.resource_name).state.name
            if state in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert state == "JOB_STATE_SUCCEEDED", sdk.CustomJob.get(job.resource_name).error


def test_entrypoint_cmd_workdir_env_with_vertex_rules(
    sdk: Any, emulator: EmulatorHandle, image_dirs: dict[str, Path]
) -> None:
    image_dir = image_dirs[ENTRY_IMAGE]
    cases = {
        "image-only": ({}, ["--from-entrypoint", "--from-cmd"]),
        "args-replace-cmd": ({"args": ["--lr=0.1"]}, ["--from-entrypoint", "--lr=0.1"]),
        "command-replaces-both": (
            {"command": ["python", str(image_dir / "show.py")], "args": ["--x"]},
            ["--x"],
        ),
    }
    jobs = {}
    for name, (container, _) in cases.items():
        job = sdk.CustomJob(display_name=name, worker_pool_specs=_pool(ENTRY_IMAGE, **container))
        job.submit()
        jobs[name] = job
    _wait_all(sdk, list(jobs.values()))
    for name, (_, argv) in cases.items():
        got = _output(emulator, jobs[name])
        assert got["argv"] == argv, name
        assert got["cwd"] == str(image_dir / "lib"), name  # WORKDIR /app/lib in the snapshot
        assert got["greeting"] == "hello from the image", name
        assert got["lib"] == str(image_dir / "lib"), name  # /app/lib is the snapshot's lib/


def test_no_command_and_no_entrypoint_is_refused_at_create(sdk: Any) -> None:
    from google.api_core import exceptions
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    job = sdk.CustomJob(display_name="bare", worker_pool_specs=_pool(BARE_IMAGE, args=["--a"]))
    with pytest.raises(exceptions.BadRequest) as e:
        job.submit()
    assert "job_spec.worker_pool_specs[0].container_spec.command" in str(e.value)
    assert "has no ENTRYPOINT" in str(e.value)
    tuning = sdk.HyperparameterTuningJob(
        display_name="bare-tuning",
        custom_job=sdk.CustomJob(display_name="bare-trial", worker_pool_specs=_pool(BARE_IMAGE)),
        metric_spec={"loss": "minimize"},
        parameter_spec={"x": hpt.DoubleParameterSpec(0, 1, "linear")},
        max_trial_count=1,
        parallel_trial_count=1,
    )
    with pytest.raises(exceptions.BadRequest) as e:
        tuning.run()
    assert "trial_job_spec.worker_pool_specs[0].container_spec.command" in str(e.value)
    assert not sdk.CustomJob.list(filter='display_name="bare"')


def test_a_built_image_records_its_dockerfile(
    sdk: Any, emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``images.build_local`` reads the Dockerfile at build time (into image.json), even when
    .dockerignore keeps it out of the snapshot, and the image runs by its ENTRYPOINT."""
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    source = _image(tmp_path / "src", DOCKERFILE)
    (source / ".dockerignore").write_text("Dockerfile\n")
    built = images.build_local(source, "entry")
    info = json.loads((built.workdir.parent / "image.json").read_text())
    assert info["container"]["entrypoint"] == ["python", "/app/show.py", "--from-entrypoint"]
    assert not (built.workdir / "Dockerfile").exists()
    (source / "Dockerfile").write_text(DOCKERFILE.replace("--from-cmd", "--changed"))
    assert images.build_local(source, "entry").digest != built.digest  # the Dockerfile counts
    job = sdk.CustomJob(display_name="built", worker_pool_specs=_pool(built.ref))
    job.submit()
    _wait_all(sdk, [job])
    got = _output(emulator, job)
    assert got["argv"] == ["--from-entrypoint", "--from-cmd"]
    assert got["cwd"] == str(built.workdir / "lib")


def test_a_dockerfile_that_does_not_parse_is_a_400_naming_its_line(sdk: Any) -> None:
    from google.api_core import exceptions

    job = sdk.CustomJob(display_name="broken", worker_pool_specs=_pool(BROKEN_IMAGE))
    with pytest.raises(exceptions.BadRequest) as e:
        job.submit()
    assert "Dockerfile, line 2 (SHELL)" in str(e.value)
