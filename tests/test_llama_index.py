"""The assistant inside stock llama-index pipelines, on the real sample index.

llama-index's own MockLLM (shipped with llama_index.core; with no max_tokens it answers with the prompt it
was given) stands in for a model, so the test can read what the pipeline put in front of the LLM.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import ResponseMode
from llama_index.core.retrievers import QueryFusionRetriever

from assistant.records import REFUSAL

QUESTION = "Which paper proposes token-level direct preference optimization?"
TDPO = "Token-level Direct Preference Optimization"


def test_retriever_feeds_a_retriever_query_engine(sample_assistant: Any) -> None:
    a = sample_assistant
    retriever = a.as_retriever(k=3)
    assert isinstance(retriever, BaseRetriever)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), response_mode=ResponseMode.SIMPLE_SUMMARIZE)
    response = engine.query(QUESTION)
    expected = a.search(QUESTION, 3)
    nodes = response.source_nodes
    assert [n.node.node_id for n in nodes] == [s.paper.paper_id for s in expected]
    assert nodes[0].node.metadata["title"] == TDPO
    for n, src in zip(nodes, expected, strict=True):
        paper = a.get_paper(src.paper.paper_id)
        meta = n.node.metadata
        assert (meta["paper_id"], meta["title"], meta["date"]) == (paper.paper_id, paper.title, paper.date)
        assert n.node.get_content() == paper.abstract and n.score == src.score
        # The chunk offsets point into the abstract at the chunks retrieval matched, best first.
        assert meta["chunk_spans"] == [[c.start, c.end] for c in src.chunks] and meta["best_chunk"] == [
            src.chunks[0].start, src.chunks[0].end]
        assert [paper.abstract[s:e] for s, e in meta["chunk_spans"]] == [c.text for c in src.chunks]
        # What the LLM saw: title and abstract, not the offsets.
        assert paper.title in str(response) and paper.abstract[:200] in str(response)
    assert "chunk_spans" not in str(response) and "best_chunk" not in str(response)
    assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)


def test_retrievers_fuse_in_query_fusion_retriever(sample_assistant: Any) -> None:
    a = sample_assistant
    dense, bm25 = a.as_retriever(k=6, mode="dense"), a.as_retriever(k=6, mode="bm25")
    fusion = QueryFusionRetriever([dense, bm25], llm=MockLLM(), num_queries=1, mode="reciprocal_rerank",
                                  similarity_top_k=12, use_async=False)
    nodes = fusion.retrieve(QUESTION)
    dense_ids = [s.paper.paper_id for s in a.search(QUESTION, 6, mode="dense")]
    bm25_ids = [s.paper.paper_id for s in a.search(QUESTION, 6, mode="bm25")]
    ids = [n.node.node_id for n in nodes]
    # Each paper once, although the two retrievers matched it at different chunks (metadata differ).
    assert len(ids) == len(set(ids)) and set(ids) == set(dense_ids) | set(bm25_ids)
    assert len(ids) < len(dense_ids) + len(bm25_ids)
    # Reciprocal rank fusion (k = 60) summed over both retrievers: a paper both found is ONE entry whose
    # score adds both ranks (llama-index merges by node hash, so the paper node's hash is its identity).
    expected = {pid: sum(1 / (ranks.index(pid) + 60) for ranks in (dense_ids, bm25_ids) if pid in ranks)
                for pid in ids}
    assert {n.node.node_id: n.score for n in nodes} == pytest.approx(expected)
    assert ids[0] in set(dense_ids) & set(bm25_ids)
    assert nodes[0].node.metadata["title"] == TDPO
    # The async path of the stock fusion retriever runs ours too.
    async_nodes = QueryFusionRetriever([dense, bm25], llm=MockLLM(), num_queries=1, mode="reciprocal_rerank",
                                       similarity_top_k=12, use_async=True).retrieve(QUESTION)
    assert [n.node.node_id for n in async_nodes] == ids


def test_query_engine_source_nodes_are_the_checked_citations(sample_assistant: Any) -> None:
    a = sample_assistant
    engine = a.as_query_engine(k=5)
    assert isinstance(engine, BaseQueryEngine)
    response = engine.query(QUESTION)
    answer = a.ask(QUESTION, k=5)  # the extractive backend is deterministic
    assert response.response == answer.text and response.metadata["refused"] is False
    assert response.metadata["answer"]["citations"] == [c.to_dict() for c in answer.citations]
    assert answer.citations and len(response.source_nodes) == len(answer.citations)
    for n, c in zip(response.source_nodes, answer.citations, strict=True):
        meta = n.node.metadata
        assert (meta["marker"], meta["paper_id"], meta["title"]) == (c.marker, c.paper_id, c.title)
        assert f"[{c.marker}]" in response.response
        abstract = a.get_paper(c.paper_id).abstract
        assert n.node.get_content() == c.quote and c.quote in abstract
        assert abstract[meta["quote_start"]:meta["quote_end"]] == c.quote
    assert response.source_nodes[0].node.metadata["title"] == TDPO
    assert asyncio.run(engine.aquery(QUESTION)).response == answer.text


def test_query_engine_refusal_has_no_source_nodes(sample_assistant: Any) -> None:
    response = sample_assistant.as_query_engine().query("What is the boiling point of mercury?")
    assert response.response == REFUSAL and response.source_nodes == [] and response.metadata["refused"] is True


def test_bad_k_or_dates_fail_when_the_retriever_is_made(sample_assistant: Any) -> None:
    """as_retriever(k=0) was accepted and failed at its first retrieve, far from the mistake."""
    from assistant.errors import AssistantError

    with pytest.raises(AssistantError, match="k must be at least 1"):
        sample_assistant.as_retriever(k=0)
    with pytest.raises(AssistantError, match="not a real date"):
        sample_assistant.as_query_engine(since="2024-13")
    with pytest.raises(AssistantError, match="retrieval mode 'x': expected one of hybrid, dense, bm25"):
        sample_assistant.as_retriever(mode="x")


def test_llama_index_loads_only_when_asked() -> None:
    code = ("import sys, assistant.api; a = sys.modules; print(any(m.startswith('llama_index') for m in a)); "
            "import assistant.integrations; print(any(m.startswith('llama_index') for m in a))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
