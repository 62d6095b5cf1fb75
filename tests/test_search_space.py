"""Search-space parsing, validation rules (a table, error cases as rows) and the StudySpec round trip."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hydra_vertex import search_space as ss
from hydra_vertex.errors import SearchSpaceError

FULL = {
    "metric": "val_loss",
    "direction": "minimize",
    "params": {
        "optimizer.lr": "tag(log, interval(1e-5, 1e-1))",
        "optimizer.beta2": "tag(reverse_log, interval(0.9, 0.9999))",
        "model.width": "int(interval(16, 256))",
        "model.depth": "tag(log, int(interval(1, 64)))",
        "batch_size": "choice(128, 32, 64)",
        "layers": "range(1, 5)",
        "step": "range(0.5, 2.0, 0.5)",
        "model": "choice(mlp, cnn)",
        "+model.dropout": "interval(0.0, 0.5)",
        "model.kernel_size": {"when": {"model": ["cnn"]}, "values": "choice(3, 5, 7)"},
        "model.stride": {"when": {"model.kernel_size": [5, 7]}, "values": "choice(1, 2)"},
        "opt": "a,b,c",
    },
}


def space(params: dict[str, Any], **top: Any) -> ss.SearchSpace:
    return ss.from_mapping({"metric": "m", "direction": "minimize", **top, "params": params})


@pytest.mark.parametrize(
    ("expr", "kind", "low", "high", "values", "scale"),
    [
        pytest.param("interval(0, 1)", "DOUBLE", 0.0, 1.0, (), "linear", id="interval"),
        pytest.param("tag(log, interval(1e-5, 1e-1))", "DOUBLE", 1e-5, 0.1, (), "log", id="log"),
        pytest.param(
            "tag(reverse_log, interval(0.9, 0.99))", "DOUBLE", 0.9, 0.99, (), "reverse_log", id="rlog"
        ),
        pytest.param("int(interval(16, 256))", "INTEGER", 16, 256, (), "linear", id="int"),
        pytest.param("tag(log, int(interval(1, 64)))", "INTEGER", 1, 64, (), "log", id="int-log"),
        pytest.param("range(1, 5)", "INTEGER", 1, 4, (), "linear", id="range-exact"),
        pytest.param("range(0, 10, 5)", "DISCRETE", None, None, (0, 5), "linear", id="range-step"),
        pytest.param("choice(128, 32, 64)", "DISCRETE", None, None, (32, 64, 128), "linear", id="sorted"),
        pytest.param("choice(0.1, 0.01)", "DISCRETE", None, None, (0.01, 0.1), "linear", id="floats"),
        pytest.param("choice(3, 1, 2)", "INTEGER", 1, 3, (), "linear", id="choice-exact-int"),
        pytest.param("choice(mlp, cnn)", "CATEGORICAL", None, None, ("mlp", "cnn"), "linear", id="cat"),
        pytest.param("a,b", "CATEGORICAL", None, None, ("a", "b"), "linear", id="simple-form"),
        pytest.param("choice(a, 1)", "CATEGORICAL", None, None, ("a", 1), "linear", id="mixed"),
    ],
)
def test_expression_maps_to_vertex_type(
    expr: str, kind: str, low: Any, high: Any, values: tuple[Any, ...], scale: str
) -> None:
    p = space({"x": expr}).param("x")
    assert (p.kind, p.low, p.high, p.values, p.scale) == (kind, low, high, values, scale)
    if kind == "INTEGER":
        assert isinstance(p.low, int) and isinstance(p.high, int)


@pytest.mark.parametrize(
    ("params", "top", "match"),
    [
        pytest.param({"x": "interval(2, 1)"}, {}, r"min <= max.*min=2.0, max=1.0", id="min>max"),
        pytest.param({"x": "int(interval(9, 3))"}, {}, r"min <= max.*min=9, max=3", id="int-min>max"),
        pytest.param({"x": "tag(log, interval(0, 1))"}, {}, r"log scale needs a strictly positive.*min=0", id="log<=0"),
        pytest.param({"x": "tag(reverse_log, interval(-1, 1))"}, {}, r"reverse_log scale.*min=-1", id="rlog<=0"),
        pytest.param({"x": "tag(log, choice(0, 1, 2))"}, {}, r"strictly positive.*min=0", id="log-discrete<=0"),
        pytest.param({"x": "choice(1, 1, 2)"}, {}, r"unique, but 1 repeats", id="discrete-dup"),
        pytest.param({"x": "choice(1.0, 1.00000000001)"}, {}, r"at least 1e-10 apart", id="discrete-close"),
        pytest.param({"x": "range(0, 2000)"}, {}, r"more than 1000 values", id="discrete>1000"),
        pytest.param({"x": "choice(a, a)"}, {}, r"categories must be unique.*'a'", id="cat-dup"),
        pytest.param({"x": "choice(a, 'a')"}, {}, r"categories must be unique", id="cat-dup-quoted"),
        pytest.param({"hydra.run.dir": "choice(a, b)"}, {}, r"'hydra\.\*' keys", id="hydra-key"),
        pytest.param({"a b": "choice(a, b)"}, {}, r"no whitespace", id="id-whitespace"),
        pytest.param({"x": "choice(1, 2)", "+x": "choice(1, 2)"}, {}, r"declared twice", id="id-dup"),
        pytest.param({"x": "interval(0, 1)"}, {"algorithm": "grid"}, r"grid search.*\['x'\] are DOUBLE", id="grid-double"),
        pytest.param(
            {"x": "interval(0, 1)", "y": {"when": {"x": [0.5]}, "values": "choice(1, 2)"}},
            {}, r"INTEGER, CATEGORICAL or DISCRETE parent.*'x' is DOUBLE", id="cond-double-parent",
        ),
        pytest.param(
            {"m": "choice(a, b)", "y": {"when": {"m": ["c"]}, "values": "choice(1, 2)"}},
            {}, r"'when' value 'c' is outside the space of parent 'm'", id="cond-outside",
        ),
        pytest.param(
            {"n": "int(interval(1, 3))", "y": {"when": {"n": [4]}, "values": "choice(1, 2)"}},
            {}, r"'when' value 4 is outside.*INTEGER from 1 to 3", id="cond-int-outside",
        ),
        pytest.param({"y": {"when": {"nope": [1]}, "values": "choice(1, 2)"}}, {}, r"'nope', which is not a declared", id="cond-no-parent"),
        pytest.param({"x": "foo(1, 2)"}, {}, r"cannot parse 'foo\(1, 2\)' with Hydra's sweep grammar", id="unknown-fn"),
        pytest.param({"x": "str(interval(0, 1))"}, {}, r"cannot parse", id="unknown-cast"),
        pytest.param({"x": "tag(linear, interval(0, 1))"}, {}, r"unknown tag\(s\) \['linear'\]", id="unknown-tag"),
        pytest.param({"x": "5"}, {}, r"fixed value, not a sweep", id="fixed"),
        pytest.param({"x": "shuffle(choice(1, 2))"}, {}, r"shuffle", id="shuffle"),
        pytest.param({"x": "choice(1, 2)"}, {"direction": "up"}, r"'direction' must be one of.*'up'", id="bad-direction"),
        pytest.param({"x": "choice(1, 2)"}, {"direction": None}, r"'direction' is missing", id="no-direction"),
        pytest.param({"x": "choice(1, 2)"}, {"algorithm": "vizier"}, r"'algorithm' must be one of", id="bad-algo"),
        pytest.param({}, {}, r"'params' must be a non-empty mapping", id="no-params"),
    ],
)
def test_validation_rules(params: dict[str, Any], top: dict[str, Any], match: str) -> None:
    data: dict[str, Any] = {"metric": "m", "direction": "minimize", **top, "params": params}
    if top.get("direction", "x") is None:
        del data["direction"]
    with pytest.raises(SearchSpaceError, match=match):
        ss.from_mapping(data)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        pytest.param([2.0, 1.0], r"increasing order, but 2 comes before 1", id="unsorted"),
        pytest.param([1.0, 1.0], r"unique", id="dup"),
        pytest.param([float(i) for i in range(1001)], r"at most 1000 values, got 1001", id="too-many"),
    ],
)
def test_study_spec_discrete_rules(values: list[float], match: str) -> None:
    from google.cloud.aiplatform_v1.types import StudySpec

    spec = StudySpec(
        metrics=[StudySpec.MetricSpec(metric_id="m", goal=StudySpec.MetricSpec.GoalType.MINIMIZE)],
        parameters=[
            StudySpec.ParameterSpec(
                parameter_id="x",
                discrete_value_spec=StudySpec.ParameterSpec.DiscreteValueSpec(values=values),
            )
        ],
    )
    with pytest.raises(SearchSpaceError, match=match):
        ss.SearchSpace.from_study_spec(spec)


def test_full_space_round_trips_through_study_spec() -> None:
    full = ss.from_mapping(FULL)
    spec = full.to_study_spec()
    back = ss.SearchSpace.from_study_spec(spec)
    # The StudySpec cannot carry Hydra's '+' marker; everything else comes back equal.
    expected = dataclasses.replace(
        full, params=tuple(dataclasses.replace(p, new_key=False) for p in full.params)
    )
    assert back == expected
    assert type(spec).to_json(back.to_study_spec()) == type(spec).to_json(spec)


def test_study_spec_shape() -> None:
    spec = ss.from_mapping(FULL).to_study_spec()
    by_id = {p.parameter_id: p for p in spec.parameters}
    assert "model.kernel_size" not in by_id  # nested under its parent
    cond = by_id["model"].conditional_parameter_specs[0]
    assert list(cond.parent_categorical_values.values) == ["cnn"]
    assert cond.parameter_spec.parameter_id == "model.kernel_size"
    grand = cond.parameter_spec.conditional_parameter_specs[0]
    assert list(grand.parent_discrete_values.values) == [5.0, 7.0]
    assert list(by_id["batch_size"].discrete_value_spec.values) == [32.0, 64.0, 128.0]
    assert by_id["optimizer.lr"].scale_type == by_id["optimizer.lr"].ScaleType.UNIT_LOG_SCALE


def test_lightning_hparams_search_config_unchanged(tmp_path: Path) -> None:
    # configs/hparams_search/mnist_optuna.yaml from ashleve/lightning-hydra-template
    text = """\
