"""Translate a :class:`~hydra_vertex.search_space.SearchSpace` to a Vertex ``StudySpec`` and back.

Imported lazily: it pulls in the ``google.cloud.aiplatform_v1`` proto types.

The round trip is lossless for every space the Hydra grammar produces, with two documented
exceptions that the StudySpec cannot carry: a DISCRETE choice of integral floats
(``choice(1.0, 2.0)``) comes back as integers, non-string categories (``choice(a, 1)``) as
strings, and the ``+`` marker of a new Hydra key is not carried at all.
"""

from __future__ import annotations

from typing import Any, cast

from google.cloud.aiplatform_v1.types import StudySpec

from hydra_vertex.errors import SearchSpaceError
from hydra_vertex.search_space import (
    Algorithm,
    Direction,
    MeasurementSelection,
    Param,
    Primitive,
    Scale,
    SearchSpace,
    category_string,
    hydra_key,
)

PS = StudySpec.ParameterSpec
_SCALES: dict[str, Any] = {
    "linear": PS.ScaleType.UNIT_LINEAR_SCALE,
    "log": PS.ScaleType.UNIT_LOG_SCALE,
    "reverse_log": PS.ScaleType.UNIT_REVERSE_LOG_SCALE,
}
_SCALE_NAMES = {int(v): k for k, v in _SCALES.items()}
_ALGORITHMS: dict[str, Any] = {
    "bayesian": StudySpec.Algorithm.ALGORITHM_UNSPECIFIED,
    "grid": StudySpec.Algorithm.GRID_SEARCH,
    "random": StudySpec.Algorithm.RANDOM_SEARCH,
}
_ALGORITHM_NAMES = {int(v): k for k, v in _ALGORITHMS.items()}
_SELECTIONS: dict[str, Any] = {
    "last": StudySpec.MeasurementSelectionType.LAST_MEASUREMENT,
    "best": StudySpec.MeasurementSelectionType.BEST_MEASUREMENT,
}


_GOALS: dict[str, Any] = {
    "minimize": StudySpec.MetricSpec.GoalType.MINIMIZE,
    "maximize": StudySpec.MetricSpec.GoalType.MAXIMIZE,
}


def space_to_study_spec(space: SearchSpace) -> StudySpec:
    """One ``MetricSpec`` per objective, in order, and the parameters."""
    return StudySpec(
        metrics=[
            StudySpec.MetricSpec(metric_id=metric, goal=_GOALS[direction])
            for metric, direction in space.objectives
        ],
        parameters=[_to_proto(space, p) for p in space.children(None)],
        algorithm=_ALGORITHMS[space.algorithm],
        measurement_selection_type=_SELECTIONS[space.measurement_selection],
    )


def _to_proto(space: SearchSpace, p: Param) -> Any:
    spec = PS(parameter_id=p.parameter_id)
    if p.kind == "DOUBLE":
        spec.double_value_spec = PS.DoubleValueSpec(
            min_value=float(cast(float, p.low)), max_value=float(cast(float, p.high))
        )
    elif p.kind == "INTEGER":
        spec.integer_value_spec = PS.IntegerValueSpec(
            min_value=int(cast(int, p.low)), max_value=int(cast(int, p.high))
        )
    elif p.kind == "DISCRETE":
        spec.discrete_value_spec = PS.DiscreteValueSpec(values=[float(v) for v in p.values])
    else:
        spec.categorical_value_spec = PS.CategoricalValueSpec(values=list(p.categories))
    if p.kind != "CATEGORICAL":
        spec.scale_type = _SCALES[p.scale]
    children = []
    for child in space.children(p.key):
        cond = PS.ConditionalParameterSpec(parameter_spec=_to_proto(space, child))
        if p.kind == "CATEGORICAL":
            cond.parent_categorical_values = PS.ConditionalParameterSpec.CategoricalValueCondition(
                values=[category_string(v) for v in child.parent_values]
            )
        elif p.kind == "INTEGER":
            cond.parent_int_values = PS.ConditionalParameterSpec.IntValueCondition(
                values=[int(cast(int, v)) for v in child.parent_values]
            )
        else:
            cond.parent_discrete_values = PS.ConditionalParameterSpec.DiscreteValueCondition(
                values=[float(cast(float, v)) for v in child.parent_values]
            )
        children.append(cond)
    if children:
        spec.conditional_parameter_specs = children
    return spec


