"""The machine's GPUs as a resource that running jobs share (one pool per emulator).

Which GPUs (the first that says, wins):

1. the emulator's ``gpus`` argument (``hydra-vertex emulator --gpus 0,1,2,3``, ``start(gpus=...)``);
2. ``HYDRA_VERTEX_GPUS=0,1,2,3`` (how ``hydra-vertex run --local`` and tests name them; the names
   need not exist: tests name fake devices);
3. ``CUDA_VISIBLE_DEVICES`` of the emulator's own environment, when set (the emulator was
   limited to those; ``""`` is none);
4. ``nvidia-smi -L``: one device per GPU (its index), or per MIG instance (its ``MIG-...`` UUID)
   where a GPU is split; a missing, failing or hanging ``nvidia-smi`` means none.

A list is comma-separated (GPU indexes or ``GPU-``/``MIG-`` UUIDs); ``""`` or ``none`` is no GPU.

What a job's process gets (worker pool 0's ``machine_spec.accelerator_count`` N; locally only pool
0 runs, as one process per trial, so replicas and other pools reserve nothing):

- N > 0 on a machine with GPUs: N devices of its own (:meth:`DevicePool.acquire`), through
  ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` (:func:`device_env`; with
  ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` unless set, so that CUDA numbers GPUs as ``nvidia-smi`` does).
  No two running processes share a device; a process whose devices are not free waits (FIFO across
  every job of the emulator, so a job asking for many is not starved by jobs asking for few).
- N = 0 on a machine with GPUs: ``CUDA_VISIBLE_DEVICES=""`` and ``NVIDIA_VISIBLE_DEVICES=void``
  (none, as on a CPU-only Vertex machine).
- a machine with no GPU: the process runs as it is (nothing set); a job that asks for
  accelerators gets one warning (:func:`no_gpu_warning`) and runs without them, so code written
  for Vertex still runs.
- N larger than the machine's GPUs: refused when the job is created (:meth:`DevicePool.refusal`).

Pure: no process is started here except ``nvidia-smi`` in :func:`detect`.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hydra_vertex.errors import EmulatorError, UsageError

GPUS_ENV = "HYDRA_VERTEX_GPUS"
NVIDIA_SMI_TIMEOUT = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]*$")
_GPU_LINE = re.compile(r"^GPU\s+(\d+)\s*:.*?(?:\(UUID:\s*(GPU-[^)\s]+)\s*\))?\s*$")
_MIG_LINE = re.compile(r"^\s*MIG\s.*?Device\s+\d+\s*:.*\(UUID:\s*(MIG-[^)\s]+)\s*\)\s*$")


class DeviceError(EmulatorError):
    """A job asks for more devices than the machine has, or a GPU list is malformed."""


class GpuListError(DeviceError, UsageError):
    """A malformed GPU list (``--gpus``, ``HYDRA_VERTEX_GPUS``): bad usage, the CLI exits 2."""


@dataclass(frozen=True)
class Inventory:
    """The machine's devices and where the list came from (for messages)."""

    devices: tuple[str, ...]
    source: str


def parse_gpu_list(text: str, where: str) -> tuple[str, ...]:
    """``"0,1,2,3"`` -> ``("0", "1", "2", "3")``; ``""``/``"none"`` -> ``()``. ``where`` names the
    setting in the error (``--gpus``, ``HYDRA_VERTEX_GPUS``)."""
    stripped = text.strip()
    if stripped.lower() in ("", "none"):
        return ()
    names = tuple(part.strip() for part in stripped.split(","))
    for name in names:
        if not _NAME.match(name):
            raise GpuListError(
                f"{where}={text!r}: each device must be a GPU index or a GPU-/MIG- UUID, "
                f"comma-separated (for example 0,1,2,3), got {name!r}"
            )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GpuListError(f"{where}={text!r} names {', '.join(dupes)} more than once")
    return names


def parse_nvidia_smi(text: str) -> tuple[str, ...]:
    """The devices in ``nvidia-smi -L`` output: a GPU's index, or the ``MIG-`` UUIDs of the MIG
    instances listed under it (CUDA addresses MIG instances only by UUID). Lines it does not
    know (driver messages, "No devices were found") are skipped."""
    gpus: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        gpu = _GPU_LINE.match(line.strip())
        if gpu:
            gpus.append((gpu.group(1), []))
            continue
        mig = _MIG_LINE.match(line)
        if mig and gpus:
            gpus[-1][1].append(mig.group(1))
    out: list[str] = []
    for index, migs in gpus:
        out.extend(migs or [index])
    return tuple(out)


def _cuda_visible(text: str) -> tuple[str, ...]:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it: the names up to the first invalid one."""
    out: list[str] = []
    for part in text.split(","):
        name = part.strip()
        if not name or name.startswith("-") or not _NAME.match(name):
            break
        out.append(name)
    return tuple(out)


def detect(
    gpus: str | Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> Inventory:
    """The machine's devices, by the rules in the module docstring."""
    env = os.environ if env is None else env
    if gpus is not None:
        if isinstance(gpus, str):
            return Inventory(parse_gpu_list(gpus, "--gpus"), "--gpus")
        return Inventory(parse_gpu_list(",".join(gpus), "gpus"), "gpus")
    if env.get(GPUS_ENV) is not None:
        return Inventory(parse_gpu_list(env[GPUS_ENV], GPUS_ENV), GPUS_ENV)
    if env.get("CUDA_VISIBLE_DEVICES") is not None:
        return Inventory(_cuda_visible(env["CUDA_VISIBLE_DEVICES"]), "CUDA_VISIBLE_DEVICES")
    return Inventory(_nvidia_smi(), "nvidia-smi -L")


