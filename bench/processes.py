"""B. Real processes: per-trial overhead (B1) and scheduling efficiency against the real
hydra-optuna-sweeper + joblib launcher (B2).

The app is a real Hydra app (``APP``); it sleeps a fixed, seeded list of log-normal durations
(trial k sleeps ``durations[k]``: k is ``CLOUD_ML_TRIAL_ID - 1`` under the emulator, Hydra's job
number under the sweeper) and returns Branin at its ``x``, ``y``. It appends its own busy span
(task function entry to return) to ``$BENCH_BUSY_FILE``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IMAGE = "local/bench-app:latest"
PARENT = "projects/bench/locations/us-central1"

APP = """\
import json
import math
import os
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig


@hydra.main(config_path=".", config_name="config", version_base=None)
def main(cfg: DictConfig) -> float:
    start = time.time()
    durations = os.environ.get("BENCH_DURATIONS")
    k = -1
    if durations:
        tid = os.environ.get("CLOUD_ML_TRIAL_ID")
        if tid:
            k = int(tid) - 1
        else:
            from hydra.core.hydra_config import HydraConfig

            k = HydraConfig.get().job.num
        time.sleep(json.loads(Path(durations).read_text())[k])
    x, y = float(cfg.x), float(cfg.y)
    value = (y - 5.1 / (4 * math.pi**2) * x**2 + 5 / math.pi * x - 6) ** 2
    value += 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10
    busy = os.environ.get("BENCH_BUSY_FILE")
    if busy:
        with open(busy, "a") as fh:
            fh.write(json.dumps({"k": k, "start": start, "end": time.time()}) + "\\n")
    return value


if __name__ == "__main__":
    main()
"""
CONFIG = "x: 0.0\ny: 0.0\n"
SPACE = """\
metric: value
direction: minimize
algorithm: {algorithm}
params:
  x: interval(-5, 10)
  y: interval(0, 15)
