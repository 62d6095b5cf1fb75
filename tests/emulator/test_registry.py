"""The emulator's KFP template registry through kfp's real ``RegistryClient``: upload with tags,
list, get, download by tag and by version, tags moved and deleted, versions and packages deleted,
errors; then a pipeline run of the template downloaded from the registry URL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from test_pipeline_jobs import _params

from hydra_vertex.emulator import EmulatorHandle, connect, start
from hydra_vertex.errors import HydraVertexError
from hydra_vertex.registry import (
    client,
    download_template,
    emulator_host,
    resolve_template_path,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "pipelines" / "tune_and_retrain.json"
PACKAGE = "hydra-vertex-tune-and-retrain"
REPO = "projects/local-project/locations/us-central1/repositories/templates"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorHandle]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.config/kfp context or credentials
    monkeypatch.setenv("HYDRA_VERTEX_IMAGES", str(tmp_path / "images"))
    monkeypatch.setenv("HYDRA_VERTEX_CACHE_DIR", str(tmp_path / "cache"))
    with start(tmp_path / "state", seed=0) as handle:
        yield handle


def _host(handle: EmulatorHandle) -> str:
    return emulator_host(handle.endpoint, "local-project", "us-central1", "templates")


def _registry(handle: EmulatorHandle, token: str | None = "") -> Any:
    from kfp.registry import ApiAuth, RegistryClient

    return RegistryClient(
        host=_host(handle),
        config_file=str(handle.state_dir / "registry_context.json"),
        auth=ApiAuth(handle.token if token == "" else token) if token is not None else None,
    )


def _variant(tmp_path: Path, description: str) -> Path:
    spec = json.loads(TEMPLATE.read_text())
    spec["pipelineInfo"]["description"] = description
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def test_upload_list_get_download_delete(emulator: EmulatorHandle, tmp_path: Path) -> None:
    registry = _registry(emulator)
    package, version = registry.upload_pipeline(str(TEMPLATE), tags=["v1", "latest"])
    digest = hashlib.sha256(TEMPLATE.read_bytes()).hexdigest()
    assert (package, version) == (PACKAGE, f"sha256:{digest}")
    pkg_name = f"{REPO}/packages/{PACKAGE}"
    version_name = f"{pkg_name}/versions/{version}"

    [pkg] = registry.list_packages()
    assert pkg["name"] == pkg_name
    assert registry.get_package(PACKAGE)["name"] == pkg_name
    [ver] = registry.list_versions(PACKAGE)
    assert ver["name"] == version_name
    assert {t["name"].rsplit("/", 1)[1] for t in ver["relatedTags"]} == {"v1", "latest"}
    assert registry.get_version(PACKAGE, version)["name"] == version_name
    tags = {t["name"].rsplit("/", 1)[1]: t["version"] for t in registry.list_tags(PACKAGE)}
    assert tags == {"v1": version_name, "latest": version_name}
    assert registry.get_tag(PACKAGE, "v1") == {
        "name": f"{pkg_name}/tags/v1",
        "version": version_name,
    }

    by_tag = registry.download_pipeline(PACKAGE, tag="latest", file_name=str(tmp_path / "t.yaml"))
    by_version = registry.download_pipeline(
        PACKAGE, version=version, file_name=str(tmp_path / "v.yaml")
    )
    assert Path(by_tag).read_bytes() == Path(by_version).read_bytes() == TEMPLATE.read_bytes()

    # a tagged version is kept (as Artifact Registry does without force=true)
    with pytest.raises(requests.HTTPError) as e:
        registry.delete_version(PACKAGE, version)
    assert e.value.response.status_code == 400 and "delete those tags" in e.value.response.text
    assert registry.delete_tag(PACKAGE, "v1") == {}
    assert registry.delete_tag(PACKAGE, "latest") == {}
    assert registry.list_tags(PACKAGE) == {}
    assert registry.delete_version(PACKAGE, version) is True
    assert registry.list_versions(PACKAGE) == {}
    assert registry.delete_package(PACKAGE) is True
    assert registry.list_packages() == {}


def test_a_new_upload_moves_its_tags(emulator: EmulatorHandle, tmp_path: Path) -> None:
    registry = _registry(emulator)
    _, v1 = registry.upload_pipeline(str(TEMPLATE), tags=["v1", "latest"])
    _, v2 = registry.upload_pipeline(str(_variant(tmp_path, "second")), tags="latest")
    assert v1 != v2
    assert registry.get_tag(PACKAGE, "latest")["version"].endswith(v2)
    assert registry.get_tag(PACKAGE, "v1")["version"].endswith(v1)
    assert len(registry.list_versions(PACKAGE)) == 2
    # the same bytes again: the same version, no third one
    assert registry.upload_pipeline(str(TEMPLATE)) == (PACKAGE, v1)
    assert len(registry.list_versions(PACKAGE)) == 2

    assert registry.create_tag(PACKAGE, v2, "v2")["version"].endswith(v2)
    with pytest.raises(requests.HTTPError) as e:
        registry.create_tag(PACKAGE, v1, "v2")
    assert e.value.response.status_code == 409
    assert registry.update_tag(PACKAGE, v1, "latest")["version"].endswith(v1)
    out = registry.download_pipeline(PACKAGE, tag="latest", file_name=str(tmp_path / "l.yaml"))
    assert Path(out).read_bytes() == TEMPLATE.read_bytes()
    # a package delete takes its versions and tags with it
    assert registry.delete_package(PACKAGE) is True
    with pytest.raises(requests.HTTPError) as e:
        registry.get_tag(PACKAGE, "v2")
    assert e.value.response.status_code == 404


def test_errors(emulator: EmulatorHandle, tmp_path: Path) -> None:
    registry = _registry(emulator)
    for call in (
        lambda: registry.get_package("nope"),
        lambda: registry.list_versions("nope"),
        lambda: registry.download_pipeline("nope", tag="v1", file_name=str(tmp_path / "x")),
    ):
        with pytest.raises(requests.HTTPError) as e:
            call()
        assert e.value.response.status_code == 404
        assert "'nope' not found" in e.value.response.json()["error"]["message"]
    registry.upload_pipeline(str(TEMPLATE), tags="v1")
    with pytest.raises(requests.HTTPError) as e:
        registry.download_pipeline(PACKAGE, tag="v9", file_name=str(tmp_path / "x"))
    assert e.value.response.status_code == 404 and "tag 'v9'" in e.value.response.text
    with pytest.raises(requests.HTTPError) as e:
        registry.get_version(PACKAGE, "sha256:" + "0" * 64)
    assert e.value.response.status_code == 404

    not_a_pipeline = tmp_path / "notes.yaml"
    not_a_pipeline.write_text("hello: world\n")
    with pytest.raises(requests.HTTPError) as e:
        registry.upload_pipeline(str(not_a_pipeline))
    assert e.value.response.status_code == 400 and "pipelineInfo" in e.value.response.text
    with pytest.raises(requests.HTTPError) as e:
        registry.upload_pipeline(str(TEMPLATE), tags="bad/tag")
    assert e.value.response.status_code == 400 and "'bad/tag'" in e.value.response.text

    for token in (None, "wrong"):
        with pytest.raises(requests.HTTPError) as e:
            _registry(emulator, token=token).list_packages()
        assert e.value.response.status_code == 401
        with pytest.raises(requests.HTTPError) as e:
            _registry(emulator, token=token).upload_pipeline(str(TEMPLATE), tags="evil")
        assert e.value.response.status_code == 401
    assert "evil" not in {t["name"].rsplit("/", 1)[1] for t in registry.list_tags(PACKAGE)}


def test_context_file_helper_and_restart(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = json.loads((emulator.state_dir / "registry_context.json").read_text())
    assert emulator.endpoint not in json.dumps(context)  # one file for any port
    _, version = _registry(emulator).upload_pipeline(str(TEMPLATE), tags=["v1", "latest"])
    url = f"{_host(emulator)}/{PACKAGE}/latest"

    # the helper: a registry URL to a local file (a directory or a file name)
    out = download_template(url, tmp_path, token=emulator.token)
    assert out == tmp_path / f"{PACKAGE}_latest.yaml"
    assert out.read_bytes() == TEMPLATE.read_bytes()
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    out = download_template(f"{_host(emulator)}/{PACKAGE}/{version}", tmp_path / "t.json")
    assert out.read_bytes() == TEMPLATE.read_bytes()
    assert client(_host(emulator)).get_tag(PACKAGE, "v1")["version"].endswith(version)
    with pytest.raises(HydraVertexError, match=r"HTTP 404: tag 'v9'.*not found"):
        download_template(f"{_host(emulator)}/{PACKAGE}/v9", tmp_path / "x.json")
    with pytest.raises(HydraVertexError, match="HTTP 401"):
        download_template(url, tmp_path / "x.json", token="wrong")
    with pytest.raises(HydraVertexError, match="is not <host>/<package>"):
        download_template("not-a-url", tmp_path / "x.json")

    # what PipelineJob(template_path=...) can take: the SDK's own kinds pass through
    for given in (
        str(TEMPLATE),
        "gs://bucket/t.json",
        "https://us-central1-kfp.pkg.dev/p/r/pkg/latest",
        "https://example.com/t.yaml",
    ):
        assert resolve_template_path(given) == given
    local = Path(resolve_template_path(url, tmp_path / "resolved"))
    assert local.parent == tmp_path / "resolved" and local.read_bytes() == TEMPLATE.read_bytes()
    with pytest.raises(HydraVertexError, match="download it yourself"):
        resolve_template_path("http://example.com/repo/pkg/latest")

    # the registry outlives the emulator process: a new start, a new port and token
    state = emulator.state_dir
    emulator.stop()
    with start(state, seed=0) as again:
        out = download_template(
            f"{_host(again)}/{PACKAGE}/v1", tmp_path / "again.json", token=again.token
        )
        assert out.read_bytes() == TEMPLATE.read_bytes()


@pytest.mark.slow
def test_a_run_from_the_registry_url(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.cloud import aiplatform
    from google.cloud.aiplatform import pipeline_jobs

    _registry(emulator).upload_pipeline(str(TEMPLATE), tags=["v1", "latest"])
    url = f"{_host(emulator)}/{PACKAGE}/latest"

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    monkeypatch.setattr(pipeline_jobs, "_JOB_WAIT_TIME", 1)  # the SDK's poll interval
    connect(emulator.state_dir, project="local-project", location="us-central1")
    job = aiplatform.PipelineJob(
        display_name="digits-from-registry",
        template_path=resolve_template_path(url),  # a local copy: the SDK refuses http://
        pipeline_root="gs://bucket/root",
        parameter_values=_params(max_trial_count=1, parallel_trial_count=1),
        enable_caching=False,
    )
    job.submit()
    job.wait()
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED"
    [root] = [t for t in job.task_details if t.task_name == PACKAGE]
    overrides = list(root.execution.metadata["output:best_overrides"])
    assert overrides and all("=" in o for o in overrides)


def test_names_cannot_leave_the_registry(emulator: EmulatorHandle) -> None:
    auth = {"Authorization": f"Bearer {emulator.token}"}
    ar = f"{emulator.endpoint}/artifactregistry/v1/{REPO}/packages"
    for url in (
        f"{_host(emulator)}/%2e%2e/latest",
        f"{_host(emulator)}/..%2F..%2Fendpoint.json/latest",
        f"{ar}/%2e%2e",
        f"{ar}/.hidden/tags",
        f"{emulator.endpoint}/kfp/us-central1/local-project/..%2Fregistry/p/v1",
    ):
        response = requests.get(url, headers=auth, timeout=10)
        assert response.status_code in (400, 404), url
        assert "token" not in response.text


def test_submit_takes_a_registry_url_as_its_template(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hydra-vertex submit --template <registry URL>`: the job built from a job file runs the
    registry's version of the pipeline (built here, not submitted)."""
    import yaml

    from hydra_vertex.api import pipeline_job
    from hydra_vertex.emulator import connect

    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR", emulator.endpoint)
    monkeypatch.setenv("HYDRA_VERTEX_EMULATOR_TOKEN", emulator.token)
    connect(emulator.state_dir, project="local-project", location="us-central1")
    variant = _variant(tmp_path, "from the registry")
    package, _ = _registry(emulator).upload_pipeline(str(variant), tags=["prod"])
    digits = ROOT / "examples" / "digits"
    data = yaml.safe_load((digits / "job.yaml").read_text())
    data["app"]["source"] = str(digits)
    data["search_space"] = str(digits / "search_space.yaml")
    job_file = tmp_path / "job.yaml"
    job_file.write_text(yaml.safe_dump(data))
    job = pipeline_job(
        job_file,
        source_uri="gs://b/sources/digits.tar.gz",
        template_path=f"{_host(emulator)}/{package}/prod",
    )
    resource = job._gca_resource  # built, not created: the public getter needs a created job
    assert resource.pipeline_spec["pipelineInfo"]["description"] == "from the registry"
    params = resource.runtime_config.parameter_values
    assert params["app_source"] == "gs://b/sources/digits.tar.gz"
