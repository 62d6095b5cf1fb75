"""Fuzz: whatever a trial argument or an inline search space holds, the shim either emits an
override that Hydra composes to exactly the trial's value, or says why in one line and exits 2
(issue 15: 4,300-digit INTEGER values, a NUL in a JSON space, backslash + newline categories).

In process: ``build_command`` is the shim's whole conversion; when it refuses, ``main`` (which then
never reaches ``exec``) is run on the same arguments for its exit code and its stderr.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hydra_vertex.errors import HydraVertexError
from hydra_vertex.search_space import Param, SearchSpace
from hydra_vertex.shim import build_command, main
from test_overrides import composed_value

PREFIX = "hydra-vertex-shim: error: "
SPACE = SearchSpace(
    metric="val_loss",
    direction="minimize",
    params=(
        Param(key="i", kind="INTEGER", low=-(10**6), high=10**6),
        Param(key="x", kind="DOUBLE", low=-1e300, high=1e300),
        Param(key="d", kind="DISCRETE", values=(-2.5, 1e-07, 0.9, 3e20)),
        Param(key="w", kind="DISCRETE", values=(16, 64, 256)),
        Param(key="c", kind="CATEGORICAL", values=("a", "b c", "\\\n", "x\\", 1, True, 2.5)),
    ),
)
SPACE_DICT = SPACE.to_dict()
SPACE_JSON = json.dumps(SPACE_DICT)
APP = ["python", "app.py"]
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)
NUMBERISH = st.one_of(
    st.integers(-(10**7), 10**7).map(str),
    st.integers(-(10**7), 10**7).map(lambda n: f"{float(n)!r}"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(allow_nan=False).map(lambda f: f"{f:e}"),
    st.text("0123456789", min_size=300, max_size=6000),  # past float range and int conversion
    st.sampled_from(["", " 64 ", "-0", "1e999", "1_000", "0x10", "٣", "nan", "+16", "16.0000001"]),
)
VALUES = st.one_of(TEXT, NUMBERISH)


def _refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    """The shim's own answer to arguments ``build_command`` refused: exit 2, one line."""
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(PREFIX) and err.count("\n") == 1 and err.endswith("\n"), err[:300]


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _check_override(param: Param, raw: str, override: str) -> None:
    """The emitted override composes to the value the trial was given (and its type)."""
    key, value = composed_value(override)
    assert key == param.key
    if param.kind == "CATEGORICAL":
        assert type(value) is type(param.category_value(raw)) and value == param.category_value(raw)
        return
    exact = _number(raw)
    assert exact is not None, (raw, override)
    if param.is_int:
        assert type(value) is int and exact == value, (raw, override)
        assert param.kind != "DISCRETE" or value in param.values
        return
    assert type(value) is float and value == float(raw), (raw, override)
    assert math.isfinite(value)
    if param.kind == "DISCRETE":
        assert any(math.isclose(value, v, rel_tol=1e-9) for v in param.values), (raw, value)


@given(st.sampled_from(SPACE.params), VALUES, st.booleans())
@example(SPACE.param("c"), "\\\n", True)  # backslash + newline: "$" vs "\Z"
@example(SPACE.param("i"), "1" * 4300, True)  # int-string conversion limit
@example(SPACE.param("i"), "9" * 4301, False)
@example(SPACE.param("w"), "1" * 5000 + ".0", True)
@SETTINGS
def test_a_trial_value_is_a_correct_override_or_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], param: Param, raw: str, equals: bool
) -> None:
    trial = [f"--{param.key}={raw}"] if equals else [f"--{param.key}", raw]
    args = ["--search-space-json", SPACE_JSON, "--", *APP, *trial]
    try:
        command = build_command("json:" + SPACE_JSON, [*APP, *trial])
    except HydraVertexError:
        _refused(capsys, args)
        return
    assert command[: len(APP)] == APP
    _check_override(param, raw, command[len(APP)])


JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _mutated(path: list[Any], value: Any) -> str:
    """The valid space with one field (at ``path``) replaced by ``value``."""
    data = json.loads(SPACE_JSON)
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return json.dumps(data)


FIELDS = st.sampled_from(
    [
        ["metric"],
        ["direction"],
        ["params"],
        ["params", 0],
        ["params", 0, "low"],
        ["params", 2, "values"],
        ["params", 4, "values"],
        ["params", 4, "values", 1],
        ["params", 0, "key"],
        ["params", 1, "kind"],
        ["schema_version"],
    ]
)


@given(st.one_of(JSON.map(json.dumps), st.tuples(FIELDS, JSON).map(lambda t: _mutated(*t))))
@example(_mutated(["params", 4, "values", 1], "b\x00c"))  # a NUL in a category
@example(_mutated(["metric"], "val\x00loss"))
@example(SPACE_JSON.replace('"high": 1000000', '"high": ' + "9" * 4400))
@example(SPACE_JSON[: len(SPACE_JSON) // 2])
@SETTINGS
def test_any_inline_space_is_usable_or_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], text: str
) -> None:
    trial = ["--i=3"]
    try:
        command = build_command("json:" + text, [*APP, *trial])
    except HydraVertexError:
        _refused(capsys, ["--search-space-json", text, "--", *APP, *trial])
        return
    assert command[: len(APP)] == APP and "\x00" not in "".join(command)
