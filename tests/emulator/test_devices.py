"""The device pool and GPU discovery alone: no process, no GPU (``nvidia-smi -L`` output as
captured on machines with GPUs, MIG instances and broken drivers)."""

from __future__ import annotations

import threading

import pytest

from hydra_vertex.emulator import devices
from hydra_vertex.emulator.devices import (
    DeviceError,
    DevicePool,
    GpuListError,
    detect,
    device_env,
    no_gpu_warning,
    parse_gpu_list,
    parse_nvidia_smi,
    requested,
)
from hydra_vertex.errors import UsageError

H100 = """\
GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-4a3f9b0e-2c6d-1e8f-7a5b-9c0d1e2f3a4b)
GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-9d8c7b6a-5f4e-3d2c-1b0a-a1b2c3d4e5f6)
GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0)
GPU 3: NVIDIA H100 80GB HBM3 (UUID: GPU-11223344-5566-7788-99aa-bbccddeeff00)
"""
T4 = "GPU 0: Tesla T4 (UUID: GPU-d4a8b0c2-6e1f-3a5b-7c9d-0e2f4a6b8c1d)\n"
MIG = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-7e1a2b3c-4d5e-6f70-8192-a3b4c5d6e7f8)
"""
MIG_OLD_DRIVER = """\
GPU 0: A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77)
  MIG 1g.5gb Device 0: (UUID: MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0)
