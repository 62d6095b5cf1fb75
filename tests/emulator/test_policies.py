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
from hydra_vertex.emulator.stopping import (
    Curve,
    DecayCurveStopping,
    MedianStopping,
    decay_fit,
    policy_for,
    savings,
)
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
    assert not median.use_elapsed
    decay = policy_for(
        StudySpec(decay_curve_stopping_spec={"use_elapsed_duration": True}), True, clock
    )
    assert isinstance(decay, DecayCurveStopping) and decay.clock is clock
    assert decay.use_elapsed and decay.maximize
    elapsed = policy_for(
        StudySpec(median_automated_stopping_spec={"use_elapsed_duration": True}), False, clock
    )
    assert isinstance(elapsed, MedianStopping) and elapsed.use_elapsed
    assert policy_for(StudySpec(convex_automated_stopping_spec={}), False, clock) is None
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
        stopping.POLICIES,
        "decay_curve_stopping_spec",
        lambda spec, _max, clock: StopAfter(60, clock),
    )
    clock = FakeClock()
    rule = policy_for(StudySpec(decay_curve_stopping_spec={}), False, clock)
    assert rule is not None
    running = curve("1", 1.0, started=clock.t)
    assert rule.should_stop(running, []) is None
    clock.t += 61
    assert rule.should_stop(running, []) == "ran 61 s"


def timed(tid: str, *pairs: tuple[float, float], final: float | None = None) -> Curve:
    """A curve by elapsed seconds: ``(seconds, value)`` pairs, reported at steps 1, 2, ..."""
    points = tuple(Point(i + 1, v, t) for i, (t, v) in enumerate(pairs))
    return Curve(tid, points, final=final)


def test_median_rule_by_elapsed_duration_reads_seconds_not_steps() -> None:
    # by step the running trial (step 1) is compared at step 1: averages 10 and 12, median 11;
    # by elapsed time (9 s) every report of the completed trials counts: averages 4 and 6
    completed = [
        timed("1", (1.0, 10.0), (5.0, 1.0), (9.0, 1.0)),
        timed("2", (1.0, 12.0), (5.0, 3.0), (9.0, 3.0)),
    ]
    running = timed("3", (9.0, 8.0))
    assert MedianStopping(False, FakeClock()).should_stop(running, completed) is None
    why = MedianStopping(False, FakeClock(), use_elapsed=True).should_stop(running, completed)
    assert why == "best 8.0 at 9 s elapsed worse than median 5.0"


def test_median_rule_by_elapsed_duration_skips_reports_without_one() -> None:
    completed = [timed("1", (1.0, 1.0)), timed("2", (1.0, 1.0))]
    running = Curve("3", (Point(1, 9.0, None),))
    assert (
        MedianStopping(False, FakeClock(), use_elapsed=True).should_stop(running, completed) is None
    )


def decaying(tid: str, base: float, steps: int, final: bool = True) -> Curve:
    """``base + 10 / step`` at steps 1..steps: a learning curve that levels off at ``base``."""
    points = tuple(Point(s, base + 10.0 / s, 0.5 * s) for s in range(1, steps + 1))
    return Curve(tid, points, final=points[-1].value if final else None)


def test_decay_fit_extrapolates_a_power_law_and_declines_what_it_cannot_fit() -> None:
    exact = [(float(x), 2.0 + 8.0 * x**-1.5) for x in range(1, 5)]
    assert decay_fit(exact, 100.0) == pytest.approx(2.0 + 8.0 * 100**-1.5, rel=1e-3)
    from_zero = [(float(x), 2.0 + 8.0 * (x + 1) ** -1.5) for x in range(4)]  # step 0 counts
    assert decay_fit(from_zero, 99.0) == pytest.approx(2.0 + 8.0 * 100**-1.5, rel=1e-3)
    late = [(x, 1.0 + 4.0 / (x - 3.0)) for x in (3.5, 4.0, 5.0, 7.0)]  # 3 s to start
    assert decay_fit(late, 23.0) == pytest.approx(1.2, rel=1e-3)
    flat = [(1.0, 5.0), (2.0, 5.0), (3.0, 5.0)]
    assert decay_fit(flat, 50.0) == pytest.approx(5.0)
    assert decay_fit([(1.0, 5.0), (2.0, 4.0)], 50.0) is None  # too few points
    assert decay_fit([(2.0, 5.0), (2.0, 4.0), (2.0, 3.0)], 50.0) is None  # one x


