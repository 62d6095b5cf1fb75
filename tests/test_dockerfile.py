"""hydra_vertex.dockerfile: what a Dockerfile says about how its container starts (Docker's rules),
as a table of rows (error cases are rows too), and the mapping of container paths to a snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydra_vertex.dockerfile import ContainerConfig, DockerfileError, expand, parse

SH = ("/bin/sh", "-c")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        pytest.param(
            'FROM python:3.12\nENTRYPOINT ["python", "-m", "trainer.task"]\n',
            {"entrypoint": ("python", "-m", "trainer.task"), "cmd": None},
            id="exec-form",
        ),
        pytest.param(
            "FROM python:3.12\nENTRYPOINT python -m trainer.task --epochs=$EPOCHS\n",
            {"entrypoint": (*SH, "python -m trainer.task --epochs=$EPOCHS")},
            id="shell-form-is-sh-c",
        ),
        pytest.param(
            'FROM python:3.12\nENTRYPOINT ["python", \\\n    "-m",\\\n  "t"]\nCMD ["--a=1"]\n',
            {"entrypoint": ("python", "-m", "t"), "cmd": ("--a=1",)},
            id="line-continuations",
        ),
        pytest.param(
            "# a comment\nFROM python:3.12\n# ENTRYPOINT [\"no\"]\nCMD [\"python\"]  \n",
            {"entrypoint": None, "cmd": ("python",)},
            id="comments",
        ),
        pytest.param(
            'FROM python:3.12\nENTRYPOINT [python, -m]\n',
            {"entrypoint": (*SH, "[python, -m]")},
            id="not-json-is-shell-form",
        ),
        pytest.param(
            'FROM python:3.12 AS build\nENTRYPOINT ["build"]\nENV B=1\n'
            'FROM python:3.12-slim\nCMD ["run"]\n',
            {"entrypoint": None, "cmd": ("run",), "env": ()},
            id="multi-stage-the-last-wins",
        ),
        pytest.param(
            'FROM python:3.12 AS base\nENV A=1\nWORKDIR /app\nCMD ["c"]\n'
            'FROM base\nENTRYPOINT ["e"]\n',
            {"entrypoint": ("e",), "cmd": None, "env": (("A", "1"),), "workdir": "/app"},
            id="a-stage-from-a-stage-inherits-and-entrypoint-resets-its-cmd",
        ),
        pytest.param(
            'FROM python:3.12\nCMD ["c"]\nENTRYPOINT ["e"]\n',
            {"entrypoint": ("e",), "cmd": ("c",)},
            id="cmd-of-the-same-stage-stays",
        ),
        pytest.param(
            'FROM python:3.12\nSHELL ["/bin/bash", "-lc"]\nCMD echo hi\n',
            {"cmd": ("/bin/bash", "-lc", "echo hi")},
            id="shell-instruction",
        ),
        pytest.param(
            'FROM python:3.12\nENV A=1 B="two words" \\\n    C=$A\nENV D ${B}-x\nENV A=2 E=$A\n',
            # C sees A as it was before its ENV (unset here: left to the process's environment)
            {"env": (("A", "2"), ("B", "two words"), ("C", "$A"), ("D", "two words-x"),
                     ("E", "1"))},
            id="env-forms-and-docker-substitution",
        ),
        pytest.param(
            "FROM python:3.12\nENV PATH=/opt/bin:$PATH HOME_DIR=${HOME:-/root} LIT=\\$X\n",
            {"env": (("PATH", "/opt/bin:$PATH"), ("HOME_DIR", "${HOME:-/root}"),
                     ("LIT", "\\$X"))},
            id="unknown-variables-wait-for-the-process",
        ),
        pytest.param(
            "ARG BASE=python:3.12\nFROM $BASE\nARG V=7\nARG W\nENV V=$V W=x$W\n",
            {"env": (("V", "7"), ("W", "x"))},
            id="args",
        ),
        pytest.param(
            "FROM python:3.12\nWORKDIR /app\nWORKDIR src\nWORKDIR ../lib\n",
            {"workdir": "/app/lib", "context": "/app/lib"},
            id="relative-workdir-and-context-defaults-to-it",
        ),
        pytest.param(
            "FROM python:3.12\nWORKDIR /srv\nCOPY --chown=1:1 . app\nWORKDIR /srv/app/sub\n",
            {"workdir": "/srv/app/sub", "context": "/srv/app"},
            id="copy-dot-sets-the-context",
        ),
        pytest.param(
            "FROM python:3.12\nCOPY --from=build . /x\nCOPY [\".\", \"/y\"]\n",
            {"context": "/y"},
            id="copy-from-another-stage-is-not-the-context",
        ),
        pytest.param(
            "FROM gcr.io/deeplearning-platform-release/tf2-gpu.2-8\n\nWORKDIR /\n\n"
            "# Installs hypertune library\nRUN pip install cloudml-hypertune\n\n"
            "COPY trainer /trainer\n\nENTRYPOINT [\"python\", \"-m\", \"trainer.task\"]\n",
            {"entrypoint": ("python", "-m", "trainer.task"), "workdir": "/", "context": "/"},
            id="google-hpt-notebook",
        ),
    ],
)
def test_parse(text: str, want: dict[str, object]) -> None:
    got = parse(text)
    for field, value in want.items():
        assert getattr(got, field) == value, field


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "no FROM", id="empty"),
        pytest.param("ENTRYPOINT [\"x\"]\n", "line 1 (ENTRYPOINT): only ARG", id="before-from"),
        pytest.param("FROM x\nSHELL /bin/bash\n", "line 2 (SHELL): SHELL must be a JSON", id="shell"),
        pytest.param("FROM x\nENV A=1 B\n", "line 2 (ENV)", id="env-without-value"),
        pytest.param("FROM x y z\n", "line 1 (FROM)", id="from"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as e:
        parse(text, "app/Dockerfile")
    assert "app/Dockerfile" in str(e.value) and message in str(e.value)


def test_expand() -> None:
    env = {"A": "1", "E": ""}
    assert expand("$A-${A}-${B:-d}-${E:-d}-${A:+set}-${B:+set}-\\$A", env) == "1-1-d-d-set--$A"
    assert expand("$B:${B:-x}", env, keep_unknown=True) == "$B:${B:-x}"


def test_localized_maps_container_paths_under_the_context(tmp_path: Path) -> None:
    (tmp_path / "trainer").mkdir()
    (tmp_path / "trainer" / "task.py").write_text("")
    config = ContainerConfig(
        entrypoint=("python", "/app/trainer/task.py", "/usr/bin/x", "/app/missing"),
        cmd=("--data=/app",),
        workdir="/app/out",
        env=(("PYTHONPATH", "/app/trainer:/opt/lib"), ("URL", "http://h/app")),
        context="/app",
    )
    local = config.localized(tmp_path)
    assert local.entrypoint == (
        "python", str(tmp_path / "trainer" / "task.py"), "/usr/bin/x", "/app/missing"
    )
    assert local.cmd == ("--data=/app",)  # only whole arguments are paths
    assert local.workdir == str(tmp_path / "out")
    assert dict(local.env) == {
        "PYTHONPATH": f"{tmp_path / 'trainer'}:/opt/lib",
        "URL": "http://h/app",
    }
    outside = ContainerConfig(workdir="/tmp", context="/app").localized(tmp_path)
    assert outside.workdir == str(tmp_path)  # a WORKDIR outside the context: the snapshot
    root = ContainerConfig(entrypoint=("python", "/trainer/task.py")).localized(tmp_path)
    assert root.entrypoint == ("python", str(tmp_path / "trainer" / "task.py"))
    assert ContainerConfig.from_json(config.to_json()) == config
