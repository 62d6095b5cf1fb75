"""The tuning loop's policies alone, on synthetic trials with an injected clock (no processes):
automated stopping, the failed-trial budget (fail fast), and how a trial ends from its reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from hydra_vertex.emulator import stopping
from hydra_vertex.emulator.failures import FailurePolicy, Finished, fail_fast_count, first_line
from hydra_vertex.emulator.metrics import Point, judge, read_metric_file, select_measurement
from hydra_vertex.emulator.stopping import Curve, MedianStopping, policy_for
from hydra_vertex.emulator.trial_loop import finished_trials


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def curve(tid: str, *values: float, started: float = 0.0) -> Curve:
    return Curve(tid, tuple(Point(i + 1, v) for i, v in enumerate(values)), started)


# -- stopping ------------------------------------------------------------------------------------
COMPLETED = [curve("1", 4.0, 2.0, 1.0), curve("2", 6.0, 4.0, 3.0)]


@pytest.mark.parametrize(
    ("maximize", "running", "stops"),
    [
        pytest.param(False, curve("3", 9.0, 8.0), True, id="min-worse-than-median"),
        pytest.param(False, curve("3", 9.0, 3.0), False, id="min-better-than-median"),
        pytest.param(False, curve("3", 9.0, 4.0), False, id="min-equal-is-not-worse"),
        pytest.param(True, curve("3", 9.0, 8.0), False, id="max-better-than-median"),
        pytest.param(True, curve("3", 1.0, 2.0), True, id="max-worse-than-median"),
        pytest.param(False, curve("3", math.nan, math.nan), False, id="nothing-finite"),
    ],
)
def test_median_rule(maximize: bool, running: Curve, stops: bool) -> None:
    # at step 2 the completed trials' running averages are 3.0 and 5.0: the median is 4.0
    why = MedianStopping(maximize, FakeClock()).should_stop(running, COMPLETED)
    assert (why is not None) == stops, why
    if stops:
        assert "worse than median 4.0" in str(why)


def test_median_rule_needs_two_completed_trials_and_judges_each_step_once() -> None:
    rule = MedianStopping(False, FakeClock())
    assert rule.should_stop(curve("3", 9.0), COMPLETED[:1]) is None
    assert rule.should_stop(curve("3", 9.0), COMPLETED) is not None
    assert rule.should_stop(curve("3", 9.0), COMPLETED) is None  # step 1 again: already judged
    assert rule.should_stop(curve("3", 9.0, 9.0), COMPLETED) is not None  # a new step


def test_policy_for_reads_the_study_spec_and_hands_the_clock_over() -> None:
    from google.cloud.aiplatform_v1.types import StudySpec

    clock = FakeClock()
    median = policy_for(StudySpec(median_automated_stopping_spec={}), False, clock)
    assert isinstance(median, MedianStopping) and median.clock is clock
    assert policy_for(StudySpec(decay_curve_stopping_spec={}), False, clock) is None
    assert policy_for(StudySpec(), False, clock) is None


def test_a_new_policy_is_one_entry_and_reads_elapsed_time_from_the_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What adding a rule takes (here a toy elapsed-time rule under the decay-curve spec)."""
    from google.cloud.aiplatform_v1.types import StudySpec

    class StopAfter:
        def __init__(self, seconds: float, clock: stopping.Clock) -> None:
            self.seconds, self.clock = seconds, clock

        def should_stop(self, trial: Curve, completed: Sequence[Curve]) -> str | None:
            elapsed = self.clock() - trial.started
            return f"ran {elapsed:.0f} s" if elapsed > self.seconds else None

    monkeypatch.setitem(
        stopping.POLICIES, "decay_curve_stopping_spec", lambda spec, _max, clock: StopAfter(60, clock)
    )
    clock = FakeClock()
    rule = policy_for(StudySpec(decay_curve_stopping_spec={}), False, clock)
    assert rule is not None
    running = curve("1", 1.0, started=clock.t)
    assert rule.should_stop(running, []) is None
    clock.t += 61
    assert rule.should_stop(running, []) == "ran 61 s"


# -- failures ------------------------------------------------------------------------------------
# A stored reason as executor.describe_exit writes it (hydra_vertex.reasons.trial_reason).
CRASH = (
    "RuntimeError: diverged at lr=0.1 (exit code 1)\nlast log lines:\n"
    "Traceback (most recent call last):\n"
    '  File "app.py", line 9, in main\nRuntimeError: diverged at lr=0.1\n'
    "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace."
)


