"""The Vertex settings of a job's machines, and the ``CustomJobSpec`` built from them.

A :class:`Machine` (machine type, accelerators, boot disk, replicas, scheduling) and the job's
:class:`JobSettings` (VPC network, reserved IP ranges, KMS key, labels) are checked once, here,
and :func:`custom_job_spec` turns them into the worker pools, scheduling and network of both the
trials (the tuning job's ``trial_job_spec``) and the retrain (the custom job's ``job_spec``);
:meth:`JobSettings.job_fields` gives the job resource its ``labels`` and ``encryption_spec``.

The names are Vertex's own. In the job file they sit under ``vertex:`` (the retrain may override the
machine settings under ``retrain: {vertex: ...}``); in the pipeline template they travel as the
``trial_machine``, ``retrain_machine`` and ``job_settings`` dict parameters. Every bad value
raises :class:`~hydra_vertex.errors.SettingError` naming the key, the rule and the value.

``replica_count: N`` above 1 becomes two worker pools with the same spec, as Vertex runs
distributed training: the chief (pool 0, one replica) and N-1 workers (pool 1).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

from hydra_vertex.errors import SettingError

# Documented values of DiskSpec.boot_disk_type, and Vertex's boot disk size range (GB).
BOOT_DISK_TYPES = ("pd-ssd", "pd-standard", "hyperdisk-balanced")
BOOT_DISK_SIZE_GB = (100, 64000)
# Scheduling.Strategy values that Vertex marks deprecated, and what replaces them.
_DEPRECATED_STRATEGIES = {"ON_DEMAND": "STANDARD", "LOW_COST": "SPOT"}
# Labels hydra-vertex sets itself (seed, launch key, app) start with this.
RESERVED_LABEL_PREFIX = "hydra-vertex-"
MAX_LABELS = 64 - 2  # Vertex allows 64 per resource; hydra-vertex adds up to two of its own
_MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*$")
_DURATION_RE = re.compile(r"^(\d+)s$")
_NETWORK_RE = re.compile(r"^projects/(\d+)/global/networks/([^/\s]+)$")
_KMS_KEY_RE = re.compile(
    r"^projects/[^/\s]+/locations/([^/\s]+)/keyRings/[^/\s]+/cryptoKeys/[^/\s]+$"
)


@dataclass(frozen=True)
class Machine:
    """What one job runs on. ``None``: Vertex's default (pd-ssd of 100 GB, STANDARD, ...)."""

    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None  # an aiplatform_v1.AcceleratorType name
    accelerator_count: int = 0
    boot_disk_type: str | None = None
    boot_disk_size_gb: int | None = None
    replica_count: int = 1
    scheduling_strategy: str | None = None  # STANDARD | SPOT | FLEX_START
    max_wait_duration: int | None = None  # seconds (FLEX_START only); 0: wait indefinitely
    restart_job_on_worker_restart: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, base: Machine | None = None) -> Machine:
        """``base`` (or the defaults) with the settings in ``data`` applied, checked.

        A ``None`` value puts a setting back to its default; ``accelerator_type: null`` or
        ``accelerator_count: 0`` means no accelerator.
        """
        data = dict(data or {})
        start = base or cls()
        values = asdict(start)
        for key, raw in data.items():
            checked = check_setting(key, raw)
            values[key] = getattr(cls, key) if checked is None else checked
        if "accelerator_type" in data and "accelerator_count" not in data:
            has = values["accelerator_type"] is not None
            values["accelerator_count"] = max(1, start.accelerator_count) if has else 0
        if values["accelerator_count"] == 0:
            values["accelerator_type"] = None
        elif values["accelerator_type"] is None:
            raise SettingError(
                "accelerator_count",
                "needs 'accelerator_type' (NVIDIA_TESLA_T4, NVIDIA_L4, ...)",
                values["accelerator_count"],
            )
        strategy = values["scheduling_strategy"]
        if values["max_wait_duration"] is not None and strategy != "FLEX_START":
            raise SettingError(
                "max_wait_duration",
                "applies only with scheduling_strategy FLEX_START (it bounds the wait for "
                f"resources), and scheduling_strategy is {strategy or 'unset'}",
                values["max_wait_duration"],
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings that differ from the defaults, plus ``machine_type`` (a template value)."""
        default = Machine()
        out = {k: v for k, v in asdict(self).items() if v != getattr(default, k)}
        return {"machine_type": self.machine_type, **out}

    def machine_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_type:
            spec["accelerator_type"] = self.accelerator_type
            spec["accelerator_count"] = self.accelerator_count
        return spec

    def disk_spec(self) -> dict[str, Any] | None:
        disk: dict[str, Any] = {}
        if self.boot_disk_type:
            disk["boot_disk_type"] = self.boot_disk_type
        if self.boot_disk_size_gb:
            disk["boot_disk_size_gb"] = self.boot_disk_size_gb
        return disk or None

    def scheduling(self, timeout_seconds: int = 0) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if timeout_seconds > 0:
            out["timeout"] = f"{int(timeout_seconds)}s"
        if self.scheduling_strategy:
            out["strategy"] = self.scheduling_strategy
        if self.max_wait_duration is not None:
            out["max_wait_duration"] = f"{self.max_wait_duration}s"
        if self.restart_job_on_worker_restart:
            out["restart_job_on_worker_restart"] = True
        return out or None

    def worker_pool_specs(self, container: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Pool 0 (the chief, one replica) and, with ``replica_count`` > 1, pool 1 (the other
        replicas), both with this machine and ``container``."""
        chief: dict[str, Any] = {
            "machine_spec": self.machine_spec(),
            "replica_count": 1,
            "container_spec": dict(container),
        }
        disk = self.disk_spec()
        if disk:
            chief["disk_spec"] = disk
        if self.replica_count == 1:
            return [chief]
        return [chief, {**chief, "replica_count": self.replica_count - 1}]


MACHINE_KEYS = tuple(f.name for f in fields(Machine))


@dataclass(frozen=True)
class JobSettings:
    """Settings of every job a run creates: network, KMS key and labels."""

    network: str | None = None
    reserved_ip_ranges: tuple[str, ...] = ()
    encryption_key: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, region: str | None = None) -> JobSettings:
        """Checked settings; with ``region``, the KMS key must be in it (Vertex's rule)."""
        data = dict(data or {})
        unknown = sorted(set(data) - set(JOB_SETTING_KEYS))
        if unknown:
            raise SettingError(
                unknown[0],
                f"is not a job setting (allowed: {sorted(JOB_SETTING_KEYS)})",
                data[unknown[0]],
            )
        network = data.get("network")
        if network is not None:
            network = _network("network", network)
        ranges = data.get("reserved_ip_ranges") or ()
        if (
            isinstance(ranges, str)
            or not isinstance(ranges, Sequence)
            or not all(isinstance(r, str) and r and not any(c.isspace() for c in r) for r in ranges)
        ):
            raise SettingError(
                "reserved_ip_ranges", "must be a list of reserved IP range names", ranges
            )
        if ranges and network is None:
            raise SettingError(
                "reserved_ip_ranges", "needs 'network' (the ranges are the network's)", ranges
            )
        key = data.get("encryption_key")
        if key is not None:
            key = _encryption_key("encryption_key", key, region)
        labels = _labels("labels", data.get("labels") or {})
        return cls(network, tuple(ranges), key, labels)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.network:
            out["network"] = self.network
        if self.reserved_ip_ranges:
            out["reserved_ip_ranges"] = list(self.reserved_ip_ranges)
        if self.encryption_key:
            out["encryption_key"] = self.encryption_key
        if self.labels:
            out["labels"] = dict(self.labels)
        return out

    def job_fields(self, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The job resource's ``labels`` (``labels`` first, then the user's) and
        ``encryption_spec``."""
        out: dict[str, Any] = {"labels": {**(labels or {}), **self.labels}}
        if self.encryption_key:
            out["encryption_spec"] = {"kms_key_name": self.encryption_key}
        return out


JOB_SETTING_KEYS = tuple(f.name for f in fields(JobSettings))


def custom_job_spec(
    machine: Machine,
    settings: JobSettings,
    *,
    container: Mapping[str, Any],
    base_output_dir: str,
    service_account: str = "",
    timeout_seconds: int = 0,
) -> dict[str, Any]:
    """The ``CustomJobSpec`` (a dict for the aiplatform_v1 types) of the trials or the retrain."""
    spec: dict[str, Any] = {
        "worker_pool_specs": machine.worker_pool_specs(container),
        "base_output_directory": {"output_uri_prefix": base_output_dir},
    }
    if service_account:
        spec["service_account"] = service_account
    scheduling = machine.scheduling(timeout_seconds)
    if scheduling:
        spec["scheduling"] = scheduling
    if settings.network:
        spec["network"] = settings.network
    if settings.reserved_ip_ranges:
        spec["reserved_ip_ranges"] = list(settings.reserved_ip_ranges)
    return spec


def with_machine_type(machine: Mapping[str, Any] | None, machine_type: str) -> Machine:
    """The template's ``machine_type`` parameter, then its machine dict (which may name one)."""
    base = Machine.from_dict({"machine_type": machine_type}) if machine_type else Machine()
    return Machine.from_dict(machine, base)


