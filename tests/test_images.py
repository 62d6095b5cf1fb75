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
