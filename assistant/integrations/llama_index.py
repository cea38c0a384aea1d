"""The assistant as LlamaIndex components, for people who build their own llama-index pipelines.

``Assistant.as_retriever()`` returns an ``AssistantRetriever`` (a llama-index ``BaseRetriever``): one
``NodeWithScore`` per retrieved paper, best first, the node's text the abstract and its metadata the
paper's id, title, date, authors and url plus where the query matched (``best_chunk`` and ``chunk_spans``:
character offsets into the abstract, best first). It drops into ``RetrieverQueryEngine``,
``QueryFusionRetriever``, routers and rerankers like any other retriever.

``Assistant.as_query_engine()`` returns an ``AssistantQueryEngine`` (a ``BaseQueryEngine``): the response
text is the assistant's checked answer with its ``[n]`` markers, and ``source_nodes`` are its citations,
one node per citation, the node's text the exact supporting quote from the abstract and its metadata the
marker, paper id, title, date and the quote's offsets. A refusal has no source nodes.

This module imports llama-index at import time; ``assistant.api`` imports it only when asked, so the
rest of the assistant never pays for it.
"""

from __future__ import annotations

import asyncio
from hashlib import sha256
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ..display import web_link

#: Metadata an LLM prompt or an embedding should not see (offsets and scores are for code, not for models).
_NOT_FOR_MODELS = ["paper_id", "best_chunk", "chunk_spans", "dense_score", "rank", "authors", "url",
                   "marker", "quote_start", "quote_end", "content_hash"]


class PaperNode(TextNode):
    """A paper's abstract as a node. Its identity (``hash``) is the paper and its content, not the
    query-dependent metadata, so fusion retrievers merge the same paper found by two retrievers."""

    @property
    def hash(self) -> str:
        ident = f"{self.metadata.get('paper_id', self.id_)}\x00{self.metadata.get('content_hash', '')}\x00{self.text}"
        return sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()


def paper_node(source: Any) -> NodeWithScore:
    """One retrieved ``Source`` as a ``NodeWithScore`` (score = the assistant's fused retrieval score)."""
    paper = source.paper
    spans = [[c.start, c.end] for c in source.chunks]
    node = PaperNode(
        id_=paper.paper_id, text=paper.abstract,
        metadata={"paper_id": paper.paper_id, "title": paper.title, "date": paper.date,
                  "authors": ", ".join(paper.authors), "url": web_link(paper.url), "content_hash": paper.content_hash,
                  "rank": source.rank, "dense_score": source.dense_score,
                  "best_chunk": spans[0] if spans else None, "chunk_spans": spans},
        excluded_llm_metadata_keys=list(_NOT_FOR_MODELS), excluded_embed_metadata_keys=list(_NOT_FOR_MODELS))
    return NodeWithScore(node=node, score=float(source.score))


def citation_node(citation: Any, source: Any | None) -> NodeWithScore:
    """One checked citation as a node: text = the exact quote (the abstract when the checker found none)."""
    abstract = source.paper.abstract if source is not None else ""
    quote = citation.quote if citation.quote is not None else abstract
    start = abstract.find(quote) if quote else -1
    node = TextNode(
        id_=f"{citation.paper_id}#{citation.marker}", text=quote,
        metadata={"marker": citation.marker, "paper_id": citation.paper_id, "title": citation.title,
                  "date": citation.date, "quote_start": start if start >= 0 else None,
                  "quote_end": start + len(quote) if start >= 0 else None},
        excluded_llm_metadata_keys=list(_NOT_FOR_MODELS), excluded_embed_metadata_keys=list(_NOT_FOR_MODELS))
    return NodeWithScore(node=node, score=float(source.score) if source is not None else None)


class AssistantRetriever(BaseRetriever):
    """Hybrid (or dense / BM25) paper retrieval of one Assistant, as a llama-index retriever."""

    def __init__(self, assistant: Any, k: int | None = None, *, since: str | int | None = None,
                 until: str | int | None = None, mode: str = "hybrid",
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.assistant, self.k, self.since, self.until, self.mode = assistant, k, since, until, mode

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Like ``ask`` (and unlike ``search``): a home never written to gets the bundled sample, and a
        # home with no papers is a one-line error naming `assistant ingest`, rather than no nodes at all.
        self.assistant.ensure_index()
        sources = self.assistant.search(query_bundle.query_str, self.k, since=self.since, until=self.until,
                                        mode=self.mode)
        return [paper_node(s) for s in sources]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)


class AssistantQueryEngine(BaseQueryEngine):
    """``Assistant.ask`` as a llama-index query engine; the citations are the response's source nodes."""

    def __init__(self, assistant: Any, k: int | None = None, *, since: str | int | None = None,
                 until: str | int | None = None, backend: str | None = None,
                 callback_manager: CallbackManager | None = None) -> None:
        super().__init__(callback_manager=callback_manager)
        self.assistant, self.k, self.since, self.until, self.backend = assistant, k, since, until, backend

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {}  # the prompts live in the assistant's prompts/*.txt, not in llama-index

    def _query(self, query_bundle: QueryBundle) -> Response:
        answer = self.assistant.ask(query_bundle.query_str, k=self.k, since=self.since, until=self.until,
                                    backend=self.backend)
        by_paper = {s.paper.paper_id: s for s in answer.sources}
        nodes = [citation_node(c, by_paper.get(c.paper_id)) for c in answer.citations]
        return Response(response=answer.text, source_nodes=nodes,
                        metadata={"refused": answer.refused, "answer": answer.to_dict()})

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        return await asyncio.to_thread(self._query, query_bundle)
