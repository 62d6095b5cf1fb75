"""Trial values -> Hydra overrides (issue 2, point 3), checked against Hydra's own parser.

Every emitted override is parsed with ``OverridesParser.create().parse_override`` and the value
Hydra would put into the config (after OmegaConf's interpolation unescaping) is compared with the
intended value, type included. The property tests compose real configs: in-process with Hydra's
compose API for many examples, and through the installed ``hydra-vertex-shim`` running a real
Hydra app for a smaller number.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from hydra_vertex.errors import ShimError
from hydra_vertex.overrides import (
    REPORT_CALLBACK,
    convert_argv,
    format_value,
    quote_string,
    run_dir,
    shim_overrides,
    trial_overrides,
)
from hydra_vertex.search_space import SCHEMA_VERSION, Param, SearchSpace

APP_DIR = Path(__file__).parent / "apps" / "shim_app"
PARSER = OverridesParser.create()

WEIRD = (
    "a, b=c [d]",
    'it\'s "quoted"',
    "back\\slash\\",
    "#not a comment",
    "${oc.env:HOME}",
    "\\${x}",
    "null",
    "true",
    "007",
    "1e3",
    "",
    "  padded  ",
    "x hydra.run.dir=/var/evil",
    "--cfg",
    "-m",
    "--help",
    "-n",
    "ünïcødé ✓ 中文",
    "a,b",
    "a=b c=d",
    "{a: 1}",
    "[1, 2]",
    "'",
    "\\'",
    "\\",
    "$",
    "tab\there\nnewline",
    "ends in backslash, newline\\\n",  # "$" matched before the final newline (issue 15)
    "\\\n",
    "two\\\\\n",
)

PARAMS = (
    Param(key="lr", kind="DOUBLE", low=-1.0, high=1.0),
    Param(key="optimizer.lr", kind="DOUBLE", low=1e-8, high=100.0, scale="log"),
    Param(key="batch_size", kind="INTEGER", low=1, high=1024),
    Param(key="width", kind="DISCRETE", values=(16, 64, 256)),
    Param(key="dropout", kind="DISCRETE", values=(0.1, 0.25, 0.5)),
    Param(key="model", kind="CATEGORICAL", values=("mlp", "cnn")),
    Param(key="name", kind="CATEGORICAL", values=WEIRD),
    Param(key="mixed", kind="CATEGORICAL", values=("a", 1, True, 2.5)),
    Param(key="extra.depth", kind="INTEGER", low=0, high=8, new_key=True),
)
SPACE = SearchSpace(metric="val_loss", direction="minimize", params=PARAMS, source="test-space")
P = {p.key: p for p in PARAMS}
DECLARED = sorted(P)


def composed_value(override: str) -> tuple[str, Any]:
    """(key, value) that Hydra + OmegaConf put into the config for one override string."""
    parsed = PARSER.parse_override(override)
    assert not parsed.is_sweep_override(), override
    value = parsed.value()
    cfg = OmegaConf.create({"v": value})
    return parsed.key_or_group, cfg.v


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and (a == b or (isinstance(a, float) and math.isnan(a) and b != b))


# ------------------------------------------------------------------------------------------------
# format_value / trial_overrides
# ------------------------------------------------------------------------------------------------

VALUE_ROWS = [
    pytest.param("batch_size", "256", 256, id="int-plain"),
    pytest.param("batch_size", "256.0", 256, id="int-from-float-string"),
    pytest.param("batch_size", 256.0, 256, id="int-from-float"),
    pytest.param("batch_size", "2.56e2", 256, id="int-scientific"),
    pytest.param("batch_size", " 64 ", 64, id="int-whitespace"),
    pytest.param("width", "256.0", 256, id="int-discrete-from-float"),
    pytest.param("width", 16, 16, id="int-discrete-int"),
    pytest.param("dropout", "0.25", 0.25, id="float-discrete"),
    pytest.param("dropout", 0.1, 0.1, id="float-discrete-float"),
    pytest.param("lr", "0.01", 0.01, id="double"),
    pytest.param("lr", "-0.5", -0.5, id="double-negative"),
    pytest.param("lr", "0.1", 0.1, id="double-not-representable"),
    pytest.param("lr", "1", 1.0, id="double-from-int-string"),
    pytest.param("lr", "-0", -0.0, id="double-negative-zero"),
    pytest.param("lr", 0.30000000000000004, 0.30000000000000004, id="double-roundtrip"),
    pytest.param("optimizer.lr", "1e-5", 1e-05, id="double-scientific"),
    pytest.param("optimizer.lr", "1E-07", 1e-07, id="double-scientific-upper"),
    pytest.param("optimizer.lr", "1.5e+1", 15.0, id="double-scientific-plus"),
    pytest.param("optimizer.lr", "3.3e-8", 3.3e-08, id="double-tiny"),
    pytest.param("model", "cnn", "cnn", id="category-bare"),
    pytest.param("mixed", "a", "a", id="mixed-string"),
    pytest.param("mixed", "1", 1, id="mixed-int"),
    pytest.param("mixed", "true", True, id="mixed-bool"),
    pytest.param("mixed", "2.5", 2.5, id="mixed-float"),
    *(pytest.param("name", w, w, id=f"category-{i}-{w!r}") for i, w in enumerate(WEIRD)),
]


@pytest.mark.parametrize(("pid", "raw", "expected"), VALUE_ROWS)
def test_format_value(pid: str, raw: str | int | float, expected: Any) -> None:
    text = format_value(P[pid], raw)
    key, value = composed_value(f"{pid}={text}")
    assert key == pid
    assert same(value, expected), (text, value, expected)


ERROR_ROWS = [
    pytest.param("batch_size", "64.5", ["'batch_size'", "64.5", "whole number"], id="int-fraction"),
    pytest.param("width", "64.5", ["'width'", "64.5", "whole number"], id="discrete-int-fraction"),
    pytest.param("batch_size", "2048", ["'batch_size'", "2048", "[1, 1024]"], id="int-above"),
    pytest.param("batch_size", "0", ["'batch_size'", "'0'", "[1, 1024]"], id="int-below"),
    pytest.param(
        "width", "32", ["'width'", "DISCRETE values [16, 64, 256]"], id="discrete-not-member"
    ),
    pytest.param(
        "dropout", "0.3", ["'dropout'", "0.3", "[0.1, 0.25, 0.5]"], id="float-discrete-not-member"
    ),
    pytest.param("lr", "1.5", ["'lr'", "1.5", "[-1.0, 1.0]"], id="double-above"),
    pytest.param("lr", "nan", ["'lr'", "nan", "finite"], id="double-nan"),
    pytest.param("lr", "inf", ["'lr'", "inf", "finite"], id="double-inf"),
    pytest.param("lr", float("-inf"), ["'lr'", "finite"], id="double-float-inf"),
    pytest.param("lr", "abc", ["'lr'", "'abc'", "not a number"], id="double-garbage"),
    pytest.param("batch_size", "", ["'batch_size'", "not a number"], id="int-empty"),
    pytest.param("model", "rnn", ["'model'", "'rnn'", "['mlp', 'cnn']"], id="category-unknown"),
    pytest.param("model", "CNN", ["'CNN'", "['mlp', 'cnn']"], id="category-case"),
    pytest.param("name", "a, b=c", ["'name'", "'a, b=c'"], id="category-prefix"),
    # Python converts at most 4300 digits to an int: one line, not a ValueError (issue 15)
    pytest.param(
        "batch_size", "9" * 4300, ["'batch_size'", "[1, 1024]", "4300 characters"], id="int-4300"
    ),
    pytest.param("width", "-" + "1" * 5000, ["'width'", "DISCRETE values"], id="discrete-5000"),
    pytest.param("lr", "1" * 5000, ["'lr'", "finite", "5000 characters"], id="double-5000"),
]


@pytest.mark.parametrize(("pid", "raw", "needles"), ERROR_ROWS)
def test_format_value_errors(pid: str, raw: str | float, needles: list[str]) -> None:
    with pytest.raises(ShimError) as e:
        format_value(P[pid], raw)
    for needle in needles:
        assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_trial_overrides_keys_and_new_key() -> None:
    out = trial_overrides(
        SPACE, {"lr": "0.01", "extra.depth": "3.0", "model": "cnn", "name": "a, b=c [d]"}
    )
    assert out == ["lr=0.01", "+extra.depth=3", "model=cnn", "name='a, b=c [d]'"]
    parsed = [PARSER.parse_override(o) for o in out]
    assert [p.key_or_group for p in parsed] == ["lr", "extra.depth", "model", "name"]
    assert parsed[1].is_add()


def test_trial_overrides_unknown_id_lists_declared() -> None:
    with pytest.raises(ShimError) as e:
        trial_overrides(SPACE, {"lr": "0.1", "momentum": "0.9"})
    assert "'momentum'" in str(e.value)
    for key in DECLARED:
        assert repr(key) in str(e.value)


# ------------------------------------------------------------------------------------------------
# convert_argv
# ------------------------------------------------------------------------------------------------

APP = ["python", "app.py"]

ARGV_ROWS = [
    pytest.param([*APP, "--lr=0.01"], APP, ["lr=0.01"], id="eq-form"),
    pytest.param([*APP, "--lr", "0.01"], APP, ["lr=0.01"], id="space-form"),
    pytest.param([*APP, "--lr", "-0.5"], APP, ["lr=-0.5"], id="negative-value-not-a-flag"),
    pytest.param([*APP, "--lr=-0.5"], APP, ["lr=-0.5"], id="negative-eq"),
    pytest.param([*APP, "--optimizer.lr", "1e-5"], APP, ["optimizer.lr=1e-05"], id="scientific"),
    pytest.param(
        [*APP, "--lr=0.01", "--batch_size=256.0", "--name=a, b=c [d]"],
        APP,
        ["lr=0.01", "batch_size=256", "name='a, b=c [d]'"],
        id="acceptance",
    ),
    pytest.param(
        [*APP, "--lr", "0.5", "--batch_size=8", "--model", "cnn"],
        APP,
        ["lr=0.5", "batch_size=8", "model=cnn"],
        id="mixed-forms",
    ),
    pytest.param([*APP, "--flag", "--lr=0.1"], [*APP, "--flag"], ["lr=0.1"], id="app-flag-stays"),
    pytest.param(
        [*APP, "--flag", "--lr", "0.1"], [*APP, "--flag"], ["lr=0.1"], id="app-flag-stays-space"
    ),
    pytest.param(
        [*APP, "--config-name=train", "--lr=0.1"],
        [*APP, "--config-name=train"],
        ["lr=0.1"],
        id="hydra-flag-stays",
    ),
    pytest.param(
        [*APP, "--cfg", "job", "--lr=0.1"], [*APP, "--cfg", "job"], ["lr=0.1"], id="hydra-cfg-stays"
    ),
    pytest.param(
        [*APP, "model=cnn", "+x=1", "--lr=0.1"],
        [*APP, "model=cnn", "+x=1"],
        ["lr=0.1"],
        id="converted-pass-through",
    ),
    pytest.param(
        [*APP, "lr=0.1", "model=cnn"], [*APP, "lr=0.1", "model=cnn"], [], id="all-converted"
    ),
    pytest.param(
        ["python", "-m", "pkg.train", "--weird  arg", "a b", "--lr=0.1"],
        ["python", "-m", "pkg.train", "--weird  arg", "a b"],
        ["lr=0.1"],
        id="app-args-byte-identical",
    ),
    pytest.param(APP, APP, [], id="no-trial-args"),
    pytest.param(["--lr=0.1"], ["--lr=0.1"], [], id="program-is-never-a-trial-arg"),
    pytest.param([*APP, "--name", "--cfg"], APP, ["name='--cfg'"], id="value-looks-like-flag"),
    pytest.param([*APP, "--name=-m"], APP, ["name='-m'"], id="value-dash-m"),
    pytest.param(
        [*APP, "--name", "x hydra.run.dir=/var/evil"],
        APP,
        ["name='x hydra.run.dir=/var/evil'"],
        id="value-injection",
    ),
    pytest.param([*APP, "--extra.depth=2"], APP, ["+extra.depth=2"], id="new-key-plus"),
]


@pytest.mark.parametrize(("argv", "app", "overrides"), ARGV_ROWS)
def test_convert_argv(argv: list[str], app: list[str], overrides: list[str]) -> None:
    got_app, got = convert_argv(SPACE, argv)
    assert got_app == app
    assert got == overrides
    for o in got:
        PARSER.parse_override(o)


ARGV_ERRORS = [
    pytest.param(
        [*APP, "--momentum=0.9", "--lr=0.1"], ["'--momentum'", "'lr'", "'model'"], id="undeclared"
    ),
    pytest.param([*APP, "--lr=0.1", "--momentum=0.9"], ["'--momentum'"], id="undeclared-last"),
    pytest.param([*APP, "--lr=0.1", "--lr=0.2"], ["'lr'", "more than once"], id="duplicate"),
    pytest.param(
        [*APP, "--lr=0.1", "--lr", "0.2"], ["'lr'", "more than once"], id="duplicate-mixed-forms"
    ),
    pytest.param([*APP, "--batch_size=64.5"], ["'batch_size'", "64.5"], id="int-fraction"),
    pytest.param([], ["no app command"], id="empty"),
    pytest.param(
        [*APP, "--lr=0.1", "--momentum", "0.9"],
        ["'--lr=0.1'", "'0.9'", "'model'"],
        id="undeclared-space-form-after-trial-args",
    ),
    pytest.param(
        [*APP, "--lr", "0.1", "model=cnn"], ["'--lr'", "'model=cnn'"], id="converted-after-trial"
    ),
]


@pytest.mark.parametrize(("argv", "needles"), ARGV_ERRORS)
def test_convert_argv_errors(argv: list[str], needles: list[str]) -> None:
    with pytest.raises(ShimError) as e:
        convert_argv(SPACE, argv)
    for needle in needles:
        assert needle in str(e.value)


@pytest.mark.parametrize(
    "value", ["x hydra.run.dir=/var/evil", "--cfg", "-m", "--help", "a=b c=d", "a,b"]
)
def test_value_never_becomes_a_second_override_or_flag(value: str) -> None:
    """The override list that reaches Hydra has exactly one element per trial value."""
    _, out = convert_argv(SPACE, [*APP, "--name", value])
    assert len(out) == 1
    parsed = PARSER.parse_overrides(out)
    assert len(parsed) == 1 and parsed[0].key_or_group == "name"
    assert composed_value(out[0]) == ("name", value)


# ------------------------------------------------------------------------------------------------
# The shim's own overrides
# ------------------------------------------------------------------------------------------------


def test_run_dir_per_trial() -> None:
    assert run_dir({}) is None
    a = run_dir({"CLOUD_ML_JOB_ID": "123", "CLOUD_ML_TRIAL_ID": "1"})
    b = run_dir({"CLOUD_ML_JOB_ID": "123", "CLOUD_ML_TRIAL_ID": "2"})
    assert a == "outputs/hpt/123/trial-1" and b == "outputs/hpt/123/trial-2"
    assert run_dir({"CLOUD_ML_TRIAL_ID": "7"}) == "outputs/hpt/local/trial-7"


def test_shim_overrides_parse() -> None:
    env = {"CLOUD_ML_JOB_ID": "job 1, x=y", "CLOUD_ML_TRIAL_ID": "4"}
    out = shim_overrides(SPACE, APP, env)
    parsed = {PARSER.parse_override(o).key_or_group: composed_value(o)[1] for o in out}
    assert parsed == {
        "hydra.run.dir": "outputs/hpt/job 1, x=y/trial-4",
        "hydra.mode": "RUN",
        "hydra.callbacks.hydra_vertex_report._target_": REPORT_CALLBACK,
        "hydra.callbacks.hydra_vertex_report.metric": "val_loss",
    }
    # The user's own hydra.run.dir wins.
    out = shim_overrides(SPACE, [*APP, "hydra.run.dir=/mine"], env)
    assert not any(o.startswith("hydra.run.dir") for o in out)


# ------------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------------

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))


@given(TEXT)
@settings(max_examples=400, deadline=None)
def test_quote_string_parses_back(text: str) -> None:
    assert composed_value(f"name={quote_string(text)}") == ("name", text)


KEYWORDS = ["None", "NULL", "True", "FALSE", "NaN", "inf", "INF", "Infinity", "e5", "int", "choice"]


@pytest.mark.parametrize("word", KEYWORDS)
def test_keyword_like_strings_stay_strings(word: str) -> None:
    assert composed_value(f"name={quote_string(word)}") == ("name", word)


@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-./]{0,12}", fullmatch=True))
@settings(max_examples=300, deadline=None)
def test_bare_strings_parse_back(text: str) -> None:
    """The unquoted path: identifier-like strings are emitted bare only when Hydra reads them back."""
    assert composed_value(f"name={quote_string(text)}") == ("name", text)


@pytest.fixture(scope="module")
def compose_app() -> Iterator[None]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(APP_DIR / "conf"), version_base=None):
        yield
    GlobalHydra.instance().clear()


def _space_for(text: str) -> SearchSpace:
    return SearchSpace(
        metric="val_loss",
        direction="minimize",
        params=(
            Param(key="name", kind="CATEGORICAL", values=(text,)),
            Param(key="batch_size", kind="INTEGER", low=-(10**6), high=10**6),
            Param(key="lr", kind="DOUBLE", low=-1e300, high=1e300),
            Param(key="optimizer.momentum", kind="DISCRETE", values=(-2.5, 1e-7, 0.9, 3e20)),
        ),
        source="property-space",
    )


VALUES = st.tuples(
    TEXT,
    st.integers(-(10**6), 10**6),
    st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False),
    st.sampled_from([-2.5, 1e-7, 0.9, 3e20]),
    st.booleans(),
)


def _trial_argv(values: tuple[str, int, float, float, bool]) -> list[str]:
    """Vertex-style trial arguments: ints arrive as floats, doubles as repr or %e, both forms."""
    text, i, x, d, eq = values
    nums = [("batch_size", f"{float(i)!r}"), ("lr", repr(x)), ("optimizer.momentum", f"{d:e}")]
    args: list[str] = []
    for k, v in nums:
        args += [f"--{k}={v}"] if eq else [f"--{k}", v]
    args += [f"--name={text}"] if eq else ["--name", text]
    return args


def _expected(values: tuple[str, int, float, float, bool]) -> dict[str, Any]:
    text, i, x, d, _ = values
    return {"name": text, "batch_size": i, "lr": x, "momentum": float(f"{d:e}")}


def _check(cfg: dict[str, Any], values: tuple[str, int, float, float, bool]) -> None:
    exp = _expected(values)
    got = {
        "name": cfg["name"],
        "batch_size": cfg["batch_size"],
        "lr": cfg["lr"],
        "momentum": cfg["optimizer"]["momentum"],
    }
    assert {k: (type(v), v) for k, v in got.items()} == {k: (type(v), v) for k, v in exp.items()}


@given(VALUES)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_property_compose_in_process(
    compose_app: None, values: tuple[str, int, float, float, bool]
) -> None:
    space = _space_for(values[0])
    _, overrides = convert_argv(space, APP + _trial_argv(values))
    cfg = OmegaConf.to_container(compose(config_name="config", overrides=overrides), resolve=True)
    assert isinstance(cfg, dict)
    _check({str(k): v for k, v in cfg.items()}, values)


def _shim() -> str:
    exe = shutil.which("hydra-vertex-shim", path=str(Path(sys.executable).parent))
    assert exe, "hydra-vertex-shim is not installed next to the test interpreter"
    return exe


def _cached_space_file(tmp: Path, space: SearchSpace, cache: Path) -> Path:
    """A search-space file whose parsed form is already in the shim's content-hash cache.

    Arbitrary Unicode cannot be written in the sweep grammar, so the space (built in Python) is put
    where :func:`hydra_vertex.search_space.load_cached` looks it up; the shim takes the same code
    path as in a trial container.
    """
    path = tmp / "space.yaml"
    path.write_bytes(json.dumps(space.to_dict()).encode())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    cache.mkdir(parents=True, exist_ok=True)
    (cache / f"{digest}-v{SCHEMA_VERSION}.json").write_text(json.dumps(space.to_dict()))
    return path


@given(VALUES)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_property_installed_shim_real_app(
    tmp_path_factory: pytest.TempPathFactory, values: tuple[str, int, float, float, bool]
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    cache = tmp / "cache"
    space_file = _cached_space_file(tmp, _space_for(values[0]), cache)
    out = tmp / "out.json"
    env = {
        **os.environ,
        "HYDRA_VERTEX_CACHE_DIR": str(cache),
        "SHIM_APP_OUT": str(out),
        "CLOUD_ML_TRIAL_ID": "1",
        "CLOUD_ML_HP_METRIC_FILE": str(tmp / "metrics"),
    }
    cmd = [
        _shim(),
        "--search-space",
        str(space_file),
        "--",
        sys.executable,
        str(APP_DIR / "app.py"),
    ]
    proc = subprocess.run(
        cmd + _trial_argv(values), cwd=tmp, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    _check(json.loads(out.read_text(encoding="utf-8")), values)
