"""The compiled template: in sync with `hydra-vertex compile`, generic, documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "pipelines" / "tune_and_retrain.json"
CLI = Path(sys.executable).with_name("hydra-vertex")


def test_checked_in_template_is_what_compile_writes(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.json"
    done = subprocess.run([str(CLI), "compile", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == TEMPLATE.read_text(), (
        "pipelines/tune_and_retrain.json is stale: run `hydra-vertex compile -o "
        "pipelines/tune_and_retrain.json`"
    )


def test_components_image_is_set_on_every_executor(tmp_path: Path) -> None:
    from hydra_vertex.api import compile

    spec = json.loads(compile(tmp_path / "p.json", "europe-docker.pkg.dev/p/r/components@sha256:"
                              + "a" * 64).read_text())
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"europe-docker.pkg.dev/p/r/components@sha256:" + "a" * 64}
    default = json.loads(TEMPLATE.read_text())
    from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE

    assert {e["container"]["image"] for e in default["deploymentSpec"]["executors"].values()} == {
        DEFAULT_COMPONENTS_IMAGE
    }


def test_template_parameters_cover_any_app() -> None:
    spec = json.loads(TEMPLATE.read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {
        "app_name", "app_source", "app_command", "search_space", "project", "location",
        "staging_bucket", "max_trial_count", "parallel_trial_count", "max_failed_trial_count",
        "machine_type", "service_account", "retrain_overrides", "wandb", "seed",
        "trial_timeout_seconds", "trial_machine", "retrain_machine", "job_settings",
        "tuning_options", "select",
    } == set(params)
    assert params["search_space"]["parameterType"] == "STRUCT"
    # The Vertex settings: one dict per job, empty by default (a template for any app).
    for name in ("trial_machine", "retrain_machine", "job_settings", "tuning_options"):
        assert params[name] == {"defaultValue": {}, "isOptional": True, "parameterType": "STRUCT"}
    assert params["app_command"]["parameterType"] == "LIST"
    # Nothing app-specific is baked in: the digits example is not mentioned anywhere.
    assert "examples/digits" not in TEMPLATE.read_text()
    assert "val_error" not in TEMPLATE.read_text()
    outputs = spec["root"]["outputDefinitions"]["parameters"]
    assert {"best_overrides", "best_value", "best_trial_id", "model_dir"} <= set(outputs)


@pytest.mark.parametrize("name", ["build_image", "launch_tuning", "best_trial", "retrain"])
def test_every_component_input_and_output_is_documented(name: str) -> None:
    import importlib

    component = getattr(importlib.import_module(f"hydra_vertex.components.{name}"), name)
    spec = component.component_spec
    doc = component.python_func.__doc__ or ""
    names = list(spec.inputs or {}) + [o for o in (spec.outputs or {}) if o != "Output"]
    missing = [n for n in names if f"{n}:" not in doc]
    assert not missing, f"{name}: undocumented inputs/outputs {missing}"
    if "Output" in (spec.outputs or {}):
        assert "Returns:" in doc
