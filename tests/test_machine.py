"""The Vertex settings of the jobs, fast: every machine, job and tuning setting is checked (bad
values are table rows), and the one builder gives the trials and the retrain the worker pools,
disk, scheduling and network Vertex expects (as aiplatform_v1 messages)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from hydra_vertex.errors import SettingError
from hydra_vertex.machine import (
    JobSettings,
    Machine,
    accelerator_types,
    custom_job_spec,
    nearest,
    scheduling_strategies,
    with_machine_type,
)
from hydra_vertex.search_space import from_mapping
from hydra_vertex.tuning_options import EarlyStopping, TuningOptions

ROOT = Path(__file__).resolve().parents[1]
GPU_SPOT = {
    "accelerator_type": "NVIDIA_TESLA_T4",
    "accelerator_count": 2,
    "scheduling_strategy": "SPOT",
    "boot_disk_type": "pd-ssd",
    "boot_disk_size_gb": 200,
    "replica_count": 2,
}
CONTAINER = {"image_uri": "us-docker.pkg.dev/p/r/app@sha256:" + "0" * 64, "command": ["python"]}
KEY = "projects/p/locations/us-central1/keyRings/r/cryptoKeys/k"


# -- the enums are Vertex's own --------------------------------------------------------------------


def test_names_come_from_the_aiplatform_v1_enums() -> None:
    from google.cloud.aiplatform_v1.types import AcceleratorType, Scheduling

    assert {"NVIDIA_TESLA_T4", "NVIDIA_L4", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB"} <= set(
        accelerator_types()
    )
    assert "ACCELERATOR_TYPE_UNSPECIFIED" not in accelerator_types()
    assert all(AcceleratorType[n] for n in accelerator_types())
    assert scheduling_strategies() == ["STANDARD", "SPOT", "FLEX_START"]
    assert all(Scheduling.Strategy[n] for n in scheduling_strategies())


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        pytest.param("NVIDIA_TESLA_T5", "NVIDIA_TESLA_T4", id="one-letter"),
        pytest.param("NVIDIA_TESLA_L4", "NVIDIA_L4", id="wrong-family"),
        pytest.param("T4", "NVIDIA_TESLA_T4", id="short-name"),
        pytest.param("H100", "NVIDIA_H100_80GB", id="token"),
        pytest.param("quantum", None, id="nothing-near"),
    ],
)
def test_nearest_accelerator_name(typo: str, expected: str | None) -> None:
    assert nearest(typo, accelerator_types()) == expected


# -- Machine -----------------------------------------------------------------------------------


def test_machine_from_settings_and_back() -> None:
    m = Machine.from_dict({"machine_type": "n1-standard-8", **GPU_SPOT})
    assert m == Machine("n1-standard-8", "NVIDIA_TESLA_T4", 2, "pd-ssd", 200, 2, "SPOT")
    assert Machine.from_dict(m.to_dict()) == m
    assert Machine().to_dict() == {"machine_type": "n1-standard-4"}


def test_numbers_from_a_pipeline_parameter_are_doubles() -> None:
    # A dict parameter travels as a protobuf Struct: 200 arrives as 200.0.
    doubles = {k: float(v) if isinstance(v, int) else v for k, v in GPU_SPOT.items()}
    assert Machine.from_dict(doubles) == Machine.from_dict(GPU_SPOT)
    with pytest.raises(SettingError, match=r"must be an integer >= 1, got 1\.5"):
        Machine.from_dict({"replica_count": 1.5})


def test_gcloud_spellings_are_accepted() -> None:
    m = Machine.from_dict(
        {"accelerator_type": "nvidia-l4", "scheduling_strategy": "spot", "max_wait_duration": None}
    )
    assert (m.accelerator_type, m.accelerator_count, m.scheduling_strategy) == (
        "NVIDIA_L4",
        1,  # a type without a count: one
        "SPOT",
    )
    flex = Machine.from_dict({"scheduling_strategy": "FLEX_START", "max_wait_duration": "1800s"})
    assert flex.max_wait_duration == 1800


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, {}, id="nothing-differs"),
        pytest.param(
            {"accelerator_count": 1, "scheduling_strategy": "STANDARD"},
            {"accelerator_count": 1, "scheduling_strategy": "STANDARD"},
            id="fewer-gpus-standard",
        ),
        pytest.param(
            {"accelerator_type": None},
            {"accelerator_type": None, "accelerator_count": 0},
            id="cpu-by-null-type",
        ),
        pytest.param(
            {"accelerator_count": 0},
            {"accelerator_type": None, "accelerator_count": 0},
            id="cpu-by-zero-count",
        ),
        pytest.param(
            {"accelerator_type": "NVIDIA_L4"},
            {"accelerator_type": "NVIDIA_L4"},  # the count (2) stays
            id="other-gpu",
        ),
        pytest.param(
            {"replica_count": None, "boot_disk_size_gb": None},
            {"replica_count": 1, "boot_disk_size_gb": None},
            id="null-is-the-default",
        ),
    ],
)
def test_retrain_overrides_apply_over_the_trials_machine(
    overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    trials = Machine.from_dict(GPU_SPOT)
    retrain = Machine.from_dict(overrides, trials)
    for key, value in {**GPU_SPOT, **expected}.items():
        assert getattr(retrain, key) == value, key


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        pytest.param(
            {"accelerator_type": "NVIDIA_TESLA_T5"},
            "accelerator_type",
            "must be an aiplatform_v1 AcceleratorType name, got 'NVIDIA_TESLA_T5'; did you mean "
            "'NVIDIA_TESLA_T4'?",
            id="accelerator-typo",
        ),
        pytest.param(
            {"accelerator_type": "quantum"},
            "accelerator_type",
            "got 'quantum'; valid: NVIDIA_TESLA_K80, ",
            id="accelerator-unknown",
        ),
        pytest.param({"accelerator_type": 4}, "accelerator_type", "got 4", id="accelerator-type"),
        pytest.param(
            {"accelerator_count": 2},
            "accelerator_count",
            "needs 'accelerator_type'",
            id="count-without-type",
        ),
        pytest.param(
            {"accelerator_type": "NVIDIA_L4", "accelerator_count": -1},
            "accelerator_count",
            "must be an integer >= 0, got -1",
            id="count-negative",
        ),
        pytest.param(
            {"boot_disk_type": "pd_ssd"},
            "boot_disk_type",
            "got 'pd_ssd'; did you mean 'pd-ssd'?",
            id="disk-type",
        ),
        pytest.param(
            {"boot_disk_size_gb": 50},
            "boot_disk_size_gb",
            "must be an integer in [100, 64000], got 50",
            id="disk-size",
        ),
        pytest.param(
            {"replica_count": 0}, "replica_count", "must be an integer >= 1", id="replicas"
        ),
        pytest.param(
            {"replica_count": True}, "replica_count", "got True", id="replicas-bool"
        ),
        pytest.param(
            {"scheduling_strategy": "SPOTT"},
            "scheduling_strategy",
            "must be one of ['STANDARD', 'SPOT', 'FLEX_START'] (Scheduling.Strategy), got "
            "'SPOTT'; did you mean 'SPOT'?",
            id="strategy",
        ),
        pytest.param(
            {"scheduling_strategy": "LOW_COST"},
            "scheduling_strategy",
            "names a strategy Vertex deprecated (use SPOT)",
            id="strategy-deprecated",
        ),
        pytest.param(
            {"scheduling_strategy": "SPOT", "max_wait_duration": 600},
            "max_wait_duration",
            "applies only with scheduling_strategy FLEX_START",
            id="wait-without-flex-start",
        ),
        pytest.param(
            {"scheduling_strategy": "FLEX_START", "max_wait_duration": "10m"},
            "max_wait_duration",
            "must be seconds >= 0",
            id="wait-format",
        ),
        pytest.param(
            {"restart_job_on_worker_restart": "yes"},
            "restart_job_on_worker_restart",
            "must be true or false",
            id="restart",
        ),
        pytest.param(
            {"machine_type": "N1 standard"}, "machine_type", "machine type", id="machine-type"
        ),
        pytest.param({"gpus": 2}, "gpus", "is not a machine setting", id="unknown"),
    ],
)
def test_bad_machine_settings(settings: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SettingError) as e:
        Machine.from_dict(settings)
    assert e.value.field == field
    assert message in str(e.value)


def test_a_parameter_error_names_the_parameter() -> None:
    from hydra_vertex.steps.common import parameter

    with pytest.raises(SettingError) as e, parameter("trial_machine"):
        with_machine_type({"accelerator_type": "NVIDIA_TESLA_T5"}, "n1-standard-4")
    assert str(e.value).startswith("the trial_machine parameter: 'accelerator_type' must be")


# -- the one builder of the trials' and the retrain's CustomJobSpec -------------------------------


def test_custom_job_spec_with_gpus_spot_disk_and_replicas() -> None:
    from google.cloud.aiplatform_v1.types import CustomJobSpec

    machine = Machine.from_dict({"machine_type": "n1-standard-8", **GPU_SPOT})
    settings = JobSettings.from_dict(
        {"network": "projects/123/global/networks/vpc", "reserved_ip_ranges": ["r1"]}
    )
    spec = CustomJobSpec(
        custom_job_spec(
            machine,
            settings,
            container=CONTAINER,
            base_output_dir="gs://b/out",
            service_account="sa@p.iam.gserviceaccount.com",
            timeout_seconds=600,
        )
    )
    pool = {
        "machine_spec": {
            "machine_type": "n1-standard-8",
            "accelerator_type": "NVIDIA_TESLA_T4",
            "accelerator_count": 2,
        },
        "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": 200},
        "container_spec": CONTAINER,
    }
    assert spec == CustomJobSpec(
        worker_pool_specs=[{**pool, "replica_count": 1}, {**pool, "replica_count": 1}],
        scheduling={"timeout": "600s", "strategy": "SPOT"},
        base_output_directory={"output_uri_prefix": "gs://b/out"},
        service_account="sa@p.iam.gserviceaccount.com",
        network="projects/123/global/networks/vpc",
        reserved_ip_ranges=["r1"],
    )
    assert spec.scheduling.timeout == timedelta(seconds=600)


def test_four_replicas_are_a_chief_and_three_workers() -> None:
    pools = Machine.from_dict({"replica_count": 4}).worker_pool_specs(CONTAINER)
    assert [p["replica_count"] for p in pools] == [1, 3]
    assert pools[0]["machine_spec"] == pools[1]["machine_spec"] == {"machine_type": "n1-standard-4"}
    assert pools[0]["container_spec"] == pools[1]["container_spec"] == CONTAINER


def test_default_machine_adds_nothing() -> None:
    spec = custom_job_spec(Machine(), JobSettings(), container=CONTAINER, base_output_dir="gs://b")
    assert spec == {
        "worker_pool_specs": [
            {
                "machine_spec": {"machine_type": "n1-standard-4"},
                "replica_count": 1,
                "container_spec": CONTAINER,
            }
        ],
        "base_output_directory": {"output_uri_prefix": "gs://b"},
    }


def test_flex_start_scheduling() -> None:
    from google.cloud.aiplatform_v1.types import Scheduling

    machine = Machine.from_dict(
        {
            "scheduling_strategy": "FLEX_START",
            "max_wait_duration": 1800,
            "restart_job_on_worker_restart": True,
        }
    )
    scheduling = Scheduling(machine.scheduling())
    assert scheduling.strategy == Scheduling.Strategy.FLEX_START
    assert scheduling.max_wait_duration == timedelta(seconds=1800)
    assert scheduling.restart_job_on_worker_restart


# -- JobSettings -------------------------------------------------------------------------------


def test_job_fields_carry_labels_and_the_kms_key() -> None:
    settings = JobSettings.from_dict({"encryption_key": KEY, "labels": {"team": "vision", "n": 7}})
    assert settings.job_fields({"hydra-vertex-seed": "3"}) == {
        "labels": {"hydra-vertex-seed": "3", "team": "vision", "n": "7"},
        "encryption_spec": {"kms_key_name": KEY},
    }
    assert JobSettings.from_dict(settings.to_dict()) == settings
    assert JobSettings().job_fields() == {"labels": {}}


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        pytest.param(
            {"network": "projects/my-project/global/networks/vpc"},
            "network",
            "must be projects/PROJECT_NUMBER/global/networks/NAME",
            id="network-by-id",
        ),
        pytest.param(
            {"reserved_ip_ranges": ["r1"]},
            "reserved_ip_ranges",
            "needs 'network'",
            id="ranges-without-network",
        ),
        pytest.param(
            {"network": "projects/1/global/networks/v", "reserved_ip_ranges": "r1"},
            "reserved_ip_ranges",
            "must be a list",
            id="ranges-string",
        ),
        pytest.param(
            {"encryption_key": "my-key"},
            "encryption_key",
            "must be a Cloud KMS key name, projects/P/locations/L/keyRings/R/cryptoKeys/K",
            id="key-format",
        ),
        pytest.param(
            {"encryption_key": KEY.replace("us-central1", "europe-west4")},
            "encryption_key",
            "must be in the jobs' region 'us-central1'",
            id="key-region",
        ),
        pytest.param({"labels": ["a"]}, "labels", "must be a mapping", id="labels-list"),
        pytest.param(
            {"labels": {"Team": "x"}}, "labels.Team", "not a valid label key", id="label-upper"
        ),
        pytest.param(
            {"labels": {"1team": "x"}}, "labels.1team", "starting with a letter", id="label-digit"
        ),
        pytest.param(
            {"labels": {"team": "Vision"}}, "labels.team", "label value", id="label-value"
        ),
        pytest.param(
            {"labels": {"team": "x" * 64}}, "labels.team", "at most 63", id="label-value-long"
        ),
        pytest.param(
            {"labels": {"hydra-vertex-app": "x"}},
            "labels.hydra-vertex-app",
            "kept for hydra-vertex",
            id="label-reserved",
        ),
        pytest.param(
            {"labels": {f"k{i}": "v" for i in range(63)}},
            "labels",
            "at most 62 labels",
            id="too-many-labels",
        ),
        pytest.param({"vpc": "x"}, "vpc", "is not a job setting", id="unknown"),
    ],
)
def test_bad_job_settings(settings: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SettingError) as e:
        JobSettings.from_dict(settings, region="us-central1")
    assert e.value.field == field
    assert message in str(e.value)


def test_international_lowercase_labels_are_allowed() -> None:
    assert JobSettings.from_dict({"labels": {"équipe": "vision_1-a"}}).labels == {
        "équipe": "vision_1-a"
    }


# -- TuningOptions -----------------------------------------------------------------------------


SPACE = {"metric": "loss", "direction": "minimize", "params": {"lr": "interval(0.001, 0.1)"}}
GRID_SPACE = {"metric": "loss", "direction": "minimize", "params": {"n": "choice(1, 2, 4)"}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("median", EarlyStopping("median"), id="median"),
        pytest.param("decay_curve", EarlyStopping("decay_curve"), id="decay-curve"),
        pytest.param(
            {"rule": "median", "use_elapsed_duration": True},
            EarlyStopping("median", True),
            id="mapping",
        ),
        pytest.param(None, None, id="none"),
    ],
)
def test_early_stopping_forms(value: Any, expected: EarlyStopping | None) -> None:
    options = TuningOptions.from_dict({"early_stopping": value})
    assert options.early_stopping == expected
    assert TuningOptions.from_dict(options.to_dict()) == options


def test_study_spec_carries_the_options() -> None:
    from google.cloud.aiplatform_v1.types import StudySpec

    options = TuningOptions.from_dict(
        {
            "algorithm": "random",
            "measurement_selection": "best",
            "early_stopping": {"rule": "decay_curve", "use_elapsed_duration": True},
        }
    )
    spec = options.study_spec(options.apply(from_mapping(SPACE)))
    assert spec.algorithm == StudySpec.Algorithm.RANDOM_SEARCH
    assert spec.measurement_selection_type == StudySpec.MeasurementSelectionType.BEST_MEASUREMENT
    assert StudySpec.pb(spec).WhichOneof("automated_stopping_spec") == "decay_curve_stopping_spec"
    assert spec.decay_curve_stopping_spec.use_elapsed_duration

    median = TuningOptions.from_dict({"early_stopping": "median"})
    spec = median.study_spec(from_mapping(SPACE))
    assert StudySpec.pb(spec).WhichOneof("automated_stopping_spec") == (
        "median_automated_stopping_spec"
    )
    assert not spec.median_automated_stopping_spec.use_elapsed_duration
    # The empty spec still reaches the wire (the emulator's median rule looks for the key).
    assert "medianAutomatedStoppingSpec" in StudySpec.to_json(spec)
    plain = TuningOptions().study_spec(from_mapping(SPACE))
    assert StudySpec.pb(plain).WhichOneof("automated_stopping_spec") is None


@pytest.mark.parametrize(
    ("space", "options", "result"),
    [
        pytest.param(SPACE, {"algorithm": "random"}, "random", id="job-file-over-default"),
        pytest.param({**GRID_SPACE, "algorithm": "grid"}, {}, "grid", id="space-alone"),
        pytest.param(
            {**GRID_SPACE, "algorithm": "grid"}, {"algorithm": "grid"}, "grid", id="both-agree"
        ),
        pytest.param(
            {**GRID_SPACE, "algorithm": "grid"},
            {"algorithm": "random"},
            "conflicts with the search space (the-space sets algorithm: grid); set it in one "
            "place, got 'random'",
            id="conflict",
        ),
        pytest.param(
            SPACE,
            {"algorithm": "grid"},
            "does not fit the search space: the-space: grid search needs INTEGER",
            id="grid-over-doubles",
        ),
        pytest.param(
            {**SPACE, "measurement_selection": "best"},
            {"measurement_selection": "last"},
            "conflicts with the search space (the-space sets measurement_selection: best)",
            id="selection-conflict",
        ),
    ],
)
def test_algorithm_precedence(space: dict[str, Any], options: dict[str, Any], result: str) -> None:
    parsed = from_mapping(space, source="the-space")
    if result in ("random", "grid"):
        assert TuningOptions.from_dict(options).apply(parsed).algorithm == result
        return
    with pytest.raises(SettingError) as e:
        TuningOptions.from_dict(options).apply(parsed)
    assert result in str(e.value)


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        pytest.param({"algorithm": "vizier"}, "algorithm", "must be one of", id="algorithm"),
        pytest.param(
            {"measurement_selection": "max"}, "measurement_selection", "['last', 'best']", id="sel"
        ),
        pytest.param(
            {"early_stopping": "convex"}, "early_stopping.rule", "['median', 'decay_curve']",
            id="rule",
        ),
        pytest.param(
            {"early_stopping": {"rule": "median", "elapsed": True}},
            "early_stopping",
            "unknown key(s) ['elapsed']",
            id="unknown-key",
        ),
        pytest.param(
            {"early_stopping": {"rule": "median", "use_elapsed_duration": "yes"}},
            "early_stopping.use_elapsed_duration",
            "must be true or false",
            id="elapsed",
        ),
        pytest.param({"early_stopping": 3}, "early_stopping", "must be one of", id="type"),
        pytest.param(
            {"early_stoping": "median"}, "early_stoping", "is not a tuning option", id="unknown"
        ),
    ],
)
def test_bad_tuning_options(options: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SettingError) as e:
        TuningOptions.from_dict(options)
    assert e.value.field == field
    assert message in str(e.value)
