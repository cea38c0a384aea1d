"""Server mode against a real `chroma run` on loopback: same answers as embedded mode,
and a stopped or frozen server gives a clear error instead of a hang."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import IndexStateError
from tests.conftest import SAMPLE_DIR, make_settings

pytestmark = pytest.mark.chroma_server

QUESTIONS = ["What does ARRA align LLM hidden states with?",
             "Which papers remove the need for a reference model in preference optimization?",
             "What is the capital of France?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    def __init__(self, path: Path, log: Path) -> None:
        exe = shutil.which("chroma")
        if exe is None:
            pytest.skip("the `chroma` command (ships with chromadb) is not installed")
        self.port = _free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port",
                                      str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"chroma run did not answer its heartbeat: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    yield server
    server.stop()


def test_server_mode_answers_match_embedded_mode(chroma_server: ChromaServer, sample_assistant: Assistant,
                                                 tmp_path: Path, embed_cache: Path) -> None:
    settings = make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1", chroma_port=chroma_server.port)
    a = Assistant(settings)
    rep = a.ingest([SAMPLE_DIR])
    assert rep.papers_total == 247
    assert a.status()["vectors"] == sample_assistant.status()["vectors"]
    assert "chroma server" in a.status()["mode"]
    for q in QUESTIONS:
        remote, local = a.ask(q), sample_assistant.ask(q)
        assert remote.text == local.text
        # HNSW is approximate and built in another order on the server: the tail of the
        # ranking may differ, the head (what the answer uses) must not.
        assert [s.paper.paper_id for s in remote.sources[:5]] == [s.paper.paper_id for s in local.sources[:5]]
    # A second client (another process, another home) sees the same collection.
    again = Assistant(make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                                    chroma_port=chroma_server.port))
    assert again.ingest([SAMPLE_DIR]).new == 0


def test_stopped_server_is_a_clear_error(chroma_server: ChromaServer, tmp_path: Path, embed_cache: Path) -> None:
    settings = make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                             chroma_port=chroma_server.port, chroma_timeout=3)
    a = Assistant(settings)
    a.ingest([SAMPLE_DIR])
    a.ask(QUESTIONS[0])
    # Frozen server (SIGSTOP): the request must time out, not hang.
    chroma_server.proc.send_signal(signal.SIGSTOP)
    t = time.monotonic()
    with pytest.raises(IndexStateError, match="Chroma server at 127.0.0.1"):
        a.ask(QUESTIONS[1])
    assert time.monotonic() - t < 60
    chroma_server.proc.send_signal(signal.SIGCONT)
    # Dead server: connection refused, one clear line.
    chroma_server.stop()
    with pytest.raises(IndexStateError, match="CHROMA_HOST"):
        a.ask(QUESTIONS[2])
    fresh = Assistant(settings)
    with pytest.raises(IndexStateError, match="is `chroma run` up"):
        fresh.search("anything")
