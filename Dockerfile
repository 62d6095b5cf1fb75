# The hydra-vertex components image: hydra-vertex (the CLI, the shim, the components) and its cloud
# clients. Apps without a Dockerfile are built FROM it (hydra_vertex.cloud_build); the pipeline's
# components run in it. Build and push it with `hydra-vertex build-components-image` (docs/vertex.md).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/hydra-vertex
COPY . .
RUN pip install --no-cache-dir ".[cloud]"

WORKDIR /app