def goal_direction(metric: StudySpec.MetricSpec, where: str = "metric") -> Direction:
    """The one place a metric's goal becomes a direction: ``MAXIMIZE`` is ``maximize``,
    ``MINIMIZE`` is ``minimize``; anything else is an error naming ``where``."""
    goal = StudySpec.MetricSpec.GoalType(metric.goal)
    if goal == StudySpec.MetricSpec.GoalType.MAXIMIZE:
        return "maximize"
    if goal == StudySpec.MetricSpec.GoalType.MINIMIZE:
        return "minimize"
    raise SearchSpaceError(f"{where}.goal must be MINIMIZE or MAXIMIZE, got {goal.name}")


def measurement_selection(spec: StudySpec) -> MeasurementSelection:
    """``best`` for BEST_MEASUREMENT, else ``last`` (LAST_MEASUREMENT is the API default)."""
    best = StudySpec.MeasurementSelectionType.BEST_MEASUREMENT
    return "best" if spec.measurement_selection_type == best else "last"


def study_spec_to_space(spec: StudySpec, source: str = "StudySpec") -> SearchSpace:
    if not spec.metrics:
        raise SearchSpaceError(f"{source}: study_spec.metrics must hold at least one metric")
    objectives: list[tuple[str, Direction]] = []
    for i, m in enumerate(spec.metrics):
        if not m.metric_id:
            raise SearchSpaceError(f"{source}: study_spec.metrics[{i}].metric_id is empty")
        objectives.append((m.metric_id, goal_direction(m, f"{source}: study_spec.metrics[{i}]")))
    algorithm = _ALGORITHM_NAMES.get(int(spec.algorithm))
    if algorithm is None:
        raise SearchSpaceError(
            f"{source}: study_spec.algorithm {spec.algorithm!r} is not supported; use "
            f"ALGORITHM_UNSPECIFIED, GRID_SEARCH or RANDOM_SEARCH"
        )
    selection = measurement_selection(spec)
    params: list[Param] = []
    for i, ps in enumerate(spec.parameters):
        _from_proto(ps, None, (), params, f"{source}: study_spec.parameters[{i}]")
    return SearchSpace(
        metric=objectives[0][0],
        direction=objectives[0][1],
        more_metrics=tuple(objectives[1:]),
        params=tuple(params),
        algorithm=cast(Algorithm, algorithm),
        measurement_selection=selection,
        source=source,
    )


def _from_proto(
    ps: Any,
    parent: str | None,
    parent_values: tuple[Primitive, ...],
    out: list[Param],
    where: str,
) -> None:
    which = PS.pb(ps).WhichOneof("parameter_value_spec")
    scale = cast(Scale, _SCALE_NAMES.get(int(ps.scale_type), "linear"))
    common: dict[str, Any] = {
        "key": hydra_key(ps.parameter_id),
        "parent": parent,
        "parent_values": parent_values,
        "scale": scale,
    }
    if which == "double_value_spec":
        dv = ps.double_value_spec
        p = Param(kind="DOUBLE", low=dv.min_value, high=dv.max_value, **common)
    elif which == "integer_value_spec":
        iv = ps.integer_value_spec
        p = Param(kind="INTEGER", low=int(iv.min_value), high=int(iv.max_value), **common)
    elif which == "discrete_value_spec":
        raw = list(ps.discrete_value_spec.values)
        values: tuple[Primitive, ...] = (
            tuple(int(v) for v in raw) if all(float(v).is_integer() for v in raw) else tuple(raw)
        )
        p = Param(kind="DISCRETE", values=values, **common)
    elif which == "categorical_value_spec":
        common["scale"] = "linear"
        p = Param(kind="CATEGORICAL", values=tuple(ps.categorical_value_spec.values), **common)
    else:
        raise SearchSpaceError(
            f"{where} ({ps.parameter_id!r}): needs one of double_value_spec, integer_value_spec, "
            f"discrete_value_spec or categorical_value_spec"
        )
    out.append(p)
    for j, cond in enumerate(ps.conditional_parameter_specs):
        kind = PS.ConditionalParameterSpec.pb(cond).WhichOneof("parent_value_condition")
        if kind == "parent_categorical_values":
            pv: tuple[Primitive, ...] = tuple(cond.parent_categorical_values.values)
        elif kind == "parent_int_values":
            pv = tuple(int(v) for v in cond.parent_int_values.values)
        elif kind == "parent_discrete_values":
            pv = tuple(
                int(v) if p.is_int and float(v).is_integer() else float(v)
                for v in cond.parent_discrete_values.values
            )
        else:
            raise SearchSpaceError(
                f"{where}.conditional_parameter_specs[{j}]: needs a parent value condition"
            )
        _from_proto(
            cond.parameter_spec, p.key, pv, out, f"{where}.conditional_parameter_specs[{j}]"
        )
