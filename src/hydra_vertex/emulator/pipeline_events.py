"""A pipeline run's task events: kfp.local hooks that record when each task starts and ends.

kfp.local (2.17) has no callbacks, and what it leaves on disk does not tell which tasks ran: a
failed task leaves no directory, a skipped one nothing at all, and nothing says when a task
started. So the pipeline process (``pipeline_main``) wraps the functions through which kfp.local's
orchestrators run every task, and appends a JSON line per start and end to an events file:

- ``orchestrator.task_executor.execute_single_task``: a component (container or importer); both
  of kfp.local's orchestrators run every component through it;
- ``orchestrator.enhanced_dag_orchestrator.execute_task``, for DAG components: nested pipelines,
  conditions, the branches of If/Elif/Else, exit handler bodies, loop iterations (named
  ``<loop>-iteration-<i>`` by kfp.local);
- ``orchestrator.enhanced_dag_orchestrator._run_parallel_for_task``: a loop as a whole.

A line: ``{"event": "start"|"end", "kind": "task"|"dag"|"loop", "scope", "component", "task",
"time"}``; an end adds ``state`` (``SUCCEEDED``/``FAILED``), ``outputs`` (``parameters``: name ->
value; ``artifacts``: name -> ``[{name, uri, schemaTitle, metadata}]``) and, for a failed task,
``error``: the deciding line of its output (:mod:`hydra_vertex.reasons`), then its log's path.
``scope`` is the loop iterations the task runs in: kfp.local's pipeline resource name without the
run's own first part (``""`` at the top, ``for-loop-2-iteration-0`` inside a loop, and so on).

A component's output parameters are written to files (kfp's ``outputFile``s), and a launcher
writes its ``gcp_resources`` the moment it has created its job; a ``files`` line (the same keys,
``outputFiles``: name -> path) names them when the task starts, and :func:`read` adds the
``parameters`` found in them so far: the task details show the job a task launched while it runs,
and after it failed.

Resume after a restart of the emulator (``pipeline_main`` is started again on the same events
file): a component task that already SUCCEEDED in an earlier attempt (same scope, component and
task) is not run again; its recorded outputs are handed to kfp.local as if it had just run (its
artifacts are still on disk, under the earlier attempt's directory). kfp.local's
``PIPELINE_JOB_ID`` placeholder is pinned to the emulator's job id, as on Vertex, so that a
launcher run again finds the job it created (``jobs.create_once``).

Each component's output goes to a log of its own (``<logs>/<n>.log``) as well as to kfp.local's
combined log on stdout. Container components (anything kfp.local's SubprocessRunner refuses) run
with kfp.local's DockerRunner on the host network, with the emulator's environment; lightweight
Python components keep the SubprocessRunner: the runner is chosen task by task. A lightweight
component that installs nothing (kfp's launcher script alone, as hydra-vertex's components are)
is not a fresh interpreter: it is forked from this process, which has kfp and the clients
imported (:func:`run_forked`), and writes its output straight to its log (copied to stdout when
it ends): a pipeline process killed on cancel cannot take a component's last words with it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import os
import re
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from hydra_vertex import reasons
from hydra_vertex.emulator.store import now

_INDENT = " " * 4  # kfp.local's indented_print writes this before each line, as its own write
_local = threading.local()


_MAX_OUTPUT_FILE = 64 * 1024


def read(path: Path) -> list[dict[str, Any]]:
    """The events written so far (a torn last line, still being written, is skipped); each
    ``files`` event gets the ``parameters`` its files hold by now."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            if event.get("event") == "files":
                event["parameters"] = _written(event.get("outputFiles") or {})
            out.append(event)
    return out


def _written(files: Mapping[str, Any]) -> dict[str, str]:
    """The output parameters whose files exist, as the text they hold."""
    found: dict[str, str] = {}
    for name, file in files.items():
        try:
            with open(str(file), encoding="utf-8", errors="replace") as f:
                found[str(name)] = f.read(_MAX_OUTPUT_FILE)
        except OSError:
            continue
    return found
