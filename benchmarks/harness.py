"""Helpers every benchmark script shares: percentiles, a free loopback port, a `chroma run` server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path


def pct(values: Sequence[float], q: float, empty: float = float("nan")) -> float:
    """Nearest-rank percentile (``q`` in 0..1); ``empty`` when there are no values (0.0 where JSON reads it)."""
    if not values:
        return empty
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chroma(path: Path, port: int, wait: float = 60.0) -> subprocess.Popen[bytes]:
    """``chroma run`` on loopback, telemetry off, once its heartbeat answers (a large index loads slowly)."""
    exe = shutil.which("chroma")
    if exe is None:
        raise SystemExit("the `chroma` command (ships with chromadb) is not installed")
    proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("chroma run did not answer its heartbeat")
