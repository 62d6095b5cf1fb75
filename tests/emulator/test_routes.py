"""The one router: every route resolves to its callable; the Vertex AI and Cloud Build routes are
the HTTP rules (``google.api.http``) that the official client libraries ship; one rule for what no
route serves (404, 405) in Google's error envelope."""

from __future__ import annotations

import http.client
import importlib
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from hydra_vertex.emulator import EmulatorHandle
from hydra_vertex.emulator.router import ApiError, Route, Router, compile_template
from hydra_vertex.emulator.server import Emulator

# Google API package -> (client library package, {service: transport module})
_LIBRARIES = {
    "google.cloud.aiplatform.v1": (
        "google.cloud.aiplatform_v1",
        {
            "JobService": "job_service",
            "PipelineService": "pipeline_service",
            "ScheduleService": "schedule_service",
        },
    ),
    "google.devtools.cloudbuild.v1": (
        "google.cloud.devtools.cloudbuild_v1",
        {"CloudBuild": "cloud_build"},
    ),
    # the operations mixin of the aiplatform_v1 clients (the same rules in every service)
    "google.longrunning": ("google.cloud.aiplatform_v1", {"Operations": "job_service"}),
}
_MIXIN_HOST = {"Operations": "JobService"}
# the operations of the resources served (the mixin's rules cover every Vertex collection)
_SERVED_OPERATIONS = re.compile(
    r"^/(v1|ui)/\{name=projects/\*/locations/\*"
    r"(/(customJobs|hyperparameterTuningJobs|pipelineJobs|schedules)/\*)?(/operations(/\*)?)?\}"
)
_VARIABLE = re.compile(r"\{[^}=]+(?:=([^}]*))?\}")
# google-cloud-logging's generated layer is gRPC only; its JSON client (logging_v2/_http.py, which
# `hydra-vertex logs` uses against the emulator) posts to this path.
_JSON_CLIENT_RULES = {
    "google.logging.v2.LoggingServiceV2.ListLogEntries": [("POST", "/v2/entries:list")],
}


def http_rules(rpc: str) -> list[tuple[str, str]]:
    """``(METHOD, uri template)`` of each HTTP binding of ``rpc``, as the client library's REST
    transport has them (the ``google.api.http`` options of the service descriptor)."""
    if rpc in _JSON_CLIENT_RULES:
        return _JSON_CLIENT_RULES[rpc]
    package, service, method = rpc.rsplit(".", 2)
    library, modules = _LIBRARIES[package]
    rest = importlib.import_module(f"{library}.services.{modules[service]}.transports.rest_base")
    host = _MIXIN_HOST.get(service, service)
    base = getattr(getattr(rest, f"_Base{host}RestTransport"), f"_Base{method}")
    return [(o["method"].upper(), o["uri"]) for o in base._get_http_options()]


def sample_path(template: str) -> str:
    """A concrete path a template matches: each ``*`` one segment, ``**`` two."""

    def fill(pattern: str) -> str:
        return "/".join(
            {"*": "s1", "**": "s1/s2"}.get(seg, seg) for seg in (pattern or "*").split("/")
        )

    return _VARIABLE.sub(lambda m: fill(m.group(1) or "*"), template)


def same_paths(ours: str, theirs: str) -> bool:
    """Each template matches the other's sample path (the same path shape)."""
    return bool(
        compile_template(theirs).match(sample_path(ours))
        and compile_template(ours).match(sample_path(theirs))
    )


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Route, ...]]:
    emulator = Emulator(tmp_path_factory.mktemp("state"))
    try:
        yield emulator.router.routes
    finally:
        emulator.shutdown()


def test_every_route_resolves_to_its_callable(routes: tuple[Route, ...]) -> None:
    router = Router(routes)
    assert len(routes) > 50
    for route in routes:
        assert callable(route.handler), route
        got = router.resolve(route.method, sample_path(route.template)).route
        assert got is route, f"{route.method} {route.template} is shadowed by {got.template}"


