"""What the catalogue, vector and lexical modules share: the date key Chroma and BM25
filter on, the scratch folder, and the one-line messages for a full disk or an unwritable home."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import IndexStateError


def date_int(date: str | None) -> int | None:
    """YYYYMMDD as an int (missing parts = 0) so Chroma can range-filter dates."""
    if not date or not date[:4].isdigit():
        return None
    parts = (date.split("-") + ["0", "0"])[:3]
    try:
        return int(parts[0]) * 10000 + int(parts[1] or 0) * 100 + int(parts[2] or 0)
    except ValueError:
        return None


def scratch_folder(settings: Any, name: str) -> Path | None:
    """A folder for an ingest's scratch files under the cache folder (on the index's disk, not in a
    RAM-backed /tmp); None when it cannot be made (a read-only home): use the system's temporary one."""
    folder = (settings.cache_dir or settings.home / "cache") / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


LOW_DISK_BYTES = 16 * 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXT = ("disk is full", "no space left", "disk quota")
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def disk_full_message(path: Path, exc: BaseException | None = None) -> str | None:
    """A plain 'disk full' sentence when ``exc`` says so, or (Chroma reports a full disk as
    compaction or I/O failures) when the filesystem holding ``path`` is nearly out of space."""
    said_full = exc is not None and (getattr(exc, "errno", None) in _FULL_ERRNOS
                                     or any(t in str(exc).lower() for t in _FULL_TEXT))
    if exc is not None and getattr(exc, "errno", None) in _DENIED_ERRNOS:
        return None
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS:
        return None  # the path is wrong, not the disk (/proc reports 0 bytes free)
    try:
        probe = Path(path)
        while not os.path.exists(probe) and probe != probe.parent:
            probe = probe.parent
        free: int | None = shutil.disk_usage(probe).free
    except OSError:
        free = None
    if not said_full and (free is None or free >= LOW_DISK_BYTES):
        return None
    left = f" ({free // 1024} KB free)" if free is not None else ""
    return (f"{path}: no space left on the disk{left}; free some space and run the command again - "
            "papers indexed before are kept and an interrupted ingest resumes")


def writable_error(path: Path, exc: Exception) -> IndexStateError:
    full = disk_full_message(path, exc)
    if full:
        return IndexStateError(full)
    reason = getattr(exc, "strerror", None) or str(exc)
    return IndexStateError(f"{path}: cannot write the index ({reason}); check that the folder is writable "
                           "(ASSISTANT_HOME; ASSISTANT_CACHE_DIR for the embedding cache) and the disk has space")
