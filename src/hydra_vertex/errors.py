"""One root exception for the package, one subclass per area.

Every message states the offending value, the rule it breaks and where to look.
"""

from __future__ import annotations


class HydraVertexError(Exception):
    """Root of every error hydra-vertex raises on purpose."""


class UsageError(HydraVertexError):
    """Bad command-line usage: the CLI prints one line and exits 2."""


class SearchSpaceError(HydraVertexError):
    """A search space (file, Hydra sweeper block or StudySpec) breaks a rule."""


class ShimError(HydraVertexError):
    """The trial arguments cannot be turned into Hydra overrides."""


class ReportingError(HydraVertexError):
    """The objective cannot be reported (missing, NaN, infinite, not a number)."""


class JobFileError(HydraVertexError):
    """A JOB.yaml breaks a rule."""


class EmulatorError(HydraVertexError):
    """The local emulator cannot start or be reached."""


class TuningError(HydraVertexError):
    """A tuning job ended without a usable result."""


class SettingError(HydraVertexError):
    """A Vertex job setting (machine, scheduling, network, tuning option) breaks a rule.

    Carries the ``field`` (relative to its section), the ``rule``, the ``value`` and a ``hint``
    (the nearest valid name, say), so that a job file can name its own file and section.
    """

    def __init__(self, field: str, rule: str, value: object, hint: str = "", where: str = ""):
        self.field, self.rule, self.value, self.hint, self.where = field, rule, value, hint, where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}'{field}' {rule}, got {value!r}{hint}")

    def located(self, where: str) -> SettingError:
        """The same error, saying where the setting came from (a file, a parameter)."""
        return SettingError(self.field, self.rule, self.value, self.hint, where)


class StateWriteError(EmulatorError):
    """The emulator's store could not save a record (disk full, read-only or removed state
    directory). The message names the record, the file and the system's reason; the record in
    memory is left as it was, so what is served stays what is on disk."""
