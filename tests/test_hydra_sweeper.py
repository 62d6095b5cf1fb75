"""``hydra/sweeper=vertex``: real Hydra apps started as a user starts them (``python APP.py -m
hydra/sweeper=vertex ...``), in this environment, which has no hydra-optuna-sweeper.

- The plugin: Hydra discovers it; an app that does not select it runs as before and loads none of
  hydra-vertex; its sampler options compose.
- Bad input: one Hydra-style line naming the key, before anything runs (no emulator, no job).
- End to end (slow): a plain app on the local emulator (started for the sweep) with a retrain;
  Hydra's own optuna-sweeper example and a lightning-hydra-template ``hparams_search`` config with
  only the sweeper changed; Ctrl-C cancelling the tuning job; the Vertex AI path (project and
  region set) against an emulator through ``HYDRA_VERTEX_EMULATOR``, the image built by its Cloud
  Build.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hydra_vertex import images

TESTS = Path(__file__).resolve().parent
APP = TESTS / "apps" / "sweep_app"
SPHERE = TESTS / "apps" / "optuna_sphere"
LHT = TESTS / "apps" / "lightning_template"
SPACE = ["lr=tag(log, interval(0.001, 1.0))", "model=choice(small, big)"]


def _copy(src: Path, tmp: Path) -> Path:
    dest = tmp / src.name
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "outputs", "multirun"))
    return dest


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HYDRA_VERTEX_EMULATOR", "CLOUD_ML_", "AIP_", "STORAGE_EMULATOR"))
    }
    env.update(
        HYDRA_VERTEX_IMAGES=str(tmp / "images"),
        HYDRA_VERTEX_CACHE_DIR=str(tmp / "cache"),
        WANDB_MODE="disabled",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def _hydra(
    app_dir: Path, script: str, *args: str, env: dict[str, str], timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, script, *args], cwd=app_dir, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def _sweep_dir(app_dir: Path, *, root: str = "multirun") -> Path:
    found = sorted((app_dir / root).glob("*/*/SUMMARY.json")) or sorted(
        (app_dir / root).glob("**/SUMMARY.json")
    )
    assert found, f"no SUMMARY.json under {app_dir / root}"
    return found[-1].parent


def _results(sweep_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = json.loads((sweep_dir / "SUMMARY.json").read_text())
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results == {
        "name": "vertex",
        "best_params": summary["best_parameters"],
        "best_value": summary["best_value"],
    }
    assert (sweep_dir / "report.html").is_file()
    return summary, results


# -- the plugin ------------------------------------------------------------------------------
def test_hydra_optuna_sweeper_is_not_in_this_environment() -> None:
    assert importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None


def test_hydra_discovers_the_plugin(tmp_path: Path) -> None:
    done = _hydra(APP, "app.py", "--info", "plugins", env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "VertexSweeper" in done.stdout


def test_an_app_that_does_not_select_it_is_unchanged(tmp_path: Path) -> None:
    """A plain run and a basic-sweeper multirun work as before, and load none of hydra-vertex,
    the Google clients or the tuning engines (the plugin imports only Hydra at discovery)."""
    app = _copy(APP, tmp_path)
    modules = tmp_path / "modules.json"
    env = _env(tmp_path, SWEEP_APP_MODULES=str(modules))
    done = _hydra(app, "app.py", "lr=0.1", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(modules.read_text()) == []
    run = json.loads(next((app / "outputs").glob("*/*/run.json")).read_text())
    assert run["lr"] == 0.1
    assert _hydra(app, "app.py", "--help", env=env).returncode == 0
    basic = _hydra(app, "app.py", "-m", "lr=0.1,0.2", env=env)
    assert basic.returncode == 0, basic.stderr
    assert "Launching 2 jobs locally" in basic.stdout + basic.stderr  # Hydra's basic sweeper
    assert json.loads(modules.read_text()) == []
    assert not (app / ".hydra-vertex").exists()


@pytest.mark.slow
def test_the_wheel_ships_the_plugin_in_hydras_namespace_package(tmp_path: Path) -> None:
    """A regular install puts ``hydra_plugins/hydra_vertex_sweeper/`` beside other plugins: no
    ``hydra_plugins/__init__.py`` (a namespace package, as Hydra's plugins are)."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
         str(tmp_path), str(TESTS.parent)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("hydra_vertex-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    plugin = {n for n in names if n.startswith("hydra_plugins/")}
    assert plugin == {
        f"hydra_plugins/hydra_vertex_sweeper/{f}"
        for f in ("__init__.py", "_impl.py", "config.py", "py.typed", "vertex_sweeper.py")
    }


@pytest.mark.parametrize("sampler", ["tpe", "random", "grid", "gp", "cmaes", "nsgaii", "motpe", "qmc"])
def test_the_optuna_sampler_options_compose(sampler: str, tmp_path: Path) -> None:
    done = _hydra(
        SPHERE, "sphere.py", "hydra/sweeper=vertex", f"hydra/sweeper/sampler={sampler}",
        "--cfg", "hydra", "-p", "hydra.sweeper", env=_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    block = yaml.safe_load(done.stdout.split("\n", 1)[1])
    assert block["sampler"]["seed"] == 123  # the example's own setting, merged
    assert block["sampler"]["_target_"].startswith("optuna.samplers.")
    assert (block["n_trials"], block["n_jobs"], block["study_name"]) == (20, 1, "sphere")


# -- bad input: one line, before anything runs -----------------------------------------------
BAD_PARAMS = "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n{}\n"


@pytest.mark.parametrize(
    ("config", "args", "line"),
    [
        pytest.param(
            "      lr: interval(1, oops)", [],
            "hydra.sweeper.params.lr: cannot parse 'interval(1, oops)' with Hydra's sweep grammar",
            id="params-grammar",
        ),
        pytest.param(
            "      lr: interval(0.5, 0.1)", [],
            "hydra.sweeper.params.lr: min <= max must hold, but got (min=0.5, max=0.1)",
            id="params-bounds",
        ),
        pytest.param(
            "      lrate: interval(0.1, 0.5)", [],
            "hydra.sweeper.params.lrate: not in the app's config (composed with lrate=0.1); the "
            "closest existing key is 'lr'; a key the config lacks needs '+' ('+lrate')",
            id="params-typo",
        ),
        pytest.param(
            None, ["lrr=interval(0.1, 0.5)"],
            "'lrr=interval(0.1, 0.5)' (on the command line): not in the app's config",
            id="command-line-typo",
        ),
        pytest.param(
            None, ["lr=tag(log, interval(0, 1))"],
            "'lr=tag(log, interval(0, 1))' (on the command line): a log scale needs a strictly "
            "positive range",
            id="command-line-log-scale",
        ),
        pytest.param(
            None, [],
            "hydra.sweeper.params: the search space is empty",
            id="no-space",
        ),
        pytest.param(
            None, [*SPACE, "hydra.sweeper.direction=up"],
            "hydra.sweeper.direction: must be minimize or maximize, got 'up'",
            id="direction",
        ),
        pytest.param(
            None, [*SPACE, "+hydra.sweeper.tuning.seed=-1"],
            "hydra.sweeper.tuning.seed: must be an integer >= 0, got -1",
            id="tuning-seed",
        ),
        pytest.param(
            None, [*SPACE, "+hydra.sweeper.vertex.projekt=p"],
            "hydra.sweeper.vertex: unknown key(s) ['projekt']",
            id="vertex-typo",
        ),
        pytest.param(
            None, [*SPACE, "+hydra.sweeper.vertex.project=p"],
            "hydra.sweeper.vertex.region: Vertex AI needs both a project and a region",
            id="project-without-region",
        ),
        pytest.param(
            None, [*SPACE, "+hydra.sweeper.retrain_vertex.accelerator_count=-1"],
            "hydra.sweeper.retrain_vertex.accelerator_count:",
            id="retrain-machine",
        ),
        pytest.param(
            None, [*SPACE, "hydra.sweeper.custom_search_space=app.space"],
            "hydra.sweeper.custom_search_space: 'app.space' is not supported",
            id="custom-search-space",
        ),
        pytest.param(
            None, [*SPACE, "hydra.sweeper.n_trials=many"],
            "hydra.sweeper.n_trials",  # Hydra's own typed-config error names the key
            id="n-trials-type",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_key_before_anything_runs(
    config: str | None, args: list[str], line: str, tmp_path: Path
) -> None:
    app = _copy(APP, tmp_path)
    extra: list[str] = []
    if config is not None:
        (app / "conf" / "bad.yaml").write_text(BAD_PARAMS.format(config))
        extra = ["--config-name", "bad"]
    done = _hydra(app, "app.py", "-m", *extra, "hydra/sweeper=vertex", *args, env=_env(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert line in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (app / ".hydra-vertex").exists()  # no emulator started
    assert not list(app.glob("multirun/**/SUMMARY.json"))  # no tuning job


# -- end to end ------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_plain_hydra_app_is_tuned_on_the_local_emulator_and_retrained(tmp_path: Path) -> None:
    app = _copy(APP, tmp_path)
    done = _hydra(
        app, "app.py", "-m", "hydra/sweeper=vertex", *SPACE, "epochs=3", "tag=fixed",
        "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", "+hydra.sweeper.tuning.seed=0",
        "hydra.sweeper.retrain=true", "hydra.sweeper.retrain_overrides=['epochs=5']",
        env=_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "pre-flight: the app's config composes for 2 branch(es)" in done.stdout + done.stderr
    summary, results = _results(_sweep_dir(app))
    assert summary["status"] == "succeeded" and summary["metric"] == "objective"
    assert [t["state"] for t in summary["trials"]] == ["SUCCEEDED"] * 4
    assert set(results["best_params"]) == {"lr", "model"}
    assert results["best_value"] == min(t["value"] for t in summary["trials"])
    for trial in summary["trials"]:  # the app's interpreter, in the app's directory, fixed values
        run = json.loads(Path(trial["output_dir"], "run.json").read_text())
        assert run["executable"] == sys.executable and Path(run["cwd"]).resolve() == app.resolve()
        assert (run["epochs"], run["tag"]) == (3, "fixed")
        assert (run["lr"], run["model"]) == (trial["parameters"]["lr"], trial["parameters"]["model"])
    retrain = json.loads(Path(summary["retrain_output_dir"], "run.json").read_text())
    assert (retrain["epochs"], retrain["tag"]) == (5, "fixed")  # retrain_overrides win
    assert (retrain["lr"], retrain["model"]) == (results["best_params"]["lr"], results["best_params"]["model"])
    assert summary["model_dir_empty"] is False
    assert Path(summary["model_dir"], "model.json").is_file()
    assert summary["image_uri"].startswith("hydra-vertex.local/app@sha256:")


@pytest.mark.slow
def test_hydras_optuna_example_is_tuned_with_only_the_sweeper_changed(tmp_path: Path) -> None:
    """The example's defaults select the optuna sweeper and its tpe sampler; only
    ``hydra/sweeper=vertex`` (and a smaller budget) is added on the command line."""
    app = _copy(SPHERE, tmp_path)
    done = _hydra(
        app, "sphere.py", "-m", "hydra/sweeper=vertex", "hydra.sweeper.n_trials=3",
        env=_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "hydra.sweeper: 'sampler' is ignored (tpe)" in output  # one line for the tpe sampler
    assert "'study_name'" not in output  # it names the tuning job: it has an effect
    summary, results = _results(_sweep_dir(app))
    assert summary["name"] == "sphere" and summary["tuning_job"]
    assert len(summary["trials"]) == 3 and summary["status"] == "succeeded"
    assert set(results["best_params"]) == {"x", "y"}
    assert results["best_params"]["y"] in (-5, 0, 5)
    assert results["best_value"] == results["best_params"]["x"] ** 2 + results["best_params"]["y"] ** 2


@pytest.mark.slow
def test_a_lightning_template_hparams_search_config_runs_with_only_the_sweeper_changed(
    tmp_path: Path,
) -> None:
    optuna = (LHT / "configs" / "hparams_search" / "mnist_optuna.yaml").read_text().splitlines()
    vertex = (LHT / "configs" / "hparams_search" / "mnist_vertex.yaml").read_text().splitlines()
    changed = [line for line in vertex if line not in optuna and not line.startswith("#")]
    assert changed == ["  - override /hydra/sweeper: vertex"]
    app = _copy(LHT, tmp_path)
    done = _hydra(
        app, "src/train.py", "-m", "hparams_search=mnist_vertex", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2", env=_env(tmp_path),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary, results = _results(_sweep_dir(app, root="logs"))
    assert (summary["metric"], summary["direction"]) == ("val/acc_best", "maximize")
    assert [t["state"] for t in summary["trials"]] == ["SUCCEEDED"] * 2
    assert set(results["best_params"]) == {
        "model.optimizer.lr", "data.batch_size", "model.net.lin1_size", "model.net.lin2_size",
        "model.net.lin3_size",
    }
    assert results["best_value"] == max(t["value"] for t in summary["trials"])


# -- against an emulator named by HYDRA_VERTEX_EMULATOR --------------------------------------
@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from hydra_vertex.emulator import start

    handle = start(tmp_path_factory.mktemp("emulator") / "state", seed=3)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def named(emulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The sweep's environment with ``HYDRA_VERTEX_EMULATOR``; the emulator (this process) finds
    the images the sweep makes in the same directory."""
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    return _env(
        tmp_path, HYDRA_VERTEX_EMULATOR=emulator.endpoint,
        HYDRA_VERTEX_EMULATOR_TOKEN=emulator.token,
    )


def _job_client(emulator: Any) -> Any:
    from google.cloud import aiplatform_v1

    from hydra_vertex.vertex import bearer_credentials

    return aiplatform_v1.JobServiceClient(
        transport="rest", client_options={"api_endpoint": emulator.endpoint},
        credentials=bearer_credentials(emulator.token),
    )


def _tuning_job(client: Any, project: str, display_name: str) -> Any | None:
    jobs = client.list_hyperparameter_tuning_jobs(
        parent=f"projects/{project}/locations/us-central1"
    )
    found = [j for j in jobs if j.display_name == display_name]
    return found[0] if found else None


def _wait(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_ctrl_c_cancels_the_tuning_job(emulator: Any, named: dict[str, str], tmp_path: Path) -> None:
    app = _copy(APP, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "app.py", "-m", "hydra/sweeper=vertex", *SPACE, "sleep=300",
         "hydra.sweeper.study_name=ctrl-c", "hydra.sweeper.n_trials=2"],
        cwd=app, env=named, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: a shell's background job (`cmd &`, as CI may run the suite) starts
        # with SIGINT ignored, and Python then never raises KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    client = _job_client(emulator)
    try:
        job = _wait(
            "a running trial",
            lambda: (j := _tuning_job(client, "local-project", "ctrl-c-tuning")) is not None
            and any(t.state.name == "ACTIVE" for t in j.trials) and j,
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert f"interrupted: cancelling {job.name}" in err
    final = _wait(
        "the job to end",
        lambda: (j := client.get_hyperparameter_tuning_job(name=job.name)).state.name
        in ("JOB_STATE_CANCELLED", "JOB_STATE_FAILED", "JOB_STATE_SUCCEEDED") and j,
    )
    assert final.state.name == "JOB_STATE_CANCELLED"
    summary = json.loads((_sweep_dir(app) / "SUMMARY.json").read_text())
    assert summary["status"] == "cancelled" and summary["tuning_job"] == job.name
    assert not (_sweep_dir(app) / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_the_vertex_path_builds_the_image_with_cloud_build(
    emulator: Any, named: dict[str, str], tmp_path: Path
) -> None:
    """A project and a region set: the source goes to Cloud Storage, Cloud Build builds the
    training image, the trials and the retrain run in it (the emulator stands in for Google)."""
    from hydra_vertex.cloud_build import cloud_build_client

    app = _copy(APP, tmp_path)
    done = _hydra(
        app, "app.py", "-m", "hydra/sweeper=vertex", *SPACE, "epochs=2",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweeper.retrain=true",
        "+hydra.sweeper.vertex.project=sweep-project", "+hydra.sweeper.vertex.region=us-central1",
        "+hydra.sweeper.vertex.staging_bucket=gs://sweep-bucket/hv",
        env=named,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary, _ = _results(_sweep_dir(app))
    assert summary["image_uri"].startswith("hydra-vertex.local/app@sha256:")
    assert summary["tuning_job"].startswith("projects/sweep-project/locations/us-central1/")
    assert [t["state"] for t in summary["trials"]] == ["SUCCEEDED"] * 2
    assert summary["model_dir"].startswith("gs://sweep-bucket/hv/app/")
    assert summary["retrain_job"]
    log = (_sweep_dir(app) / "hydra-vertex.log").read_text()
    assert "Cloud Build: pushed" in log
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYDRA_VERTEX_EMULATOR", named["HYDRA_VERTEX_EMULATOR"])
        mp.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", named["HYDRA_VERTEX_EMULATOR_TOKEN"])
        builds = list(cloud_build_client().list_builds(project_id="sweep-project"))
    assert [b.status.name for b in builds] == ["SUCCESS"]
    workdir = images.resolve_local(summary["image_uri"])
    assert workdir is not None and not workdir.is_symlink()  # a snapshot, not the live directory
