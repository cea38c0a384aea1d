"""The openai backend against llama.cpp's own ``llama-server`` executable (built for this CPU by
.ci/build_llama_server.sh), and prompt-lookup decoding on both it and the xllamacpp server.

The docs recommend either server and prompt lookup as a server setting; these run the real ones with the
SmolLM2 fixture. Without an executable the binary tests skip (CI fails them instead: it builds one).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.records import REFUSAL
from tests.llm_server import (
    ServerHandle,
    find_gguf,
    require_llama_server,
    require_server_binary,
    start_llama_server,
)
from tests.test_answering import validate_answer_schema
from tests.test_openai_backend import _openai_assistant

pytestmark = pytest.mark.llm_server

COPY = ("ARRA aligns the hidden states of a large language model with the features of a frozen "
        "diffusion image encoder, so the language model learns to generate images without changing "
        "its architecture.")


def _smollm2() -> Path:
    """The SmolLM2 fixture; the binary needs only the GGUF, not xllamacpp."""
    return find_gguf() or require_llama_server()


@pytest.fixture(scope="module")
def binary_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    gguf = _smollm2()
    binary = require_server_binary()
    server = start_llama_server(gguf, tmp_path_factory.mktemp("llama-bin"), n_ctx=4096, binary=binary)
    yield server
    server.stop()


def test_the_openai_backend_works_against_llama_server(binary_server: ServerHandle, sample_home: Path,
                                                       embed_cache: Path) -> None:
    a = _openai_assistant(sample_home, embed_cache, binary_server.base_url)
    try:
        tokens: list[str] = []
        ans = a.ask("What does ARRA align LLM hidden states with?", k=3, on_token=tokens.append)
        d = ans.to_dict()
        validate_answer_schema(d)
        assert d["backend"]["llm"] == "openai:smollm2"
        # llama-server honours response_format json_schema as the xllamacpp build does, and streams.
        assert ans.checks["structured"] is True and "structured_fallback" not in ans.checks
        assert tokens, "nothing was streamed"
        if ans.refused:
            assert ans.text == REFUSAL and not ans.citations
        else:
            ids = {s.paper.paper_id for s in ans.sources}
            assert ans.citations and all(c.paper_id in ids for c in ans.citations)
            for c in ans.citations:
                assert c.quote is None or c.quote in a.get_paper(c.paper_id).abstract
    finally:
        a.index.close()


def _copy_timings(base_url: str) -> dict[str, float]:
    body = {"model": "m", "temperature": 0, "max_tokens": 60, "cache_prompt": False,
            "messages": [{"role": "user", "content": f"Repeat this sentence exactly, nothing else:\n{COPY}"}]}
    req = urllib.request.Request(f"{base_url}/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["timings"]


@pytest.mark.parametrize("kind", ["xllamacpp", "llama-server"])
def test_prompt_lookup_drafts_tokens_copied_from_the_prompt(kind: str, tmp_path: Path) -> None:
    """With ``lookup`` the server drafts from the prompt and accepts what the model copies; without it,
    nothing is drafted (so the benchmarks' lookup rows measure what they say)."""
    binary = require_server_binary() if kind == "llama-server" else None
    gguf = _smollm2() if binary else require_llama_server()
    for lookup in (0, 8):
        server = start_llama_server(gguf, tmp_path, n_ctx=2048, lookup=lookup, binary=binary)
        try:
            t = _copy_timings(server.base_url)
        finally:
            server.stop()
        if lookup:
            assert t.get("draft_n", 0) > 0 and t.get("draft_n_accepted", 0) > 0, t
        else:
            assert t.get("draft_n", 0) == 0, t
