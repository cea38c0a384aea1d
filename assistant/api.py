"""The one entry point: ingest, papers, search, ask and chat.

The CLI, the evaluation harness and users' code all call this class, so no
behaviour lives only in the CLI.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AssistantError
from .index.ingest import IngestReport, Reporter, SilentReporter, ingest, sample_paths
from .index.paper_index import PaperIndex
from .records import REFUSAL, Answer, Paper, Source
from .settings import Settings

if TYPE_CHECKING:
    from .answering.base import Answerer
    from .index.embeddings import Embedder
    from .retrieval import HybridRetriever


class Assistant:
    """Question answering over an index of paper abstracts.

    >>> a = Assistant()                      # settings from env / config file
    >>> ans = a.ask("What does ARRA align LLM hidden states with?")
    >>> ans.text, [c.title for c in ans.citations]
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings.with_(**overrides) if settings else Settings.load(**overrides)
        self.index = PaperIndex(self.settings)
        self._embedder: Embedder | None = None
        self._retriever: HybridRetriever | None = None
        self._answerers: dict[str, Answerer] = {}
        self._chat_client: Any = None
        self._lock = threading.RLock()
        self.auto_sample = True
        """Build the index from the bundled sample on first use when there is none."""

    # -- components ----------------------------------------------------------------
    # Components are created on first use, under a lock so concurrent callers (the
    # server's worker threads, eval --concurrency) share one of each.
    @property
    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from .index.embeddings import get_embedder

                self._embedder = get_embedder(self.settings)
            return self._embedder

    @property
    def retriever(self) -> HybridRetriever:
        with self._lock:
            if self._retriever is None:
                from .retrieval import HybridRetriever

                self._retriever = HybridRetriever(self.index, self.embedder)
            return self._retriever

    def answerer(self, name: str | None = None) -> Answerer:
        """The answer backend registered under ``name`` (default: settings.llm.backend)."""
        from .registry import answerers

        name = name or self.settings.llm.backend
        with self._lock:
            if name not in self._answerers:
                self._answerers[name] = answerers.create(name, self.settings)
            return self._answerers[name]

    def chat_client(self) -> Any:
        """The OpenAI-compatible client (LLM judge, question drafting)."""
        from .llm import ChatClient

        with self._lock:
            if self._chat_client is None:
                self._chat_client = ChatClient(self.settings)
            return self._chat_client

    # -- index ---------------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], *, prune: bool = False, rebuild: bool = False,
               wait: bool = True, progress: Reporter | None = None,
               batch_papers: int = 256, after_batch: Callable[[int], None] | None = None) -> IngestReport:
        """Read, chunk, embed and store papers; incremental and safe to re-run."""
        return ingest(self.index, list(paths), prune=prune, rebuild=rebuild, wait=wait,
                      reporter=progress or SilentReporter(), batch_papers=batch_papers, after_batch=after_batch)

    def ensure_index(self, progress: Reporter | None = None) -> None:
        """First use with no index: build it from the bundled sample so `ask` works right away."""
        if not self.auto_sample or self.settings.server_mode:
            return
        if self.index.exists() and self.index.catalogue.count()[0] > 0:
            return
        reporter = progress or SilentReporter()
        reporter.message(f"no index in {self.index.dir}; building it from the bundled sample corpus ...")
        self.ingest(sample_paths(), progress=reporter)

    def status(self) -> dict[str, Any]:
        out = self.index.status().to_dict()
        out["home"] = str(self.settings.home)
        return out

    def papers(self, order: str = "title") -> list[Paper]:
        self.ensure_index()
        return list(self.index.catalogue.iter_papers(order=order))

    def get_paper(self, paper_id: str) -> Paper | None:
        if not self.index.exists():
            return None
        return self.index.catalogue.get(paper_id)

    def search(self, query: str, k: int | None = None, *, since: str | int | None = None,
               until: str | int | None = None, mode: str = "hybrid") -> list[Source]:
        """Retrieval only: papers best first, no answer."""
        self.ensure_index()
        return self.retriever.retrieve(query, k, since=since, until=until, mode=mode).sources

    # -- answers -------------------------------------------------------------------
    def ask(self, question: str, *, k: int | None = None, since: str | int | None = None,
            until: str | int | None = None, backend: str | None = None,
            on_token: Callable[[str], None] | None = None, retrieval_query: str | None = None) -> Answer:
        """Answer ``question`` from the indexed abstracts, every sentence cited.

        ``on_token`` streams the raw model output (backends that stream); the returned
        Answer is the checked one. ``retrieval_query`` searches with other words than
        the question (chat passes the standalone form of a follow-up there).
        """
        question = question.strip()
        if not question:
            raise AssistantError("the question is empty")
        answerer = self.answerer(backend)
        t0 = time.perf_counter()
        self.ensure_index()
        result = self.retriever.retrieve(retrieval_query or question, k, since=since, until=until)
        timings = {f"retrieve_{k_}": v for k_, v in result.timings_ms.items()}
        sources = result.sources
        lex = self.index.lexical()
        from .answering.base import AnswerContext
        from .answering.citations import check_answer

        t = time.perf_counter()
        draft = answerer.answer(question, sources, AnswerContext(idf=lex.idf, chunk_sims=result.chunk_sims,
                                                                 on_token=on_token))
        timings["answer"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        checked = check_answer(draft.text, sources, lex.idf)
        timings["check"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        checks: dict[str, Any] = {}
        if draft.reason is not None:
            checks["refusal_reason"] = draft.reason
        checks.update(checked.checks)
        checks.update(draft.checks)
        return Answer(
            question=question, text=checked.text, refused=checked.refused, citations=checked.citations,
            sources=sources, backend={"llm": answerer.label(), "embedding": self.settings.embedding_model_name},
            timings_ms=timings, checks=checks)

    def chat(self, backend: str | None = None) -> ChatSession:
        return ChatSession(self, backend=backend)

    # -- LlamaIndex ----------------------------------------------------------------
    def as_retriever(self, k: int | None = None, *, since: str | int | None = None, until: str | int | None = None,
                     mode: str = "hybrid") -> Any:
        """A llama-index ``BaseRetriever``: one ``NodeWithScore`` per paper (integrations/llama_index.py)."""
        from .integrations.llama_index import AssistantRetriever

        return AssistantRetriever(self, k, since=since, until=until, mode=mode)

    def as_query_engine(self, k: int | None = None, *, since: str | int | None = None,
                        until: str | int | None = None, backend: str | None = None) -> Any:
        """A llama-index ``BaseQueryEngine`` answering with ``ask``; its citations are the ``source_nodes``."""
        from .integrations.llama_index import AssistantQueryEngine

        return AssistantQueryEngine(self, k, since=since, until=until, backend=backend)


_FOLLOW_UP = re.compile(r"\b(it|its|they|their|them|this|that|these|those|the (method|paper|approach|model|work))\b",
                        re.IGNORECASE)


class ChatSession:
    """Multi-turn questions: follow-ups are made standalone before retrieval
    (an LLM condenses with the openai backend; the extractive one carries the topic)."""

    def __init__(self, assistant: Assistant, backend: str | None = None) -> None:
        self.assistant = assistant
        self.backend = backend or assistant.settings.llm.backend
        assistant.answerer(self.backend)  # an unknown backend fails here, not at the first question
        self.history: list[tuple[str, Answer]] = []

    def __enter__(self) -> ChatSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:
        self.history.clear()

    @property
    def last(self) -> Answer | None:
        return self.history[-1][1] if self.history else None

    def standalone(self, question: str) -> str:
        """The follow-up as a question that stands alone (backends see no history)."""
        if not self.history:
            return question
        pairs = [(q, a.text) for q, a in self.history]
        condensed = self.assistant.answerer(self.backend).condense(pairs, question)
        if condensed:
            return condensed
        prev_q, prev = self.history[-1]
        words = question.split()
        if _FOLLOW_UP.search(question) or len(words) < 6:
            topic = prev.citations[0].title if prev.citations and not prev.refused else prev_q
            return f"{question} ({topic})"
        return question

    def ask(self, question: str, *, on_token: Callable[[str], None] | None = None, **kwargs: Any) -> Answer:
        """Retrieve and answer with the standalone form (the backend sees no history);
        the Answer keeps the user's words, and ``checks.standalone_question`` the form used."""
        query = self.standalone(question)
        ans = self.assistant.ask(query, backend=self.backend, on_token=on_token, **kwargs)
        if query != question:
            ans.checks["standalone_question"] = query
            ans.question = question.strip()
        self.history.append((question, ans))
        return ans


__all__ = ["REFUSAL", "Assistant", "ChatSession", "Reporter", "SilentReporter", "IngestReport"]