Done = dict[tuple[str, str, str], dict[str, Any]]


def succeeded(events: list[dict[str, Any]]) -> Done:
    """The component tasks that ended SUCCEEDED: (scope, component, task) -> their outputs."""
    return {
        (str(e.get("scope", "")), str(e.get("component", "")), str(e.get("task", ""))): dict(
            e.get("outputs") or {}
        )
        for e in events
        if e.get("event") == "end" and e.get("kind") == "task" and e.get("state") == "SUCCEEDED"
    }


class _Tee:
    """stdout that also copies what the current thread's running component prints to its log."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        sink = getattr(_local, "sink", None)
        if sink is not None and text != _INDENT:
            sink.write(text)
        return self._stream.write(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Recorder:
    """Writes the events; ``install()`` puts its hooks into kfp.local."""

    def __init__(
        self,
        events: Path,
        logs: Path,
        docker_env: Mapping[str, str],
        fork: bool = True,
        done: Done | None = None,
        job_id: str = "",
    ) -> None:
        self.events = events
        self.done = done or {}  # tasks of an earlier attempt: not run again
        self.job_id = job_id  # kfp.local's PIPELINE_JOB_ID (random when empty)
        self.logs = logs
        self.docker_env = dict(docker_env)
        self.fork = fork and hasattr(os, "fork")
        self._lock = threading.Lock()
        self._numbers = itertools.count(1 + _logs_in(logs))
        self._docker: Any = None

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps({**event, "time": now()}, default=str)
        with self._lock, open(self.events, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def new_log(self) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        with self._lock:
            return self.logs / f"{next(self._numbers)}.log"

    def docker_runner(self) -> Any:
        """kfp.local's DockerRunner for container components: on the host network (the
        emulator listens on the loopback), with the emulator's endpoint in the environment."""
        from kfp import local

        with self._lock:
            if self._docker is None:
                self._docker = local.DockerRunner(
                    network_mode="host", environment=dict(self.docker_env)
                )
            return self._docker

    # -- the hooks -------------------------------------------------------------------------------
    def install(self) -> None:
        import kfp
        from kfp.local import subprocess_task_handler
        from kfp.local.orchestrator import (
            dag_orchestrator,
            enhanced_dag_orchestrator,
            task_executor,
        )

        needed = [
            (dag_orchestrator, "run_dag"),
            (enhanced_dag_orchestrator, "run_enhanced_dag"),
            (task_executor, "execute_single_task"),
            (enhanced_dag_orchestrator, "execute_task"),
            (enhanced_dag_orchestrator, "_run_parallel_for_task"),
            (subprocess_task_handler, "run_local_subprocess"),
        ]
        missing = [f"{m.__name__}.{name}" for m, name in needed if not hasattr(m, name)]
        if missing:
            raise RuntimeError(
                f"kfp {kfp.__version__} has no {missing}: the emulator's task events hook into "
                "kfp.local 2.17 (pyproject pins kfp>=2.17,<2.18)"
            )

        task_executor.execute_single_task = self._component(task_executor.execute_single_task)
        if self.job_id:
            dag_orchestrator.run_dag = self._pinned(dag_orchestrator.run_dag)
            enhanced_dag_orchestrator.run_enhanced_dag = self._pinned(
                enhanced_dag_orchestrator.run_enhanced_dag
            )
        enhanced_dag_orchestrator.execute_task = self._dag(enhanced_dag_orchestrator.execute_task)
        enhanced_dag_orchestrator._run_parallel_for_task = self._loop(
            enhanced_dag_orchestrator._run_parallel_for_task
        )
        subprocess_task_handler.run_local_subprocess = self._subprocess(
            subprocess_task_handler.run_local_subprocess
        )
        try:
            from kfp.local import docker_task_handler
        except ImportError:  # no docker package: container tasks fail in kfp.local, and say so
            pass
        else:
            docker_task_handler.run_docker_container = _captured(
                docker_task_handler.run_docker_container
            )
        if not isinstance(sys.stdout, _Tee):
            sys.stdout = _Tee(sys.stdout)

    def _component(self, run: Callable[..., Any]) -> Callable[..., Any]:
        from kfp.local import status

        from hydra_vertex.emulator.pipeline_tasks import lightweight_python

        def execute_single_task(**kwargs: Any) -> Any:
            key = _key("task", kwargs)
            earlier = self.done.get((key["scope"], key["component"], key["task"]))
            if earlier is not None:  # done before the restart: its end event is already there
                return _rebuilt(earlier), status.Status.SUCCESS
            component = kwargs["components"][key["component"]]
            executor = kwargs["executors"][component.executor_label]
            if executor.WhichOneof("spec") == "container":
                command = [*executor.container.command, *executor.container.args]
                if not lightweight_python(command):
                    kwargs["runner"] = self.docker_runner()
            log = self.new_log()
            self.write({"event": "start", **key})
            _local.log, _local.key, _local.exit_code = log, key, None
            try:
                outputs, task_status = run(**kwargs)
            except BaseException as e:
                self.write({"event": "end", **key, "state": "FAILED", "error": _raised(e, log)})
                raise
            finally:
                _local.log = _local.key = None
            end: dict[str, Any] = {"event": "end", **key, "outputs": _outputs(outputs)}
            if task_status == status.Status.SUCCESS:
                end["state"] = "SUCCEEDED"
            else:
                end.update(state="FAILED", error=_failure(log, _local.exit_code))
            self.write(end)
            return outputs, task_status

        return execute_single_task

    def _subprocess(self, run: Callable[..., int]) -> Callable[..., int]:
        """kfp.local's ``run_local_subprocess``: the task's output files named in a ``files``
        event; a lightweight component forked from this process, else ``run`` as it is (its
        output copied to the task's log)."""
        captured = _captured(run)

        def run_local_subprocess(
            full_command: list[str], env_vars: dict[str, str] | None = None
        ) -> int:
            key, log = getattr(_local, "key", None), getattr(_local, "log", None)
            files = output_files(full_command)
            if key is not None and files:
                self.write({"event": "files", **key, "outputFiles": files})
            launch = launcher(full_command) if self.fork else None
            if launch is None or log is None:
                return captured(full_command=full_command, env_vars=env_vars)
            code = run_forked(launch[0], launch[1], env_vars or {}, log)
            _local.exit_code = code
            _copy_to_stdout(log)
            return code

        return run_local_subprocess
    def _pinned(self, run: Callable[..., Any]) -> Callable[..., Any]:
        """``run`` (a DAG orchestrator's entry point) with PIPELINE_JOB_ID set to the job id."""

        def pinned(**kwargs: Any) -> Any:
            kwargs["unique_pipeline_id"] = self.job_id
            return run(**kwargs)

        return pinned

    def _dag(self, run: Callable[..., Any]) -> Callable[..., Any]:
        from kfp.local import status

        def execute_task(**kwargs: Any) -> Any:
            key = _key("dag", kwargs)
            if kwargs["components"][key["component"]].WhichOneof("implementation") != "dag":
                return run(**kwargs)  # a component: execute_single_task records it
            self.write({"event": "start", **key})
            try:
                outputs, task_status = run(**kwargs)
            except BaseException as e:
                self.write({"event": "end", **key, "state": "FAILED", "error": _raised(e, None)})
                raise
            ok = task_status == status.Status.SUCCESS
            self.write(
                {
                    "event": "end",
                    **key,
                    "state": "SUCCEEDED" if ok else "FAILED",
                    "outputs": _outputs(outputs),
                }
            )
            return outputs, task_status

        return execute_task

    def _loop(self, run: Callable[..., bool]) -> Callable[..., bool]:
        def run_parallel_for_task(**kwargs: Any) -> bool:
            key = _key("loop", kwargs)
            self.write({"event": "start", **key})
            try:
                failed = run(**kwargs)
            except BaseException as e:
                self.write({"event": "end", **key, "state": "FAILED", "error": _raised(e, None)})
                raise
            self.write({"event": "end", **key, "state": "FAILED" if failed else "SUCCEEDED"})
            return failed

        return run_parallel_for_task


