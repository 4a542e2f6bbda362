"""Atomic file writes: write a temporary file in the target's folder, then rename it over.

The temporary name is unique (``tempfile.mkstemp``), so concurrent writers of the same target
never share one, and it is removed when the write fails; an existing target is left untouched
until the rename, which ``os.replace`` performs atomically on one file system. The written
file gets the usual permissions of a new file (``0o666`` less the umask), not ``mkstemp``'s
private ``0o600``.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "MARKER",
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "find_all_leftovers",
    "find_leftovers",
    "remove_leftovers",
]


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: changing the umask is process-wide and not thread-safe.
_UMASK = _read_umask()
FILE_MODE = 0o666 & ~_UMASK
"""Permissions of a new file (0o666 less the umask)."""
_FILE_MODE = FILE_MODE


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


# ---------------------------------------------------------------------------- folders

MARKER = ".sae-stitch-temp"
"""File inside every temporary folder this package makes next to a destination: it says the
folder is the package's (so a clean-up never touches anyone else's) and which process made it."""

_MARKER_PARTIAL = MARKER + ".partial"
_TMP_TAG = ".tmp-"
_OLD_TAG = ".old-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _temp_folder(target: Path, tag: str) -> Path:
    """A new, marked folder ``.NAME<tag>XXXXXXXX`` next to ``target``, with the permissions of any new folder (0o777 less the umask)."""
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}{tag}", dir=target.parent))
    folder.chmod(0o777 & ~_UMASK)
    marker = {"pid": os.getpid(), "host": socket.gethostname(), "target": target.name}
    partial = folder / _MARKER_PARTIAL  # written whole, then renamed: never a truncated marker
    partial.write_text(json.dumps(marker))
    os.replace(partial, folder / MARKER)
    return folder


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(errno, os.strerror(errno), str(b))


@contextmanager
def atomic_folder(target: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it takes ``target``'s place in one step.

    The folder is ``.NAME.tmp-XXXX/NAME`` next to ``target`` (the outer folder holds the package's
    marker). An existing ``target`` (only with ``overwrite``) is exchanged with the new one
    atomically where the system allows (Linux), so a reader, or a process killed at any
    moment, sees the old or the new folder and never a mix or nothing; elsewhere it is moved
    aside into a marked ``.NAME.old-XXXX`` first and moved back if the write fails. Leftovers of
    a killed earlier write to ``target`` are removed first (:func:`remove_leftovers`)."""
    target = Path(target)
    remove_leftovers(target)
    holder = _temp_folder(target, _TMP_TAG)
    new = holder / target.name
    new.mkdir()
    old_holder: Path | None = None
    try:
        yield new
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{str(target)!r} already exists")
            if not _exchange(new, target):
                old_holder = _temp_folder(target, _OLD_TAG)
                os.replace(target, old_holder / target.name)
                try:
                    os.replace(new, target)
                except BaseException:
                    os.replace(old_holder / target.name, target)
                    raise
        else:
            os.replace(new, target)
    finally:
        _remove_marked(holder)
        if old_holder is not None:
            _remove_marked(old_holder)


def _remove_marked(folder: Path) -> None:
    """Remove one of the package's temporary folders, its marker last (a process killed while
    removing it leaves a folder the next clean-up still recognises)."""
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.name in (MARKER, _MARKER_PARTIAL):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    (folder / _MARKER_PARTIAL).unlink(missing_ok=True)
    (folder / MARKER).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)


def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(marker: dict[str, Any]) -> bool:
    """Whether the process that made a temporary folder may still be writing it."""
    if marker.get("host") != socket.gethostname():
        return True  # another machine's (a shared file system): never removed from here
    pid = marker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if pid == os.getpid():
        return False  # this process: only one write per target runs at a time here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """The package's temporary and swapped-aside folders of earlier writes to ``target``
    (``.NAME.tmp-*`` and ``.NAME.old-*`` next to it) whose writer is gone. A folder counts
    only if it holds the package's marker, or nothing but (part of) a marker (a write killed
    before its marker was complete); anything else with a similar name is not the package's and
    is never listed."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return []
    found = []
    for tag in (_TMP_TAG, _OLD_TAG):
        prefix = f".{target.name}{tag}"
        for entry in parent.glob(glob.escape(prefix) + "*"):
            if entry.is_symlink() or not entry.is_dir() or len(entry.name) != len(prefix) + 8:
                continue
            marker = _marker(entry)
            if marker is None:  # killed before its marker was complete: holds nothing else
                if all(p.name in (MARKER, _MARKER_PARTIAL) for p in entry.iterdir()):
                    found.append(entry)
                continue
            if marker.get("target") == target.name and not _alive(marker):
                found.append(entry)
    return sorted(found)


def remove_leftovers(target: str | os.PathLike[str]) -> list[Path]:
    """Remove :func:`find_leftovers` of ``target``. If ``target`` itself is missing because an
    earlier write was killed between moving the old folder aside and moving the new one in,
    the old folder is put back first. Returns the folders removed."""
    target = Path(target)
    leftovers = find_leftovers(target)
    if not (target.exists() or target.is_symlink()):
        for folder in leftovers:
            saved = folder / target.name
            if folder.name.startswith(f".{target.name}{_OLD_TAG}") and saved.is_dir():
                os.replace(saved, target)
                break
    for folder in leftovers:
        _remove_marked(folder)
    return leftovers


def find_all_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Leftovers of writes to ``folder`` itself and to every entry inside it."""
    folder = Path(folder)
    names: set[str] = {folder.name}
    if folder.is_dir():
        for entry in folder.iterdir():
            for tag in (_TMP_TAG, _OLD_TAG):
                if entry.name.startswith(".") and tag in entry.name:
                    names.add(entry.name[1 : entry.name.rindex(tag)])
    found = list(find_leftovers(folder))
    for name in sorted(names - {folder.name}):
        found += find_leftovers(folder / name)
    return sorted(set(found))
