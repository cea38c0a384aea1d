"""The one entry point: ingest, papers, search, ask and chat.

The CLI, the evaluation harness and users' code all call this class, so no
behaviour lives only in the CLI.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AssistantError, IndexStateError
from .index.ingest import IngestReport, Reporter, SilentReporter, ingest, sample_paths
from .index.paper_index import PaperIndex
from .records import REFUSAL, Answer, Paper, Source
from .settings import Settings

if TYPE_CHECKING:
    from .answering.base import Answerer
    from .index.embeddings import Embedder
    from .retrieval import HybridRetriever
    from .verification import Verdicts


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
        try:
            return ingest(self.index, list(paths), prune=prune, rebuild=rebuild, wait=wait,
                          reporter=progress or SilentReporter(), batch_papers=batch_papers, after_batch=after_batch)
        finally:
            if self._retriever is not None:
                self._retriever.forget_exact()

    def ensure_index(self, progress: Reporter | None = None) -> None:
        """First use of a home never written to: build its index from the bundled sample so
        `ask` works right away. Only ask/chat call this. A home another ingest holds or has
        ever held (the lock file exists) never gets the sample: asking there is an error."""
        if not self.auto_sample or self.settings.server_mode:
            return
        if self.index.exists() and self.index.catalogue.count()[0] > 0:
            return
        empty = AssistantError(
            f"no papers are indexed in {self.index.dir}, and it has been written to (or another ingest is "
            "writing it now), so the bundled sample is not added; wait for that ingest, or run "
            "`assistant ingest SOURCES`")
        if not self.index.claim_first_write():
            raise empty
        reporter = progress or SilentReporter()
        reporter.message(f"no index in {self.index.dir}; building it from the bundled sample corpus ...")
        try:
            self.ingest(sample_paths(), wait=False, progress=reporter)
        except IndexStateError as exc:
            if "another ingest is writing" in str(exc):
                raise empty from None
            raise

    def status(self) -> dict[str, Any]:
        with self.index.reading():
            out = self.index.status().to_dict()
            has_index = self.index.exists() or self.settings.server_mode
            # One vector per abstract sentence (index.sentence_vectors); fewer than the catalogue's
            # sentences means an older home that the next ingest backfills.
            out["sentence_vectors"] = self.index.vectors.sentences.count() if has_index else 0
        out["home"] = str(self.settings.home)
        return out

    def papers(self, order: str = "title") -> list[Paper]:
        """The indexed papers (an empty list on a home with no index; never builds one)."""
        if not self.index.exists():
            return []
        return list(self.index.catalogue.iter_papers(order=order))

    def get_paper(self, paper_id: str) -> Paper | None:
        if not self.index.exists():
            return None
        return self.index.catalogue.get(paper_id)

    def search(self, query: str, k: int | None = None, *, since: str | int | None = None,
               until: str | int | None = None, mode: str = "hybrid") -> list[Source]:
        """Retrieval only: papers best first, no answer (nothing on a home with no index)."""
        query = _check_text(query, "query")
        _check_filters(k, since, until)
        if not self.index.exists() and not self.settings.server_mode:
            return []
        _ = self.index.catalogue  # a model mismatch is named before any query is embedded
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
        question = self.check_request(question, k=k, since=since, until=until)
        if retrieval_query is not None:
            retrieval_query = _check_text(retrieval_query, "question")
        answerer = self.answerer(backend)
        t0 = time.perf_counter()
        self.ensure_index()
        _ = self.index.catalogue  # a model mismatch is named before any query is embedded
        result = self.retriever.retrieve(retrieval_query or question, k, since=since, until=until)
        timings = {f"retrieve_{k_}": v for k_, v in result.timings_ms.items()}
        sources = result.sources
        lex = self.index.lexical()
        from .answering.base import AnswerContext
        from .answering.citations import check_answer

        t = time.perf_counter()
        draft = answerer.answer(question, sources, AnswerContext(idf=lex.idf, chunk_sims=result.chunk_sims,
                                                                 sentence_sims=result.sentence_sims,
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

    def verify(self, claim: str, *, k: int | None = None, since: str | int | None = None,
               until: str | int | None = None, backend: str | None = None) -> Verdicts:
        """Check ``claim`` against the indexed abstracts: per paper SUPPORT or CONTRADICT with at most
        three rationale sentences quoted exactly, or NOT_ENOUGH_EVIDENCE with the closest papers listed
        as such. ``backend`` "openai" has the LLM label the papers; any other answer backend (the
        default, extractive) uses the offline label model fitted on SciFact train."""
        from .verification import Verdicts, assemble, verify_offline, verify_with_llm

        claim = self.check_claim(claim, k=k, since=since, until=until)
        name = backend or self.settings.llm.backend
        use_llm = name == "openai"
        if not use_llm:
            self.answerer(name)  # an unknown backend is named before any work
        t0 = time.perf_counter()
        self.ensure_index()
        _ = self.index.catalogue  # a model mismatch is named before any query is embedded
        result = self.retriever.retrieve(claim, k, since=since, until=until)
        timings = {f"retrieve_{k_}": v for k_, v in result.timings_ms.items()}
        from .answering.stance import shipped_verify_model

        t = time.perf_counter()
        evidence, labels = verify_offline(claim, result.sources, self.index.lexical().idf, result.chunk_sims,
                                          result.sentence_sims, shipped_verify_model())
        timings["label"] = (time.perf_counter() - t) * 1000
        checks: dict[str, Any] = {"papers_considered": len(labels)}
        label = "offline:verify"
        if use_llm and labels:
            t = time.perf_counter()
            labels, llm_checks = verify_with_llm(self.chat_client(), claim, result.sources, evidence, labels,
                                                 self.settings.llm.structured, self.settings.llm.max_answer_tokens)
            checks.update(llm_checks)
            timings["llm"] = (time.perf_counter() - t) * 1000
        if use_llm:
            label = f"openai:{self.settings.llm.model}"
        verdict, papers, closest = assemble(claim, result.sources, labels)
        timings["total"] = (time.perf_counter() - t0) * 1000
        return Verdicts(claim, verdict, papers, closest,
                        backend={"labels": label, "embedding": self.settings.embedding_model_name},
                        timings_ms=timings, checks=checks)

    def verify_many(self, claims: Sequence[str], *, k: int | None = None, since: str | int | None = None,
                    until: str | int | None = None, backend: str | None = None,
                    on_done: Callable[[int], None] | None = None) -> Iterator[Verdicts]:
        """``verify`` each claim in turn (every claim checked first); ``on_done(n)`` after the n-th."""
        for c in claims:
            self.check_claim(c, k=k, since=since, until=until)
        for n, c in enumerate(claims, 1):
            v = self.verify(c, k=k, since=since, until=until, backend=backend)
            if on_done is not None:
                on_done(n)
            yield v

    def check_claim(self, claim: object, *, k: object = None, since: object = None, until: object = None) -> str:
        """The claim, stripped, once it and its filters are known to be usable (before any slow work)."""
        text = _check_text(claim, "claim").strip()
        if not text:
            raise AssistantError("the claim is empty")
        _check_filters(k, since, until)
        return text

    def check_request(self, question: object, *, k: object = None, since: object = None,
                      until: object = None) -> str:
        """The question, stripped, once it and its filters are known to be usable: callers
        (the CLI, the server) check before any slow work such as building the index."""
        text = _check_text(question, "question").strip()
        if not text:
            raise AssistantError("the question is empty")
        _check_filters(k, since, until)
        return text

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


_DATE_FILTER = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")


def _check_text(text: object, what: str) -> str:
    """A question must be text that can be encoded: a stray byte from the terminal
    (``$(printf 'DPO\\xff')`` arrives as a lone surrogate) would fail deep in the tokenizer."""
    if not isinstance(text, str):
        raise AssistantError(f"the {what} must be text, got {type(text).__name__}")
    bad = next((i for i, ch in enumerate(text) if "\ud800" <= ch <= "\udfff"), None)
    if bad is not None:
        raise AssistantError(f"the {what} is not valid UTF-8 text (a stray byte or lone surrogate at character "
                             f"{bad + 1}); retype it or check the terminal's encoding")
    return text


def _check_filters(k: object, since: object, until: object) -> None:
    """-k and date filters, checked before anything runs: -k 0 used to mean 10, -k -5 returned
    every candidate, and 2024-13-45 filtered silently on an impossible date."""
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, int):
            raise AssistantError(f"k (-k, papers to retrieve) must be a whole number, got {k!r}")
        if k < 1:
            raise AssistantError(f"k must be at least 1, got {k} (-k: papers to retrieve)")
    for name, value in (("since", since), ("until", until)):
        if value is None or value == "":
            continue
        text = str(value).strip()
        m = _DATE_FILTER.fullmatch(text) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if m is not None:
            try:
                import datetime

                datetime.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
                continue
            except ValueError:
                pass
        raise AssistantError(f"date filter --{name} '{text}' is not a real date "
                             "(expected YYYY, YYYY-MM or YYYY-MM-DD)")


__all__ = ["REFUSAL", "Assistant", "ChatSession", "Reporter", "SilentReporter", "IngestReport"]
