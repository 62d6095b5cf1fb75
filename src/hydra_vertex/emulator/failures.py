"""The failed-trial budget of a tuning job (``max_failed_trial_count``).

- N > 0: the job fails once N trials have failed (Vertex's documented rule).
- 0, "the service decides" (Vertex does not publish its rule): **fail fast**. The job fails as
  soon as the first ``max(parallel_trial_count, 3)`` trials to finish have all failed and none has
  succeeded (fewer when ``max_trial_count`` is smaller), instead of running the whole budget on an
  app that cannot work. Its ``error.message`` gives the first line of each of those trials'
  reasons. One success anywhere and the rule no longer applies: the job then runs its budget.

Trials that did not fail on their own do not count: those interrupted by a restart of the
emulator and those stopped because the job ended. See docs/emulator.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hydra_vertex.reasons import first_line

FAIL_FAST_MIN_TRIALS = 3


@dataclass(frozen=True)
class Finished:
    """A trial that finished on its own, in the order trials finished."""

    trial_id: str
    succeeded: bool
    reason: str = ""  # the infeasible reason of a failed trial


def fail_fast_count(parallel: int, max_trials: int) -> int:
    """How many first finished trials, all failed, fail a job with max_failed_trial_count 0."""
    return min(max(parallel, FAIL_FAST_MIN_TRIALS), max_trials)


class FailurePolicy:
    def __init__(self, max_failed: int, max_trials: int, parallel: int) -> None:
        self.max_failed = max_failed
        self.max_trials = max_trials
        self.parallel = parallel

    def verdict(self, finished: Sequence[Finished]) -> str | None:
        """The job's error message when it must fail now, else None."""
        failed = [t for t in finished if not t.succeeded]
        if self.max_failed > 0:
            if len(failed) < self.max_failed:
                return None
            return (
                f"{len(failed)} trials failed, reaching max_failed_trial_count="
                f"{self.max_failed}. Last reason: {first_line(failed[-1].reason)}"
            )
        count = fail_fast_count(self.parallel, self.max_trials)
        if any(t.succeeded for t in finished) or len(failed) < count:
            return None
        reasons = "\n".join(f"  trial {t.trial_id}: {first_line(t.reason)}" for t in failed[:count])
        return (
            f"the first {count} trials all failed and none succeeded, so the job stopped "
            f"(max_failed_trial_count=0: the emulator fails fast; see docs/emulator.md):\n"
            f"{reasons}"
        )