# @package _global_
defaults:
  - override /hydra/sweeper: optuna
optimized_metric: "val/acc_best"
hydra:
  mode: "MULTIRUN"
  sweeper:
    _target_: hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper
    storage: null
    study_name: null
    n_jobs: 1
    direction: maximize
    n_trials: 20
    sampler:
      _target_: optuna.samplers.TPESampler
      seed: 1234
      n_startup_trials: 10
    params:
      model.optimizer.lr: interval(0.0001, 0.1)
      data.batch_size: choice(32, 64, 128, 256)
      model.net.lin1_size: choice(64, 128, 256)
      model.net.lin2_size: choice(64, 128, 256)
      model.net.lin3_size: choice(32, 64, 128, 256)
"""
    path = tmp_path / "mnist_optuna.yaml"
    path.write_text(text)
    space_ = ss.load(path)
    assert space_.metric == "val/acc_best"
    assert space_.direction == "maximize"
    assert [p.key for p in space_.params] == [
        "model.optimizer.lr", "data.batch_size", "model.net.lin1_size",
        "model.net.lin2_size", "model.net.lin3_size",
    ]
    assert space_.param("data.batch_size").values == (32, 64, 128, 256)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SearchSpaceError, match=r"cannot read search-space file.*nope\.yaml"):
        ss.load(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("metric: [unclosed\n")
    with pytest.raises(SearchSpaceError, match=r"bad\.yaml: not valid YAML"):
        ss.load(bad)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"lr": 0.1}))
    with pytest.raises(SearchSpaceError, match="no search space found"):
        ss.load(other)


def test_cache_round_trip_and_invalidation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(FULL))
    first = ss.load_cached(path)
    assert list((tmp_path / "cache").iterdir())
    assert ss.load_cached(path) == first == ss.load(path)
    changed = dict(FULL, direction="maximize")
    path.write_text(yaml.safe_dump(changed))
    assert ss.load_cached(path).direction == "maximize"


def test_category_lookup_error_lists_categories() -> None:
    p = space({"m": "choice(mlp, cnn)"}).param("m")
    assert p.category_value("cnn") == "cnn"
    with pytest.raises(SearchSpaceError, match=r"'rnn' is not a category.*\['mlp', 'cnn'\]"):
        p.category_value("rnn")


# -- property: any valid space survives the StudySpec round trip ----------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}", fullmatch=True)


@st.composite
def _param(draw: st.DrawFn, key: str) -> ss.Param:
    kind = draw(st.sampled_from(["DOUBLE", "INTEGER", "DISCRETE", "CATEGORICAL"]))
    if kind == "DOUBLE":
        lo = draw(st.floats(1e-6, 1e3))
        hi = draw(st.floats(lo, 1e4))
        return ss.Param(key, "DOUBLE", low=lo, high=hi, scale=draw(st.sampled_from(["linear", "log", "reverse_log"])))
    if kind == "INTEGER":
        lo_i = draw(st.integers(1, 100))
        return ss.Param(key, "INTEGER", low=lo_i, high=draw(st.integers(lo_i, 1000)))
    if kind == "DISCRETE":
        vals = draw(st.lists(st.integers(-50, 50), min_size=1, max_size=8, unique=True))
        return ss.Param(key, "DISCRETE", values=tuple(sorted(vals)))
    # any text a command line can carry: UTF-8 (a lone surrogate is refused) without NUL (refused)
    text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=6)
    cats = draw(st.lists(text, min_size=1, max_size=5, unique=True))
    return ss.Param(key, "CATEGORICAL", values=tuple(cats))


@st.composite
def _space(draw: st.DrawFn) -> ss.SearchSpace:
    keys = draw(st.lists(_keys, min_size=1, max_size=5, unique=True))
    params = [draw(_param(k)) for k in keys]
    parent = params[0]
    if len(params) > 1 and parent.kind in ("CATEGORICAL", "DISCRETE"):
        child = params[1]
        params[1] = dataclasses.replace(child, parent=parent.key, parent_values=parent.values[:1])
    return ss.SearchSpace(
        metric="m", direction=draw(st.sampled_from(["minimize", "maximize"])), params=tuple(params),
        algorithm=draw(st.sampled_from(["bayesian", "random"])),
        measurement_selection=draw(st.sampled_from(["last", "best"])),
    )


@settings(max_examples=150, deadline=None)
@given(_space())
def test_study_spec_round_trip_property(space_: ss.SearchSpace) -> None:
    assert ss.SearchSpace.from_study_spec(space_.to_study_spec()) == space_
    assert ss.SearchSpace.from_dict(space_.to_dict()) == space_
