"""Scratch files and folders named for the process that made them, so the next run can tell a
killed run's leftovers (gigabytes at a million papers) from a running one's work and remove them.

A name carries the pid and a hash of the host (``1234h0a1b2c3d``): a pid means something only on
its own host, so another host's leftovers (a home on a network filesystem) are never removed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

OWNER = r"(\d+)(?:h([0-9a-f]{8}))?"
"""The owner part of a scratch name as a pattern: group 1 the pid, group 2 the host hash."""


def host() -> str:
    """A hash of this host's name, 8 hex digits."""
    import hashlib
    import socket

    return hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()


def owner() -> str:
    """This process in a scratch name: its pid and its host (``1234h0a1b2c3d``)."""
    return f"{os.getpid()}h{host()}"


def running(pid: int) -> bool:
    if os.name == "nt":  # os.kill would end the process there: never sweep
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or a pid this platform cannot signal
        return True
    return True


def sweep(directory: Path, pattern: re.Pattern[str]) -> None:
    """Remove the entries of ``directory`` whose whole name matches ``pattern`` (its first two groups
    those of ``OWNER``) and were made on this host by a process that no longer runs."""
    here = host()
    try:
        entries = list(directory.iterdir())
    except OSError:
        return
    for path in entries:
        m = pattern.fullmatch(path.name)
        if m and m.group(2) in (None, here) and not running(int(m.group(1))):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
