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
        text = Path(path).read_text()
    except OSError:
        return None
    found = names(text, resource_type)
    return found[0] if found else None


def names(text: str, resource_type: str | None = None) -> list[str]:
    """The resource names in a ``gcp_resources`` value (of ``resource_type`` only, if given);
    nothing for text that is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    resources = data.get("resources") if isinstance(data, dict) else None
    out = []
    for r in resources if isinstance(resources, list) else []:
        uri = str(r.get("resourceUri", "")) if isinstance(r, dict) else ""
        if resource_type not in (None, r.get("resourceType")) or "/v1/" not in uri:
            continue
        out.append(uri.split("/v1/", 1)[1])
    return out
