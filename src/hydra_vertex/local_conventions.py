"""What the emulator and its clients agree on beyond Google's APIs: where ``gs://`` lives on
disk, the project numbers its Cloud Storage reports, the URL layout of its template registry.

Standard library only: both the emulator (the server) and the client side import this module,
and neither imports the other's insides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hydra_vertex.errors import EmulatorError

STORAGE_DIR = "storage"


def storage_root(state_dir: Path) -> Path:
    """The emulator's Cloud Storage: ``gs://bucket/path`` is ``STATE_DIR/storage/bucket/path``."""
    return state_dir / STORAGE_DIR


def local_path(storage_root: Path, uri: str) -> Path:
    """``storage_root/<bucket>/<path>`` for ``gs://bucket/path``; no ``.``/``..`` segments."""
    if not uri.startswith("gs://"):
        raise EmulatorError(f"{uri!r} is not a gs:// URI")
    rel = uri[len("gs://") :].strip("/")
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") or "\0" in p for p in parts):
        raise EmulatorError(f"gs:// URI {uri!r} has an empty, '.' or '..' segment")
    return storage_root.joinpath(*parts)


def project_number(project_id: str) -> str:
    """The emulator's number for a project id (stable: derived from the id)."""
    digest = int(hashlib.sha256(project_id.encode()).hexdigest()[:12], 16)
    return str(10**11 + digest % (9 * 10**11))


# An emulator repository host: ``<endpoint>/kfp/<location>/<project>/<repo>``. The regex and the
# URL templates below form a kfp registry context (``RegistryClient(config_file=...)``); it names
# no port, so one file serves any emulator (the emulator writes it to
# STATE_DIR/registry_context.json).
EMULATOR_REGISTRY_HOST_RE = (
    r"^(?P<endpoint>https?://[^/]+)/kfp/(?P<location>[a-z0-9-]+)/(?P<project_id>[a-z0-9-]+)"
    r"/(?P<repo_id>[a-z0-9-]+)$"
)
_AR = (
    "{endpoint}/artifactregistry/v1/projects/{project_id}/locations/{location}"
    "/repositories/{repo_id}"
)
_PKG = _AR + "/packages/{package_name}"
REGISTRY_CONTEXT: dict[str, str] = {
    "regex": EMULATOR_REGISTRY_HOST_RE,
    "upload_url": "{host}",
    "download_version_url": "{host}/{package_name}/{version}",
    "download_tag_url": "{host}/{package_name}/{tag}",
    "get_package_url": _PKG,
    "list_packages_url": _AR + "/packages",
    "delete_package_url": _PKG,
    "get_tag_url": _PKG + "/tags/{tag}",
    "list_tags_url": _PKG + "/tags",
    "delete_tag_url": _PKG + "/tags/{tag}",
    "create_tag_url": _PKG + "/tags?tagId={tag}",
    "update_tag_url": _PKG + "/tags/{tag}?updateMask=version",
    "get_version_url": _PKG + "/versions/{version}?view=FULL",
    "list_versions_url": _PKG + "/versions?view=FULL",
    "delete_version_url": _PKG + "/versions/{version}",
    "package_format": "projects/{project_id}/locations/{location}/repositories/{repo_id}"
    "/packages/{package_name}",
    "tag_format": "projects/{project_id}/locations/{location}/repositories/{repo_id}"
    "/packages/{package_name}/tags/{tag}",
    "version_format": "projects/{project_id}/locations/{location}/repositories/{repo_id}"
    "/packages/{package_name}/versions/{version}",
}
