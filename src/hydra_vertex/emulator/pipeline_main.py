"""``python -m hydra_vertex.emulator.pipeline_main SPEC PARAMS ROOT RESULT``: one pipeline job.

The emulator starts this in its own process group for each pipeline job: the compiled spec is
loaded with ``kfp.components.load_component_from_file`` and run by ``kfp.local`` (components in
subprocesses of this Python), with the emulator's endpoint in the environment so that the
components' own Vertex calls come back to it. The outcome goes to RESULT as JSON.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from hydra_vertex.files import atomic_write_text


def main(argv: list[str]) -> int:
    spec, params, root, result = argv
    from kfp import local
    from kfp.components import load_component_from_file

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
    pipeline = load_component_from_file(spec)
    values = json.loads(Path(params).read_text())
    out: dict[str, object]
    try:
        task = pipeline(**values)
        outputs = dict(task.outputs) if task is not None else {}
        out = {"status": "succeeded", "outputs": outputs}
    except Exception as e:  # kfp.local raises RuntimeError naming the failed task
        traceback.print_exc()
        out = {"status": "failed", "error": str(e)}
    atomic_write_text(result, json.dumps(out, default=str))
    return 0 if out["status"] == "succeeded" else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
