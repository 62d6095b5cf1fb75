"""The ``build_image`` step: the training image, pinned by digest.

- ``source`` a ``gs://.../<name>-<digest>.tar.gz`` tarball: Cloud Build builds it and pushes to
  Artifact Registry (:mod:`hydra_vertex.cloud_build`).
- ``source`` a local directory: a content-addressed local image (:mod:`hydra_vertex.images`) that
  the emulator runs. An unchanged source is a cache hit and copies nothing.
- ``source`` a local image already built (``hydra-vertex.local/<name>@sha256:...``, as
  ``hydra-vertex run --local`` passes it after building the image and its environment with the job
  file's settings): that image.
"""

from __future__ import annotations

from hydra_vertex.steps import common


def build_image(*, project: str, location: str, source: str, name: str) -> str:
    if source.startswith("gs://"):
        from hydra_vertex import cloud_build

        return cloud_build.build_image(source, name, project, location, log=common.log)
    from hydra_vertex.images import build_local, resolve_local

    if resolve_local(source) is not None:
        common.log(f"local image {source} (built before the pipeline started)")
        return source
    image = build_local(source, name, log=common.log)
    common.log(f"{'cached' if image.cached else 'built'} local image {image.ref}")
    return image.ref
