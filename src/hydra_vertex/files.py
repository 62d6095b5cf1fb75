"""Atomic file writes: a temporary file, fsync, rename. A crash or ``kill -9`` leaves the old
file or the new one, never a torn one. Standard library only (the shim imports this)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, tmp_dir: Path | None = None
) -> Path:
    """Write ``data`` to ``path`` atomically; the temporary goes to ``tmp_dir`` (default: beside
    ``path``, which must then be on the same file system). Symlinks are never followed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    directory = tmp_dir if tmp_dir is not None else p.parent
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{p.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int = 0o644) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)
