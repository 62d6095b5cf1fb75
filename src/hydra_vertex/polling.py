"""How often to ask whether a job changed.

Against the local emulator a state change is milliseconds away, so a waiter polls often and backs
off while nothing happens: 50 ms after a change, growing by a quarter each quiet poll to at most
1 s, and back to 50 ms at the next change (a trial ending, a state moving on). The change it waits
for is then seen at most a quarter of the quiet time late (at most 1 s). Against Vertex AI a job
changes on the order of minutes, and polls count against the project's quota: one every 30 s, as
the launchers of google-cloud-pipeline-components pace themselves (20-30 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "LOCAL_FACTOR",
    "LOCAL_INITIAL",
    "LOCAL_MAXIMUM",
    "REMOTE_SECONDS",
    "Pace",
    "for_endpoint",
]

LOCAL_INITIAL = 0.05
LOCAL_MAXIMUM = 1.0
LOCAL_FACTOR = 1.25
REMOTE_SECONDS = 30.0


@dataclass
class Pace:
    """Poll intervals: ``initial`` after a change, times ``factor`` per quiet poll, capped at
    ``maximum``. ``Pace.fixed(s)`` never changes."""

    initial: float
    maximum: float
    factor: float = 1.5
    _next: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1:
            raise ValueError(
                f"a pace needs 0 < initial <= maximum and factor >= 1, got initial="
                f"{self.initial}, maximum={self.maximum}, factor={self.factor}"
            )
        self._next = self.initial

    @classmethod
    def fixed(cls, seconds: float) -> Pace:
        return cls(seconds, seconds, 1.0)

    def after(self, changed: bool) -> float:
        """The wait before the next poll; ``changed``: whether this poll saw something new."""
        if changed:
            self._next = self.initial
        wait = self._next
        self._next = min(self.maximum, self._next * self.factor)
        return wait


def for_endpoint(seconds: float | None = None) -> Pace:
    """The pace for the endpoint Vertex calls go to (:func:`hydra_vertex.vertex.resolve_endpoint`);
    ``seconds`` fixes it instead."""
    if seconds:
        return Pace.fixed(seconds)
    from hydra_vertex.vertex import resolve_endpoint

    if resolve_endpoint().is_emulator:
        return Pace(LOCAL_INITIAL, LOCAL_MAXIMUM, LOCAL_FACTOR)
    return Pace.fixed(REMOTE_SECONDS)
