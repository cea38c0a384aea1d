"""Start and stop a real llama.cpp OpenAI-compatible server for tests and benchmarks.

Not a test module: helpers the LLM tests (and conftest fixtures) build on. The server is
llama.cpp's own C++ HTTP server, from the prebuilt ``xllamacpp`` wheel (installs in seconds)
or, when only that is installed, ``llama-cpp-python[server]`` (a ~10-minute compile).
Two models, both put in the CI cache by .ci/install_llm_server.sh:

- ``smollm2``: SmolLM2-135M (98 MB), fast; for tests that check the path works whatever it says.
- ``qwen``: Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB, .ci/fetch_test_model.py); for tests
  and benchmarks of answer quality.

Tests skip when server or model is missing, unless ASSISTANT_REQUIRE_LLM_SERVER=1 makes that a
failure. Run as a script (``python tests/llm_server.py --model X.gguf --port N``) it serves with
xllamacpp until SIGTERM: that is how start_llama_server runs it.
"""

from __future__ import annotations

import argparse
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
QWEN_GGUF_NAME = "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"
#: model key -> (file name in the CI cache, env var that overrides the path, how to get it)
MODELS = {
    "smollm2": (GGUF_NAME, "ASSISTANT_TEST_GGUF", "run .ci/install_llm_server.sh"),
    "qwen": (QWEN_GGUF_NAME, "ASSISTANT_TEST_QWEN_GGUF", "run python .ci/fetch_test_model.py"),
}
READY_TIMEOUT = 120.0
LOOKUP_NGRAM = 3
"""Prompt-lookup drafts start where the last 3 generated tokens occur in the prompt."""
_XLLAMACPP_CHECK = "import xllamacpp"
_LLAMA_CPP_CHECK = "import llama_cpp, llama_cpp.server.app"


def ci_cache_dir() -> Path:
    """The cache directory .ci/install_llm_server.sh fills (same default)."""
    default = Path.home() / ".cache" / "paper-assistant-ci"
    return Path(os.environ.get("ASSISTANT_CI_CACHE") or default).expanduser()


def _model_path(model: str) -> Path:
    name, env, _ = MODELS[model]
    explicit = os.environ.get(env)
    return Path(explicit).expanduser() if explicit else ci_cache_dir() / name


def find_gguf(model: str = "smollm2") -> Path | None:
    """The model's GGUF (its env var if set, else the CI cache); None when absent."""
    path = _model_path(model)
    return path if path.is_file() else None


SERVER_BIN_ENV = "ASSISTANT_TEST_LLAMA_SERVER_BIN"


def find_server_binary() -> Path | None:
    """llama.cpp's own ``llama-server`` executable: ``ASSISTANT_TEST_LLAMA_SERVER_BIN`` if set, else the
    one .ci/build_llama_server.sh built for this CPU in the CI cache; None when absent."""
    explicit = os.environ.get(SERVER_BIN_ENV)
    if explicit:
        path = Path(explicit).expanduser()
        return path if path.is_file() else None
    built = sorted((p for p in ci_cache_dir().glob("llama-server-*/llama-server") if p.parent.suffix != ".partial"),
                   key=lambda p: p.stat().st_mtime)
    return built[-1] if built else None


