"""The steps' pure parts, fast: overrides merging, W&B variables, run directories, the tuning-job
request, retries, cron checking, the gcp_resources file, and the PipelineJob built from a job file."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.api_core import exceptions as gexc

from hydra_vertex import gcp_resources, retries
from hydra_vertex.api import check_cron, pipeline_job
from hydra_vertex.errors import TuningError, UsageError
from hydra_vertex.jobs import idempotency_value
from hydra_vertex.machine import Machine
from hydra_vertex.search_space import SearchSpace, load, load_json
from hydra_vertex.steps import common
from hydra_vertex.steps.retrain import merge_overrides, override_key
from hydra_vertex.steps.tune import SEED_LABEL, tuning_job

ROOT = Path(__file__).resolve().parent.parent
DIGITS_SPACE = ROOT / "examples" / "digits" / "search_space.yaml"


# -- merge_overrides -----------------------------------------------------------------------------


def test_retrain_override_replaces_the_tuned_one_in_place_of_order() -> None:
    best = ["model=svm", "trainer.max_iter=30", "model.C=1.5", "model.gamma=0.01"]
    assert merge_overrides(best, ["trainer.max_iter=100"]) == [
        "model=svm",
        "model.C=1.5",
        "model.gamma=0.01",
        "trainer.max_iter=100",
    ]


def test_merge_keeps_everything_when_keys_differ() -> None:
    best = ["b=2", "a=1"]
    final = ["d=4", "c=3"]
    assert merge_overrides(best, final) == ["b=2", "a=1", "d=4", "c=3"]
    assert merge_overrides(best, []) == best
    assert merge_overrides([], final) == final


@pytest.mark.parametrize(
    ("best", "final", "expected"),
    [
        pytest.param(
            ["+extra=1", "a=2"], ["++extra=5"], ["a=2", "++extra=5"], id="plus-vs-plusplus"
        ),
        pytest.param(["extra=1", "a=2"], ["+extra=5"], ["a=2", "+extra=5"], id="plain-vs-plus"),
        pytest.param(["++extra=1", "a=2"], ["extra=5"], ["a=2", "extra=5"], id="plusplus-vs-plain"),
        pytest.param(
            ["model.alpha=0.1", "a=2"], ["~model.alpha"], ["a=2", "~model.alpha"], id="delete"
        ),
        pytest.param(
            ["model=sgd"], ["model.alpha=1"], ["model=sgd", "model.alpha=1"], id="prefix-is-not-key"
        ),
    ],
)
def test_merge_handles_hydra_prefixes(
    best: list[str], final: list[str], expected: list[str]
) -> None:
    assert merge_overrides(best, final) == expected


def test_override_key() -> None:
    assert override_key("+a.b=1") == "a.b"
    assert override_key("++a.b=x=y") == "a.b"
    assert override_key("~a.b") == "a.b"
    assert override_key("a.b='1,2'") == "a.b"


# -- wandb_env / run_dir / env_list ---------------------------------------------------------------


SETTINGS = {"project": "proj", "entity": "team", "mode": "offline", "tags": ["weekly", 3]}


def test_wandb_env_for_trials_logs_no_model() -> None:
    env = common.wandb_env(SETTINGS, "trial", group="ignored", name="ignored")
    assert env == {
        "WANDB_PROJECT": "proj",
        "WANDB_ENTITY": "team",
        "WANDB_MODE": "offline",
        "WANDB_TAGS": "weekly,3",
        "WANDB_LOG_MODEL": "false",
    }


def test_wandb_env_for_retrain_logs_the_model_in_the_tuning_group() -> None:
    env = common.wandb_env(SETTINGS, "retrain", group="1234", name="digits")
    assert env["WANDB_LOG_MODEL"] == "end"
    assert env["WANDB_JOB_TYPE"] == "retrain"
    assert env["WANDB_NAME"] == "digits-retrain"
    assert env["WANDB_RUN_GROUP"] == "1234"
    assert env["WANDB_PROJECT"] == "proj"
    assert env["WANDB_TAGS"] == "weekly,3"


@pytest.mark.parametrize(
    ("log_model", "expected"), [(False, "false"), ("checkpoint", "checkpoint"), (None, "end")]
)
def test_wandb_env_retrain_log_model_setting(log_model: Any, expected: str) -> None:
    env = common.wandb_env({"log_model": log_model}, "retrain")
    assert env["WANDB_LOG_MODEL"] == expected
    assert "WANDB_NAME" not in env and "WANDB_RUN_GROUP" not in env


def test_wandb_env_tags_are_one_comma_separated_list() -> None:
    # W&B splits WANDB_TAGS on commas: a comma inside a tag must not make two tags.
    assert common.wandb_env({"tags": ["a, b", " c "]}, "trial")["WANDB_TAGS"] == "a; b,c"
    assert common.wandb_env({"tags": "weekly"}, "retrain")["WANDB_TAGS"] == "weekly"


def test_wandb_env_without_settings() -> None:
    assert common.wandb_env({}, "trial") == {"WANDB_LOG_MODEL": "false"}


def test_run_dir_is_under_the_bucket_and_stable_per_key() -> None:
    a = common.run_dir("gs://bucket/staging/", "digits", "run-1/task")
    assert a == f"gs://bucket/staging/digits/{idempotency_value('run-1/task')[:16]}"
    assert common.run_dir("gs://bucket/staging", "digits", "run-1/task") == a
    assert common.run_dir("gs://bucket/staging", "digits", "run-2/task") != a


@pytest.mark.parametrize("bucket", ["/tmp/staging", "s3://bucket/x", "bucket/x", ""])
def test_run_dir_rejects_non_gs(bucket: str) -> None:
    with pytest.raises(UsageError, match="gs://") as e:
        common.run_dir(bucket, "digits", "k")
    assert repr(bucket) in str(e.value)


def test_idempotency_value_is_a_label_value() -> None:
    v = idempotency_value("projects/p/locations/l/pipelineJobs/run-1/launch-tuning")
    assert len(v) <= 63 and v == v.lower() and all(c in "0123456789abcdef" for c in v)
    assert idempotency_value("a") != idempotency_value("b")


def test_env_list_is_sorted_name_value_pairs() -> None:
    assert common.env_list({"B": "2", "A": "1"}) == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]


# -- the tuning-job request ----------------------------------------------------------------------


def _request(space: SearchSpace, **overrides: Any) -> Any:
    kwargs: dict[str, Any] = dict(
        display_name="digits-tuning",
        image_uri="us-docker.pkg.dev/p/r/digits@sha256:" + "0" * 64,
        app_command=["python", "train.py", "data.path=/gcs/b/x y"],
        space=space,
        max_trial_count=12,
        parallel_trial_count=3,
        max_failed_trial_count=2,
        machine=Machine(machine_type="n1-standard-8"),
        service_account="",
        base_output_dir="gs://bucket/digits/abc/tuning",
        env={"WANDB_PROJECT": "proj", "WANDB_LOG_MODEL": "false"},
        seed=7,
        trial_timeout_seconds=600,
    )
    kwargs.update(overrides)
    return tuning_job(**kwargs)


def test_tuning_job_request_fields() -> None:
    from google.cloud.aiplatform_v1 import types

    space = load(DIGITS_SPACE)
    job = _request(space)
    assert isinstance(job, types.HyperparameterTuningJob)
    assert job.display_name == "digits-tuning"
    assert (job.max_trial_count, job.parallel_trial_count, job.max_failed_trial_count) == (12, 3, 2)
    assert job.study_spec == space.to_study_spec()
    assert [m.metric_id for m in job.study_spec.metrics] == ["val_error"]
    assert job.study_spec.metrics[0].goal == types.StudySpec.MetricSpec.GoalType.MINIMIZE
    assert {p.parameter_id for p in job.study_spec.parameters} == {"model", "trainer.max_iter"}
    [model] = [p for p in job.study_spec.parameters if p.parameter_id == "model"]
    assert list(model.categorical_value_spec.values) == ["sgd", "svm"]
    assert {c.parameter_spec.parameter_id for c in model.conditional_parameter_specs} == {
        "model.alpha",
        "model.C",
        "model.gamma",
    }

    spec = job.trial_job_spec
    assert len(spec.worker_pool_specs) == 1
    pool = spec.worker_pool_specs[0]
    assert pool.machine_spec.machine_type == "n1-standard-8"
    assert pool.replica_count == 1
    container = pool.container_spec
    assert container.image_uri.endswith("0" * 64)
    command = list(container.command)
    assert command[:2] == ["hydra-vertex-shim", "--search-space-json"]
    assert command[3:] == ["--", "python", "train.py", "data.path=/gcs/b/x y"]
    assert load_json(command[2]) == space
    assert list(container.args) == []
    assert [(e.name, e.value) for e in container.env] == [
        ("WANDB_LOG_MODEL", "false"),
        ("WANDB_PROJECT", "proj"),
    ]
    assert spec.scheduling.timeout == timedelta(seconds=600)
    assert spec.base_output_directory.output_uri_prefix == "gs://bucket/digits/abc/tuning"
    assert spec.service_account == ""
    assert dict(job.labels) == {SEED_LABEL: "7"}


def test_tuning_job_conditional_params_survive_the_round_trip() -> None:
    space = load(DIGITS_SPACE)
    command = list(_request(space).trial_job_spec.worker_pool_specs[0].container_spec.command)
    back = load_json(command[2])
    assert back.param("model.C").parent == "model"
    assert back.param("model.C").parent_values == space.param("model.C").parent_values
    assert SearchSpace.from_study_spec(_request(space).study_spec) == space


def test_tuning_job_optional_fields() -> None:
    space = load(DIGITS_SPACE)
    job = _request(
        space, seed=-1, trial_timeout_seconds=0, service_account="sa@p.iam.gserviceaccount.com"
    )
    assert SEED_LABEL not in job.labels
    spec = job.trial_job_spec
    assert not type(spec).pb(spec).HasField("scheduling")
    assert spec.service_account == "sa@p.iam.gserviceaccount.com"
    assert dict(_request(space, seed=0).labels) == {SEED_LABEL: "0"}


def test_tuning_job_needs_a_command() -> None:
    with pytest.raises(TuningError, match="app_command is empty"):
        _request(load(DIGITS_SPACE), app_command=[])


# -- retries -------------------------------------------------------------------------------------


def _failing(
    errors: list[BaseException], result: str = "ok"
) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return fn, calls


@pytest.mark.parametrize(
    "error",
    [
        gexc.TooManyRequests("x"),
        gexc.InternalServerError("x"),
        gexc.BadGateway("x"),
        gexc.ServiceUnavailable("x"),
        gexc.GatewayTimeout("x"),
        ConnectionResetError("reset"),
        TimeoutError("slow"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_are_retried(error: BaseException) -> None:
    assert retries.is_transient(error)
    slept: list[float] = []
    fn, calls = _failing([error, error])
    assert retries.call(fn, "get job", sleep=slept.append) == "ok"
    assert len(calls) == 3
    assert len(slept) == 2


def test_requests_connection_error_is_transient() -> None:
    import requests

    assert retries.is_transient(requests.exceptions.ConnectionError("refused"))
    assert retries.is_transient(requests.exceptions.ReadTimeout("slow"))


@pytest.mark.parametrize(
    "error",
    [
        gexc.NotFound("no such job"),
        gexc.BadRequest("bad"),
        gexc.InvalidArgument("bad"),
        gexc.PermissionDenied("no"),
        gexc.Unauthenticated("no"),
        gexc.Conflict("exists"),
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_are_raised_at_once(error: BaseException) -> None:
    assert not retries.is_transient(error)
    slept: list[float] = []
    fn, calls = _failing([error])
    with pytest.raises(type(error)):
        retries.call(fn, "get job", sleep=slept.append)
    assert len(calls) == 1
    assert slept == []


def test_gives_up_after_attempts(capsys: pytest.CaptureFixture[str]) -> None:
    slept: list[float] = []
    fn, calls = _failing([gexc.ServiceUnavailable(f"down {i}") for i in range(10)])
    with pytest.raises(gexc.ServiceUnavailable, match="down 3"):
        retries.call(fn, "get job", attempts=4, sleep=slept.append)
    assert len(calls) == 4
    assert len(slept) == 3
    err = capsys.readouterr().err
    assert "get job failed (ServiceUnavailable" in err
    assert "retry 3/3" in err


def test_back_off_doubles_and_is_capped() -> None:
    slept: list[float] = []
    fn, _ = _failing([gexc.TooManyRequests("slow down")] * 7)
    retries.call(fn, "list jobs", attempts=8, initial=1.0, maximum=5.0, sleep=slept.append)
    assert len(slept) == 7
    for i, wait in enumerate(slept):
        ceiling = min(5.0, 2.0**i)
        assert ceiling / 2 <= wait <= ceiling, (i, wait)
    assert max(slept) <= 5.0
    assert min(slept[3:]) >= 2.5  # capped, not shrinking: 8, 16, 32, 64 all become 5 (jittered)


# -- check_cron ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cron",
    [
        "0 3 * * 1",
        "*/15 * * * *",
        "TZ=America/New_York 0 3 * * 1",
        "CRON_TZ=Europe/Paris 30 2 1 * *",
    ],
)
def test_check_cron_accepts(cron: str) -> None:
    assert check_cron(f"  {cron} ") == cron


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 3 * *", "has 4 field(s), not five (minute hour day-of-month month day-of-week)"),
        ("0 0 3 * * 1", "has 6 field(s), not five"),
        ("every monday", "has 2 field(s), not five"),
        ("", "has 0 field(s), not five"),
        ("TZ=UTC", "has 1 field(s), not five"),
        ("61 * * * *", "'61' is not a valid minute (field 1 of five): allowed 0-59"),
        ("0 24 * * *", "'24' is not a valid hour (field 2 of five): allowed 0-23"),
        ("0 3 32 * *", "'32' is not a valid day-of-month (field 3 of five): allowed 1-31"),
        ("0 3 * 13 *", "'13' is not a valid month (field 4 of five): allowed 1-12 or JAN-DEC"),
        ("0 3 * * 8", "'8' is not a valid day-of-week (field 5 of five): allowed 0-6 or SUN-SAT"),
        ("*/0 * * * *", "'*/0' is not a valid minute"),
    ],
)
def test_check_cron_rejects_bad_expressions_naming_the_field(cron: str, message: str) -> None:
    with pytest.raises(UsageError) as e:
        check_cron(cron)
    assert repr(cron) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "../../etc/passwd"])
def test_check_cron_rejects_unknown_zone(zone: str) -> None:
    with pytest.raises(UsageError, match="unknown time zone") as e:
        check_cron(f"TZ={zone} 0 3 * * 1")
    assert repr(zone) in str(e.value)


# -- gcp_resources -------------------------------------------------------------------------------


NAME = "projects/p/locations/us-central1/hyperparameterTuningJobs/123"


def test_gcp_resources_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "gcp_resources"
    gcp_resources.write(path, "HyperparameterTuningJob", NAME, "http://127.0.0.1:8123/v1/")
    data = json.loads(path.read_text())
    assert data == {
        "resources": [
            {
                "resourceType": "HyperparameterTuningJob",
                "resourceUri": f"http://127.0.0.1:8123/v1/{NAME}",
            }
        ]
    }
    assert gcp_resources.read(path, "HyperparameterTuningJob") == NAME
    assert gcp_resources.read(path, "CustomJob") is None
    assert not list(path.parent.glob("*.tmp"))


def test_gcp_resources_parses_with_gcpc_proto() -> None:
    from google.protobuf import json_format
    from google_cloud_pipeline_components.proto import gcp_resources_pb2

    text = gcp_resources.dumps(
        "CustomJob", NAME, "https://us-central1-aiplatform.googleapis.com/v1/"
    )
    parsed = json_format.Parse(text, gcp_resources_pb2.GcpResources())
    assert parsed.resources[0].resource_type == "CustomJob"
    assert (
        parsed.resources[0].resource_uri
        == f"https://us-central1-aiplatform.googleapis.com/v1/{NAME}"
    )


@pytest.mark.parametrize(
    "content", [None, "", "not json", "[]", '{"resources": [{"resourceType": "CustomJob"}]}']
)
def test_gcp_resources_read_tolerates_missing_or_bad_files(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "gcp_resources"
    if content is not None:
        path.write_text(content)
    assert gcp_resources.read(path, "CustomJob") is None


# -- pipeline_job ---------------------------------------------------------------------------------


@pytest.fixture
def connected(tmp_path: Path) -> Iterator[None]:
    from hydra_vertex.emulator import connect, start

    with start(tmp_path / "state", seed=7) as handle:
        connect(handle.state_dir, project="local-project", location="us-central1")
        yield


KMS_KEY = "projects/proj-1/locations/europe-west4/keyRings/r/cryptoKeys/k"


def test_pipeline_job_carries_the_job_files_parameters(tmp_path: Path, connected: None) -> None:
    from google.cloud import aiplatform

    app = tmp_path / "app"
    app.mkdir()
    (app / "s.yaml").write_text(
        "metric: loss\ndirection: maximize\nparams:\n  lr: tag(log, interval(1e-4, 1e-1))\n"
    )
    job_file = app / "job.yaml"
    job_file.write_text(
        yaml.safe_dump(
            {
                "name": "myapp",
                "app": {"source": ".", "command": ["python", "train.py"]},
                "search_space": "s.yaml",
                "tuning": {
                    "max_trials": 6,
                    "parallel_trials": 2,
                    "seed": 3,
                    "timeout_seconds": 120,
                },
                "retrain": {"overrides": ["epochs=20"], "vertex": {"accelerator_type": None}},
                "vertex": {
                    "project": "proj-1",
                    "region": "europe-west4",
                    "staging_bucket": "gs://bkt/stage",
                    "accelerator_type": "NVIDIA_L4",
                    "scheduling_strategy": "SPOT",
                    "encryption_key": KMS_KEY,
                    "labels": {"team": "nlp"},
                },
                "wandb": {"project": "wb", "mode": "offline"},
            }
        )
    )
    job = pipeline_job(job_file, source_uri="gs://bkt/stage/src/myapp.tar.gz")
    assert isinstance(job, aiplatform.PipelineJob)
    gca = job._gca_resource
    assert gca.pipeline_spec["pipelineInfo"]["name"] == "hydra-vertex-tune-and-retrain"
    assert gca.display_name == "myapp-tune-and-retrain"
    assert gca.runtime_config.gcs_output_directory == "gs://bkt/stage/pipeline-root"
    assert dict(gca.labels) == {"hydra-vertex-app": "myapp", "team": "nlp"}
    assert gca.encryption_spec.kms_key_name == KMS_KEY
    assert job.project == "proj-1" and job.location == "europe-west4"
    values = {k: _plain(v) for k, v in gca.runtime_config.parameter_values.items()}
    assert values["app_name"] == "myapp"
    assert values["app_source"] == "gs://bkt/stage/src/myapp.tar.gz"
    assert values["app_command"] == ["python", "train.py"]
    assert values["search_space"] == {  # the parsed space, as a search-space file
        "metric": "loss",
        "direction": "maximize",
        "algorithm": "bayesian",
        "measurement_selection": "last",
        "params": {"lr": "tag(log, interval(1e-4, 1e-1))"},
    }
    assert values["project"] == "proj-1"
    assert values["location"] == "europe-west4"
    assert values["staging_bucket"] == "gs://bkt/stage"
    assert values["max_trial_count"] == 6
    assert values["parallel_trial_count"] == 2
    assert values["retrain_overrides"] == ["epochs=20"]
    assert values["wandb"] == {"project": "wb", "mode": "offline"}
    assert values["seed"] == 3
    assert values["trial_timeout_seconds"] == 120
    assert values["trial_machine"] == {
        "machine_type": "n1-standard-4",
        "accelerator_type": "NVIDIA_L4",
        "accelerator_count": 1,
        "scheduling_strategy": "SPOT",
    }
    # The retrain's whole machine: the trials' one without the GPU.
    assert values["retrain_machine"] == {"machine_type": "n1-standard-4", "scheduling_strategy": "SPOT"}
    assert values["job_settings"] == {"encryption_key": KMS_KEY, "labels": {"team": "nlp"}}
    assert values["tuning_options"] == {}
    template_inputs = gca.pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert set(values) <= set(template_inputs)


def _plain(value: Any) -> Any:
    """A runtime-config value (proto ``Value`` or already plain) as plain Python."""
    from google.protobuf import json_format, struct_pb2

    if isinstance(value, struct_pb2.Value):
        value = json_format.MessageToDict(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "RepeatedComposite":
        return [_plain(v) for v in value]
    return value


def test_retrain_command_adds_the_wandb_callback_only_with_wandb_settings() -> None:
    from hydra_vertex.steps.retrain import WANDB_CALLBACK, retrain_command

    shim = ["hydra-vertex-shim", "--retrain", "--"]
    plain = retrain_command(["python", "train.py"], ["lr=0.1", "epochs=3"], ["epochs=10"], {})
    assert plain == [*shim, "python", "train.py", "lr=0.1", "epochs=10"]
    with_wandb = retrain_command(["python", "train.py"], ["lr=0.1"], [], {"project": "p"})
    assert with_wandb == [*shim, "python", "train.py", "lr=0.1", WANDB_CALLBACK]
    from hydra.core.override_parser.overrides_parser import OverridesParser

    [parsed] = OverridesParser.create().parse_overrides([WANDB_CALLBACK])
    assert parsed.value() == "hydra_vertex.wandb_runs.WandbEnvCallback"