# -- checks: (key, raw value) -> the value, or SettingError ---------------------------------------


def check_setting(key: str, value: Any) -> Any:
    """One machine setting, checked and normalised (``nvidia-l4`` -> ``NVIDIA_L4``, ``600s`` ->
    600); ``None`` stays ``None`` (the default)."""
    check = _MACHINE_CHECKS.get(key)
    if check is None:
        raise SettingError(
            key, f"is not a machine setting (allowed: {sorted(_MACHINE_CHECKS)})", value
        )
    return None if value is None else check(key, value)


def nearest(value: str, names: Sequence[str]) -> str | None:
    """The valid name closest to ``value``: the first that has its model token (the last one with
    a digit: ``L4`` in ``NVIDIA_TESLA_L4``), else difflib's closest."""
    tokens = [t for t in value.upper().split("_") if any(c.isdigit() for c in t)]
    if tokens:
        with_model = [n for n in names if tokens[-1] in n.split("_")]
        if with_model:
            return with_model[0]
    close = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
    return close[0] if close else None


def _hint(value: str, names: Sequence[str]) -> str:
    guess = nearest(value, names)
    return f"; did you mean {guess!r}?" if guess else f"; valid: {', '.join(names)}"


def accelerator_types() -> list[str]:
    """Every ``aiplatform_v1.AcceleratorType`` name but ACCELERATOR_TYPE_UNSPECIFIED."""
    from google.cloud.aiplatform_v1.types import AcceleratorType

    return [a.name for a in cast(Any, AcceleratorType) if int(a) != 0]


