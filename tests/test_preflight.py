"""Pre-flight: the app's config composed (Hydra's --cfg job, through the real shim) for every
branch of the space before any trial; a typo fails in seconds, naming the key, the file and the
nearest existing key."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex import preflight
from hydra_vertex.images import Runtime
from hydra_vertex.search_space import from_mapping

DIGITS = Path(__file__).resolve().parents[1] / "examples" / "digits"
RUNTIME = Runtime(DIGITS, os.path.dirname(sys.executable), {})
COMMAND = ["python", "train.py"]
DIGITS_PARAMS: dict[str, Any] = {
    "model": "choice(sgd, svm)",
    "trainer.max_iter": "int(interval(5, 60))",
    "model.alpha": {"when": {"model": ["sgd"]}, "values": "tag(log, interval(1e-6, 1e-1))"},
    "model.C": {"when": {"model": ["svm"]}, "values": "tag(log, interval(0.1, 100.0))"},
}


def space(params: dict[str, Any]) -> Any:
    return from_mapping({"metric": "val_error", "direction": "minimize", "params": params}, source="s.yaml")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param(
            DIGITS_PARAMS,
            [
                {"model": "sgd", "model.alpha": 1e-6, "trainer.max_iter": 5},
                {"model": "svm", "model.C": 0.1, "trainer.max_iter": 5},
            ],
            id="a-group-and-its-children",
        ),
        pytest.param({"lr": "interval(0.1, 1)", "opt.name": "choice(adam, sgd)"}, [{"lr": 0.1, "opt.name": "adam"}], id="no-group"),
        pytest.param(
            {"layers": "choice(1, 2)", "width": {"when": {"layers": [2]}, "values": "choice(8, 16)"}},
            [{"layers": 1}, {"layers": 2, "width": 8}],
            id="a-numeric-parent",
        ),
        pytest.param(
            {"model": "choice(a, b)", "optim": "choice(x, y)"},
            [{"model": "a", "optim": "x"}, {"model": "b", "optim": "x"}, {"model": "a", "optim": "y"}],
            id="two-groups-each-option-once",
        ),
    ],
)
def test_branches(params: dict[str, Any], expected: list[dict[str, Any]]) -> None:
    got = preflight.branches(space(params))
    assert [dict(sorted(b.items())) for b in got] == [dict(sorted(b.items())) for b in expected]


def test_a_space_that_fits_the_config_passes() -> None:
    count, seconds = preflight.check(space(DIGITS_PARAMS), COMMAND, RUNTIME)
    assert count == 2 and seconds > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param(
            {**DIGITS_PARAMS, "model.c": {"when": {"model": ["svm"]}, "values": "interval(0.1, 1)"}},
            "pre-flight: parameter 'model.c' of s.yaml is not in the app's config (conf/model/svm.yaml, "
            "composed with model=svm model.C=0.1 model.c=0.1 trainer.max_iter=5); the closest existing key is "
            "'model.C'; a key the config lacks needs '+' ('+model.c')",
            id="typo-in-a-group-option",
        ),
        pytest.param(
            {"trainer.max_iters": "int(interval(5, 60))"},
            "pre-flight: parameter 'trainer.max_iters' of s.yaml is not in the app's config (conf/config.yaml, "
            "composed with trainer.max_iters=5); the closest existing key is 'trainer.max_iter'; a key the "
            "config lacks needs '+' ('+trainer.max_iters')",
            id="typo-in-the-primary-config",
        ),
        pytest.param(
            {"model": "choice(sgd, svn)"},
            "pre-flight: the app's config does not compose with a sample of the search space (s.yaml): "
            "In 'config': Could not find 'model/svn' [composed with: model=svn]",
            id="a-group-option-that-does-not-exist",
        ),
    ],
)
def test_a_key_the_config_lacks_fails_in_one_line(params: dict[str, Any], message: str) -> None:
    with pytest.raises(preflight.PreflightError) as e:
        preflight.check(space(params), COMMAND, RUNTIME)
    assert str(e.value) == message


def test_a_plus_key_may_be_new() -> None:
    assert preflight.check(space({"+model.extra": "interval(0.1, 1)"}), COMMAND, RUNTIME)[0] == 1


def test_it_can_be_switched_off() -> None:
    assert preflight.enabled({}) and not preflight.enabled({"HYDRA_VERTEX_PREFLIGHT": "0"})


def test_a_passed_preflight_is_not_run_again_for_the_same_image_space_and_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from hydra_vertex import images, jobfile
    from hydra_vertex.local_run import load_space, run_preflight

    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    spec, parsed, _ = load_space(jobfile.load(DIGITS / "job.yaml"))
    image = images.build_local(DIGITS, "digits")

    def check(space: Any) -> str:
        out = io.StringIO()
        run_preflight(spec, space, image, "lines", out)
        return out.getvalue()

    assert "composes for 2 branch(es)" in check(parsed)
    assert "composed for 2 branch(es) of the space (this image, space and command: checked before)" in check(parsed)
    other = space({**DIGITS_PARAMS, "trainer.max_iter": "int(interval(5, 50))"})
    assert "composes for 2 branch(es)" in check(other)  # another space: checked again
