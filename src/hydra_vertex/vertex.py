"""Thin wrappers over the official Google clients. Endpoint resolution lives here, in one place.

Resolution order (as Google's Pub/Sub client does with ``PUBSUB_EMULATOR_HOST``):
1. ``HYDRA_VERTEX_EMULATOR`` (``http://127.0.0.1:PORT``) with ``HYDRA_VERTEX_EMULATOR_TOKEN``;
2. an explicit endpoint passed by the caller;
3. Google's default for the location (left to the client library: never hard-coded here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hydra_vertex.local_conventions import project_number

if TYPE_CHECKING:  # pragma: no cover
    from google.auth.credentials import Credentials

EMULATOR_ENV = "HYDRA_VERTEX_EMULATOR"
EMULATOR_TOKEN_ENV = "HYDRA_VERTEX_EMULATOR_TOKEN"


@dataclass(frozen=True)
class Endpoint:
    """Where Vertex calls go. ``api_endpoint`` None means Google's default for the location."""

    api_endpoint: str | None
    token: str | None = None
    is_emulator: bool = False


def resolve_endpoint(explicit: str | None = None) -> Endpoint:
    emulator = os.environ.get(EMULATOR_ENV)
    if emulator:
        return Endpoint(
            api_endpoint=emulator.rstrip("/"),
            token=os.environ.get(EMULATOR_TOKEN_ENV),
            is_emulator=True,
        )
    if explicit:
        return Endpoint(api_endpoint=explicit)
    return Endpoint(api_endpoint=None)


def bearer_credentials(token: str | None) -> Credentials:
    """Static bearer-token credentials (what the emulator expects); they never refresh."""
    from google.auth.credentials import AnonymousCredentials
    from google.oauth2.credentials import Credentials as OAuthCredentials

    if not token:
        return AnonymousCredentials()
    return OAuthCredentials(token=token)


def init_aiplatform(
    project: str,
    location: str,
    *,
    endpoint: str | None = None,
    staging_bucket: str | None = None,
    **kwargs: Any,
) -> Endpoint:
    """``aiplatform.init`` with the resolved endpoint; returns what was chosen."""
    from google.cloud import aiplatform

    resolved = resolve_endpoint(endpoint)
    init_kwargs: dict[str, Any] = dict(project=project, location=location, **kwargs)
    if staging_bucket:
        init_kwargs["staging_bucket"] = staging_bucket
    if resolved.api_endpoint:
        init_kwargs["api_endpoint"] = resolved.api_endpoint
    if resolved.is_emulator:
        init_kwargs.update(emulator_init_kwargs(str(resolved.api_endpoint), resolved.token))
        # The emulator answers the Cloud Storage JSON API too: google-cloud-storage (the SDK's
        # bucket check, source uploads) goes there instead of Google.
        os.environ.setdefault("STORAGE_EMULATOR_HOST", str(resolved.api_endpoint))
    aiplatform.init(**init_kwargs)
    return resolved


def emulator_init_kwargs(endpoint: str, token: str | None) -> dict[str, Any]:
    """``aiplatform.init`` arguments for the emulator at ``endpoint`` (REST, bearer token), with
    the SDK's project-number lookups answered locally."""
    use_emulator_project_numbers()
    return {
        "api_endpoint": endpoint,
        "api_transport": "rest",
        "credentials": bearer_credentials(token),
    }


def job_client(location: str, endpoint: str | Endpoint | None = None) -> Any:
    """A v1 ``JobServiceClient`` for ``location``: the emulator over REST, or Google's regional
    endpoint as the aiplatform SDK computes it (never hard-coded here)."""
    return _client("JobServiceClient", location, endpoint)


def pipeline_client(location: str, endpoint: str | Endpoint | None = None) -> Any:
    """A v1 ``PipelineServiceClient`` for ``location``, resolved as :func:`job_client`."""
    return _client("PipelineServiceClient", location, endpoint)


