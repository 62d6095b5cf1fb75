"""The ``gcp_resources`` output in google-cloud-pipeline-components' format.

The Vertex console reads it to link a pipeline task to the job it launched; a restarted launcher
reads it back to find the job it created instead of creating a second one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def dumps(resource_type: str, name: str, base: str) -> str:
    """Serialize one resource (``base`` is ``https://<endpoint>/v1/``) with GCPC's proto."""
    from google.protobuf import json_format
    from google_cloud_pipeline_components.proto import gcp_resources_pb2

    resources = gcp_resources_pb2.GcpResources()
    resource = resources.resources.add()
    resource.resource_type = resource_type
    resource.resource_uri = f"{base}{name}"
    return str(json_format.MessageToJson(resources))


def write(path: str | os.PathLike[str], resource_type: str, name: str, base: str) -> None:
    from hydra_vertex.files import atomic_write_text

    atomic_write_text(path, dumps(resource_type, name, base))


def read(path: str | os.PathLike[str], resource_type: str) -> str | None:
    """The resource name of the first ``resource_type`` entry in the file, or None."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    for r in data.get("resources", []) if isinstance(data, dict) else []:
        uri = str(r.get("resourceUri", ""))
        if r.get("resourceType") == resource_type and "/v1/" in uri:
            return uri.split("/v1/", 1)[1]
    return None
