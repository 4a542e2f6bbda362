"""Atomic file writes: write a temporary file in the target's folder, then rename it over.

The temporary name is unique (``tempfile.mkstemp``), so concurrent writers of the same target
never share one, and it is removed when the write fails; an existing target is left untouched
until the rename, which ``os.replace`` performs atomically on one file system. The written
file gets the usual permissions of a new file (``0o666`` less the umask), not ``mkstemp``'s
private ``0o600``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: changing the umask is process-wide and not thread-safe.
_FILE_MODE = 0o666 & ~_read_umask()


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; on success rename it to ``path``.

    For writers that want a file name (e.g. matplotlib's ``savefig``). The temporary file keeps
    ``path``'s suffix, so format detection from the extension still works. If the body raises,
    the temporary file is deleted and ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, _FILE_MODE)
        finally:
            os.close(fd)
        yield tmp
        if fsync:
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", fsync: bool = False
) -> None:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    atomic_write_bytes(path, text.encode(encoding), fsync=fsync)