def _key(kind: str, kwargs: Mapping[str, Any]) -> dict[str, str]:
    resource = str(kwargs["pipeline_resource_name"])
    return {
        "kind": kind,
        "scope": resource.partition("/")[2],
        "component": str(kwargs["task_spec"].component_ref.name),
        "task": str(kwargs["task_name"]),
    }


def _captured(run: Callable[..., int]) -> Callable[..., int]:
    """``run`` (kfp.local's function that runs a component's process or container and prints
    its output) with that output copied to the current task's log, and its exit code kept."""

    def wrapper(*args: Any, **kwargs: Any) -> int:
        log = getattr(_local, "log", None)
        if log is None:
            return run(*args, **kwargs)
        with open(log, "a", encoding="utf-8") as sink:
            _local.sink = sink
            try:
                code = run(*args, **kwargs)
            finally:
                _local.sink = None
        _local.exit_code = code
        return code

    return wrapper


# -- lightweight components, forked ---------------------------------------------------------------
# kfp's launcher script for a lightweight Python component that installs nothing
# (``component_factory._get_command_and_args_for_lightweight_component``), with kfp.local's
# interpreter put in for ``python3``: it writes the source ($0) to a file and runs kfp's executor.
_LAUNCHER = re.compile(
    r'program_path=\$\(mktemp -d\)\s+printf "%s" "\$0" > "\$program_path/ephemeral_component\.py"'
    r"\s+_KFP_RUNTIME=true (?P<python>\S+) -m kfp\.dsl\.executor_main\s+--component_module_path"
    r'\s+"\$program_path/ephemeral_component\.py"\s+"\$@"'
)