"""


def write_app(directory: Path, algorithm: str = "bayesian") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "app.py").write_text(APP)
    (directory / "config.yaml").write_text(CONFIG)
    (directory / "space.yaml").write_text(SPACE.format(algorithm=algorithm))
    return directory


def _shim(python: str = sys.executable) -> str:
    shim = shutil.which("hydra-vertex-shim", path=str(Path(python).parent))
    if shim is None:
        raise RuntimeError(f"hydra-vertex-shim is not installed next to {python}")
    return shim


ROOT = Path(__file__).resolve().parent.parent
# What a wheel of hydra-vertex is built from (the rest of the checkout is not packaged).
PACKAGED = ("pyproject.toml", "README.md", "src", "components", "pipelines")


def shown(python: str) -> str:
    """An interpreter's path as results.json shows it: in this checkout or under the temporary
    directory, never a path of the machine that ran it."""
    path = Path(python)
    for base, label in ((Path.cwd(), "."), (Path(tempfile.gettempdir()), "<tmp>")):
        try:
            return f"{label}/{path.relative_to(base)}"
        except ValueError:
            continue
    return path.name


def regular_install(work: Path) -> str:
    """A regular (non-editable) install of this checkout, as a trial image has one: a wheel built
    from a copy of the packaged sources, installed into a fresh virtual environment with its
    bytecode compiled. Its dependencies (Hydra, OmegaConf, cloudml-hypertune) are this
    environment's, reached through a ``.pth`` line: a path added that way is not a site
    directory, so the editable install's hooks in it stay off. Returns the venv's interpreter."""
    src = work / "src"
    src.mkdir(parents=True)
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    wheels = work / "wheel"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = _purelib(python)
    Path(site, "_bench_dependencies.pth").write_text(_purelib(sys.executable) + "\n")
    [wheel] = wheels.glob("hydra_vertex-*.whl")
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", "--no-index", "--compile", str(wheel)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    where = subprocess.run(
        [python, "-c", "import hydra, hydra_vertex; print(hydra_vertex.__file__)"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    if not where.startswith(site):
        raise RuntimeError(f"the regular install imports hydra_vertex from {where}, not {site}")
    return python


def _purelib(python: str) -> str:
    return subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip


def _client(handle: Any) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest",
        client_options={"api_endpoint": handle.endpoint},
        credentials=bearer_credentials(handle.token),
    )


def submit_and_wait(
    app: Path,
    state: Path,
    command: list[str],
    env: dict[str, str],
    n_trials: int,
    parallel: int,
    seed: int,
) -> tuple[float, float, Any]:
    """Start an in-process emulator serving ``app`` as the image, create a tuning job whose trials
    run ``command`` with the search space ``app/space.yaml``, and poll it (every 0.25 s: a
    faster poll perturbs what it measures, the emulator renders the whole job per get) to its
    end. Returns (t0, client-side wall from the create call, the finished job)."""  # fmt: skip
    from google.cloud.aiplatform_v1 import types

    from hydra_vertex.emulator import start
    from hydra_vertex.search_space import load

    handle = start(state, images={IMAGE: str(app)}, seed=seed)
    try:
        client = _client(handle)
        pool = {
            "machine_spec": {"machine_type": "n1-standard-4"},
            "replica_count": 1,
            "container_spec": {
                "image_uri": IMAGE,
                "command": command,
                "env": [{"name": k, "value": v} for k, v in env.items()],
            },
        }
        job = types.HyperparameterTuningJob(
            display_name="bench",
            max_trial_count=n_trials,
            parallel_trial_count=parallel,
            study_spec=load(app / "space.yaml").to_study_spec(),
            trial_job_spec={"worker_pool_specs": [pool]},
        )
        t0 = time.time()
        name = client.create_hyperparameter_tuning_job(
            parent=PARENT, hyperparameter_tuning_job=job
        ).name
        while True:
            got = client.get_hyperparameter_tuning_job(name=name)
            if got.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                break
            time.sleep(0.25)
        wall = time.time() - t0
    finally:
        handle.stop()
    if got.state.name != "JOB_STATE_SUCCEEDED":
        raise RuntimeError(f"bench tuning job ended {got.state.name}: {got.error.message}")
    return t0, wall, got


def run_tuning_job(
    app: Path,
    state: Path,
    n_trials: int,
    parallel: int,
    env: dict[str, str],
    seed: int = 0,
    python: str = sys.executable,
) -> dict[str, Any]:
    """One tuning job of ``app.py`` through the emulator and the real shim (``python``'s, and the
    app run by ``python``); times from the resource (server side) and from the client."""
    command = [_shim(python), "--search-space", "space.yaml", "--", python, "app.py"]
    _, wall, got = submit_and_wait(app, state, command, env, n_trials, parallel, seed)
    return {
        "wall": wall,
        "server_wall": got.end_time.timestamp() - got.create_time.timestamp(),
        "spans": [(t.start_time.timestamp(), t.end_time.timestamp()) for t in got.trials],
        "values": [t.final_measurement.metrics[0].value for t in got.trials],
    }


def _time_direct(
    app: Path, runs: int, env: dict[str, str], out: Path, python: str = sys.executable
) -> list[float]:
    times = []
    rng = random.Random(0)
    for i in range(runs):
        x, y = rng.uniform(-5, 10), rng.uniform(0, 15)
        cmd = [python, "app.py", f"x={x!r}", f"y={y!r}", f"hydra.run.dir={out}/d{i}"]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=app, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def overhead(
    n_trials: int, work: Path, per_block: int = 5, regular: str | None = None
) -> dict[str, Any]:
    """B1: a no-op Hydra app through emulator + shim vs the same app started directly, with
    hydra-vertex installed as a trial image has it (a wheel, bytecode compiled:
    :func:`regular_install`): ``added`` is that figure. ``editable`` is the same measured with
    this checkout's editable install (what a developer runs), which imports through setuptools'
    editable finder; PYTHONDONTWRITEBYTECODE is off for both (``run.py`` drops it).
    ``regular``: the regular install's interpreter (default: one made under ``work``).

    RANDOM_SEARCH, one trial at a time, so the figure is the machinery (scheduling, process
    start, shim, reporting callback, state writes), not the suggestion engine; the Bayesian ask
    is timed apart (``gp_ask_ms``). A trial's cost under the emulator is its cycle, from its start
    to the next trial's start (span + scheduling gap + ask + state writes). The machine is noisy,
    so the runs alternate in small blocks (``per_block`` direct runs, then a tuning job of
    ``per_block`` trials, for each install in turn) and each block's median cycle is paired with
    the median of the direct runs just before it; the figure is the median of those paired
    differences."""
    installs = {
        "regular": (regular or regular_install(work / "install"), "regular (wheel, bytecode)"),
        "editable": (sys.executable, "editable (pip install -e)"),
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("CLOUD_ML_TRIAL_ID", None)
    app = write_app(work / "noop", algorithm="random")
    samples: dict[str, dict[str, list[float]]] = {
        name: {"direct": [], "cycles": [], "spans": [], "added": []} for name in installs
    }
    for python, _ in installs.values():
        _time_direct(app, 2, env, work / "direct", python)  # warm caches
    blocks = max(1, round(n_trials / (per_block - 1)))
    for b in range(blocks):
        for name, (python, _) in installs.items():
            got = samples[name]
            block_direct = _time_direct(app, per_block, env, work / "direct", python)
            job = run_tuning_job(app, work / f"state-{name}-{b}", per_block, 1, {}, python=python)
            starts = sorted(s for s, _ in job["spans"])
            block_cycles = [b2 - a for a, b2 in itertools.pairwise(starts)]
            got["added"].append(statistics.median(block_cycles) - statistics.median(block_direct))
            got["direct"] += block_direct
            got["cycles"] += block_cycles
            got["spans"] += [e - s for s, e in job["spans"]]
    figures = {
        name: {
            "install": label,
            "python": shown(python),
            "trials": len(samples[name]["cycles"]),
            "blocks": blocks,
            "direct_ms": 1000 * statistics.median(samples[name]["direct"]),
            "emulator_ms_per_trial": 1000 * statistics.median(samples[name]["cycles"]),
            "added": 1000 * statistics.median(samples[name]["added"]),
            "added_by_block_ms": [round(1000 * a, 1) for a in samples[name]["added"]],
            "trial_span_ms": 1000 * statistics.median(samples[name]["spans"]),
        }
        for name, (python, label) in installs.items()
    }
    return {**figures["regular"], "editable": figures["editable"], "gp_ask_ms": gp_ask_ms()}


def gp_ask_ms(n_past: int = 30) -> float:
    """Median time of one Bayesian ask with ``n_past`` finished trials (the emulator's engine)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import problems
    from hydra_vertex.emulator.suggester import PastTrial, suggest
    from search_quality import study_spec

    spec = study_spec("branin")
    past: list[PastTrial] = []
    times = []
    for i in range(n_past + 5):
        t0 = time.perf_counter()
        p = suggest(spec, past, seed=0)
        if i >= n_past:
            times.append(time.perf_counter() - t0)
        assert p is not None
        past.append(PastTrial(p, problems.branin(p)))
    return 1000 * statistics.median(times)


def durations(n: int, seed: int, median: float, sigma: float) -> list[float]:
    rng = random.Random(seed)
    return [median * rng.lognormvariate(0.0, sigma) for _ in range(n)]


def _busy(path: Path) -> list[tuple[float, float]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(d["start"]), float(d["end"])) for d in map(json.loads, lines)]