def test_vertex_and_cloud_build_routes_are_the_client_libraries_http_rules(
    routes: tuple[Route, ...],
) -> None:
    with_rpc = [r for r in routes if r.rpc]
    served = {r.rpc for r in with_rpc}
    assert {
        "google.cloud.aiplatform.v1.ScheduleService.PauseSchedule",
        "google.cloud.aiplatform.v1.ScheduleService.ResumeSchedule",
        "google.cloud.aiplatform.v1.ScheduleService.UpdateSchedule",
        "google.cloud.aiplatform.v1.JobService.CancelHyperparameterTuningJob",
        "google.cloud.aiplatform.v1.PipelineService.CreatePipelineJob",
        "google.devtools.cloudbuild.v1.CloudBuild.CreateBuild",
        "google.longrunning.Operations.GetOperation",
        "google.longrunning.Operations.ListOperations",
        "google.longrunning.Operations.WaitOperation",
    } <= served
    for route in with_rpc:
        rules = http_rules(route.rpc)
        assert any(m == route.method and same_paths(route.template, uri) for m, uri in rules), (
            f"{route.method} {route.template} is not an HTTP rule of {route.rpc}: {rules}"
        )
    for rpc in served:  # and every v1 binding of a method served is served
        for method, uri in http_rules(rpc):
            mixin = rpc.startswith("google.longrunning.")
            if (uri.startswith("/v1/") and not mixin) or (
                mixin and _SERVED_OPERATIONS.match(uri)
            ):
                assert any(
                    r.rpc == rpc and r.method == method and same_paths(r.template, uri)
                    for r in with_rpc
                ), f"{rpc}: {method} {uri} has no route"


@pytest.mark.parametrize(
    ("template", "path", "variables"),
    [
        (
            "/v1/{name=projects/*/locations/*}",
            "/v1/projects/p/locations/l",
            {"name": "projects/p/locations/l"},
        ),
        (
            "/v1/{schedule.name=projects/*/schedules/*}",
            "/v1/projects/p/schedules/1",
            {"schedule_name": "projects/p/schedules/1"},
        ),
        ("/b/{bucket}/o/{object=**}", "/b/x/o/a%2Fb/c", {"bucket": "x", "object": "a/b/c"}),
        ("/v1/{project}/jobs/{id}:cancel", "/v1/p/jobs/7:cancel", {"project": "p", "id": "7"}),
    ],
)
def test_templates_use_googles_syntax(template: str, path: str, variables: dict[str, str]) -> None:
    def handler(request: Any, **kw: str) -> Any:
        return 200, kw

    match = Router([Route("GET", template, handler)]).resolve("GET", path)
    assert match.variables == variables


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/projects/p/locations/l/nothingHere", 404),
        ("GET", "/storage/v1/nope", 404),
        ("GET", "/artifactregistry/v1/nope", 404),
        ("GET", "/kfp/a", 404),
        ("GET", "/console/a/b/c/d", 404),
        ("POST", "/v1/projects/p/locations/l/customJobs/1:pause", 404),
        ("POST", "/v1/projects/p/locations/l/schedules/1:cancel", 404),
        ("PUT", "/v1/projects/p/locations/l/customJobs", 405),
        ("PATCH", "/v1/projects/p/locations/l/customJobs/1", 405),
        ("POST", "/storage/v1/b/bucket", 405),
        ("PUT", "/v1/projects/p/builds", 405),
        ("POST", "/console", 405),
        ("DELETE", "/kfp/us/p/repo/pkg/v1", 405),
    ],
)
def test_unknown_paths_404_and_other_methods_405_in_googles_envelope(
    emulator: EmulatorHandle, method: str, path: str, status: int
) -> None:
    url = urlsplit(emulator.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {emulator.token}"})
        response = conn.getresponse()
        body = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == status
    error = body["error"]
    assert error["code"] == status and error["message"]
    assert error["status"] == {404: "NOT_FOUND", 405: "UNIMPLEMENTED"}[status]


def test_an_unknown_path_without_the_token_is_401(emulator: EmulatorHandle) -> None:
    """What the emulator serves is no secret, but nothing answers before the token is shown."""
    url = urlsplit(emulator.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", "/nothing/here?token=" + emulator.token)
        assert conn.getresponse().status == 401  # ?token= is for console pages only
    finally:
        conn.close()


def test_router_errors_are_api_errors() -> None:
    router = Router([])
    with pytest.raises(ApiError) as e:
        router.resolve("GET", "/")
    assert e.value.code == 404 and "docs/emulator.md" in e.value.message


def test_error_messages_carry_no_ansi_and_no_traceback() -> None:
    trace = (
        "could not load: \x1b[31mred\x1b[0m\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n    boom()\nValueError: bad spec\n'
    )
    error = ApiError(400, trace)
    assert error.message == "could not load: red ValueError: bad spec"
    assert error.envelope()["error"]["message"] == error.message
