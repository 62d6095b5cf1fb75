"""Lightweight components forked from the warm pipeline process: which commands qualify (kfp's own
launcher script, nothing to install), that a forked component runs as kfp's script would (its
outputs written, its exit code kept, its output in its log), and the reason a failed one gives."""

# No ``from __future__ import annotations``: kfp reads the components' annotations as types.
import json
import sys
from pathlib import Path
from typing import Any

from kfp import dsl

from hydra_vertex.emulator import pipeline_events


@dsl.component(install_kfp_package=False)
def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    return a + b


@dsl.component(install_kfp_package=False)
def refuse(why: str) -> str:
    from hydra_vertex.errors import TuningError

    raise TuningError(f"no trial succeeded ({why})\n  3 x diverged at lr=0.5\nLook at a trial's log")


@dsl.component(packages_to_install=["six"])
def with_packages(a: int) -> int:
    return a


def _command(component: Any, inputs: dict[str, Any], out: Path) -> list[str]:
    """The command kfp.local runs for ``component``: placeholders filled, ``python3`` replaced
    by this interpreter (as kfp.local's SubprocessRunner does)."""
    executor_input = {
        "inputs": {"parameterValues": inputs},
        "outputs": {
            "parameters": {"Output": {"outputFile": str(out / "Output")}},
            "outputFile": str(out / "executor_output.json"),
        },
    }
    container = component.component_spec.implementation.container
    command = [*container.command, *container.args]
    command = [json.dumps(executor_input) if part == "{{$}}" else part for part in command]
    return [command[0], command[1], command[2].replace("python3", sys.executable), *command[3:]]


def test_only_kfps_own_launcher_with_nothing_to_install_is_forked(tmp_path: Path) -> None:
    command = _command(add, {"a": 1, "b": 2}, tmp_path)
    launch = pipeline_events.launcher(command)
    assert launch is not None
    source, args = launch
    assert "def add(a: int, b: int) -> int:" in source
    assert args[0] == "--executor_input" and args[-2:] == ["--function_to_execute", "add"]
    assert pipeline_events.output_files(command) == {"Output": str(tmp_path / "Output")}
    assert pipeline_events.launcher(_command(with_packages, {"a": 1}, tmp_path)) is None
    assert pipeline_events.launcher(["python", "-c", "pass"]) is None
    other_python = [*command[:2], command[2].replace(sys.executable, "/opt/other/python"), *command[3:]]
    assert pipeline_events.launcher(other_python) is None


def test_a_forked_component_runs_as_kfps_script_would(tmp_path: Path) -> None:
    source, args = pipeline_events.launcher(_command(add, {"a": 2, "b": 3}, tmp_path)) or ("", [])
    log = tmp_path / "task.log"
    assert pipeline_events.run_forked(source, args, {"EXTRA": "1"}, log) == 0
    output = json.loads((tmp_path / "executor_output.json").read_text())
    assert output["parameterValues"]["Output"] == 5
    text = log.read_text()
    assert "adding 2 and 3" in text and "KFP Executor" in text


def test_a_failed_component_gives_its_errors_whole_message_first(tmp_path: Path) -> None:
    source, args = pipeline_events.launcher(_command(refuse, {"why": "3 trials"}, tmp_path)) or ("", [])
    log = tmp_path / "task.log"
    code = pipeline_events.run_forked(source, args, {}, log)
    assert code == 1
    assert "Traceback" in log.read_text()  # the whole story stays in the task's log
    reason = pipeline_events._failure(log, code).splitlines()
    assert reason[0] == "no trial succeeded (3 trials)"
    assert reason[1:3] == ["  3 x diverged at lr=0.5", "Look at a trial's log"]
    assert reason[-1] == f"its log: {log}"
