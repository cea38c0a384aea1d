"""The real `assistant serve` in a subprocess on a free loopback port, for endpoint and browser tests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import cli_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """`python -m assistant serve ...` with its own home; waits until /healthz answers."""

    def __init__(self, home: Path, cache: Path | None, log: Path, *args: str, token: str | None = None,
                 env: dict[str, str] | None = None, timeout: float = 180) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        self.log_path = log
        self._log = log.open("wb")
        cmd = [sys.executable, "-m", "assistant", "serve", "--port", str(self.port), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=cli_env(home, cache, **(env or {})))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"assistant serve exited with {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                status, _, _ = self.request("GET", "/healthz", timeout=2)
                if status == 200 or (status == 401 and token is None):  # up (the test sends its own token)
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"assistant serve did not answer /healthz: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, token: str | None = "default",
                timeout: float = 120) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) — errors are returned, not raised, so tests can check 4xx/5xx."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        h = {"Content-Type": "application/json"} if isinstance(body, dict) else {}
        tok = self.token if token == "default" else token
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()

    def json(self, method: str, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        status, _, raw = self.request(method, path, body, **kw)
        return status, json.loads(raw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()