def launcher(full_command: list[str]) -> tuple[str, list[str]] | None:
    """``(source, executor args)`` when ``full_command`` is kfp's launcher script alone, run
    with this interpreter; None for anything else (packages to install, another Python)."""
    if len(full_command) < 4 or full_command[0] != "sh" or full_command[1] not in ("-c", "-ec"):
        return None
    match = _LAUNCHER.fullmatch(full_command[2].strip())
    if match is None or match.group("python") not in (sys.executable, "python3"):
        return None
    return full_command[3], [str(a) for a in full_command[4:]]


def output_files(full_command: list[str]) -> dict[str, str]:
    """The output parameters' files of a component's command (its ``--executor_input``)."""
    try:
        at = full_command.index("--executor_input")
        executor_input = json.loads(full_command[at + 1])
        parameters = executor_input["outputs"]["parameters"]
        return {str(k): str(v["outputFile"]) for k, v in parameters.items()}
    except (ValueError, IndexError, KeyError, TypeError, AttributeError):
        return {}


def run_forked(source: str, args: list[str], env: Mapping[str, str], log: Path) -> int:
    """Run a lightweight component as kfp's launcher script would, in a child forked from this
    process (kfp, the clients and the steps already imported); its output goes to ``log``.
    Returns its exit code (negative: the signal that ended it)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit (coverage cannot see it)
        _component(source, args, env, log)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _component(source: str, args: list[str], env: Mapping[str, str], log: Path) -> None:
    """The forked child: what ``sh -ec <launcher> <source> <args>`` would do, then exit."""
    code = 1
    try:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True)
        logging.root.handlers.clear()  # kfp's executor sets up its own, as in a fresh process
        os.environ.update(env)
        os.environ["_KFP_RUNTIME"] = "true"
        module = Path(tempfile.mkdtemp()) / "ephemeral_component.py"
        module.write_text(source, encoding="utf-8")
        from kfp.dsl import executor_main

        sys.argv = ["kfp.dsl.executor_main", "--component_module_path", str(module), *args]
        executor_main.executor_main()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _copy_to_stdout(log: Path) -> None:
    """A forked component's output, into kfp.local's combined log (after it ended)."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                print(line, end="")
    except OSError:
        return
    print()
