"""The one entry point: ingest, papers, search, ask and chat.

The CLI, the evaluation harness and users' code all call this class, so no
behaviour lives only in the CLI.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .errors import AssistantError
from .index.ingest import IngestReport, Reporter, SilentReporter, ingest, sample_paths
from .index.paper_index import PaperIndex
from .records import REFUSAL, Answer, Paper, Source
from .settings import Settings

LLM_BACKENDS = ("extractive", "openai")


class Assistant:
    """Question answering over an index of paper abstracts.

    >>> a = Assistant()                      # settings from env / config file
    >>> ans = a.ask("What does ARRA align LLM hidden states with?")
    >>> ans.text, [c.title for c in ans.citations]
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings.with_(**overrides) if settings else Settings.load(**overrides)
        self.index = PaperIndex(self.settings)
        self._embedder: Any = None
        self._retriever: Any = None
        self._chat_client: Any = None
        self.auto_sample = True
        """Build the index from the bundled sample on first use when there is none."""

    # -- components ----------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from .index.embeddings import get_embedder

            self._embedder = get_embedder(self.settings)
        return self._embedder

    @property
    def retriever(self) -> Any:
        if self._retriever is None:
            from .retrieval import HybridRetriever

            self._retriever = HybridRetriever(self.index, self.embedder)
        return self._retriever

    def chat_client(self) -> Any:
        if self._chat_client is None:
            from .llm import ChatClient

            self._chat_client = ChatClient(self.settings)
        return self._chat_client

    # -- index ---------------------------------------------------------------------
    def ingest(self, paths: Sequence[str | Path], *, prune: bool = False, rebuild: bool = False,
               wait: bool = True, progress: bool | Reporter = False,
               batch_papers: int = 256, after_batch: Callable[[int], None] | None = None) -> IngestReport:
        """Read, chunk, embed and store papers; incremental and safe to re-run."""
        reporter = _reporter(progress)
        try:
            return ingest(self.index, list(paths), prune=prune, rebuild=rebuild, wait=wait, reporter=reporter,
                          batch_papers=batch_papers, after_batch=after_batch)
        finally:
            close = getattr(reporter, "close", None)
            if close:
                close()

    def ensure_index(self, progress: bool | Reporter = False) -> None:
        """First use with no index: build it from the bundled sample so `ask` works right away."""
        if not self.auto_sample or self.settings.server_mode:
            return
        if self.index.exists() and self.index.catalogue.count()[0] > 0:
            return
        reporter = _reporter(progress)
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

        ``on_token`` streams the raw model output (openai backend); the returned
        Answer is the checked one. ``retrieval_query`` lets chat search with a
        condensed question while answering the user's words.
        """
        question = question.strip()
        if not question:
            raise AssistantError("the question is empty")
        backend = backend or self.settings.llm
        if backend not in LLM_BACKENDS:
            raise AssistantError(f"backend '{backend}': expected one of {', '.join(LLM_BACKENDS)}")
        t0 = time.perf_counter()
        self.ensure_index()
        result = self.retriever.retrieve(retrieval_query or question, k, since=since, until=until)
        timings = {f"retrieve_{k_}": v for k_, v in result.timings_ms.items()}
        sources = result.sources
        lex = self.index.lexical()
        t = time.perf_counter()
        checks: dict[str, Any] = {}
        from .answering.citations import check_answer

        if backend == "extractive":
            from .answering.extractive import answer as extract

            ext = extract(question, sources, lex.idf, chunk_sims=result.chunk_sims)
            raw = ext.text
            checks["refusal_reason"] = ext.reason
        else:
            from .answering.generative import answer_with_llm

            raw, llm_checks = answer_with_llm(self.chat_client(), question, sources, self.settings, lex.idf,
                                              on_token=on_token, chunk_sims=result.chunk_sims)
            checks.update(llm_checks)
        timings["answer"] = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        checked = check_answer(raw, sources, lex.idf)
        timings["check"] = (time.perf_counter() - t) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        checks.update(checked.checks)
        return Answer(
            question=question, text=checked.text, refused=checked.refused, citations=checked.citations,
            sources=sources, backend={"llm": self._llm_name(backend), "embedding": self.settings.embedding_model_name},
            timings_ms=timings, checks=checks)

    def _llm_name(self, backend: str) -> str:
        return "extractive" if backend == "extractive" else f"openai:{self.settings.llm_model}"

    def chat(self, backend: str | None = None) -> ChatSession:
        return ChatSession(self, backend=backend)


_FOLLOW_UP = re.compile(r"\b(it|its|they|their|them|this|that|these|those|the (method|paper|approach|model|work))\b",
                        re.IGNORECASE)


class ChatSession:
    """Multi-turn questions: follow-ups are made standalone before retrieval
    (an LLM condenses with the openai backend; the extractive one carries the topic)."""

    def __init__(self, assistant: Assistant, backend: str | None = None) -> None:
        self.assistant = assistant
        self.backend = backend or assistant.settings.llm
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
        if not self.history:
            return question
        if self.backend == "openai":
            from .answering.generative import condense

            pairs = [(q, a.text) for q, a in self.history]
            return condense(self.assistant.chat_client(), pairs, question)
        prev_q, prev = self.history[-1]
        words = question.split()
        if _FOLLOW_UP.search(question) or len(words) < 6:
            topic = prev.citations[0].title if prev.citations and not prev.refused else prev_q
            return f"{question} ({topic})"
        return question

    def ask(self, question: str, *, on_token: Callable[[str], None] | None = None, **kwargs: Any) -> Answer:
        query = self.standalone(question)
        ans = self.assistant.ask(question if query == question else query, backend=self.backend,
                                 on_token=on_token, retrieval_query=query, **kwargs)
        self.history.append((question, ans))
        return ans


def _reporter(progress: bool | Reporter) -> Reporter:
    if progress is True:
        from .cli.progress import RichReporter

        return RichReporter()
    if progress is False or progress is None:
        return SilentReporter()
    return progress


__all__ = ["REFUSAL", "Assistant", "ChatSession"]
