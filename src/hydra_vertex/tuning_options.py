"""The tuning options a job file adds to the search space's ``StudySpec``.

``algorithm`` (bayesian | grid | random), ``measurement_selection`` (last | best) and
``early_stopping`` (``median`` or ``decay_curve``, optionally with ``use_elapsed_duration``)::

    tuning:
      algorithm: random
      measurement_selection: best
      early_stopping: median            # or {rule: decay_curve, use_elapsed_duration: true}

Precedence with the search space, which may set ``algorithm`` and ``measurement_selection`` too:
a value here wins over the space's default (``bayesian``, ``last``); a space that sets another
value (``grid``, ``random``, ``best``) and a job file that sets a different one are a conflict
(:class:`~hydra_vertex.errors.SettingError`): say it in one place.

Early stopping maps to ``StudySpec.median_automated_stopping_spec`` or
``StudySpec.decay_curve_stopping_spec``; both judge the intermediate measurements a trial reports
(``hydra_vertex.reporting.report(value, step=...)``), by step, or by elapsed time with
``use_elapsed_duration``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from hydra_vertex.errors import SearchSpaceError, SettingError

if TYPE_CHECKING:  # pragma: no cover
    from google.cloud.aiplatform_v1.types import StudySpec

    from hydra_vertex.search_space import SearchSpace

ALGORITHMS = ("bayesian", "grid", "random")
SELECTIONS = ("last", "best")
STOPPING_RULES = ("median", "decay_curve")
KEYS = ("algorithm", "measurement_selection", "early_stopping")
_SPACE_DEFAULTS = {"algorithm": "bayesian", "measurement_selection": "last"}


@dataclass(frozen=True)
class EarlyStopping:
    rule: str  # median | decay_curve
    use_elapsed_duration: bool = False


@dataclass(frozen=True)
class TuningOptions:
    """``None``: the search space decides (and, for early stopping: none)."""

    algorithm: str | None = None
    measurement_selection: str | None = None
    early_stopping: EarlyStopping | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TuningOptions:
        """Checked options (a job file's ``tuning`` option keys, the ``tuning_options``
        parameter)."""
        data = data or {}
        unknown = sorted(set(data) - set(KEYS))
        if unknown:
            raise SettingError(
                unknown[0], f"is not a tuning option (allowed: {list(KEYS)})", data[unknown[0]]
            )
        return cls(
            algorithm=_choice("algorithm", data.get("algorithm"), ALGORITHMS),
            measurement_selection=_choice(
                "measurement_selection", data.get("measurement_selection"), SELECTIONS
            ),
            early_stopping=_early_stopping(data.get("early_stopping")),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.algorithm:
            out["algorithm"] = self.algorithm
        if self.measurement_selection:
            out["measurement_selection"] = self.measurement_selection
        if self.early_stopping:
            out["early_stopping"] = {
                "rule": self.early_stopping.rule,
                "use_elapsed_duration": self.early_stopping.use_elapsed_duration,
            }
        return out

    def apply(self, space: SearchSpace) -> SearchSpace:
        """``space`` with this algorithm and measurement selection (see the module's precedence)."""
        changes: dict[str, Any] = {}
        for key in ("algorithm", "measurement_selection"):
            mine, theirs = getattr(self, key), getattr(space, key)
            if mine is None or mine == theirs:
                continue
            if theirs != _SPACE_DEFAULTS[key]:
                raise SettingError(
                    key,
                    f"conflicts with the search space ({space.source or 'its file'} sets "
                    f"{key}: {theirs}); set it in one place",
                    mine,
                )
            changes[key] = mine
        if not changes:
            return space
        try:
            return replace(space, **changes)
        except SearchSpaceError as e:  # grid search over DOUBLE parameters, say
            key = "algorithm" if "algorithm" in changes else "measurement_selection"
            raise SettingError(key, f"does not fit the search space: {e}", changes[key]) from None

    def study_spec(self, space: SearchSpace) -> StudySpec:
        """The ``StudySpec`` of ``space`` (already :meth:`apply`-ed) with the early stopping."""
        from google.cloud.aiplatform_v1.types import StudySpec

        spec = space.to_study_spec()
        stop = self.early_stopping
        if stop is not None and stop.rule == "median":
            spec.median_automated_stopping_spec = StudySpec.MedianAutomatedStoppingSpec(
                use_elapsed_duration=stop.use_elapsed_duration
            )
        elif stop is not None:
            spec.decay_curve_stopping_spec = StudySpec.DecayCurveAutomatedStoppingSpec(
                use_elapsed_duration=stop.use_elapsed_duration
            )
        return spec


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in allowed:
        raise SettingError(key, f"must be one of {list(allowed)}", value)
    return value.lower()


def _early_stopping(value: Any) -> EarlyStopping | None:
    """``median`` | ``decay_curve`` | ``{rule: ..., use_elapsed_duration: bool}`` | null."""
    if value is None or value is False or value == "none":
        return None
    data: Mapping[str, Any] = {"rule": value} if isinstance(value, str) else value
    if not isinstance(data, Mapping):
        raise SettingError(
            "early_stopping",
            f"must be one of {list(STOPPING_RULES)} or a mapping {{rule, use_elapsed_duration}}",
            value,
        )
    unknown = sorted(set(data) - {"rule", "use_elapsed_duration"})
    if unknown:
        raise SettingError(
            "early_stopping",
            f"has unknown key(s) {unknown} (allowed: rule, use_elapsed_duration)",
            dict(data),
        )
    rule = data.get("rule")
    if not isinstance(rule, str) or rule.lower() not in STOPPING_RULES:
        raise SettingError("early_stopping.rule", f"must be one of {list(STOPPING_RULES)}", rule)
    elapsed = data.get("use_elapsed_duration", False)
    if not isinstance(elapsed, bool):
        raise SettingError("early_stopping.use_elapsed_duration", "must be true or false", elapsed)
    return EarlyStopping(rule.lower(), elapsed)
