"""Helpers shared by the emulator tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

IMAGE = "local/branin:latest"
FAILING_IMAGE = "local/failing:latest"


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
