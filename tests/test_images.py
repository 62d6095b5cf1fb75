"""Local content-addressed images: same source, same digest, cache hit; any change, a new image."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hydra_vertex import images
from hydra_vertex.images import ImageError


def make_app(root: Path) -> Path:
    (root / "conf").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "conf" / "config.yaml").write_text("lr: 0.1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "x.pyc").write_bytes(b"junk")
    (root / "outputs").mkdir()
    (root / "outputs" / "log.txt").write_text("run output\n")
    return root


def test_unchanged_source_is_a_cache_hit(tmp_path: Path) -> None:
    src = make_app(tmp_path / "app")
    first = images.build_local(src, "digits", tmp_path / "images")
    assert not first.cached
    assert first.ref == f"hydra-vertex.local/digits@sha256:{first.digest}"
    assert (first.workdir / "train.py").read_text() == "print('hi')\n"
    assert not (first.workdir / "__pycache__").exists()
    assert not (first.workdir / "outputs").exists()
    (src / "outputs" / "log.txt").write_text("ignored change\n")
    again = images.build_local(src, "digits", tmp_path / "images")
    assert again.cached and again.digest == first.digest
    assert images.resolve_local(first.ref, tmp_path / "images") == first.workdir


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: (p / "train.py").write_text("print('bye')\n"), id="content"),
        pytest.param(lambda p: (p / "extra.py").write_text(""), id="new-file"),
        pytest.param(lambda p: (p / "train.py").rename(p / "main.py"), id="rename"),
        pytest.param(lambda p: os.chmod(p / "train.py", 0o755), id="exec-bit"),
    ],
)
def test_any_source_change_changes_the_digest(tmp_path: Path, change: object) -> None:
    src = make_app(tmp_path / "app")
    before = images.source_digest(src)
    change(src)  # type: ignore[operator]
    assert images.source_digest(src) != before


@pytest.mark.parametrize(
    "ref",
    [
        "gcr.io/project/app:latest",
        "hydra-vertex.local/app:latest",
        "hydra-vertex.local/app@sha256:" + "0" * 64,  # well-formed, never built
        "hydra-vertex.local/../x@sha256:" + "0" * 64,
    ],
)
def test_unknown_images_do_not_resolve(tmp_path: Path, ref: str) -> None:
    assert images.resolve_local(ref, tmp_path) is None


def test_bad_inputs_name_the_value(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"'.*nope' is not a directory"):
        images.build_local(tmp_path / "nope", "app", tmp_path)
    src = make_app(tmp_path / "app")
    with pytest.raises(ImageError, match=r"image name 'My App' must match"):
        images.build_local(src, "My App", tmp_path)


# -- the snapshot: what Cloud Build would upload ------------------------------------------------
def _tree(root: Path, files: list[str]) -> Path:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def _snapshot(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in images.snapshot_files(root)]


APP_FILES = [
    "train.py", "conf/config.yaml", "logs/run.log", "data/big.csv", "src/data/loader.py", "notes.tmp",
    "SUMMARY.json", "report.html", "outputs/2026/x.txt", "multirun/a.txt", "wandb/run/x", ".hydra-vertex/s",
    ".git/HEAD", ".venv/bin/python", "src/__pycache__/m.pyc", "keep/SUMMARY.json",
]


@pytest.mark.parametrize(
    ("ignore_files", "expected"),
    [
        pytest.param(
            {}, ["conf/config.yaml", "data/big.csv", "keep/SUMMARY.json", "logs/run.log", "notes.tmp",
                 "src/data/loader.py", "train.py"],
            id="no-ignore-file",
        ),
        pytest.param(
            {".gitignore": "/logs/\n/data/\n*.tmp\n"},
            [".gitignore", "conf/config.yaml", "keep/SUMMARY.json", "src/data/loader.py", "train.py"],
            id="gitignore-anchored",
        ),
        pytest.param(
            {".gitignore": "data/\n"},
            [".gitignore", "conf/config.yaml", "keep/SUMMARY.json", "logs/run.log", "notes.tmp", "train.py"],
            id="gitignore-any-depth",
        ),
        pytest.param(
            # Docker anchors every pattern at the root: "data" is /data only, "*.tmp" root files only.
            {".dockerignore": "data\n*.tmp\n!notes.tmp\nlogs/**\n", ".gitignore": "*.py\n"},
            [".dockerignore", ".gitignore", "conf/config.yaml", "keep/SUMMARY.json", "notes.tmp",
             "src/data/loader.py", "train.py"],
            id="dockerignore-wins-over-gitignore",
        ),
        pytest.param(
            {".gcloudignore": ".gcloudignore\n#!include:.gitignore\nconf/\n", ".gitignore": "/logs/\n",
             ".dockerignore": "train.py\n"},
            [".dockerignore", ".gitignore", "data/big.csv", "keep/SUMMARY.json", "notes.tmp",
             "src/data/loader.py", "train.py"],
            id="gcloudignore-with-include",
        ),
        pytest.param(
            {".gitignore": "!outputs/\n!SUMMARY.json\n"},
            [".gitignore", "conf/config.yaml", "data/big.csv", "keep/SUMMARY.json", "logs/run.log",
             "notes.tmp", "src/data/loader.py", "train.py"],
            id="always-excluded-cannot-be-re-included",
        ),
    ],
)
def test_the_snapshot_follows_the_ignore_files(
    tmp_path: Path, ignore_files: dict[str, str], expected: list[str]
) -> None:
    src = _tree(tmp_path / "app", APP_FILES)
    for name, text in ignore_files.items():
        (src / name).write_text(text)
    assert sorted(_snapshot(src)) == sorted(expected)


def test_files_the_run_writes_do_not_change_the_image(tmp_path: Path) -> None:
    """A run writes SUMMARY.json, report.html and outputs/ next to the app: the next run's
    snapshot is the same image (a cache hit), and ignored files never reach it."""
    src = _tree(tmp_path / "app", ["train.py", "logs/.gitkeep"])
    (src / ".gitignore").write_text("/logs/\n")
    first = images.build_local(src, "app", tmp_path / "images")
    _tree(src, ["SUMMARY.json", "report.html", "outputs/x/.hydra/config.yaml", "logs/train.log", "wandb/r"])
    again = images.build_local(src, "app", tmp_path / "images")
    assert again.cached and again.ref == first.ref
    assert sorted(p.name for p in first.workdir.iterdir()) == [".gitignore", "train.py"]


# -- the environment ----------------------------------------------------------------------------
def test_app_python_makes_an_image_that_runs_with_that_interpreter(tmp_path: Path) -> None:
    import subprocess
    import sys

    src = make_app(tmp_path / "app")
    plain = images.build_local(src, "app", tmp_path / "images")
    own = images.build_local(src, "app", tmp_path / "images", python=sys.executable)
    assert own.ref != plain.ref and own.environment.kind == "python"
    assert images.build_local(src, "app", tmp_path / "images", python=sys.executable).cached

    runtime = images.runtime(own.workdir)
    assert runtime.cwd == own.workdir
    assert runtime.path.split(os.pathsep) == [str(own.workdir.parent / "bin"), os.path.dirname(sys.executable)]
    if sys.prefix != sys.base_prefix:  # the tests' interpreter is a virtual environment's
        assert runtime.env == {"VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}
    env = {**os.environ, **runtime.env, "PATH": runtime.path + os.pathsep + os.environ["PATH"]}
    # `python` and the shim of the trial's PATH are the image's interpreter.
    done = subprocess.run(
        ["python", "-c", "import sys; print(sys.executable)"], env=env, capture_output=True, text=True
    )
    assert done.stdout.strip() == sys.executable
    done = subprocess.run(["hydra-vertex-shim", "--help"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("usage: hydra-vertex-shim")
    # An image without an environment of its own runs with hydra-vertex's interpreter.
    assert images.runtime(plain.workdir).path == os.path.dirname(sys.executable)
    assert images.runtime(tmp_path / "mapped" / "dir").env == {}


def test_a_linked_image_is_the_live_directory_run_by_the_given_interpreter(tmp_path: Path) -> None:
    """The Hydra sweeper's local image: no snapshot (a change is seen at once, ignored files too),
    the given interpreter first on PATH; pruning it removes the link, never the directory."""
    import sys

    src = make_app(tmp_path / "app")
    image = images.link_local(src, "app", sys.executable, tmp_path / "images")
    assert not image.cached and image.environment.python == sys.executable
    again = images.link_local(src, "app", sys.executable, tmp_path / "images")
    assert again.cached and again.ref == image.ref
    assert images.resolve_local(image.ref, tmp_path / "images") == image.workdir
    assert image.workdir.resolve() == src.resolve()
    (src / "outputs" / "new.txt").write_text("seen\n")  # ignored by a snapshot, live here
    assert (image.workdir / "outputs" / "new.txt").read_text() == "seen\n"
    runtime = images.runtime(image.workdir)
    assert runtime.path.split(os.pathsep)[0] == str(image.workdir.parent / "bin")
    assert (image.workdir.parent / "bin" / "python").read_text().count(sys.executable) == 1
    other = images.link_local(src, "app", "/usr/bin/python3", tmp_path / "images")
    assert other.digest != image.digest  # the interpreter is part of the image
    assert images.prune(0, tmp_path / "images")
    assert not image.workdir.parent.exists() and (src / "train.py").is_file()
    with pytest.raises(ImageError, match="is not a directory"):
        images.link_local(tmp_path / "nope", "app", sys.executable, tmp_path / "images")


def test_an_interpreter_without_hydra_vertex_fails_the_build_with_one_line(tmp_path: Path) -> None:
    import shutil

    system = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    if system is None:
        pytest.skip("no system python3")
    src = make_app(tmp_path / "app")
    with pytest.raises(ImageError) as e:
        images.build_local(src, "app", tmp_path / "images", python=system)
    message = str(e.value)
    assert "\n" not in message
    assert f"{system} cannot import hydra_vertex (ModuleNotFoundError: No module named 'hydra_vertex')" in message
    assert "-m pip install" in message and message.count(".whl") == 1
    assert not list((tmp_path / "images").glob("*/image.json"))


def test_the_core_wheel_is_the_running_package() -> None:
    import zipfile

    import hydra_vertex
    from hydra_vertex import envs

    wheel = envs.core_wheel()
    assert wheel.name == f"hydra_vertex-{hydra_vertex.__version__}-py3-none-any.whl"
    assert envs.core_wheel() == wheel  # made once per content
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        shim = z.read("hydra_vertex/shim.py")
        meta = z.read(f"hydra_vertex-{hydra_vertex.__version__}.dist-info/METADATA").decode()
        entry = z.read(f"hydra_vertex-{hydra_vertex.__version__}.dist-info/entry_points.txt").decode()
    assert shim == (Path(hydra_vertex.__file__).parent / "shim.py").read_bytes()
    assert "hydra_vertex/reporting.py" in names
    assert not any(n.startswith(("hydra_vertex/components/", "hydra_vertex/pipelines/")) for n in names)
    assert not any("__pycache__" in n for n in names)
    requires = sorted(line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist"))
    assert requires == sorted(envs.core_requires())
    assert any(r.startswith("hydra-core>=") for r in requires) and not any("optuna" in r for r in requires)
    assert "hydra-vertex-shim = hydra_vertex.shim:main" in entry


def test_the_environment_key_follows_requirements_constraints_and_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hydra_vertex import envs

    req = tmp_path / "requirements.txt"
    req.write_text("-r base.txt\nrich\n")
    (tmp_path / "base.txt").write_text("pyyaml\n")
    key = envs.env_key(req, "pip")
    assert envs.env_key(req, "pip") == key
    assert envs.env_key(req, "uv") != key
    (tmp_path / "base.txt").write_text("pyyaml>=6\n")  # an included file counts
    changed = envs.env_key(req, "pip")
    assert changed != key
    pins = tmp_path / "pins.txt"
    pins.write_text("torch==2.13.0\n")
    monkeypatch.setenv("PIP_CONSTRAINT", str(pins))
    assert envs.constraint_files() == [pins]
    assert envs.env_key(req, "pip") != changed


# -- the cache ----------------------------------------------------------------------------------
def test_images_lists_and_prunes_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import subprocess
    import sys
    import time

    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    cli = Path(sys.executable).with_name("hydra-vertex")
    empty = subprocess.run([str(cli), "images"], capture_output=True, text=True, env=os.environ)
    assert empty.returncode == 0 and "no local images in" in empty.stdout
    refs = []
    for i in range(3):
        src = tmp_path / f"app{i}"
        src.mkdir()
        (src / "train.py").write_text(f"print({i})\n")
        refs.append(images.build_local(src, f"app{i}").ref)
        mark = images.images_root() / refs[-1].rsplit(":", 1)[1] / images.LAST_USED
        os.utime(mark, (time.time() - 3600 * (3 - i), time.time() - 3600 * (3 - i)))
    listed = subprocess.run([str(cli), "images", "--format", "json"], capture_output=True, text=True, env=os.environ)
    rows = json.loads(listed.stdout)
    assert [r["ref"] for r in rows] == refs[::-1]  # most recently used first
    assert all(r["size"] > 0 and r["environment"]["kind"] == "tool" for r in rows)
    table = subprocess.run([str(cli), "images"], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert "last use" in table.stdout and "1h ago" in table.stdout and refs[2] in table.stdout
    bad = subprocess.run([str(cli), "images", "--keep", "1"], capture_output=True, text=True, env=os.environ)
    assert bad.returncode == 2 and "--keep goes with --prune" in bad.stderr
    pruned = subprocess.run([str(cli), "images", "--prune", "--keep", "1"], capture_output=True, text=True, env=os.environ)
    assert pruned.returncode == 0, pruned.stderr
    assert f"removed {refs[0]}" in pruned.stdout and f"removed {refs[1]}" in pruned.stdout
    assert "removed 2 image(s)" in pruned.stdout
    assert [i.ref for i in images.list_images()] == [refs[2]]
    assert images.resolve_local(refs[0]) is None and images.resolve_local(refs[2]) is not None
