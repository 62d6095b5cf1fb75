"""Which service and which job a lifecycle command (``status``, ``cancel``, ``logs``, ``open``)
means: one place for both questions.

**The service** (:func:`target`), in this order:

1. ``HYDRA_VERTEX_EMULATOR`` (with ``HYDRA_VERTEX_EMULATOR_TOKEN``): that emulator, as for every
   other command (:func:`hydra_vertex.vertex.resolve_endpoint`);
2. ``--project`` (or a resource name's project) with ``--region``: Vertex AI;
3. the emulator whose ``endpoint.json`` is in the state directory (``.hydra-vertex/emulator``,
   or ``--state-dir``), when it answers: a ``hydra-vertex run`` or ``hydra-vertex emulator``
   running on this machine;
4. a project configured in the environment (``GOOGLE_CLOUD_PROJECT``, ...): Vertex AI.

**The job** (:func:`resolve`): a resource name
(``projects/P/locations/L/hyperparameterTuningJobs/ID``), an id, or a display name; tuning jobs,
custom jobs and pipeline runs are searched, through the official clients only. A name no job
carries is tried once more as ``<name>-tuning`` (the tuning job ``hydra-vertex run`` creates for
the app ``<name>``). When several jobs match, the newest is taken and a note says so.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra_vertex.errors import UsageError
from hydra_vertex.vertex import EMULATOR_ENV, Endpoint, configured_project, resolve_endpoint

DEFAULT_STATE_DIR = Path(".hydra-vertex") / "emulator"
DEFAULT_REGION = "us-central1"


@dataclass(frozen=True)
class Kind:
    """One job collection: its REST collection, its client, and the GAPIC method suffix."""

    collection: str
    label: str  # what the user reads: "tuning job", ...
    method: str  # ``get_<method>``, ``list_<method>s``, ``cancel_<method>``
    service: str  # "job" | "pipeline"

    def call(self, clients: Clients, verb: str, **kwargs: Any) -> Any:
        client = clients.jobs if self.service == "job" else clients.pipelines
        plural = "s" if verb == "list" else ""
        return getattr(client, f"{verb}_{self.method}{plural}")(**kwargs)


TUNING = Kind("hyperparameterTuningJobs", "tuning job", "hyperparameter_tuning_job", "job")
CUSTOM = Kind("customJobs", "custom job", "custom_job", "job")
PIPELINE = Kind("pipelineJobs", "pipeline run", "pipeline_job", "pipeline")
KINDS = (TUNING, CUSTOM, PIPELINE)
BY_COLLECTION = {k.collection: k for k in KINDS}

_RESOURCE = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/"
    r"(?P<collection>hyperparameterTuningJobs|customJobs|pipelineJobs)/(?P<id>[^/]+)$"
)
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")


@dataclass(frozen=True)
class Target:
    """Where the jobs are: the endpoint, the project and location (``-``: every one, on the
    emulator), and, for the emulator, its console token for console links (read-only pages;
    None: not known yet, :func:`hydra_vertex.lifecycle.console_url` asks the emulator)."""

    endpoint: Endpoint
    project: str
    location: str
    console_token: str | None = None
    source: str = ""  # how it was chosen, for messages

    @property
    def is_emulator(self) -> bool:
        return self.endpoint.is_emulator

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    @property
    def wildcard(self) -> bool:
        return self.project == "-" or self.location == "-"

    def describe(self) -> str:
        if self.is_emulator:
            return f"the emulator at {self.endpoint.api_endpoint}"
        return f"Vertex AI ({self.project}, {self.location})"


@dataclass
class Clients:
    jobs: Any
    pipelines: Any


def clients(target: Target) -> Clients:
    from hydra_vertex.vertex import job_client, pipeline_client

    location = DEFAULT_REGION if target.location == "-" else target.location
    if target.is_emulator:
        from hydra_vertex.vertex import emulator_job_client

        jobs = emulator_job_client(str(target.endpoint.api_endpoint), target.endpoint.token)
    else:
        jobs = job_client(location, target.endpoint.api_endpoint)
    return Clients(jobs, pipeline_client(location, target.endpoint))


# -- the service ---------------------------------------------------------------------------------


def running_emulator(state_dir: Path) -> dict[str, str] | None:
    """``endpoint.json``'s content for the emulator on ``state_dir`` when it answers, else None
    (10 s: a stopped one is refused at once, a busy machine may take seconds to answer)."""
    from hydra_vertex import local_emulator

    return local_emulator.running_emulator(state_dir, timeout=10.0)


def target(
    job: str | None = None,
    *,
    project: str | None = None,
    region: str | None = None,
    state_dir: str | Path | None = None,
) -> Target:
    """The service a lifecycle command talks to (see the module's docstring for the order)."""
    resource = _RESOURCE.match(job or "")
    endpoint = resolve_endpoint()
    if endpoint.is_emulator:
        return Target(
            endpoint,
            project or (resource["project"] if resource else "-"),
            region or (resource["location"] if resource else "-"),
            None,  # the console token: asked of the emulator when a link needs it
            f"${EMULATOR_ENV}",
        )
    local = None if project else _local(state_dir)
    if project or (resource and local is None):
        chosen = project or (resource["project"] if resource else "")
        location = region or (resource["location"] if resource else DEFAULT_REGION)
        return Target(Endpoint(None), chosen, location, source="--project")
    if local is not None:
        endpoint = Endpoint(local["endpoint"].rstrip("/"), local.get("token", ""), True)
        console = local.get("console_token")  # never the API token: links get printed
        return Target(endpoint, "-", "-", console, f"{_state_dir(state_dir)}/endpoint.json")
    configured = configured_project()
    if configured is not None:
        return Target(
            Endpoint(None), configured[0], region or DEFAULT_REGION, source=f"${configured[1]}"
        )
    raise UsageError(
        f"no emulator answers on {str(_state_dir(state_dir))!r} (start one with 'hydra-vertex "
        "emulator', or run a job with 'hydra-vertex run JOB.yaml') and no Vertex AI project is "
        "configured (pass --project and --region, or set GOOGLE_CLOUD_PROJECT); see docs/cli.md"
    )


def _state_dir(state_dir: str | Path | None) -> Path:
    return Path(state_dir) if state_dir is not None else DEFAULT_STATE_DIR


def _local(state_dir: str | Path | None) -> dict[str, str] | None:
    return running_emulator(_state_dir(state_dir))


# -- the job -------------------------------------------------------------------------------------


@dataclass
class Found:
    """A job: its kind and the ``aiplatform_v1`` resource as last read."""

    kind: Kind
    job: Any

    @property
    def name(self) -> str:
        return str(self.job.name)

    @property
    def id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def title(self) -> str:
        return str(self.job.display_name or self.id)

    def reload(self, c: Clients) -> Found:
        return Found(self.kind, self.kind.call(c, "get", name=self.name))


def get(c: Clients, kind: Kind, name: str) -> Found | None:
    """The job ``name`` of ``kind``, or None when there is none."""
    from google.api_core import exceptions as gexc

    try:
        return Found(kind, kind.call(c, "get", name=name))
    except (gexc.NotFound, gexc.InvalidArgument):
        return None


def listed(c: Clients, t: Target, kind: Kind, display_name: str | None = None) -> Iterator[Found]:
    """The jobs of ``kind`` under the target's parent (newest first), with that display name."""
    request: dict[str, Any] = {"parent": t.parent}
    if display_name is not None:
        request["filter"] = f'display_name="{display_name}"'
    for job in kind.call(c, "list", request=request):
        if display_name is None or job.display_name == display_name:
            yield Found(kind, job)


def resolve(c: Clients, t: Target, text: str) -> Found:
    """The job ``text`` names (see the module's docstring); a :class:`UsageError` naming what
    was searched when none does."""
    text = text.strip()
    resource = _RESOURCE.match(text)
    if resource:
        found = get(c, BY_COLLECTION[resource["collection"]], text)
        if found is None:
            raise UsageError(f"no job {text!r} on {t.describe()}")
        return found
    for name in (text, f"{text}-tuning"):
        matches = _matches(c, t, name)
        if matches:
            return _newest(matches, name)
    raise UsageError(
        f"no tuning job, custom job or pipeline run is named {text!r} or {text + '-tuning'!r}, "
        f"or has that id, on {t.describe()}; 'hydra-vertex status' lists them"
    )


def _matches(c: Clients, t: Target, text: str) -> list[Found]:
    out: list[Found] = []
    for kind in KINDS:
        if not t.wildcard and _ID.match(text):
            found = get(c, kind, f"{t.parent}/{kind.collection}/{text}")
            if found is not None:
                out.append(found)
        if t.wildcard:  # the emulator: every job of every project, matched here
            out += [f for f in listed(c, t, kind) if text in (f.id, f.job.display_name)]
        else:
            out += [f for f in listed(c, t, kind, text) if f.name not in {o.name for o in out}]
    return out


def _newest(matches: list[Found], text: str) -> Found:
    def created(f: Found) -> float:
        stamp = f.job.create_time
        return stamp.timestamp() if stamp else 0.0

    matches.sort(key=created, reverse=True)
    if len(matches) > 1:
        print(
            f"hydra-vertex: note: {len(matches)} jobs match {text!r}; taking the newest, "
            f"{matches[0].kind.label} {matches[0].name} (pass an id or a resource name for "
            "another)",
            file=sys.stderr,
        )
    return matches[0]