@pytest.mark.parametrize(
    ("maximize", "base", "stops"),
    [
        pytest.param(False, 6.0, True, id="min-levels-off-above-the-best"),
        pytest.param(False, 0.5, False, id="min-will-beat-the-best"),
        pytest.param(True, 6.0, True, id="max-levels-off-below-the-best"),
        pytest.param(True, 0.5, False, id="max-will-beat-the-best"),
    ],
)
def test_decay_curve_rule(maximize: bool, base: float, stops: bool) -> None:
    """The same curves, negated when the goal is to maximise: ``base`` is where one levels off."""
    sign = -1.0 if maximize else 1.0

    def flip(c: Curve) -> Curve:
        points = tuple(Point(p.step, sign * p.value, p.elapsed) for p in c.points)
        return Curve(c.trial_id, points, final=None if c.final is None else sign * c.final)

    # the completed trials ran 20 steps and ended at 1 + 0.5 and 3 + 0.5 (best: 1.5, or -1.5)
    completed = [flip(decaying("1", 1.0, 20)), flip(decaying("2", 3.0, 20))]
    running = flip(decaying("3", base, 4, final=False))
    why = DecayCurveStopping(maximize, FakeClock()).should_stop(running, completed)
    assert (why is not None) == stops, why
    if stops:
        assert why is not None and why.startswith("extrapolated to step 20: ")
        assert "worse than the best so far" in why and "fitted at step 4" in why


def test_decay_curve_rule_waits_for_enough_measurements_and_completed_trials() -> None:
    rule = DecayCurveStopping(False, FakeClock())
    completed = [decaying("1", 1.0, 20), decaying("2", 3.0, 20)]
    assert rule.should_stop(decaying("3", 6.0, 2), completed) is None  # 2 points: too few
    assert rule.should_stop(decaying("3", 6.0, 4), completed[:1]) is None  # 1 completed trial
    assert rule.should_stop(decaying("3", 6.0, 4), completed) is not None
    assert rule.should_stop(decaying("3", 6.0, 4), completed) is None  # judged at step 4 already
    assert rule.should_stop(decaying("4", 6.0, 20), completed) is None  # as long as the others


def test_decay_curve_rule_by_elapsed_duration() -> None:
    # the same curves by seconds (0.5 s per step): the horizon is 10 s, not step 20
    rule = DecayCurveStopping(False, FakeClock(), use_elapsed=True)
    completed = [decaying("1", 1.0, 20), decaying("2", 3.0, 20)]
    why = rule.should_stop(decaying("3", 6.0, 4), completed)
    assert why is not None and why.startswith("extrapolated to 10 s elapsed: "), why


def test_savings_of_a_stopped_trial() -> None:
    completed = [decaying("1", 1.0, 20), decaying("2", 3.0, 10)]  # median length 15 steps, 7.5 s
    saved = savings(decaying("3", 6.0, 4), completed)
    assert (saved.steps, saved.seconds) == (11, 5.5)
    assert savings(Curve("3", ()), completed) == stopping.Savings(None, None)


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
        {
            "id": "1",
            "state": "INFEASIBLE",
            "endTime": "2026-01-01T00:00:03Z",
            "infeasibleReason": "a",
        },
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
def test_measurements_carry_the_elapsed_duration_from_the_reports_timestamps(
    tmp_path: Path,
) -> None:
    from hydra_vertex.emulator.metrics import measurement, stored_points

    path = tmp_path / "output.metrics"
    path.write_text(
        '{"loss": "3.0", "global_step": "1", "timestamp": 1001.25}\n'
        '{"loss": "2.0", "global_step": "2", "timestamp": 1003.5}\n'
        '{"loss": "1.0", "global_step": "3"}\n'  # written by hand: no timestamp
    )
    points, _ = read_metric_file(path, "loss", started=1000.0)
    assert points == [Point(1, 3.0, 1.25), Point(2, 2.0, 3.5), Point(3, 1.0, None)]
    assert read_metric_file(path, "loss")[0][0] == Point(1, 3.0)  # start unknown: no elapsed
    rendered = [measurement(p, "loss") for p in points]
    assert rendered[1] == {
        "stepCount": "2",
        "elapsedDuration": "3.500s",
        "metrics": [{"metricId": "loss", "value": 2.0}],
    }
    assert "elapsedDuration" not in rendered[2]
    assert stored_points({"measurements": rendered}) == points


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