def scheduling(
    n_trials: int,
    work: Path,
    sweeper_py: Path,
    seed: int,
    median: float,
    sigma: float,
    python: str = sys.executable,
) -> dict[str, Any]:
    """B2: hydra_vertex (emulator, default algorithm, 2 parallel) against hydra-optuna-sweeper with
    the joblib launcher (n_jobs=2), the same app and the same trial durations. The trials run
    ``python``'s shim and interpreter (``run.py`` gives the regular install's, as in a trial
    image)."""
    app = write_app(work / "sleep")
    durs = durations(n_trials, seed, median, sigma)
    (work / "durations.json").write_text(json.dumps(durs))
    out: dict[str, Any] = {
        "trials": n_trials, "durations_sum": sum(durs), "python": shown(python)
    }

    busy_hv = work / "busy-hv.jsonl"
    job = run_tuning_job(
        app,
        work / "state-b2",
        n_trials,
        2,
        {"BENCH_DURATIONS": str(work / "durations.json"), "BENCH_BUSY_FILE": str(busy_hv)},
        seed=seed,
        python=python,
    )
    hv_spans = job["spans"]
    out["hydra_vertex"] = _sched_stats(job["wall"], hv_spans, _busy(busy_hv), min(job["values"]))

    busy_sw = work / "busy-sw.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_ML", "AIP_"))}
    env.update(BENCH_DURATIONS=str(work / "durations.json"), BENCH_BUSY_FILE=str(busy_sw))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cmd = [
        str(sweeper_py), "app.py", "-m",
        "hydra/sweeper=optuna", "hydra/launcher=joblib",
        f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
        "hydra.launcher.n_jobs=2", f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.direction=minimize", f"hydra.sweep.dir={work / 'multirun'}",
        "x=interval(-5, 10)", "y=interval(0, 15)",
    ]  # fmt: skip
    t0 = time.time()
    subprocess.run(cmd, cwd=app, env=env, check=True, capture_output=True)
    wall = time.time() - t0
    sw_busy = _busy(busy_sw)
    best: float | None = None
    res = work / "multirun" / "optimization_results.yaml"
    if res.exists():
        for line in res.read_text().splitlines():
            if line.startswith("best_value:"):
                best = float(line.split(":", 1)[1])
    # the joblib workers are persistent processes: a job's slot time is its task span
    out["sync_batch"] = _sched_stats(wall, sw_busy, sw_busy, best)
    out["wall_ratio_vs_sync_batch"] = out["hydra_vertex"]["wall"] / out["sync_batch"]["wall"]
    out["span_ratio_vs_sync_batch"] = out["hydra_vertex"]["span"] / out["sync_batch"]["span"]
    return out


