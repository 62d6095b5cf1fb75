"""Runs sharing an emulator started for them: a lease per run, checked by pid and start time; the
emulator stops when the last lease is given back, or by itself when every holder died."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hydra_vertex import leases
from hydra_vertex.local_emulator import IDLE_SECONDS, alive, lease


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def _gone(state: Path) -> bool:
    """No emulator holds the state directory (its lock is free)."""
    from hydra_vertex.emulator.store import Store

    try:
        Store(state).close()
    except Exception:
        return False
    return True


def test_a_dead_runs_lease_is_pruned_and_a_live_one_kept(tmp_path: Path) -> None:
    with leases.locked(tmp_path):
        mine = leases.take(tmp_path)
        theirs = leases.take(tmp_path, pid=_dead_pid())
        assert theirs.is_file()
        assert leases.holders(tmp_path) == [leases.Holder.of(os.getpid())]
    assert mine.is_file() and not theirs.exists()


def test_a_reused_pid_does_not_keep_a_dead_runs_lease() -> None:
    me = leases.Holder.of(os.getpid())
    assert me.alive()
    assert not leases.Holder(os.getpid(), "1").alive()  # same pid, another start time


def test_the_lock_can_be_tried_without_waiting(tmp_path: Path) -> None:
    with leases.locked(tmp_path) as held:
        assert held
        code = (
            "import sys; from pathlib import Path; from hydra_vertex import leases\n"
            f"with leases.locked(Path({str(tmp_path)!r}), wait=False) as held: sys.exit(int(held))"
        )
        assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # not held


@pytest.mark.slow
def test_runs_share_one_emulator_and_the_last_one_out_stops_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with lease(state) as first:
        one = first.use()  # as a run does: a used state directory is kept, log and all
        assert first.started_here and one.started_here
        with lease(state) as second:
            two = second.use()
            assert two.endpoint == one.endpoint and not second.started_here
        assert alive(one.endpoint, one.token)  # the first run still has it
        assert not _gone(state)
    assert not alive(one.endpoint, one.token)
    assert _gone(state) and not (state / leases.AUTO_FILE).exists()
    assert not list((state / leases.LEASES_DIR).glob("*.json"))
    log = (state / "emulator.log").read_text()
    assert log.count("hydra-vertex: emulator at ") == 1, log


@pytest.mark.slow
def test_an_emulator_whose_runs_all_died_stops_by_itself(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code = (
        "import sys, time; from pathlib import Path; from hydra_vertex.local_emulator import lease\n"
        f"with lease(Path({str(state)!r})) as held:\n"
        "    held.info(); print('ready', flush=True); time.sleep(600)\n"
    )
    run = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None and run.stdout.readline().strip() == "ready"
        auto = leases.auto_emulator(state)
        assert auto is not None
        run.send_signal(signal.SIGKILL)  # the run dies without giving its lease back
        run.wait(timeout=30)
        deadline = time.monotonic() + 60 + IDLE_SECONDS
        while auto.alive():
            assert time.monotonic() < deadline, "the emulator outlived its runs"
            time.sleep(0.1)
        assert _gone(state)
        assert "no run holds a lease" in (state / "emulator.log").read_text()
    finally:
        if run.poll() is None:
            run.kill()