def require_server_binary() -> Path:
    """The ``llama-server`` executable; skips the calling test without one, or fails it when
    ASSISTANT_REQUIRE_LLM_SERVER=1 (CI, where .ci/build_llama_server.sh ran)."""
    import pytest

    path = find_server_binary()
    if path is None:
        reason = f"no llama.cpp llama-server executable; run .ci/build_llama_server.sh or set {SERVER_BIN_ENV}"
        if os.environ.get("ASSISTANT_REQUIRE_LLM_SERVER") == "1":
            pytest.fail(f"ASSISTANT_REQUIRE_LLM_SERVER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@functools.lru_cache(maxsize=4)
def _import_error(check: str) -> str | None:
    # A subprocess, so a broken native library cannot take the test process down
    # and the server's heavy imports stay out of it.
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {proc.returncode}"


def server_kind() -> str | None:
    """'xllamacpp' (preferred: prebuilt), 'llama_cpp' (llama-cpp-python[server]) or None."""
    if _import_error(_XLLAMACPP_CHECK) is None:
        return "xllamacpp"
    if _import_error(_LLAMA_CPP_CHECK) is None:
        return "llama_cpp"
    return None


def llama_server_skip_reason(model: str = "smollm2") -> str | None:
    """Why the real server cannot run here with ``model``, or None when it can."""
    if server_kind() is None:
        return (f"no llama.cpp server is importable (xllamacpp: {_import_error(_XLLAMACPP_CHECK)}); "
                "run .ci/install_llm_server.sh")
    if find_gguf(model) is None:
        _, env, how = MODELS[model]
        return f"no GGUF model at {_model_path(model)}; {how} or set {env}"
    return None


def llama_server_available(model: str = "smollm2") -> bool:
    return llama_server_skip_reason(model) is None


def require_llama_server(model: str = "smollm2") -> Path:
    """The GGUF path; skips the calling test when the server cannot run, or fails it
    when ASSISTANT_REQUIRE_LLM_SERVER=1 (CI, where the installer ran)."""
    import pytest

    reason = llama_server_skip_reason(model)
    if reason:
        if os.environ.get("ASSISTANT_REQUIRE_LLM_SERVER") == "1":
            pytest.fail(f"ASSISTANT_REQUIRE_LLM_SERVER=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    gguf = find_gguf(model)
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
                       threads: int = 1, ready_timeout: float = READY_TIMEOUT, parallel: int = 1,
                       flash_attn: str = "auto", batch: int = 0, ubatch: int = 0,
                       embedding: bool = False, lookup: int = 0, binary: Path | None = None) -> ServerHandle:
    """Run llama.cpp's server on a loopback port and wait until it serves /v1/models.

    One thread by default: with 2 on a 2-core box that is also running pytest and other
    work, llama.cpp's spinning thread barrier stalled requests for over a minute (measured
    0.4 tok/s), while 1 thread gave 20-115 tok/s. (With xllamacpp, OMP_WAIT_POLICY=PASSIVE
    stops the spinning; 2 threads then ran the 1.5B model at 6-18 tok/s on a loaded box
    where spinning gave 0.5.) Pass ``port`` to restart a server on the same address.
    Raises RuntimeError with the server log tail when it exits or is not ready within
    ``ready_timeout`` seconds. ``parallel`` slots share ``n_ctx``; one slot keeps the last
    prompt's KV cache, so a fixed prompt prefix is read once (``cache_prompt``, on). ``flash_attn``,
    ``batch`` and ``ubatch`` (0 = llama.cpp's default) are for benchmarks/llm_server_flags.py (not
    for llama-cpp-python). ``embedding`` serves /v1/embeddings (mean pooling; not llama-cpp-python).
    ``lookup`` > 0 turns on llama.cpp's prompt-lookup speculative decoding (``ngram-simple``): drafts
    of up to ``lookup`` tokens copied from the prompt where its last 3 tokens recur, checked in one batch
    (an answer that copies its evidence is generated faster; greedy answers can differ where batched
    arithmetic breaks a near tie; not llama-cpp-python). ``binary``: run that llama.cpp ``llama-server``
    executable (e.g. one built for this CPU) instead of xllamacpp, with the same settings.
    """
    kind = "binary" if binary else server_kind() or "xllamacpp"
    port = port or free_port()
    log_path = Path(tmp_path) / f"llama_server_{port}_{time.monotonic_ns()}.log"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if kind == "xllamacpp":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--model", str(gguf), "--port", str(port),
               "--n-ctx", str(n_ctx), "--threads", str(threads), "--parallel", str(parallel),
               "--flash-attn", flash_attn, "--batch", str(batch), "--ubatch", str(ubatch)]
        if embedding:
            cmd.append("--embedding")
        if lookup:
            cmd += ["--lookup", str(lookup)]
    elif kind == "binary":
        cmd = [str(binary), "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--ctx-size",
               str(n_ctx), "--threads", str(threads), "--parallel", str(parallel), "--flash-attn", flash_attn]
        cmd += [*(["--batch-size", str(batch)] if batch else []), *(["--ubatch-size", str(ubatch)] if ubatch else [])]
        if embedding:
            cmd += ["--embedding", "--pooling", "mean"]
        if lookup:
            cmd += ["--spec-type", "ngram-simple", "--spec-ngram-simple-size-n", str(LOOKUP_NGRAM),
                    "--spec-ngram-simple-size-m", str(lookup), "--spec-draft-n-max", str(lookup)]
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    handle = ServerHandle(base_url=f"http://127.0.0.1:{port}/v1", proc=proc, port=port, log_path=log_path)
    # llama.cpp's server listens before the model is loaded and answers 503 until then:
    # /health is 200 only when it can serve (llama-cpp-python has no /health; /v1/models suffices).
    probes = [f"{handle.base_url}/models"] + ([f"http://127.0.0.1:{port}/health"] if kind != "llama_cpp" else [])
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"llama.cpp server exited with code {proc.returncode} before it was ready; "
                               f"log {log_path}:\n{handle.log_tail()}")
        if all(_status(url) == 200 for url in probes):
            return handle
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(f"llama.cpp server not ready after {ready_timeout:g}s; "
                               f"log {log_path}:\n{handle.log_tail()}")
        time.sleep(0.2)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def serve(argv: list[str] | None = None) -> None:
    """Serve one GGUF with xllamacpp on 127.0.0.1 until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=1, help="slots (n_ctx is shared by them)")
    parser.add_argument("--batch", type=int, default=0, help="n_batch (0: llama.cpp's default)")
    parser.add_argument("--ubatch", type=int, default=0, help="n_ubatch (0: llama.cpp's default)")
    parser.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings (mean pooling)")
    parser.add_argument("--lookup", type=int, default=0,
                        help="prompt-lookup speculative decoding: draft up to N tokens copied from the prompt")
    args = parser.parse_args(argv)
    # Block the stop signals before the server's threads start, so they inherit the mask
    # and sigwait below is the one place the signal lands.
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.n_ctx = args.n_ctx
    params.port = args.port
    params.hostnames = ["127.0.0.1"]
    params.n_parallel = args.parallel
    params.cache_prompt = True  # reuse the KV cache of a shared prompt prefix (llama.cpp's default)
    if args.batch:
        params.n_batch = args.batch
    if args.ubatch:
        params.n_ubatch = args.ubatch
    params.flash_attn_type = {"auto": -1, "off": 0, "on": 1}[args.flash_attn]
    if args.embedding:
        params.embedding = True
        params.pooling_type = int(xlc.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN)
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    if args.lookup:
        spec = params.speculative
        spec.types = [xlc.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
        spec.ngram_simple.size_n = LOOKUP_NGRAM
        spec.ngram_simple.size_m = args.lookup
        spec.draft.n_max = args.lookup
    server = xlc.Server(params)
    print(f"llm_server: serving {args.model} at {server.listening_address}", flush=True)
    signal.sigwait(stop)
    del server


if __name__ == "__main__":
    serve()
