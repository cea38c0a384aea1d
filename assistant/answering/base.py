"""The seam every answer backend plugs into.

A backend turns a question and the retrieved papers into raw text with ``[n]``
markers (numbered as the sources are given); the citation checker then makes
what users see. Backends never see the conversation: chat condenses follow-ups
first, with the backend's help when it has an LLM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..records import Source


@dataclass
class AnswerContext:
    """What a backend may use besides the question and sources."""

    idf: Callable[[list[str]], dict[str, float]]
    """BM25 idf of stemmed tokens in this index (rare words weigh more)."""
    chunk_sims: dict[str, float] | None = None
    """Cosine similarity of each retrieved chunk to the query, by chunk id."""
    sentence_sims: dict[tuple[str, int, int], float] | None = None
    """Cosine similarity of each abstract sentence of the sources to the query, keyed
    (paper_id, start, end) with ``text.split_sentences(abstract)`` offsets; computed from
    vectors stored at ingest. A sentence without a stored vector is absent (older home,
    ``index.sentence_vectors`` off): backends must work without it."""
    on_token: Callable[[str], None] | None = None
    """Called with raw text as it streams (backends with ``streams = True``)."""


@dataclass
class Draft:
    """A backend's raw answer, before the citation checker."""

    text: str
    reason: str | None = None
    """Why it refused ("" when it answered); None for backends that do not say."""
    checks: dict[str, Any] = field(default_factory=dict)
    """Backend-specific findings merged into ``Answer.checks``."""


@runtime_checkable
class Answerer(Protocol):
    name: str
    streams: bool

    def label(self) -> str:
        """What ``Answer.backend['llm']`` says, e.g. ``extractive`` or ``openai:gpt-4o-mini``."""
        ...

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft: ...

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        """A standalone form of a follow-up, or None to let chat carry the topic itself."""
        ...