def _logs_in(logs: Path) -> int:
    """How many task logs an earlier attempt left (new ones are numbered after them)."""
    try:
        return sum(1 for p in logs.iterdir() if p.suffix == ".log")
    except OSError:
        return 0


def _outputs(outputs: Mapping[str, Any] | None) -> dict[str, Any]:
    from kfp import dsl

    parameters: dict[str, Any] = {}
    artifacts: dict[str, list[dict[str, Any]]] = {}
    lists: list[str] = []
    for name, value in (outputs or {}).items():
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(a, dsl.Artifact) for a in items):
            if isinstance(value, list):
                lists.append(name)
            artifacts[name] = [
                {
                    "name": a.name,
                    "uri": a.uri,
                    "schemaTitle": a.schema_title,
                    "metadata": dict(a.metadata or {}),
                }
                for a in items
            ]
        else:
            parameters[name] = value
    out: dict[str, Any] = {"parameters": parameters, "artifacts": artifacts}
    if lists:
        out["artifactLists"] = lists
    return out


def _rebuilt(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """kfp.local's outputs of a task from what :func:`_outputs` recorded."""
    from kfp.dsl.types import artifact_types

    outputs: dict[str, Any] = dict(recorded.get("parameters") or {})
    lists = set(recorded.get("artifactLists") or ())
    for name, items in (recorded.get("artifacts") or {}).items():
        built = [
            artifact_types._SCHEMA_TITLE_TO_TYPE.get(a.get("schemaTitle"), artifact_types.Artifact)(
                name=a.get("name"), uri=a.get("uri"), metadata=dict(a.get("metadata") or {})
            )
            for a in items
        ]
        outputs[name] = built if name in lists or len(built) != 1 else built[0]
    return outputs


def _tail(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - reasons.TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# hydra-vertex's own errors are written for the user: their message, lines and all, is the reason
_OUR_ERROR_RE = re.compile(r"^hydra_vertex\.errors\.\w+: (?P<message>.*)$")


def _our_error(text: str) -> list[str] | None:
    """The message of the hydra-vertex error a component raised last (its first line, then its
    continuation lines), without the exception's module path; None if it raised none."""
    lines = reasons.strip_ansi(text).splitlines()
    for i in range(len(lines) - 1, -1, -1):
        match = _OUR_ERROR_RE.match(lines[i])
        if match is None:
            continue
        out = [match.group("message").strip()]
        for extra in lines[i + 1 :]:
            if not extra.strip() or extra.startswith(("[KFP", "Traceback")):
                break
            out.append(extra.rstrip())
        return out
    return None


def _failure(log: Path, exit_code: int | None) -> str:
    """A failed component's reason: the message of the hydra-vertex error it raised, whole,
    when it raised one; else the deciding line of its output and how it exited."""
    text = _tail(log)
    ours = _our_error(text)
    if ours is not None:  # the step's own error says why: the exit code adds nothing
        return "\n".join([*ours, f"its log: {log}"])
    if exit_code is not None:
        signal = -exit_code if exit_code < 0 else None
        line = reasons.exit_reason(text, exit_code=exit_code, signal=signal)
    else:
        line = reasons.deciding_line(text) or "the task failed"
    return f"{line}\nits log: {log}"


def _raised(error: BaseException, log: Path | None) -> str:
    """The reason of a task whose run raised (kfp.local refusing it, a Docker error, ...)."""
    line = f"{type(error).__name__}: {reasons.first_line(str(error))}".rstrip(": ")
    if log is not None and log.is_file():
        return f"{line}\nits log: {log}"
    return line