"""
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure "
    "that the latest NVIDIA driver is installed and running.\n\n"
)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(H100, ("0", "1", "2", "3"), id="four-h100"),
        pytest.param(T4, ("0",), id="one-t4"),
        pytest.param(
            MIG,
            (
                "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",
                "MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb",
                "1",
            ),
            id="mig-instances-by-uuid",
        ),
        pytest.param(
            MIG_OLD_DRIVER, ("MIG-GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a77/7/0",), id="mig-r450"
        ),
        pytest.param(NO_DRIVER, (), id="no-driver"),
        pytest.param("No devices were found\n", (), id="no-devices"),
        pytest.param("", (), id="empty"),
    ],
)
def test_parse_nvidia_smi(output: str, expected: tuple[str, ...]) -> None:
    assert parse_nvidia_smi(output) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1,2,3", ("0", "1", "2", "3")),
        (" 2 , 3 ", ("2", "3")),
        ("GPU-4a3f9b0e-2c6d,MIG-c6d4f1ef-42e4", ("GPU-4a3f9b0e-2c6d", "MIG-c6d4f1ef-42e4")),
        ("", ()),
        ("none", ()),
    ],
)
def test_parse_gpu_list(text: str, expected: tuple[str, ...]) -> None:
    assert parse_gpu_list(text, "--gpus") == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0,,1", "--gpus='0,,1': each device must be a GPU index or a GPU-/MIG- UUID"),
        ("0;1", "--gpus='0;1': each device must be .* comma-separated .*, got '0;1'$"),
        ("0,1,0", "--gpus='0,1,0' names 0 more than once"),
    ],
)
def test_a_bad_gpu_list_names_the_setting_and_the_value(text: str, message: str) -> None:
    """Bad usage (the CLI exits 2), and a device error."""
    assert issubclass(GpuListError, DeviceError) and issubclass(GpuListError, UsageError)
    with pytest.raises(GpuListError, match="^" + message):
        parse_gpu_list(text, "--gpus")


def test_detect_order_argument_then_variables_then_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"HYDRA_VERTEX_GPUS": "4,5", "CUDA_VISIBLE_DEVICES": "1"}
    assert detect("0,1", env) == devices.Inventory(("0", "1"), "--gpus")
    assert detect(["2"], env) == devices.Inventory(("2",), "gpus")
    assert detect(None, env) == devices.Inventory(("4", "5"), "HYDRA_VERTEX_GPUS")
    assert detect(None, {"HYDRA_VERTEX_GPUS": ""}).devices == ()
    assert detect(None, {"CUDA_VISIBLE_DEVICES": "2,3,-1,0"}) == devices.Inventory(
        ("2", "3"), "CUDA_VISIBLE_DEVICES"
    )  # CUDA stops at the first invalid name
    assert detect(None, {"CUDA_VISIBLE_DEVICES": ""}).devices == ()
    monkeypatch.setattr(devices, "_nvidia_smi", lambda: parse_nvidia_smi(T4))
    assert detect(None, {}) == devices.Inventory(("0",), "nvidia-smi -L")


def test_nvidia_smi_missing_means_no_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi on it: FileNotFoundError inside
    assert devices._nvidia_smi() == ()


def test_requested_reads_worker_pool_zero() -> None:
    spec = {
        "workerPoolSpecs": [
            {"machineSpec": {"acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2}},
            {"machineSpec": {"acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2}},
        ]
    }
    assert requested(spec) == (2, "NVIDIA_TESLA_T4")
    assert requested({"workerPoolSpecs": [{"machineSpec": {"machineType": "n1"}}]}) == (0, "")


def test_device_env() -> None:
    assert device_env(("2", "3"), {}) == {
        "CUDA_VISIBLE_DEVICES": "2,3",
        "NVIDIA_VISIBLE_DEVICES": "2,3",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }
    assert device_env(("0",), {"CUDA_DEVICE_ORDER": "FASTEST_FIRST"}) == {
        "CUDA_VISIBLE_DEVICES": "0",
        "NVIDIA_VISIBLE_DEVICES": "0",
    }
    assert device_env((), {}) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}


# -- the pool ------------------------------------------------------------------------------------


def test_no_two_owners_share_a_device_and_released_devices_are_lent_again() -> None:
    pool = DevicePool(("0", "1", "2", "3"), "HYDRA_VERTEX_GPUS")
    a = pool.acquire("job/1", 2)
    b = pool.acquire("job/2", 2)
    assert a == ("0", "1") and b == ("2", "3")
    assert pool.acquire("job/1", 2) == a  # asking again: the same devices
    assert pool.acquire("job/3", 1) is None  # nothing free: waits
    assert pool.waiting() == ["job/3"]
    pool.release("job/1")
    assert pool.acquire("job/3", 1) == ("0",)
    assert pool.held() == {"job/2": ("2", "3"), "job/3": ("0",)}
    assert pool.waiting() == []


def test_requests_are_served_in_order_so_a_big_one_is_not_starved() -> None:
    pool = DevicePool(("0", "1", "2", "3"))
    assert pool.acquire("a/1", 2) == ("0", "1")
    assert pool.acquire("a/2", 1) == ("2",)
    assert pool.acquire("big", 4) is None  # first in line
    assert pool.acquire("small", 1) is None  # one is free, but "big" asked first
    pool.release("a/1")
    pool.release("a/2")
    assert pool.acquire("small", 1) is None
    assert pool.acquire("big", 4) == ("0", "1", "2", "3")
    assert pool.waiting() == ["small"]


def test_waiters_are_woken_when_devices_come_back() -> None:
    pool = DevicePool(("0", "1"))
    wake = threading.Event()
    assert pool.acquire("a", 2) == ("0", "1")
    assert pool.acquire("b", 1, wake) is None
    assert not wake.is_set()
    pool.release("a")
    assert wake.is_set()


def test_release_all_frees_a_job_and_takes_its_waiters_out_of_the_queue() -> None:
    pool = DevicePool(("0", "1"))
    assert pool.acquire("tuning/7/1", 2) == ("0", "1")
    assert pool.acquire("tuning/7/2", 2) is None
    assert pool.acquire("custom/8", 1) is None
    pool.release_all("tuning/7/")
    assert pool.held() == {} and pool.waiting() == ["custom/8"]
    assert pool.acquire("custom/8", 1) == ("0",)


def test_asking_for_none_or_on_a_machine_without_gpus_never_waits() -> None:
    pool = DevicePool(("0",))
    assert pool.acquire("a", 1) == ("0",)
    assert pool.acquire("cpu", 0) == ()  # no accelerator: runs at once, with none
    bare = DevicePool((), "nvidia-smi -L")
    assert bare.acquire("a", 4) == () and bare.held() == {}  # runs without (the job warns)


def test_more_than_the_machine_has_is_refused() -> None:
    pool = DevicePool(("0", "1"), "--gpus")
    field = "trial_job_spec.worker_pool_specs[0].machine_spec.accelerator_count"
    assert pool.refusal(2, field) is None
    assert pool.refusal(4, field) == (
        f"{field} is 4 but this machine has 2 GPUs (0, 1; from --gpus): ask for at most 2, or "
        "name more devices with --gpus or HYDRA_VERTEX_GPUS"
    )
    assert DevicePool().refusal(4, field) is None  # no GPU at all: runs without, with a warning
    with pytest.raises(DeviceError, match="asks for 3 devices and this machine has 2"):
        pool.acquire("a", 3)


def test_the_no_gpu_warning() -> None:
    assert no_gpu_warning(2, "NVIDIA_TESLA_T4", True, "nvidia-smi -L") == (
        "warning: the job asks for 2 x NVIDIA_TESLA_T4 per trial but this machine has no GPU "
        "(nvidia-smi -L found none; name them with --gpus or HYDRA_VERTEX_GPUS): its trials run "
        "without accelerators"
    )
    assert "(HYDRA_VERTEX_GPUS names none;" in no_gpu_warning(1, "", False, "HYDRA_VERTEX_GPUS")
    assert no_gpu_warning(1, "", False, "--gpus").endswith("its process runs without accelerators")
