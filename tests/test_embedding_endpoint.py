"""The openai embedding backend against a real OpenAI-compatible /v1/embeddings server: llama.cpp's
(xllamacpp) serving SmolLM2 with embeddings on, one thread. Ingest and search go through it, with its
own base URL (index.embedding_base_url, apart from the chat server's), requests of
index.embedding_request_texts texts, several in flight, and one-line errors when it is down, frozen
or serves no embeddings."""

from __future__ import annotations

import json
import math
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.api import Assistant
from assistant.errors import AssistantError
from assistant.text import split_sentences
from tests.conftest import make_settings
from tests.llm_server import ServerHandle, free_port, require_llama_server, start_llama_server

pytestmark = pytest.mark.llm_server

ROWS = [
    {"id": "bio1", "title": "Aspirin and heart attack risk",
     "abstract": "Daily aspirin lowered the risk of a first heart attack in older adults. Bleeding rose slightly."},
    {"id": "ml1", "title": "Sparse attention for long documents",
     "abstract": "We propose a sparse attention transformer for long documents. It halves memory use."},
    {"id": "geo1", "title": "Glacier retreat in the Alps",
     "abstract": "Alpine glaciers lost a third of their volume since 1990. Summer heat drives the loss."},
    {"id": "chem1", "title": "Catalysts for water splitting",
     "abstract": "A nickel catalyst splits water at low overpotential. It stays stable for 100 hours."},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    handle = start_llama_server(require_llama_server(), tmp_path_factory.mktemp("emb"), threads=1, embedding=True)
    yield handle
    handle.stop()


def _assistant(home: Path, url: str, **index: object) -> Assistant:
    # The chat server's URL is a dead port: everything embedding-related must use embedding_base_url.
    a = Assistant(make_settings(home, home / "cache", openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
                                max_retries=0,
                                index={"embedding": "openai", "embedding_model": "smollm2",
                                       "embedding_base_url": url, **index}))
    a.auto_sample = False
    return a


def _raw(url: str, texts: list[str]) -> np.ndarray:
    body = json.dumps({"model": "smollm2", "input": texts, "encoding_format": "float"}).encode()
    req = urllib.request.Request(f"{url}/embeddings", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        data = json.loads(resp.read())["data"]
    m = np.asarray([d["embedding"] for d in sorted(data, key=lambda d: d["index"])], dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_ingest_and_search_through_a_real_embeddings_server(server: ServerHandle, tmp_path: Path) -> None:
    src = tmp_path / "papers.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    a = _assistant(tmp_path / "home", server.base_url, embedding_request_texts=3, embedding_concurrency=2)
    rep = a.ingest([src])
    n_sent = sum(len(split_sentences(r["abstract"])) for r in ROWS)
    assert rep.papers_total == 4 and rep.chunks_written == 4 and rep.sentences_written == n_sent >= 7
    emb = a.embedder
    assert emb.requests == math.ceil((4 + n_sent) / 3)  # every chunk and sentence, 3 texts a request
    # The stored vectors are the server's own for the same texts (unit length, 576 dimensions).
    col = a.index.vectors.sentences.collection()
    got = col.get(include=["embeddings", "metadatas"])
    stored = {(m["paper_id"], m["start"], m["end"]): np.asarray(v) for m, v in
              zip(got["metadatas"], got["embeddings"], strict=True)}
    keys = sorted(stored)
    abstracts = {r["id"]: r["abstract"] for r in ROWS}
    direct = _raw(server.base_url, [abstracts[p][s:e] for p, s, e in keys])
    assert direct.shape == (n_sent, 576)
    for key, vec in zip(keys, direct, strict=True):
        assert float(stored[key] @ vec) > 0.999, key
    # A question is embedded by the same server and finds its paper.
    hits = a.search("Does aspirin prevent heart attacks?", 4, mode="dense")
    assert hits[0].paper.paper_id == "bio1"


def test_a_down_server_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    a = _assistant(tmp_path / "home", url)
    with pytest.raises(AssistantError) as err:
        a.embedder.embed(["anything"])
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot reach the OpenAI-compatible server at {url}")
    assert msg.endswith("check ASSISTANT_EMBEDDING_BASE_URL")


def test_a_frozen_server_times_out_after_embedding_timeout(server: ServerHandle, tmp_path: Path) -> None:
    a = _assistant(tmp_path / "home", server.base_url, embedding_timeout=1.0)
    a.embedder.embed(["warm"])
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        with pytest.raises(AssistantError) as err:
            a.embedder.embed(["frozen"])
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert str(err.value) == f"the server at {server.base_url} timed out after 1s"


def test_a_server_without_embeddings_is_one_line(tmp_path: Path) -> None:
    chat_only = start_llama_server(require_llama_server(), tmp_path, threads=1)
    try:
        a = _assistant(tmp_path / "home", chat_only.base_url)
        with pytest.raises(AssistantError) as err:
            a.embedder.embed(["anything"])
    finally:
        chat_only.stop()
    msg = str(err.value)
    assert msg.startswith(f"the server at {chat_only.base_url} failed with HTTP 501"), msg
    assert "\n" not in msg and "does not support embeddings" in msg
