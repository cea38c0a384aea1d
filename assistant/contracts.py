"""The stable JSON contracts as pydantic models: what ``Answer.to_dict()`` (``assistant ask --json``,
``POST /v1/ask``) returns.

Why a model beside the dataclass: the records are built for the code (an Answer holds whole Paper
objects), the JSON is a narrower, renamed view of them. The docs' JSON schema is generated from these
models, and a test validates real answers against them, so the documented schema cannot drift from
what ``to_dict`` writes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CitationJSON(_Strict):
    """One resolved ``[n]`` marker of the answer."""

    marker: int = Field(description="The n of [n] in the answer text.")
    paper_id: str = Field(description="arXiv id when known, else the record's id, else a hash of the title.")
    title: str
    quote: str | None = Field(description="The abstract sentence that best supports the citing sentence; "
                                          "always an exact substring of the paper's abstract.")


class SourceJSON(_Strict):
    """One retrieved paper, best first."""

    rank: int = Field(ge=1)
    paper_id: str
    title: str
    score: float = Field(description="Fused retrieval score (higher is better).")


class AnswerJSON(_Strict):
    """A checked answer: every sentence cited, or the refusal sentence. All keys but ``checks`` are stable."""

    question: str
    answer: str = Field(description="The answer text with [n] markers matching citations[].marker, "
                                    "or 'The indexed papers do not answer this.'")
    refused: bool
    citations: list[CitationJSON]
    sources: list[SourceJSON] = Field(description="The retrieved papers, best first, up to k (default 10).")
    backend: dict[str, str] = Field(description='{"llm": answer backend label, "embedding": embedding model}')
    timings_ms: dict[str, float] = Field(description="retrieve_embed_query, retrieve_dense, retrieve_bm25, "
                                                     "answer, check, total ... in milliseconds.")
    checks: dict[str, Any] = Field(description="Debugging detail, not stable: unknown_markers, "
                                               "uncited_sentences, unsupported_citations, sentences, "
                                               "refusal_reason, answer_shape ...")


#: The documented contracts by the record they describe (docs/gen_reference.py renders each).
CONTRACTS: dict[str, type[BaseModel]] = {"Answer": AnswerJSON}
