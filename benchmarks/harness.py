"""Helpers every benchmark script shares: percentiles, a free loopback port, a `chroma run` server."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from collections import Counter
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


class PlainBM25:
    """Plain BM25 (k1=0.9, b=0.4, lower-case word tokens), no project code: the floor baselines stand on."""

    def __init__(self, docs: dict[str, str], k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.ids = list(docs)
        self.tfs = [Counter(re.findall(r"\w\w+", docs[i].lower())) for i in self.ids]
        self.lens = [sum(tf.values()) for tf in self.tfs]
        self.avg = sum(self.lens) / max(1, len(self.lens))
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(self.ids)
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self.postings: dict[str, list[int]] = {}
        for i, tf in enumerate(self.tfs):
            for t in tf:
                self.postings.setdefault(t, []).append(i)

    def search(self, query: str, k: int = 10) -> list[str]:
        scores: dict[int, float] = {}
        for t in set(re.findall(r"\w\w+", query.lower())):
            for i in self.postings.get(t, ()):
                tf = self.tfs[i][t]
                denom = tf + self.k1 * (1 - self.b + self.b * self.lens[i] / self.avg)
                scores[i] = scores.get(i, 0.0) + self.idf[t] * tf * (self.k1 + 1) / denom
        return [self.ids[i] for i in sorted(scores, key=lambda i: (-scores[i], i))[:k]]
