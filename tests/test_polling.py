"""The poll pace: short polls after a change, backing off while nothing happens; fixed remotely."""

from __future__ import annotations

import pytest

from hydra_vertex.polling import Pace, for_endpoint


def test_a_pace_backs_off_while_quiet_and_quickens_on_a_change() -> None:
    pace = Pace(0.05, 1.0, 2.0)
    assert [pace.after(False) for _ in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert pace.after(True) == 0.05
    assert pace.after(False) == 0.1


def test_a_fixed_pace_never_changes() -> None:
    pace = Pace.fixed(30.0)
    assert {pace.after(changed) for changed in (True, False, False, True)} == {30.0}


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"), [(0, 1, 1.5), (2, 1, 1.5), (0.1, 1, 0.5)]
)
def test_a_bad_pace_names_the_rule(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="0 < initial <= maximum and factor >= 1"):
        Pace(initial, maximum, factor)


def test_the_endpoint_decides_the_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HYDRA_VERTEX_EMULATOR", raising=False)
    remote = for_endpoint()
    assert remote.after(True) == remote.after(False) == 30.0  # Vertex AI's pace
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", "http://127.0.0.1:1")
    local = for_endpoint()
    first = local.after(True)
    assert first == 0.05 and first < local.after(False) <= 1.0
    assert for_endpoint(0.2).after(False) == 0.2  # a fixed interval, when one is asked for
