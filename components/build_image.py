"""kfp component: build the training image from the app's source."""

from kfp import dsl

from hydra_vertex.components._image import DEFAULT_COMPONENTS_IMAGE


@dsl.component(base_image=DEFAULT_COMPONENTS_IMAGE, install_kfp_package=False)
def build_image(project: str, location: str, source: str, name: str) -> str:
    """Build the app's training image, pinned by digest.

    Args:
        project: Google Cloud project of the build (Cloud Build, Artifact Registry).
        location: Region of the Artifact Registry repository ``hydra-vertex``.
        source: The app's source: a ``gs://`` tarball uploaded by ``hydra-vertex submit`` (built by
            Cloud Build), or a local directory (a content-addressed local image for the emulator).
        name: Image name (lowercase letters, digits, ``-``, ``_``, ``.``).

    Returns:
        The image reference pinned by digest (``...@sha256:<digest>``).
    """
    from hydra_vertex.steps.build import build_image as run

    return run(project=project, location=location, source=source, name=name)
