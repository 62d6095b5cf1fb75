"""Start-up cost of ``hydra-vertex-shim``: a trivial Hydra app started directly vs through the shim.

    python bench/shim_startup.py [--runs N]

Prints the median wall time over N runs (default 30) of

- the app started directly with the already-converted overrides (``python app.py lr=0.01 ...``),
- the same app through the shim with Vertex-style trial arguments (``--lr=0.01 ...``); this also
  includes what the shim switches on in the app (the reporting callback writing the metric file),
- the shim alone (exec'ing ``true`` instead of the app), and a bare ``python -c pass`` for scale,

and the added milliseconds and ratio. The search-space cache is warmed first (as in a trial
container, where the first start parses the space once). Aim: under 50 ms added.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = """\
import hydra
from omegaconf import DictConfig


@hydra.main(config_path=None, config_name=None, version_base=None)
def main(cfg: DictConfig) -> float:
    return 0.5


if __name__ == "__main__":
    main()
"""

SPACE = """\
metric: val_loss
direction: minimize
params:
  +lr: tag(log, interval(1e-5, 1e-1))
  +batch_size: choice(32, 64, 128, 256)
  +name: choice('a, b=c [d]', plain)
"""


def _time(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _medians_ms(cmds: list[list[str]], cwd: Path, env: dict[str, str], runs: int) -> list[float]:
    """Median wall time of each command; the runs are interleaved so load drift hits all alike."""
    for cmd in cmds:
        _time(cmd, cwd, env)  # warm-up (page cache, search-space cache)
    samples: list[list[float]] = [[] for _ in cmds]
    for _ in range(runs):
        for cmd, times in zip(cmds, samples, strict=True):
            times.append(_time(cmd, cwd, env))
    return [statistics.median(times) * 1000 for times in samples]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    shim = shutil.which("hydra-vertex-shim", path=str(Path(sys.executable).parent))
    if shim is None:
        sys.exit("hydra-vertex-shim is not installed next to this interpreter")
    true = shutil.which("true") or "/bin/true"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "app.py").write_text(APP, encoding="utf-8")
        (work / "s.yaml").write_text(SPACE, encoding="utf-8")
        env = {
            **os.environ,
            "HYDRA_VERTEX_CACHE_DIR": str(work / "cache"),
            "CLOUD_ML_HP_METRIC_FILE": str(work / "metrics"),
            "HYDRA_FULL_ERROR": "1",
        }
        env.pop("CLOUD_ML_TRIAL_ID", None)
        # A trial container has bytecode caches; with PYTHONDONTWRITEBYTECODE set (as on some dev
        # machines) every start would compile hydra-vertex, Hydra and OmegaConf from source.
        if env.pop("PYTHONDONTWRITEBYTECODE", None):
            print("note: runs without PYTHONDONTWRITEBYTECODE (bytecode cached, as in trials)")
        py = sys.executable
        overrides = ["+lr=0.01", "+batch_size=256", "+name='a, b=c [d]'", "hydra.run.dir=out"]
        # hydra.run.dir=out is an app argument; the trial arguments come last, as Vertex sends them.
        trial = ["hydra.run.dir=out", "--lr=0.01", "--batch_size=256.0", "--name=a, b=c [d]"]
        head = [shim, "--search-space", "s.yaml", "--"]
        direct, via, alone, bare = _medians_ms(
            [
                [py, "app.py", *overrides],
                [*head, py, "app.py", *trial],
                [*head, true, *trial],
                [py, "-c", "pass"],
            ],
            work,
            env,
            args.runs,
        )
    print(f"runs per case:              {args.runs} (median wall time)")
    print(f"app started directly:       {direct:7.1f} ms")
    print(f"app through the shim:       {via:7.1f} ms")
    print(f"added by the shim:          {via - direct:7.1f} ms  (ratio {via / direct:.3f})")
    print(f"shim alone (exec 'true'):   {alone:7.1f} ms")
    print(f"bare interpreter (-c pass): {bare:7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
