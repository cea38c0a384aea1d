"""Start and stop a real llama.cpp OpenAI-compatible server (llama-cpp-python) for tests.

Not a test module: helpers the LLM tests (and conftest fixtures) build on. The model is
the SmolLM2-135M GGUF that .ci/install_llm_server.sh puts in the CI cache; tests skip
when server or model is missing, unless ASSISTANT_REQUIRE_LLM_SERVER=1 makes that a failure.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
READY_TIMEOUT = 60.0


def ci_cache_dir() -> Path:
    """The cache directory .ci/install_llm_server.sh fills (same default)."""
    default = Path.home() / ".cache" / "paper-assistant-ci"
    return Path(os.environ.get("ASSISTANT_CI_CACHE") or default).expanduser()


def find_gguf() -> Path | None:
    """ASSISTANT_TEST_GGUF if set, else the GGUF in the CI cache; None when absent."""
    explicit = os.environ.get("ASSISTANT_TEST_GGUF")
    path = Path(explicit).expanduser() if explicit else ci_cache_dir() / GGUF_NAME
    return path if path.is_file() else None


@functools.lru_cache(maxsize=1)
def _server_import_error() -> str | None:
    # A subprocess, so a broken native library cannot take the test process down
    # and the server's heavy imports (fastapi, uvicorn) stay out of it.
    proc = subprocess.run([sys.executable, "-c", "import llama_cpp, llama_cpp.server.app"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def llama_server_skip_reason() -> str | None:
    """Why the real server cannot run here, or None when it can."""
    error = _server_import_error()
    if error:
        return (f"llama-cpp-python[server] is not importable ({error}); "
                "run .ci/install_llm_server.sh")
    if find_gguf() is None:
        where = os.environ.get("ASSISTANT_TEST_GGUF") or str(ci_cache_dir() / GGUF_NAME)
        return f"no GGUF model at {where}; run .ci/install_llm_server.sh or set ASSISTANT_TEST_GGUF"
    return None


def llama_server_available() -> bool:
    return llama_server_skip_reason() is None


def require_llama_server() -> Path:
    """The GGUF path; skips the calling test when the server cannot run, or fails it
    when ASSISTANT_REQUIRE_LLM_SERVER=1 (CI, where the installer ran)."""
    import pytest

    reason = llama_server_skip_reason()
    if reason:
        if os.environ.get("ASSISTANT_REQUIRE_LLM_SERVER") == "1":
            pytest.fail(f"ASSISTANT_REQUIRE_LLM_SERVER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    gguf = find_gguf()
    assert gguf is not None
    return gguf


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerHandle:
    base_url: str
    """http://127.0.0.1:PORT/v1 — what OPENAI_BASE_URL should be."""
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, like a crash: open connections break without a clean end."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Terminate gracefully, killing if it does not exit within 10 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def start_llama_server(gguf: Path, tmp_path: Path, *, port: int | None = None, n_ctx: int = 2048,
                       threads: int = 1, ready_timeout: float = READY_TIMEOUT) -> ServerHandle:
    """Run ``python -m llama_cpp.server`` on a loopback port and wait until it serves /v1/models.

    One thread by default: with 2 on a 2-core box that is also running pytest and other
    work, llama.cpp's spinning thread barrier stalled requests for over a minute (measured
    0.4 tok/s), while 1 thread gave 20-115 tok/s. Pass ``port`` to restart a server on the
    same address. Raises RuntimeError with the server log tail when it exits or is not
    ready within ``ready_timeout`` seconds.
    """
    port = port or free_port()
    log_path = Path(tmp_path) / f"llama_server_{port}_{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    handle = ServerHandle(base_url=f"http://127.0.0.1:{port}/v1", proc=proc, port=port, log_path=log_path)
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with code {proc.returncode} before it was ready; "
                               f"log {log_path}:\n{handle.log_tail()}")
        try:
            with urllib.request.urlopen(f"{handle.base_url}/models", timeout=2) as resp:
                if resp.status == 200:
                    return handle
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(f"llama.cpp server not ready after {ready_timeout:g}s; "
                               f"log {log_path}:\n{handle.log_tail()}")
        time.sleep(0.2)
