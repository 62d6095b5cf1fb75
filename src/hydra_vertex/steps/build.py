"""The ``build_image`` step: the training image, pinned by digest.

- ``source`` a ``gs://.../<name>-<digest>.tar.gz`` tarball: Cloud Build builds it and pushes to
  Artifact Registry (:mod:`hydra_vertex.cloud_build`).
- ``source`` a local directory: a content-addressed local image (:mod:`hydra_vertex.images`) that
  the emulator runs. An unchanged source is a cache hit and copies nothing.
"""

from __future__ import annotations

from hydra_vertex.steps import common


def build_image(*, project: str, location: str, source: str, name: str) -> str:
    if source.startswith("gs://"):
        from hydra_vertex import cloud_build

        return cloud_build.build_image(source, name, project, location, log=common.log)
    from hydra_vertex.images import build_local

    image = build_local(source, name)
    common.log(f"{'cached' if image.cached else 'built'} local image {image.ref}")
    return image.ref
