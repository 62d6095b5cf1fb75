"""The sweeper's own virtual environment (hydra-optuna-sweeper pins Optuna < 3, so it cannot share
the project's environment, which has Optuna 5). Created on first use under the cache directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PACKAGES = ("hydra-core", "hydra-optuna-sweeper", "hydra-joblib-launcher", "scikit-learn")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hydra-vertex-bench"


def sweeper_python() -> Path:
    """The sweeper venv's interpreter, creating the venv (python -m venv + pip) if needed."""
    venv = cache_dir() / "sweeper-venv"
    py = venv / "bin" / "python"
    marker = venv / ".complete"
    wanted = " ".join(PACKAGES) + "\n"
    if not marker.exists() or marker.read_text() != wanted:
        print(f"setting up the sweeper environment in {venv} ...", file=sys.stderr)
        venv.parent.mkdir(parents=True, exist_ok=True)
        if not py.exists():
            base = os.environ.get("HYDRA_VERTEX_BENCH_BASE_PYTHON") or getattr(
                sys, "_base_executable", sys.executable
            )
            subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PACKAGES], check=True)
        marker.write_text(wanted)
    return py


def versions(py: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        f"print(json.dumps({{p: m.version(p) for p in {[*list(PACKAGES), 'optuna']!r}}}))"
    )
    out = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    import json

    return dict(json.loads(out.stdout))
