"""``python -m hydra_vertex.emulator.pipeline_main SPEC PARAMS ROOT RESULT EVENTS [JOB_ID]``: one
pipeline job.

The emulator starts this in its own process group for each pipeline job, forked from its warm
server (:func:`forked`, :mod:`~hydra_vertex.emulator.forkserver`) or as a fresh interpreter where
that is not available. The compiled spec is loaded with
``kfp.components.load_component_from_file`` and run by ``kfp.local`` (lightweight Python
components forked from this process, container components with kfp.local's DockerRunner), with
the emulator's endpoint in the environment so that the components' own Vertex calls come back to
it. Every task's start and end goes to EVENTS (:mod:`~hydra_vertex.emulator.pipeline_events`),
each component's output to a log of its own in ``tasks/`` beside it; the outcome goes to RESULT
as JSON. Started again on an
EVENTS file that already has events (the emulator restarted), it resumes: the tasks that
succeeded are not run again. JOB_ID is what kfp.local's ``PIPELINE_JOB_ID`` placeholder resolves
to.
"""

from __future__ import annotations

import io
import json
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path

from hydra_vertex import reasons
from hydra_vertex.files import atomic_write_text

_EMULATOR_ENV = ("HYDRA_VERTEX_EMULATOR", "HYDRA_VERTEX_EMULATOR_TOKEN", "STORAGE_EMULATOR_HOST")


def main(argv: list[str]) -> int:
    spec, params, root, result, events = argv[:5]
    job_id = argv[5] if len(argv) > 5 else ""
    from kfp import local
    from kfp.components import load_component_from_file

    from hydra_vertex.emulator.pipeline_events import Recorder, read, succeeded

    docker_env = {k: os.environ[k] for k in _EMULATOR_ENV if k in os.environ}
    events_path = Path(events).resolve()
    done = succeeded(read(events_path))
    if done:
        print(f"resuming: {len(done)} task(s) done before the restart are not run again")
    Recorder(
        events_path, events_path.parent / "tasks", docker_env, done=done, job_id=job_id
    ).install()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    out: dict[str, object]
    try:
        pipeline = load_component_from_file(spec)
        values = json.loads(Path(params).read_text())
        task = pipeline(**values)
        outputs = dict(task.outputs) if task is not None else {}
        out = {"status": "succeeded", "outputs": outputs}
    except Exception as e:  # kfp.local raises RuntimeError naming the failed task
        traceback.print_exc()
        out = {"status": "failed", "error": reasons.first_line(str(e)) or type(e).__name__}
    atomic_write_text(result, json.dumps(out, default=str))
    return 0 if out["status"] == "succeeded" else 1


def forked(argv: list[str], env: Mapping[str, str], cwd: str, log: str) -> None:
    """:func:`main` in a process forked from the warm server: first made what a fresh
    ``python -m hydra_vertex.emulator.pipeline_main`` would be (a session of its own, ``cwd``,
    exactly ``env``, stdout and stderr appended to ``log``, no stdin)."""
    os.setsid()
    os.chdir(cwd)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
    os.environ.clear()
    os.environ.update(env)
    sys.exit(main(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
