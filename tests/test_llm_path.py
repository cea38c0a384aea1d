"""The LLM path with a real small local model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) behind llama.cpp's
OpenAI-compatible server, through the openai backend, on the sample corpus.

Model quality varies; the checked-citation properties may not: every shown sentence is cited and
supported by each paper it cites, every quote is an exact substring of the cited abstract, and a question
the collection cannot answer is refused. Three questions: about two minutes on 2 idle cores.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.answering.generative import support
from assistant.api import Assistant
from assistant.records import REFUSAL, Answer
from tests.conftest import make_settings
from tests.llm_server import ServerHandle, require_llama_server, start_llama_server
from tests.test_answering import validate_answer_schema

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]

ANSWERABLE = [
    "What does ARRA align LLM hidden states with?",
    "Which paper shows that a base LLM can be aligned without any fine-tuning, using only a system prompt "
    "and a handful of fixed stylistic in-context examples?",
]
UNANSWERABLE = "What GPU cluster and how many GPU hours did the DeepSeek-V3 pretraining run use?"


@pytest.fixture(scope="module")
def qwen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    gguf = require_llama_server("qwen")
    server = start_llama_server(gguf, tmp_path_factory.mktemp("qwen"), n_ctx=4096, threads=2, ready_timeout=300)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def assistant(qwen: ServerHandle, sample_home: Path, embed_cache: Path) -> Iterator[Assistant]:
    a = Assistant(make_settings(sample_home, embed_cache, llm="openai", openai_base_url=qwen.base_url,
                                llm_model="qwen2.5-coder-1.5b-instruct", request_timeout=600, max_retries=0))
    a.auto_sample = False
    yield a
    a.index.close()


def _assert_checked(a: Assistant, ans: Answer) -> None:
    validate_answer_schema(ans.to_dict())
    if ans.refused:
        assert ans.text == REFUSAL and not ans.citations
        return
    assert ans.checks["uncited_sentences"] == [] and ans.checks["unknown_markers"] == 0
    by_marker = {c.marker: c for c in ans.citations}
    idf = a.index.lexical().idf
    for row in ans.checks["sentences"]:
        assert row["markers"], f"uncited sentence shown: {row['sentence']!r}"
        bare = re.sub(r"\s*\[\d+\]", "", row["sentence"])
        for m in row["markers"]:
            paper = a.get_paper(by_marker[m].paper_id)
            assert paper is not None
            quote = row["quotes"][str(m)]
            assert quote and quote in paper.abstract, f"quote is not an exact substring: {quote!r}"
            # Each cited paper supports the sentence on its own (no citation rides along).
            verdict = support(bare, [f"{paper.title}. {paper.abstract}"], idf, a.settings.llm.min_support)
            assert verdict.supported, f"unsupported citation [{m}] shown: {row['sentence']!r} ({verdict})"


@pytest.mark.parametrize("question", ANSWERABLE)
def test_answerable_question_gets_checked_citations(assistant: Assistant, question: str) -> None:
    tokens: list[str] = []
    ans = assistant.ask(question, on_token=tokens.append)
    _assert_checked(assistant, ans)
    assert not ans.refused, ans.checks
    assert ans.checks["structured"] is True  # llama.cpp's server honours response_format json_schema
    assert ans.checks["usage"]["prompt_tokens"] > 0


def test_instructions_are_read_once_by_a_caching_server(qwen: ServerHandle, assistant: Assistant) -> None:
    """llama.cpp's server keeps the last prompt's KV cache (cache_prompt): the instructions are one
    fixed prefix, so a second question reads only its evidence and question. Token counts are the
    server's own; max_tokens=1 keeps it cheap."""
    from assistant.answering.generative import build_messages, select_evidence
    from assistant.llm import ChatClient

    client = ChatClient(assistant.settings)
    idf = assistant.index.lexical().idf
    usages = []
    for q in (ANSWERABLE[0], UNANSWERABLE):
        msgs = build_messages(q, select_evidence(q, assistant.search(q, k=3), idf), structured=True)
        client.complete(msgs, max_tokens=1)
        usages.append(client.last_usage)
    _, second = usages
    assert second is not None and second["cached_tokens"] >= 100, second  # the system prompt: ~150 tokens
    assert second["prompt_tokens"] - second["cached_tokens"] < second["prompt_tokens"] * 0.75


def test_unanswerable_question_is_refused(assistant: Assistant) -> None:
    ans = assistant.ask(UNANSWERABLE)
    _assert_checked(assistant, ans)
    assert ans.refused, (ans.text, ans.checks)


def test_verify_with_the_real_model_quotes_the_papers_own_sentences(assistant: Assistant) -> None:
    """``verify`` on the LLM path: the model labels the paper the offline model keeps, and whatever it
    says, every quote is an exact sentence of that paper; a claim nothing bears on costs no request."""
    claim = "ARRA aligns LLM hidden states with visual representations from external visual foundation models."
    v = assistant.verify(claim)
    d = v.to_dict()
    assert d["backend"]["labels"].startswith("openai:") and d["checks"]["llm_papers"] == 1, d["checks"]
    assert d["verdict"] in ("SUPPORT", "CONTRADICT", "MIXED", "NOT_ENOUGH_EVIDENCE")
    for p in d["papers"]:
        abstract = assistant.get_paper(p["paper_id"]).abstract
        assert 1 <= len(p["quotes"]) <= 3
        for q in p["quotes"]:
            assert abstract[q["start"]:q["end"]] == q["text"]
    off = assistant.verify("Daily aspirin reduces the risk of a first stroke in elderly women.").to_dict()
    assert off["verdict"] == "NOT_ENOUGH_EVIDENCE" and off["checks"]["llm_papers"] == 0
    assert "llm" not in off["timings_ms"]
