"""gRPC: the Vertex handlers over gRPC with TLS, through Google's own clients.

The SDK's default transport after ``connect(..., api_transport="grpc")`` runs as a user would:
a ``hydra-vertex emulator`` process and a script process (gRPC reads its default trust store once
per process, so the script connects first). The GAPIC clients use the documented explicit-TLS
recipe in this process. Every Vertex route answers over gRPC through the same callable."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _helpers import IMAGE

from hydra_vertex.emulator import EmulatorHandle, connect, start
from hydra_vertex.emulator.grpc_server import rpc_method
from hydra_vertex.emulator.router import Router
from hydra_vertex.emulator.server import Emulator
from hydra_vertex.errors import EmulatorError
from hydra_vertex.vertex import bearer_credentials

PARENT = "projects/grpc-project/locations/us-central1"
_VARIABLE = re.compile(r"\{([\w.]+)=([^}]*)\}")


def _client(
    service: str, handle: EmulatorHandle, token: str | None = None, roots: bytes | None = None
) -> Any:
    """A GAPIC client over gRPC to the emulator, trusting its CA explicitly (docs/emulator.md)."""
    import grpc
    from google.cloud import aiplatform_v1

    module = re.sub(r"(?<!^)(?=[A-Z])", "_", service).lower()
    transports = importlib.import_module(f"google.cloud.aiplatform_v1.services.{module}.transports")
    assert handle.tls_ca is not None
    transport = getattr(transports, f"{service}GrpcTransport")(
        host=handle.grpc_endpoint,
        credentials=bearer_credentials(handle.token if token is None else token),
        ssl_channel_credentials=grpc.ssl_channel_credentials(roots or handle.tls_ca.read_bytes()),
    )
    return getattr(aiplatform_v1, f"{service}Client")(transport=transport)


def _wait(get: Any, done: tuple[str, ...], deadline_s: float = 120) -> Any:
    deadline = time.monotonic() + deadline_s
    while True:
        got = get()
        if got.state.name in done:
            return got
        assert time.monotonic() < deadline, got.state.name
        time.sleep(0.2)


def test_every_vertex_route_answers_over_grpc_through_its_callable(tmp_path: Path) -> None:
    """For each Vertex route, the gRPC method of its ``rpc`` transcodes (with the client
    library's own REST helpers) to a request that the router sends to that very route."""
    emulator = Emulator(tmp_path / "state")
    try:
        all_routes = emulator.router.routes
    finally:
        emulator.shutdown()
    routes = [r for r in all_routes if r.rpc.startswith("google.cloud.aiplatform.v1.")]
    router = Router(routes)
    assert len(routes) >= 20
    for route in routes:
        package_service, method_name = route.rpc.rsplit(".", 1)
        method = rpc_method(f"/{package_service}/{method_name}")
        assert method is not None, route.rpc
        fields: dict[str, Any] = {}
        for option in method.base._get_http_options():
            if option["method"].upper() == route.method:
                for field, pattern in _VARIABLE.findall(option["uri"]):
                    *outer, last = field.split(".")  # schedule.name: {"schedule": {"name": ...}}
                    node = fields
                    for part in outer:
                        node = node.setdefault(part, {})
                    node[last] = pattern.replace("*", "x1")
                break
        request = method.request_type(**fields)
        http = method.http_request(request)
        assert router.resolve(http.method, http.path).route is route, route.rpc


def test_custom_job_lifecycle_over_grpc(emulator: EmulatorHandle) -> None:
    from google.api_core import exceptions

    jobs = _client("JobService", emulator)
    spec = {
        "display_name": "over-grpc",
        "job_spec": {
            "worker_pool_specs": [
                {
                    "machine_spec": {"machine_type": "n1-standard-4"},
                    "replica_count": 1,
                    "container_spec": {
                        "image_uri": IMAGE,
                        "command": [sys.executable, "-c", "print('hello over gRPC')"],
                    },
                }
            ]
        },
    }
    created = jobs.create_custom_job(parent=PARENT, custom_job=spec)
    assert created.name.startswith(f"{PARENT}/customJobs/")
    done = _wait(
        lambda: jobs.get_custom_job(name=created.name), ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
    )
    assert done.state.name == "JOB_STATE_SUCCEEDED", done.error.message
    listed = list(
        jobs.list_custom_jobs(request={"parent": PARENT, "filter": 'display_name="over-grpc"'})
    )
    assert [j.name for j in listed] == [created.name]
    with pytest.raises(exceptions.FailedPrecondition, match="cannot be cancelled"):
        jobs.cancel_custom_job(name=created.name)
    operation = jobs.delete_custom_job(name=created.name)
    operation.result(timeout=30)
    with pytest.raises(exceptions.NotFound):
        jobs.get_custom_job(name=created.name)
    with pytest.raises(exceptions.InvalidArgument, match="display_name is required"):
        jobs.create_custom_job(parent=PARENT, custom_job={**spec, "display_name": ""})
    assert list(_client("PipelineService", emulator).list_pipeline_jobs(parent=PARENT)) == []
    assert list(_client("ScheduleService", emulator).list_schedules(parent=PARENT)) == []


def test_token_tls_and_unserved_methods(emulator: EmulatorHandle) -> None:
    import certifi
    from google.api_core import exceptions

    with pytest.raises(exceptions.Unauthenticated, match="bearer token"):
        list(_client("JobService", emulator, token="wrong").list_custom_jobs(parent=PARENT))
    with pytest.raises(exceptions.Unauthenticated):
        list(_client("JobService", emulator, token="").list_custom_jobs(parent=PARENT))
    public_only = Path(certifi.where()).read_bytes()  # trusts Google, not the emulator
    with pytest.raises(exceptions.ServiceUnavailable):
        list(
            _client("JobService", emulator, roots=public_only).list_custom_jobs(
                parent=PARENT, timeout=10
            )
        )
    with pytest.raises(exceptions.MethodNotImplemented, match=r"DatasetService\.ListDatasets"):
        list(_client("DatasetService", emulator).list_datasets(parent=PARENT))
    port = emulator.grpc_endpoint.rsplit(":", 1)[1]
    by_name = dataclasses.replace(emulator, grpc_endpoint=f"localhost:{port}")
    assert list(_client("JobService", by_name).list_custom_jobs(parent=PARENT)) == []  # SAN


def test_no_grpc_when_turned_off(tmp_path: Path) -> None:
    with start(tmp_path / "state", grpc_port=None) as handle:
        assert handle.grpc_endpoint == ""
        assert "grpc_endpoint" not in json.loads((tmp_path / "state" / "endpoint.json").read_text())
        with pytest.raises(EmulatorError, match="serves no gRPC"):
            connect(handle.state_dir, api_transport="grpc")


def test_a_busy_grpc_port_is_one_line_and_releases_everything(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(
            EmulatorError, match=f"cannot listen on 127.0.0.1:{port}: .*--grpc-port"
        ):
            start(tmp_path / "state", grpc_port=port)
    with start(tmp_path / "state") as handle:  # the state directory's lock was released
        assert handle.grpc_endpoint


USER_SCRIPT = r"""
import json, os, sys, time
from google.cloud import aiplatform
from google.cloud.aiplatform import hyperparameter_tuning as hpt, jobs
from hydra_vertex.emulator import connect

jobs._JOB_WAIT_TIME = 0.5
state, transport = sys.argv[1], sys.argv[2]
connect(state, project="grpc-project", location="us-central1", api_transport=transport,
        staging_bucket="gs://grpc-bucket/staging")
trial = (
    "import json, os, sys, time\n"
    "x = float([a for a in sys.argv if a.startswith('--x=')][0].split('=', 1)[1])\n"
    "path = os.environ['CLOUD_ML_HP_METRIC_FILE']\n"
    "os.makedirs(os.path.dirname(path), exist_ok=True)\n"
    "open(path, 'w').write(json.dumps({'loss': str((x - 1) ** 2), 'global_step': '1', 'timestamp': time.time()}) + '\\n')\n"
)
def pool(code):
    return [{"machine_spec": {"machine_type": "n1-standard-4"}, "replica_count": 1,
             "container_spec": {"image_uri": sys.argv[3], "command": [sys.executable, "-c", code]}}]

aiplatform.CustomJob(display_name=f"custom-{transport}", worker_pool_specs=pool("pass")).run()
job = aiplatform.HyperparameterTuningJob(
    display_name=f"tuning-{transport}",
    custom_job=aiplatform.CustomJob(display_name=f"trial-{transport}", worker_pool_specs=pool(trial)),
    metric_spec={"loss": "minimize"},
    parameter_spec={"x": hpt.DoubleParameterSpec(-2, 3, "linear")},
    max_trial_count=2, parallel_trial_count=2,
)
job.run()
got = aiplatform.HyperparameterTuningJob.get(job.resource_name)
print(json.dumps({
    "kind": job.api_client.select_version("v1")._transport.kind,
    "state": got.state.name,
    "trials": [t.state.name for t in got.trials],
    "custom_jobs": [j.display_name for j in aiplatform.CustomJob.list()],
    "tuning_jobs": sorted(j.display_name for j in aiplatform.HyperparameterTuningJob.list()),
}))
"""


@pytest.mark.slow
def test_the_sdk_default_transport_works_after_connect_grpc(tmp_path: Path) -> None:
    """A user's script: ``connect(state_dir, api_transport="grpc")``, then
    ``HyperparameterTuningJob(...).run()`` and ``CustomJob.list()`` over gRPC; the same script
    over REST against the same emulator."""
    state = tmp_path / "state"
    cli = Path(sys.executable).with_name("hydra-vertex")
    image_dir = tmp_path / "image"
    image_dir.mkdir()
    emulator = subprocess.Popen(
        [
            str(cli),
            "emulator",
            "--state-dir",
            str(state),
            "--image",
            f"{IMAGE}={image_dir}",
            "--quiet",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (state / "endpoint.json").exists():
            assert emulator.poll() is None and time.monotonic() < deadline, "no emulator"
            time.sleep(0.1)
        (tmp_path / "user.py").write_text(USER_SCRIPT)
        seen = {}
        for transport in ("grpc", "rest"):
            proc = subprocess.run(
                [sys.executable, str(tmp_path / "user.py"), str(state), transport, IMAGE],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            seen[transport] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)
    assert seen["grpc"]["kind"] == "grpc" and seen["rest"]["kind"] == "rest"
    for transport, out in seen.items():
        assert out["state"] == "JOB_STATE_SUCCEEDED", out
        assert out["trials"] == ["SUCCEEDED", "SUCCEEDED"], out
        assert f"custom-{transport}" in out["custom_jobs"]
    assert seen["rest"]["tuning_jobs"] == ["tuning-grpc", "tuning-rest"]