def _client(service: str, location: str, endpoint: str | Endpoint | None) -> Any:
    """``endpoint``: an address (resolved as :func:`resolve_endpoint` does) or an already resolved
    :class:`Endpoint`."""
    from google.cloud import aiplatform_v1

    cls = getattr(aiplatform_v1, service)
    resolved = endpoint if isinstance(endpoint, Endpoint) else resolve_endpoint(endpoint)
    if resolved.is_emulator:
        return emulator_client(str(resolved.api_endpoint), resolved.token, service)
    if resolved.api_endpoint:
        return cls(client_options={"api_endpoint": resolved.api_endpoint})
    # Vertex AI itself: the regional endpoint as the SDK computes it (imports the whole SDK)
    from google.cloud.aiplatform import initializer

    options = initializer.global_config.get_client_options(location_override=location)
    return cls(client_options=options)


def emulator_job_client(endpoint: str, token: str | None) -> Any:
    """A v1 ``JobServiceClient`` for the emulator at ``endpoint`` (REST, bearer token)."""
    return emulator_client(endpoint, token, "JobServiceClient")


def emulator_client(endpoint: str, token: str | None, service: str) -> Any:
    """A v1 GAPIC client (``service``: ``JobServiceClient``, ``PipelineServiceClient``) for the
    emulator at ``endpoint``: REST, bearer token."""
    from google.cloud import aiplatform_v1

    return getattr(aiplatform_v1, service)(
        transport="rest",
        client_options={"api_endpoint": endpoint},
        credentials=bearer_credentials(token),
    )


def logging_client(project: str, endpoint: Endpoint | None = None) -> Any:
    """A ``google.cloud.logging.Client`` for ``project``: Google's Cloud Logging, or the emulator
    (which answers the ``entries:list`` subset over the JSON API; the library's gRPC transport
    cannot take an ``http://`` endpoint)."""
    from google.cloud import logging as cloud_logging

    resolved = endpoint or resolve_endpoint()
    if resolved.is_emulator:
        return cloud_logging.Client(
            project=project,
            credentials=bearer_credentials(resolved.token),
            client_options={"api_endpoint": resolved.api_endpoint},
            _use_grpc=False,
        )
    if resolved.api_endpoint:
        return cloud_logging.Client(
            project=project, client_options={"api_endpoint": resolved.api_endpoint}
        )
    return cloud_logging.Client(project=project)


#: Where a Vertex project can be configured outside a job file (gcloud's and the client
#: libraries' variables), in the order they are read.
PROJECT_ENV = ("GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT")


def configured_project() -> tuple[str, str] | None:
    """``(project, variable)`` when the environment names a Google Cloud project, else None."""
    for name in PROJECT_ENV:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None


def api_base(location: str, endpoint: str | None = None) -> str:
    """``https://<regional endpoint>/v1/`` (or the emulator's URL): the prefix of resource URIs."""
    resolved = resolve_endpoint(endpoint)
    if resolved.api_endpoint:
        base = resolved.api_endpoint
    else:
        from google.cloud.aiplatform import initializer

        base = str(
            initializer.global_config.get_client_options(location_override=location).api_endpoint
        )
    if "://" not in base:
        base = f"https://{base}"
    return f"{base.rstrip('/')}/v1/"


def use_emulator_project_numbers() -> None:
    """Answer the aiplatform SDK's project-number lookups locally, in emulator mode.

    ``PipelineJob.submit()`` checks the pipeline bucket's owner by asking Google's Resource
    Manager for the project number, through a client whose endpoint cannot be changed; with no
    network that costs ~50 s of retries per submit. This is the one place hydra-vertex redirects
    an SDK call in-process: ``resource_manager_utils.get_project_number`` returns
    :func:`project_number`, the number the emulator's Cloud Storage reports for a bucket's owner.
    """
    from google.cloud.aiplatform.utils import resource_manager_utils

    if getattr(resource_manager_utils.get_project_number, "_hydra_vertex", False):
        return

    def get_project_number(project_id: str, credentials: Any = None) -> str:
        return project_number(project_id)

    get_project_number._hydra_vertex = True  # type: ignore[attr-defined]
    resource_manager_utils.get_project_number = get_project_number