def _sched_stats(
    wall: float, slots: list[tuple[float, float]], work: list[tuple[float, float]], best: Any
) -> dict[str, Any]:
    span = max(e for _, e in slots) - min(s for s, _ in slots)
    busy = sum(e - s for s, e in slots)
    useful = sum(e - s for s, e in work)
    return {
        "wall": wall,
        "span": span,
        "busy": busy,
        "utilization": busy / (2 * wall),
        "utilization_in_span": busy / (2 * span),
        "work_fraction": useful / (2 * wall),
        "best_value": best,
    }


if __name__ == "__main__":  # quick manual check
    from sweeper_env import sweeper_python

    with tempfile.TemporaryDirectory() as tmp:
        print(
            json.dumps(overhead(int(sys.argv[1]) if len(sys.argv) > 1 else 10, Path(tmp)), indent=1)
        )
        print(json.dumps(scheduling(8, Path(tmp), sweeper_python(), 0, 1.0, 0.75), indent=1))


DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits"
DIGITS_PARAMS = {
    "model.C": "tag(log, interval(0.1, 100.0))",
    "model.gamma": "tag(log, interval(0.0001, 0.1))",
}


def _hydra_log_time(path: Path) -> float | None:
    """The time of the 'val_error=' line in a Hydra job log (``[%(asctime)s]...``)."""
    from datetime import datetime

    for line in path.read_text().splitlines():
        if "val_error=" in line and line.startswith("["):
            stamp = line[1 : line.index("]")]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def training(
    n_trials: int, work: Path, sweeper_py: Path, seed: int, target: float
) -> dict[str, Any]:
    """B3: the digits example (SVM: C and gamma, log scales), wall-clock from launch until a trial
    reaches ``target`` validation error, hydra_vertex against the sweeper + joblib (2 workers)."""
    app = work / "digits"
    shutil.copytree(
        DIGITS, app, ignore=shutil.ignore_patterns("outputs", "multirun", "__pycache__")
    )
    space = "metric: val_error\ndirection: minimize\nparams:\n" + "".join(
        f"  {k}: {v}\n" for k, v in DIGITS_PARAMS.items()
    )
    (app / "space.yaml").write_text(space)
    out: dict[str, Any] = {"trials": n_trials, "target_val_error": target}
    command = [
        _shim(), "--search-space", "space.yaml", "--", sys.executable, "train.py", "model=svm"
    ]  # fmt: skip
    t0, wall, got = submit_and_wait(app, work / "state-b3", command, {}, n_trials, 2, seed)
    done = sorted(
        (t.end_time.timestamp(), t.final_measurement.metrics[0].value)
        for t in got.trials
        if t.state.name == "SUCCEEDED"
    )
    out["hydra_vertex"] = _to_target(t0, wall, done, target)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUD_ML", "AIP_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sweep_dir = work / "multirun-b3"
    cmd = [
        str(sweeper_py), "train.py", "-m", "model=svm",
        "hydra/sweeper=optuna", "hydra/launcher=joblib",
        f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.n_jobs=2",
        "hydra.launcher.n_jobs=2", f"hydra.sweeper.sampler.seed={seed}",
        "hydra.sweeper.direction=minimize", f"hydra.sweep.dir={sweep_dir}",
        *(f"{k}={v}" for k, v in DIGITS_PARAMS.items()),
    ]  # fmt: skip
    t0 = time.time()
    subprocess.run(cmd, cwd=app, env=env, check=True, capture_output=True)
    wall = time.time() - t0
    sw_done = []
    for log in sweep_dir.glob("*/train.log"):
        when = _hydra_log_time(log)
        text = log.read_text()
        if when is not None:
            value = float(text.split("val_error=", 1)[1].split()[0])
            sw_done.append((when, value))
    out["sync_batch"] = _to_target(t0, wall, sorted(sw_done), target)
    a, b = out["hydra_vertex"]["seconds_to_target"], out["sync_batch"]["seconds_to_target"]
    out["time_to_target_ratio_vs_sync_batch"] = a / b if a is not None and b else None
    return out


def _to_target(
    t0: float, wall: float, done: list[tuple[float, float]], target: float
) -> dict[str, Any]:
    hit = next((i for i, (_, v) in enumerate(done) if v <= target), None)
    return {
        "wall": wall,
        "best_value": min(v for _, v in done) if done else None,
        "seconds_to_target": None if hit is None else done[hit][0] - t0,
        "trials_to_target": None if hit is None else hit + 1,
    }