def scheduling_strategies() -> list[str]:
    """The ``Scheduling.Strategy`` names in use (not UNSPECIFIED, not the deprecated ones)."""
    from google.cloud.aiplatform_v1.types import Scheduling

    strategies = cast(Any, Scheduling.Strategy)
    return [s.name for s in strategies if int(s) != 0 and s.name not in _DEPRECATED_STRATEGIES]


def _integral(value: Any) -> int | None:
    """An int, also from an integral float (pipeline parameters travel as protobuf Structs, whose
    numbers are doubles); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def _int(key: str, value: Any, low: int, high: int | None = None) -> int:
    number = _integral(value)
    if number is None or number < low or (high is not None and number > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise SettingError(key, f"must be an integer {bounds}", value)
    return number


def _machine_type(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _MACHINE_TYPE_RE.match(value):
        raise SettingError(key, "must be a Compute Engine machine type (n1-standard-4, ...)", value)
    return value


def _accelerator_type(key: str, value: Any) -> str:
    names = accelerator_types()
    name = value.strip().upper().replace("-", "_") if isinstance(value, str) else value
    if name not in names:
        hint = _hint(str(name), names) if isinstance(name, str) else ""
        raise SettingError(key, "must be an aiplatform_v1 AcceleratorType name", value, hint)
    return str(name)


def _boot_disk_type(key: str, value: Any) -> str:
    if value not in BOOT_DISK_TYPES:
        hint = _hint(str(value), BOOT_DISK_TYPES) if isinstance(value, str) else ""
        raise SettingError(key, f"must be one of {list(BOOT_DISK_TYPES)}", value, hint)
    return str(value)


def _strategy(key: str, value: Any) -> str:
    names = scheduling_strategies()
    name = value.strip().upper() if isinstance(value, str) else value
    if name in _DEPRECATED_STRATEGIES:
        raise SettingError(
            key, f"names a strategy Vertex deprecated (use {_DEPRECATED_STRATEGIES[name]})", value
        )
    if name not in names:
        hint = _hint(str(name), names) if isinstance(name, str) else ""
        raise SettingError(key, f"must be one of {names} (Scheduling.Strategy)", value, hint)
    return str(name)


def _duration(key: str, value: Any) -> int:
    """Seconds: an integer, or a protobuf Duration string such as ``3600s``."""
    if isinstance(value, str) and _DURATION_RE.match(value.strip()):
        return int(value.strip()[:-1])
    seconds = _integral(value)
    if seconds is None or seconds < 0:
        raise SettingError(key, "must be seconds >= 0 (an integer, or a string like '600s')", value)
    return seconds


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingError(key, "must be true or false", value)
    return value


_MACHINE_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "machine_type": _machine_type,
    "accelerator_type": _accelerator_type,
    "accelerator_count": lambda k, v: _int(k, v, 0),
    "boot_disk_type": _boot_disk_type,
    "boot_disk_size_gb": lambda k, v: _int(k, v, *BOOT_DISK_SIZE_GB),
    "replica_count": lambda k, v: _int(k, v, 1),
    "scheduling_strategy": _strategy,
    "max_wait_duration": _duration,
    "restart_job_on_worker_restart": _bool,
}


def _network(key: str, value: Any) -> str:
    if not isinstance(value, str) or not _NETWORK_RE.match(value):
        raise SettingError(
            key, "must be projects/PROJECT_NUMBER/global/networks/NAME (a peered VPC)", value
        )
    return value


def _encryption_key(key: str, value: Any, region: str | None) -> str:
    m = _KMS_KEY_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise SettingError(
            key,
            "must be a Cloud KMS key name, projects/P/locations/L/keyRings/R/cryptoKeys/K",
            value,
        )
    if region and m.group(1) != region:
        raise SettingError(
            key, f"must be in the jobs' region {region!r} (Vertex's rule for CMEK)", value
        )
    return str(value)


def _label_text(text: str, first: bool) -> bool:
    """Google Cloud label characters: lowercase letters (international too), digits, _ and -."""
    for i, c in enumerate(text):
        letter = c.isalpha() and not c.isupper()
        if i == 0 and first and not letter:
            return False
        if not (letter or c.isdigit() or c in "_-"):
            return False
    return True


def _labels(key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise SettingError(key, "must be a mapping of label key -> value", value)
    if len(value) > MAX_LABELS:
        raise SettingError(key, f"may hold at most {MAX_LABELS} labels", len(value))
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not 1 <= len(k) <= 63 or not _label_text(k, first=True):
            raise SettingError(
                f"{key}.{k}",
                "is not a valid label key (1-63 lowercase letters, digits, _ or -, starting "
                "with a letter)",
                k,
            )
        if k.startswith(RESERVED_LABEL_PREFIX):
            raise SettingError(
                f"{key}.{k}", f"uses the prefix {RESERVED_LABEL_PREFIX!r}, kept for hydra-vertex", k
            )
        text = str(v) if isinstance(v, int) and not isinstance(v, bool) else v
        if not isinstance(text, str) or len(text) > 63 or not _label_text(text, first=False):
            raise SettingError(
                f"{key}.{k}",
                "must be a label value (at most 63 lowercase letters, digits, _ or -)",
                v,
            )
        out[k] = text
    return out
