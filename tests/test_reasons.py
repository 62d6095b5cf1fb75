"""The deciding line (hydra_vertex.reasons): a table over real outputs of failing Hydra apps.

The captured rows (tests/data/reasons/<case>.stderr/.stdout) are what tests/apps/reasons_app
printed; the live test runs the same app again and checks the same line comes out, so the table
stays true to what Hydra prints. Regenerate the captures with ``python tests/test_reasons.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hydra_vertex.reasons import deciding_line, exit_reason, first_line, strip_ansi, trial_reason

APP = Path(__file__).parent / "apps" / "reasons_app"
DATA = Path(__file__).parent / "data" / "reasons"
SHIM = Path(sys.executable).with_name("hydra-vertex-shim")
REPORT = "++hydra.callbacks.r._target_=hydra_vertex.reporting.ReportCallback"

# case id: (app arguments, FAIL mode, the deciding line, exit code)
CASES: dict[str, tuple[list[str], str, str, int]] = {
    "override-typo": (
        ["model.c=0.5", "needed=1"], "",
        "Could not override 'model.c'; To append to your config use +model.c=0.5; Key 'c' is not in struct", 1,
    ),
    "sweeper-plugin-missing": (
        ["--config-name", "sweep"], "", "In 'hydra/config': Could not find 'hydra/sweeper/optuna'", 1,
    ),
    "group-option-typo": (["model=svn", "needed=1"], "", "In 'config': Could not find 'model/svn'", 1),
    "append-existing-key": (
        ["+model.C=3", "needed=1"], "",
        "Could not append to config. An item is already at 'model.C'; Either remove + prefix: 'model.C=3'; "
        "Or add a second + to add or override 'model.C': '++model.C=3'", 1,
    ),
    "override-grammar": (
        ["lr=[", "needed=1"], "",
        "no viable alternative at input '['; See https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details", 1,
    ),
    "no-primary-config": (
        ["--config-name", "nope"], "",
        "Cannot find primary config 'nope'. Check that it's in your config search path", 1,
    ),
    "missing-mandatory": ([], "mandatory", "omegaconf.errors.MissingMandatoryValue: Missing mandatory value: needed", 1),
    "key-not-in-struct": (["needed=1"], "struct", "omegaconf.errors.ConfigAttributeError: Key 'missing' is not in struct", 1),
    "runtime-error": (["needed=1"], "runtime", "RuntimeError: diverged at lr=0.1", 1),
    "instantiate-error": (
        ["needed=1"], "instantiate",
        "Error locating target 'src.models.Nope', set env var HYDRA_FULL_ERROR=1 to see chained exception", 1,
    ),
    "chained-exception": (["needed=1"], "chained", "ValueError: bad value", 1),
    "ansi-colours": (["needed=1"], "ansi", "FloatingPointError: loss is nan at step 3", 1),
    "plain-exit": (["needed=1"], "exit3", "fatal: dataset missing at data/x.csv", 3),
    "reporting-diagnostic": (
        ["needed=1", REPORT, "++hydra.callbacks.r.metric=val_accuracy"], "",
        "hydra-vertex: the task function returned a mapping without the key 'val_accuracy' "
        "(available keys: 'val_loss', 'acc'); set the callback's key or metric to one of them", 1,
    ),
}
LIVE = ["override-typo", "sweeper-plugin-missing", "runtime-error", "ansi-colours", "reporting-diagnostic"]


def _run_app(case: str) -> subprocess.CompletedProcess[str]:
    args, mode, _, _ = CASES[case]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "CLOUD_ML_"))}
    env["FAIL"] = mode
    return subprocess.run(
        [sys.executable, "app.py", *args], cwd=APP, env=env, capture_output=True, text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_deciding_line_of_a_captured_failure(case: str) -> None:
    _, _, line, code = CASES[case]
    err = (DATA / f"{case}.stderr").read_text()
    out = (DATA / f"{case}.stdout").read_text()
    assert exit_reason(err, out, exit_code=code) == f"{line} (exit code {code})"


@pytest.mark.parametrize("case", LIVE)
def test_the_live_app_still_fails_that_way(case: str) -> None:
    _, _, line, code = CASES[case]
    done = _run_app(case)
    assert done.returncode == code
    assert exit_reason(done.stderr, done.stdout, exit_code=done.returncode) == f"{line} (exit code {code})"


def test_the_shims_own_error_wins(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SHIM), "--search-space", str(tmp_path / "none.yaml"), "--", sys.executable, "app.py"],
        cwd=APP, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert exit_reason(done.stderr, done.stdout, exit_code=2) == (
        f"hydra-vertex-shim: error: cannot read search-space file '{tmp_path / 'none.yaml'}': "
        "No such file or directory (exit code 2)"
    )


@pytest.mark.parametrize(
    ("stderr", "stdout", "kwargs", "expected"),
    [
        pytest.param("", "", {"exit_code": 1}, "exited with code 1", id="silent"),
        pytest.param("", "", {"exit_code": None, "signal": 9}, "killed by signal 9", id="signal"),
        pytest.param("boom\n", "", {"exit_code": None, "signal": 15}, "boom (killed by signal 15)", id="signal-line"),
        pytest.param("x\n", "", {"exit_code": 1, "timed_out": True}, "exceeded scheduling.timeout and was killed", id="timeout"),
        pytest.param("", "step 1\nout of data\n", {"exit_code": 4}, "out of data (exit code 4)", id="stdout-when-stderr-is-empty"),
        pytest.param(
            "hydra-vertex: warning: the app's config selects hydra.mode=MULTIRUN\nRuntimeError x\n", "",
            {"exit_code": 1}, "RuntimeError x (exit code 1)", id="our-warning-is-no-reason",
        ),
        pytest.param(
            "", "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'lr'\n",
            {"exit_code": 1}, "KeyError: 'lr' (exit code 1)", id="logged-traceback-on-stdout",
        ),
        pytest.param(
            "/x/y.py:3: UserWarning: old\n  warnings.warn(\nCould not override 'a'.\n\n"
            "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n", "",
            {"exit_code": 1}, "Could not override 'a' (exit code 1)", id="python-warning-before-hydra-error",
        ),
        pytest.param(
            "\x1b]8;;file:///x\x1b\\link\x1b]8;;\x1b\\ \x1b[1;31mfailed\x1b[0m\r\n", "",
            {"exit_code": 1}, "link failed (exit code 1)", id="osc-and-csi-escapes",
        ),
    ],
)
def test_exit_reason_rows(stderr: str, stdout: str, kwargs: dict[str, object], expected: str) -> None:
    assert exit_reason(stderr, stdout, **kwargs) == expected  # type: ignore[arg-type]


def test_trial_reason_reads_the_logs_first_line_then_the_tail(tmp_path: Path) -> None:
    (tmp_path / "stderr.log").write_text((DATA / "ansi-colours.stderr").read_text())
    (tmp_path / "stdout.log").write_text("")
    reason = trial_reason(tmp_path, exit_code=1, signal=None, timed_out=False)
    assert first_line(reason) == "FloatingPointError: loss is nan at step 3 (exit code 1)"
    assert "\nlast log lines:\n" in reason and "\x1b" not in reason
    assert deciding_line("") is None and strip_ansi("\x1b[2Ka\x1b[0m") == "a"


def _capture() -> None:  # pragma: no cover - regenerates tests/data/reasons
    DATA.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        done = _run_app(case)
        for stream, text in (("stderr", done.stderr), ("stdout", done.stdout)):
            (DATA / f"{case}.{stream}").write_text(text.replace(str(APP), "/app"))
        print(case, done.returncode)


if __name__ == "__main__":  # pragma: no cover
    _capture()
