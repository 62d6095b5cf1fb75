"""Pipeline templates in a KFP template registry (Artifact Registry, or the emulator's copy of it),
through kfp's own ``RegistryClient``.

A template URL names one version of a package in a repository, as Artifact Registry shows it:
``<host>/<package>/<tag>`` or ``<host>/<package>/sha256:<digest>``, where ``<host>`` is
``https://<location>-kfp.pkg.dev/<project>/<repo>`` on Google Cloud and
``http://127.0.0.1:PORT/kfp/<location>/<project>/<repo>`` on the emulator.

``aiplatform.PipelineJob(template_path=...)`` reads ``https://...-kfp.pkg.dev`` URLs itself but
refuses plain ``http://`` ones, so a run from the emulator's registry goes through a local copy:
``PipelineJob(template_path=str(download_template(url, dest)), ...)``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra_vertex.errors import HydraVertexError
from hydra_vertex.local_conventions import EMULATOR_REGISTRY_HOST_RE as _EMULATOR_HOST_RE
from hydra_vertex.local_conventions import REGISTRY_CONTEXT as CONTEXT

if TYPE_CHECKING:  # pragma: no cover
    from kfp.registry import RegistryClient

__all__ = [
    "CONTEXT",
    "client",
    "download_template",
    "emulator_host",
    "resolve_template_path",
    "split_template_url",
]

_TEMPLATE_URL_RE = re.compile(r"^(?P<host>https?://.+)/(?P<package>[^/]+)/(?P<ref>[^/]+)$")
_VERSION_PREFIX = "sha256:"


def emulator_host(endpoint: str, project: str, location: str, repo: str) -> str:
    """The ``RegistryClient`` host of a repository on the emulator at ``endpoint``."""
    return f"{endpoint.rstrip('/')}/kfp/{location}/{project}/{repo}"


def is_emulator_host(host: str) -> bool:
    return re.match(_EMULATOR_HOST_RE, host.rstrip("/")) is not None


def client(
    host: str, *, token: str | None = None, config_file: str | os.PathLike[str] | None = None
) -> RegistryClient:
    """A ``kfp.registry.RegistryClient`` for ``host``.

    An emulator host gets the emulator's URL templates (``config_file`` if given, else
    :data:`CONTEXT`) and its bearer token (``token``, else ``HYDRA_VERTEX_EMULATOR_TOKEN``).
    Any other host is left to ``RegistryClient`` (``*-kfp.pkg.dev``: Google default credentials).
    """
    from kfp.registry import ApiAuth, RegistryClient

    from hydra_vertex.vertex import EMULATOR_TOKEN_ENV

    if not is_emulator_host(host):
        auth = ApiAuth(token) if token else None
        return RegistryClient(
            host=host, auth=auth, config_file=str(config_file) if config_file else None
        )
    token = token or os.environ.get(EMULATOR_TOKEN_ENV)
    auth = ApiAuth(token) if token else None
    if config_file is not None:
        return RegistryClient(host=host, auth=auth, config_file=str(config_file))
    # RegistryClient reads its context from a file, once, in its constructor
    with tempfile.TemporaryDirectory(prefix="hydra-vertex-registry-") as tmp:
        path = Path(tmp) / "registry_context.json"
        path.write_text(json.dumps(CONTEXT))
        return RegistryClient(host=host, auth=auth, config_file=str(path))


def split_template_url(url: str) -> tuple[str, str, str | None, str | None]:
    """``(host, package, version, tag)`` of a template URL (one of version/tag is None)."""
    m = _TEMPLATE_URL_RE.match(url.rstrip("/"))
    if m is None:
        raise HydraVertexError(
            f"template URL {url!r} is not <host>/<package>/<tag or sha256:digest> (e.g. "
            "https://us-central1-kfp.pkg.dev/PROJECT/REPO/PACKAGE/latest, or on the emulator "
            "http://127.0.0.1:PORT/kfp/LOCATION/PROJECT/REPO/PACKAGE/latest)"
        )
    ref = m["ref"]
    if ref.startswith(_VERSION_PREFIX):
        return m["host"], m["package"], ref, None
    return m["host"], m["package"], None, ref


def download_template(
    url: str,
    dest: str | os.PathLike[str],
    *,
    token: str | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> Path:
    """Download the template version ``url`` names to ``dest`` (a file, or an existing directory
    to put ``<package>_<tag or digest>.yaml`` in) with ``RegistryClient``; returns the file.

    The file is what ``aiplatform.PipelineJob(template_path=...)`` takes. Errors name the URL and
    the registry's answer (404: no such package, tag or version; 401: token).
    """
    import requests

    host, package, version, tag = split_template_url(url)
    target = Path(dest)
    if target.is_dir():
        ref = version.removeprefix(_VERSION_PREFIX) if version else str(tag)
        target = target / f"{package}_{ref}.yaml"
    registry = client(host, token=token, config_file=config_file)
    try:
        registry.download_pipeline(package, version=version, tag=tag, file_name=str(target))
    except requests.HTTPError as e:
        raise HydraVertexError(f"cannot download template {url!r}: {_reason(e.response)}") from None
    except requests.ConnectionError as e:
        raise HydraVertexError(f"cannot reach the registry for {url!r}: {e}") from None
    return target


def _reason(response: Any) -> str:
    try:
        message = response.json()["error"]["message"]
    except Exception:
        message = (response.text or "")[:200]
    return f"HTTP {response.status_code}: {message}"


def resolve_template_path(
    template: str, dest_dir: str | os.PathLike[str] | None = None, *, token: str | None = None
) -> str:
    """What ``aiplatform.PipelineJob(template_path=...)`` can take for ``template``.

    A local file, a ``gs://`` URI or an ``https://`` URL the SDK reads itself (Artifact Registry
    ``https://<location>-kfp.pkg.dev/...``, or one ending in .json/.yaml/.yml) is returned as
    given. A template URL on the emulator's registry (plain ``http://``, which the SDK refuses) is
    downloaded with :func:`download_template` into ``dest_dir`` (a new temporary directory when
    None; ``token``, else ``HYDRA_VERTEX_EMULATOR_TOKEN``) and the local file is returned.
    """
    if not template.startswith(("http://", "https://")):
        return template
    from google.cloud.aiplatform.constants import pipeline as sdk

    if sdk._VALID_AR_URL.match(template) or sdk._VALID_HTTPS_URL.match(template):
        return template
    host = split_template_url(template)[0]
    if not is_emulator_host(host):
        raise HydraVertexError(
            f"template {template!r}: aiplatform reads only https://<location>-kfp.pkg.dev/... "
            "registry URLs and https://... URLs ending in .json/.yaml/.yml, and hydra-vertex "
            "downloads only the emulator's registry URLs (http://HOST:PORT/kfp/LOCATION/PROJECT/"
            "REPO/PACKAGE/TAG); download it yourself and pass the file"
        )
    if dest_dir is None:
        dest = Path(tempfile.mkdtemp(prefix="hydra-vertex-"))
    else:
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
    return str(download_template(template, dest, token=token))