def failed(tid: str, reason: str = CRASH) -> Finished:
    return Finished(tid, False, reason)


@pytest.mark.parametrize(
    ("parallel", "max_trials", "count"),
    [(1, 20, 3), (2, 20, 3), (5, 20, 5), (4, 2, 2), (1, 1, 1)],
)
def test_fail_fast_count(parallel: int, max_trials: int, count: int) -> None:
    assert fail_fast_count(parallel, max_trials) == count


def test_fail_fast_fails_after_the_first_trials_all_fail_with_their_reasons() -> None:
    policy = FailurePolicy(max_failed=0, max_trials=20, parallel=2)
    assert policy.verdict([failed("1"), failed("2")]) is None
    message = policy.verdict([failed("2"), failed("1"), failed("3", "reported no metric 'x'")])
    assert message is not None
    assert message.startswith("the first 3 trials all failed and none succeeded")
    assert "  trial 2: RuntimeError: diverged at lr=0.1 (exit code 1)\n" in message
    assert "  trial 3: reported no metric 'x'" in message
    assert "Traceback" not in message and "HYDRA_FULL_ERROR" not in message


def test_fail_fast_never_applies_once_a_trial_succeeded() -> None:
    policy = FailurePolicy(max_failed=0, max_trials=20, parallel=1)
    trials = [failed("1"), Finished("2", True), *(failed(str(i)) for i in range(3, 10))]
    assert policy.verdict(trials) is None


def test_a_positive_budget_counts_failures() -> None:
    policy = FailurePolicy(max_failed=2, max_trials=20, parallel=1)
    assert policy.verdict([Finished("1", True), failed("2")]) is None
    message = policy.verdict([Finished("1", True), failed("2"), failed("3", "boom")])
    assert message == "2 trials failed, reaching max_failed_trial_count=2. Last reason: boom"


def test_finished_trials_leave_out_trials_that_did_not_fail_on_their_own() -> None:
    stored = [
        {"id": "1", "state": "INFEASIBLE", "endTime": "2026-01-01T00:00:03Z", "infeasibleReason": "a"},
        {"id": "2", "state": "SUCCEEDED", "endTime": "2026-01-01T00:00:01Z"},
        {"id": "3", "state": "INFEASIBLE", "endTime": "2026-01-01T00:00:02Z", "_uncounted": True},
        {"id": "4", "state": "ACTIVE"},
    ]
    assert finished_trials(stored) == [Finished("2", True), Finished("1", False, "a")]


@pytest.mark.parametrize(
    ("reason", "line"),
    [
        (CRASH, "RuntimeError: diverged at lr=0.1 (exit code 1)"),
        ("killed by signal 9", "killed by signal 9"),
        ("exited with code 2\nlast log lines:\nusage: app.py", "exited with code 2"),
        ("", ""),
    ],
)
def test_first_line(reason: str, line: str) -> None:
    assert first_line(reason) == line


# -- metrics -------------------------------------------------------------------------------------
def test_judging_a_trial_from_its_reports(tmp_path: Path) -> None:
    path = tmp_path / "output.metrics"
    path.write_text(
        '{"loss": "3.0", "global_step": "1"}\n{"loss": "1.0", "global_step": "2"}\n'
        '{"loss": "2.0", "global_step": "3"}\n{"loss": "nan", "global_st'  # torn last line
    )
    points, seen = read_metric_file(path, "loss")
    assert points == [Point(1, 3.0), Point(2, 1.0), Point(3, 2.0)] and seen == {"loss"}
    assert select_measurement(points, "last", False) == Point(3, 2.0)
    assert select_measurement(points, "best", False) == Point(2, 1.0)
    assert select_measurement(points, "best", True) == Point(1, 3.0)
    assert judge(None, points, seen, "loss", "last", False).final == Point(3, 2.0)
    assert judge("exited with code 3", points, seen, "loss", "last", False).reason == (
        "exited with code 3"
    )
    assert "tags seen: ['acc']" in judge(None, [], {"acc"}, "loss", "last", False).reason
    assert "non-finite" in judge(None, [Point(1, math.nan)], {"loss"}, "loss", "last", False).reason
