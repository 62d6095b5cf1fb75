"""Helpers shared by the emulator tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

IMAGE = "local/branin:latest"
FAILING_IMAGE = "local/failing:latest"
BRANIN = Path(__file__).parent / "apps" / "branin"
CLI = Path(sys.executable).with_name("hydra-vertex")


def shim_command(*app_args: str) -> list[str]:
    """Worker pool 0's command: the shim, then the app (trial args are appended by the emulator)."""
    shim = Path(sys.executable).with_name("hydra-vertex-shim")
    return [str(shim), "--search-space", "space.yaml", "--", sys.executable, "app.py", *app_args]


def worker_pool(command: list[str], image: str = IMAGE) -> list[dict[str, object]]:
    return [
        {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {"image_uri": image, "command": command, "args": []},
        }
    ]


def tuning_job(
    aiplatform: Any,
    mode: str,
    *,
    max_trials: int,
    parallel: int = 1,
    max_failed: int = 0,
    name: str = "fault",
) -> Any:
    """A Branin tuning job whose app runs in ``mode`` (see apps/branin/app.py)."""
    from google.cloud.aiplatform import hyperparameter_tuning as hpt

    custom = aiplatform.CustomJob(
        display_name=f"{name}-trial", worker_pool_specs=worker_pool(shim_command(f"mode={mode}"))
    )
    return aiplatform.HyperparameterTuningJob(
        display_name=name,
        custom_job=custom,
        metric_spec={"value": "minimize"},
        parameter_spec={
            "x": hpt.DoubleParameterSpec(-5, 10, "linear"),
            "y": hpt.DoubleParameterSpec(0, 15, "linear"),
        },
        max_trial_count=max_trials,
        parallel_trial_count=parallel,
        max_failed_trial_count=max_failed,
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not a live process
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def no_trial_processes(state_dir: Path) -> bool:
    """No grandchild recorded by the app is alive, and no process runs in a trial directory."""
    for pidfile in state_dir.rglob("grandchild.pid"):
        if pid_alive(int(pidfile.read_text())):
            return False
    return True


def marked_processes(job_id: str) -> dict[int, str]:
    """The live processes started for a job, found by the marker the emulator puts in the
    environment of each (``HYDRA_VERTEX_TRIAL_MARKER=<job id>/<trial id>/<nonce>``): pid -> the
    trial id. Read here from /proc independently of the emulator's own code."""
    needle = f"HYDRA_VERTEX_TRIAL_MARKER={job_id}/".encode()
    out: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for var in env:
            if var.startswith(needle) and pid_alive(int(proc.name)):
                out[int(proc.name)] = var[len(needle) :].decode().split("/")[0]
    return out


class Emulator:
    """One ``hydra-vertex emulator`` process on ``state``; ``fault``: its HYDRA_VERTEX_FAULT."""

    count = 0

    def __init__(self, state: Path, fault: str = "") -> None:
        (state / "endpoint.json").unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_VERTEX_FAULT"}
        if fault:
            env["HYDRA_VERTEX_FAULT"] = fault
        Emulator.count += 1
        self.log = state.parent / f"emulator-{Emulator.count}.log"
        state.mkdir(parents=True, exist_ok=True)
        argv = [str(CLI), "emulator", "--state-dir", str(state), "--no-grpc", "--quiet"]
        argv += ["--image", f"{IMAGE}={BRANIN}", "--seed", "3", "--gpus", "0,1"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        until(lambda: (state / "endpoint.json").exists(), "the emulator to start", self.proc)
        info = json.loads((state / "endpoint.json").read_text())
        from google.cloud import aiplatform_v1

        from hydra_vertex.vertex import bearer_credentials

        self.client = aiplatform_v1.JobServiceClient(
            transport="rest",
            client_options={"api_endpoint": info["endpoint"]},
            credentials=bearer_credentials(info["token"]),
        )

    def kill(self) -> None:
        """``kill -9``."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)

    def died(self) -> None:
        """Wait for the emulator to kill itself at its fault point."""
        try:
            code = self.proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the fault point was never reached; see {self.log}") from None
        assert code == -signal.SIGKILL, f"exit {code}; see {self.log}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)


def until(check: Callable[[], Any], what: str, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + 180
    while not (result := check()):
        assert proc is None or proc.poll() is None, f"the emulator exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result