def _nvidia_smi() -> tuple[str, ...]:
    try:
        done = subprocess.run(
            ["nvidia-smi", "-L"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):  # not installed, not executable, hung
        return ()
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()


def requested(job_spec: Mapping[str, Any]) -> tuple[int, str]:
    """Worker pool 0's ``(accelerator_count, accelerator_type)`` of a stored CustomJobSpec
    (proto-JSON with enum names, as the store keeps it)."""
    pools = job_spec.get("workerPoolSpecs") or [{}]
    machine = pools[0].get("machineSpec") or {}
    count = int(machine.get("acceleratorCount") or 0)
    return count, str(machine.get("acceleratorType") or "")


def device_env(devices: Sequence[str], inherited: Mapping[str, str]) -> dict[str, str]:
    """The variables that give a process ``devices`` (none: ``()``), on a machine with GPUs."""
    names = ",".join(devices)
    env = {"CUDA_VISIBLE_DEVICES": names, "NVIDIA_VISIBLE_DEVICES": names or "void"}
    if devices and "CUDA_DEVICE_ORDER" not in inherited:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's indexes = nvidia-smi's
    return env


def no_gpu_warning(count: int, kind: str, per_trial: bool, source: str) -> str:
    """The one warning of a job that asks for accelerators on a machine with none."""
    looked = "nvidia-smi -L found none" if source == "nvidia-smi -L" else f"{source} names none"
    return (
        f"warning: the job asks for {count} x {kind or 'accelerator'}"
        f"{' per trial' if per_trial else ''} but this machine has no GPU ({looked}; name them "
        f"with --gpus or {GPUS_ENV}): its {'trials run' if per_trial else 'process runs'} "
        "without accelerators"
    )


class DevicePool:
    """The devices of one emulator, lent to running processes. Thread-safe.

    ``acquire(owner, n)`` lends ``n`` free devices to ``owner`` (a process: ``<collection>/<job>``
    or ``<collection>/<job>/<trial>``) or, if they are not free, puts ``owner`` in the queue and
    returns None: ask again later (``wake`` is set when devices come back). Requests are served in
    the order they were first made: a request that does not fit holds back the ones behind it.
    ``release(owner)`` gives its devices back and leaves the queue. ``adopt(owner, devices)``
    holds devices again for a process that outlived a restart of the emulator.
    """

    def __init__(self, devices: Sequence[str] = (), source: str = "") -> None:
        self.devices = tuple(devices)
        self.source = source
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, ...]] = {}
        self._queue: list[str] = []
        self._wakes: dict[str, threading.Event] = {}

    @property
    def size(self) -> int:
        return len(self.devices)

    def refusal(self, count: int, field: str) -> str | None:
        """Why a job asking ``count`` devices per process can never run here (None: it can)."""
        if count <= self.size or self.size == 0:
            return None
        return (
            f"{field} is {count} but this machine has {self.size} GPU"
            f"{'s' if self.size != 1 else ''} ({', '.join(self.devices)}; from {self.source}): "
            f"ask for at most {self.size}, or name more devices with --gpus or {GPUS_ENV}"
        )

    def acquire(
        self, owner: str, count: int, wake: threading.Event | None = None
    ) -> tuple[str, ...] | None:
        """``count`` devices for ``owner`` (``()`` when it asks for none or the machine has none),
        or None: not free yet, ``owner`` waits in the queue."""
        if count <= 0 or self.size == 0:
            return ()
        if count > self.size:
            raise DeviceError(
                f"asks for {count} devices and this machine has {self.size} ({self.source})"
            )
        with self._lock:
            if owner in self._held:
                return self._held[owner]
            if owner not in self._queue:
                self._queue.append(owner)
            if wake is not None:
                self._wakes[owner] = wake
            free = self._free()
            if self._queue[0] != owner or len(free) < count:
                return None
            self._queue.pop(0)
            self._wakes.pop(owner, None)
            granted = free[:count]
            self._held[owner] = granted
            waiting = [self._wakes[o] for o in self._queue[:1] if o in self._wakes]
        for event in waiting:  # the next in line may fit in what is left
            event.set()
        return granted

    def adopt(self, owner: str, devices: Sequence[str]) -> None:
        """Hold ``devices`` for ``owner`` again: a process found still running after a restart of
        the emulator keeps the devices it was lent (those this machine still has)."""
        mine = tuple(d for d in devices if d in self.devices)
        if not mine:
            return
        with self._lock:
            self._held[owner] = mine
            if owner in self._queue:
                self._queue.remove(owner)
            self._wakes.pop(owner, None)

    def release(self, owner: str) -> None:
        """Give ``owner``'s devices back, and take it out of the queue."""
        self.release_all(owner, prefix=False)

    def release_all(self, key: str, prefix: bool = True) -> None:
        """Release every owner whose name starts with ``key`` (``key`` itself when not prefix)."""

        def match(owner: str) -> bool:
            return owner.startswith(key) if prefix else owner == key

        with self._lock:
            freed = [o for o in self._held if match(o)]
            for owner in freed:
                del self._held[owner]
            left = [o for o in self._queue if match(o)]
            self._queue = [o for o in self._queue if not match(o)]
            for owner in left:
                self._wakes.pop(owner, None)
            waiting = list(self._wakes.values()) if (freed or left) else []
        for event in waiting:
            event.set()

    def held(self) -> dict[str, tuple[str, ...]]:
        """Owner -> its devices, for everything running now."""
        with self._lock:
            return dict(self._held)

    def waiting(self) -> list[str]:
        """The owners waiting for devices, first in line first."""
        with self._lock:
            return list(self._queue)

    def _free(self) -> tuple[str, ...]:
        busy = {d for held in self._held.values() for d in held}
        return tuple(d for d in self.devices if d not in busy)
