"""The image the components run in on Vertex AI (it holds hydra-vertex; see the Dockerfile).

The checked-in template names this default; build and push your own with
``hydra-vertex build-components-image`` and compile with ``--components-image``.
"""

DEFAULT_COMPONENTS_IMAGE = "ghcr.io/hydra-vertex/components:0.1.0"
