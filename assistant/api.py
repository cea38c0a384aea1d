"""The one entry point: ingest, papers, search, ask and chat.

The CLI, the evaluation harness and users' code all call this class, so no
behaviour lives only in the CLI.
"""

from __future__ import annotations

import datetime
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import AssistantError, IndexStateError, InputError
from .index.ingest import IngestReport, Reporter, SilentReporter, ingest, sample_paths
from .index.paper_index import PaperIndex
from .records import MAX_BATCH_PAPERS, REFUSAL, SURROGATE, Answer, Paper, Source
from .settings import Settings
from .text import blank

if TYPE_CHECKING:
    from .answering.base import Answerer
    from .collections import CollectionInfo
    from .index.embeddings import Embedder
    from .retrieval import HybridRetriever
    from .verification import Verdicts


PAPER_ORDERS = ("title", "date", "id")


class Assistant:
    """Question answering over an index of paper abstracts.

    >>> a = Assistant()                      # settings from env / config file
    >>> ans = a.ask("What does ARRA align LLM hidden states with?")
    >>> ans.text, [c.title for c in ans.citations]
    """

    def __init__(self, settings: Settings | None = None, **overrides: Any) -> None:
        if settings is not None and not isinstance(settings, Settings):  # was an AttributeError from inside
            raise AssistantError(f"settings: expected a Settings (assistant.settings.Settings.load(...)), got "
                                 f"{type(settings).__name__}; or pass single settings as keywords, e.g. top_k=5")
        self.settings = settings.with_(**overrides) if settings is not None else Settings.load(**overrides)
        self.index = PaperIndex(self.settings)
        self._embedder: Embedder | None = None
        self._retriever: HybridRetriever | None = None
        self._answerers: dict[str, Answerer] = {}
        self._chat_client: Any = None
        self._lock = threading.RLock()
        self.auto_sample = True
        """Build the index from the bundled sample on first use when there is none (the default
        collection only: a named one is filled by its user)."""
        self._collection_seen = False

    @property
    def collection(self) -> str:
        """The named collection this Assistant reads and writes (``Assistant(collection="x")``)."""
        return self.settings.index.collection

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
               batch_papers: int = 256, after_batch: Callable[[int], None] | None = None,
               names: Mapping[str, str] | None = None, replace: bool = False,
               zotero_collection: str | None = None) -> IngestReport:
        """Read, chunk, embed and store papers; incremental and safe to re-run. ``names`` and
        ``replace``: see :func:`assistant.index.ingest.ingest` (the server's upload upsert). A Zotero
        library (zotero.sqlite or its data folder) is read from a copy; ``zotero_collection`` takes
        one of its collections (with subcollections)."""
        items = _as_list(paths, "paths", (str, os.PathLike))
        if isinstance(batch_papers, bool) or not isinstance(batch_papers, int) \
                or not 1 <= batch_papers <= MAX_BATCH_PAPERS:
            raise InputError(f"batch_papers: a whole number from 1 to {MAX_BATCH_PAPERS}, got {batch_papers!r:.40}")
        if any(isinstance(p, str) and not p for p in items):
            # (as a path, '' is the current folder: `ingest --prune "$UNSET"` replaced the index with it)
            raise InputError("paths: an empty path ('') names no file or folder; nothing was read")
        try:
            return ingest(self.index, items, prune=prune,
                          rebuild=rebuild, wait=wait, reporter=progress or SilentReporter(),
                          batch_papers=batch_papers, after_batch=after_batch, names=names, replace=replace,
                          zotero_collection=zotero_collection)
        finally:
            if self._retriever is not None:
                self._retriever.forget_exact()

    def add(self, ids: Sequence[str] = (), *, search: str | None = None, max_results: int = 50,
            progress: Reporter | None = None, wait: bool = True) -> AddReport:
        """Add papers from arXiv by id or URL (``2401.01234``, ``hep-th/9901001v2``,
        ``https://arxiv.org/abs/2402.00001``) and/or the first ``max_results`` hits of a search,
        through the same incremental ingest as files: a re-run skips what is indexed and unchanged.
        Unreachable API: ArxivUnreachable, and nothing is changed."""
        from .sources import arxiv

        refs = [arxiv.parse_ref(i) for i in _as_list(ids, "ids", (str,))]  # every id checked before any request
        if search is not None and blank(_check_text(search, "arXiv search (--search)")):
            raise AssistantError("the arXiv search (--search) is empty")
        if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
            raise AssistantError(f"max_results (--max) must be a whole number of at least 1, got {max_results!r}")
        if not refs and search is None:
            raise AssistantError("nothing to add: give arXiv ids or URLs, or --search QUERY")
        reporter = progress or SilentReporter()
        src = self.settings.sources
        out = AddReport(requested=len(refs))
        # One ref a paper before the "already indexed" check (v1 and v2 asked with v2 indexed skipped v2,
        # fetched v1 and replaced v2 with it).
        collapsed = arxiv.Fetched()
        refs = arxiv.one_per_paper(list(dict.fromkeys(refs)), collapsed)
        have = self.index.catalogue.get_many([r.id for r in refs]) if refs and self.index.exists() else {}
        todo = []
        for ref in refs:
            old = have.get(ref.id)
            if old is not None and ref.version and old.extra.get("version") == ref.version:
                out.skipped += 1  # that exact version is indexed: no request needed
            else:
                todo.append(ref)
        client = arxiv.ArxivClient(src, on_wait=reporter.message)
        fetched = arxiv.Fetched()
        if todo:
            fetched = arxiv.fetch_ids(client, todo, page_size=src.arxiv_page_size,
                                      max_abstract_chars=self.settings.index.max_abstract_chars)
        if search is not None:
            try:
                found = arxiv.search(client, search, max_results, page_size=src.arxiv_page_size,
                                     max_abstract_chars=self.settings.index.max_abstract_chars,
                                     on_page=lambda n, total: reporter.message(
                                         f"  {n} result(s) so far" + (f" of {total}" if total is not None else "")))
            except AssistantError as exc:
                if not fetched.papers:
                    raise
                found = arxiv.Fetched(error=str(exc))
            known = {p.paper_id for p in fetched.papers}
            fetched.papers.extend(p for p in found.papers if p.paper_id not in known)
            fetched.problems.extend(found.problems)
            fetched.warnings.extend(found.warnings)
            fetched.error = fetched.error or found.error
        out.not_found, out.problems = fetched.not_found, fetched.problems
        out.warnings = collapsed.warnings + fetched.warnings
        out.error = fetched.error
        out.fetched = len(fetched.papers)
        if fetched.papers:
            from .readers import ReadResult

            result = ReadResult(papers=fetched.papers, entries=len(fetched.papers),
                                complete_files={arxiv.provenance_key(p.paper_id) for p in fetched.papers})
            known_ids = set(self.index.catalogue.known_ids([p.paper_id for p in fetched.papers])
                            if self.index.exists() else ())
            out.ingest = self._ingest_read(result, wait=wait, progress=reporter)
            out.added = [p.paper_id for p in fetched.papers if p.paper_id not in known_ids]
            out.updated = out.ingest.updated
            out.skipped += len(fetched.papers) - len(out.added) - out.updated
        return out

    def _ingest_read(self, result: Any, *, wait: bool, progress: Reporter) -> IngestReport:
        from .index.ingest import ingest_read

        try:
            return ingest_read(self.index, result, wait=wait, reporter=progress)
        finally:
            if self._retriever is not None:
                self._retriever.forget_exact()

    # -- collections ---------------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        """Every collection of this home (or Chroma server), the default one first."""
        from . import collections

        return collections.list_all(self.settings)

    def collection_info(self, name: str | None = None) -> CollectionInfo:
        """Papers, chunks and vectors of one collection (default: this Assistant's)."""
        from . import collections

        return collections.info(self.settings, name)

    def create_collection(self, name: str) -> CollectionInfo:
        from . import collections

        return collections.create(self.settings, name)

    def delete_collection(self, name: str) -> None:
        """Remove a collection's papers and vectors; every other collection stays as it is."""
        from . import collections

        if collections.canonical(name) == self.collection:
            self.index.release()
        collections.delete(self.settings, name)

    def rename_collection(self, old: str, new: str) -> None:
        from . import collections

        if collections.canonical(old) == self.collection:
            self.index.release()
        collections.rename(self.settings, old, new)

    def use(self, collection: str) -> Assistant:
        """Another Assistant, same settings, on ``collection``."""
        from .collections import canonical

        return Assistant(self.settings, collection=canonical(collection))

    def _require_collection(self) -> None:
        """A named collection must exist before it is read (the default one is built on first use)."""
        if self.collection == "default" or (self._collection_seen and self.settings.server_mode):
            return  # on a server the check is a request: made once (embedded, it is two stats: every time,
            # so a collection another Assistant deleted or renamed is named, not read as empty)
        from .collections import NoSuchCollection, require

        try:
            require(self.settings)
        except NoSuchCollection:
            if self._collection_seen:
                self.index.release_when_idle()
                self._collection_seen = False
            raise
        self._collection_seen = True

    def ensure_index(self, progress: Reporter | None = None) -> None:
        """First use of a home never written to: build its index from the bundled sample so
        `ask` works right away. Only ask/chat call this. A home another ingest holds or has
        ever held (the lock file exists) never gets the sample: asking there is an error."""
        self._require_collection()
        if self.collection != "default":
            if not self.index.exists() or self.index.catalogue.paper_count() == 0:
                raise AssistantError(f"collection '{self.collection}' has no papers yet; add some with "
                                     f"`assistant ingest -c {self.collection} SOURCES`")
            return
        if self.settings.server_mode:
            if self.index.catalogue.paper_count() == 0:  # (a silent refusal of every question before)
                raise AssistantError(self._server_empty())
            return
        if not self.auto_sample:
            return
        if self.index.exists() and self.index.catalogue.paper_count() > 0:
            return
        if not self.index.exists():
            self.index.refuse_a_lost_catalogue()
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
        self._require_collection()
        with self.index.reading():
            out = self.index.status().to_dict()
            has_index = self.index.exists() or self.settings.server_mode
            # One vector per abstract sentence (index.sentence_vectors); fewer than the catalogue's
            # sentences means an older home that the next ingest backfills.
            out["sentence_vectors"] = self.index.vectors.sentences.count() if has_index else 0
        out["home"] = str(self.settings.home)
        out["collection"] = self.collection
        return out

    def papers(self, order: str = "title") -> list[Paper]:
        """The indexed papers (an empty list on a home with no index; never builds one)."""
        if order not in PAPER_ORDERS:
            raise AssistantError(f"order '{order}': papers are listed by {' | '.join(PAPER_ORDERS)}")
        self._require_collection()
        with self.index.reading():  # follows a collection another process deleted and made again
            if not self.index.exists():
                return []
            return list(self.index.catalogue.iter_papers(order=order))

    def empty_index_hint(self) -> str | None:
        """When no papers are indexed, one line naming the next command to run (``papers`` and
        ``search`` show an empty index as it is, and an empty table alone leaves a newcomer stuck)."""
        if self.settings.server_mode:
            return None if self.index.catalogue.paper_count() > 0 else self._server_empty()
        if self.index.exists() and self.index.catalogue.paper_count() > 0:
            return None
        if self.collection != "default":
            return (f"collection '{self.collection}' has no papers yet; add some with "
                    f"`assistant ingest -c {self.collection} SOURCES`")
        if self.index.exists() or self.index.lock_path.exists() or (self.index.dir / "chroma").exists():
            # Written to before (an ingest killed early, or one running): `ask` does not add the sample here.
            return (f"no papers are indexed in {self.index.dir}; `assistant ingest SOURCES` adds your papers "
                    "(this index has been written to, so `ask` does not add the bundled sample)")
        return (f"no papers are indexed in {self.index.dir}: `assistant ask QUESTION` builds the bundled sample, "
                "`assistant ingest SOURCES` adds your own papers")

    def _server_empty(self) -> str:
        flag = "" if self.collection == "default" else f" -c {self.collection}"
        return (f"no papers are indexed in collection '{self.collection}' on the Chroma server at "
                f"{self.settings.index.chroma_host}:{self.settings.index.chroma_port} (the papers of an embedded "
                f"home are not read in server mode); add some with `assistant ingest{flag} SOURCES`")

    def get_paper(self, paper_id: str) -> Paper | None:
        _check_text(paper_id, "paper id")
        self._require_collection()
        with self.index.reading():
            if not self.index.exists():
                return None
            return self.index.catalogue.get(paper_id)

    def export(self, paper_ids: Sequence[str] | None = None, fmt: str = "bibtex") -> str:
        """References of the indexed papers ``paper_ids`` (all papers when empty) as
        bibtex | ris | csl-json | markdown (export.py)."""
        from .export import check_format, export

        check_format(fmt)  # before every paper is read
        if paper_ids is None or (not isinstance(paper_ids, str) and not paper_ids):
            return export(self.papers(order="id"), fmt)
        ids = list(dict.fromkeys(_check_text(i, "paper id") for i in _as_list(paper_ids, "paper_ids", (str,))))
        self._require_collection()
        with self.index.reading():
            found = self.index.catalogue.get_many(ids) if self.index.exists() else {}
        missing = [i for i in ids if i not in found]
        if missing:
            raise AssistantError(f"no paper with id {', '.join(repr(m[:200]) for m in missing[:5])}"
                                 f"{' and more' if len(missing) > 5 else ''} (see `assistant papers list`)")
        return export([found[i] for i in ids], fmt)

    def references(self, answer: Answer | Sequence[Answer], fmt: str = "bibtex") -> str:
        """The papers an answer (or several) cites, in order of first citation, as references."""
        from .export import export

        return export(cited_papers(_as_list(answer, "answer", (Answer,))), fmt)

    def search(self, query: str, k: int | None = None, *, since: str | int | None = None,
               until: str | int | None = None, mode: str = "hybrid") -> list[Source]:
        """Retrieval only: papers best first, no answer (nothing on a home with no index)."""
        query = _check_text(query, "query")
        if blank(query):
            raise AssistantError("the query is empty")
        _check_filters(k, since, until)
        self._require_collection()
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
        # An unknown backend, or one that cannot run (openai with no server or key), is named before
        # any work: a claim without evidence reported "openai:gpt-4o-mini" labels no model gave.
        self.answerer(name)
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
                                                 self.settings.llm.structured, self.settings.llm.max_answer_tokens,
                                                 self.settings.llm.verify_papers)
            checks.update(llm_checks)
            if llm_checks["llm_papers"]:  # no paper kept: no request was sent
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
        claims = _as_list(claims, "claims", (str,))  # read once: a generator would be spent by the check
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
        if blank(text):
            raise AssistantError("the claim is empty")
        _check_filters(k, since, until)
        return text

    def check_request(self, question: object, *, k: object = None, since: object = None,
                      until: object = None) -> str:
        """The question, stripped, once it and its filters are known to be usable: callers
        (the CLI, the server) check before any slow work such as building the index."""
        text = _check_text(question, "question").strip()
        if blank(text):
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
        from .retrieval import MODES

        _check_filters(k, since, until)  # here, not at its first retrieve
        if mode not in MODES:
            raise AssistantError(f"retrieval mode '{mode}': expected one of {', '.join(MODES)}")

        return AssistantRetriever(self, k, since=since, until=until, mode=mode)

    def as_query_engine(self, k: int | None = None, *, since: str | int | None = None,
                        until: str | int | None = None, backend: str | None = None) -> Any:
        """A llama-index ``BaseQueryEngine`` answering with ``ask``; its citations are the ``source_nodes``."""
        from .integrations.llama_index import AssistantQueryEngine

        _check_filters(k, since, until)

        return AssistantQueryEngine(self, k, since=since, until=until, backend=backend)


@dataclass
class AddReport:
    """What ``Assistant.add`` did: papers added, updated (a new version or changed metadata),
    skipped (indexed and unchanged), not found on arXiv, and whether fetching stopped part-way."""

    requested: int = 0
    fetched: int = 0
    added: list[str] = field(default_factory=list)
    updated: int = 0
    skipped: int = 0
    not_found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    """Why fetching stopped part-way; the papers fetched before were added (run again to go on)."""
    ingest: IngestReport | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.not_found and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"requested": self.requested, "fetched": self.fetched, "added": len(self.added),
                "updated": self.updated, "skipped": self.skipped, "added_ids": self.added,
                "not_found": self.not_found, "problems": self.problems, "warnings": self.warnings,
                "error": self.error, "papers_total": self.ingest.papers_total if self.ingest else None}


def cited_papers(answers: Sequence[Answer]) -> list[Paper]:
    """The full records of the papers the answers cite, each once, in order of first citation."""
    out: dict[str, Paper] = {}
    for ans in answers:
        by_id = {s.paper.paper_id: s.paper for s in ans.sources}
        for pid in ans.cited_papers:
            if pid not in out and pid in by_id:
                out[pid] = by_id[pid]
    return list(out.values())


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
        self._written: set[Path] = set()
        """Files ``export`` wrote: written again without asking (the list grows with the conversation)."""

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

    def export(self, path: str | Path, fmt: str | None = None, *, overwrite: bool = False) -> int:
        """Write the references cited in this conversation to ``path`` (format from its suffix:
        .bib .ris .json .md, else BibTeX); returns how many. Written whole or not at all. A file
        already there is refused unless this conversation wrote it, or ``overwrite``: it may be
        the user's own .bib."""
        from .export import format_for, write_file

        papers = cited_papers([a for _, a in self.history])
        if not papers:  # an empty file written over the user's own .bib lost it
            raise AssistantError(f"{path}: nothing written, no paper has been cited in this conversation yet")
        mine = isinstance(path, (str, os.PathLike)) and Path(path).expanduser().absolute() in self._written
        text = self.assistant.references([a for _, a in self.history], fmt or format_for(str(path)))
        target = write_file(path, text, overwrite=overwrite or mine)
        self._written.add(target.absolute())
        return len(papers)

    def ask(self, question: str, *, on_token: Callable[[str], None] | None = None, **kwargs: Any) -> Answer:
        """Retrieve and answer with the standalone form (the backend sees no history);
        the Answer keeps the user's words, and ``checks.standalone_question`` the form used."""
        if blank(_check_text(question, "question")):  # before a follow-up form makes it look like one
            raise AssistantError("the question is empty")
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
    bad = SURROGATE.search(text)
    if bad is not None:
        raise AssistantError(f"the {what} is not valid UTF-8 text (a stray byte or lone surrogate at character "
                             f"{bad.start() + 1}); retype it or check the terminal's encoding")
    return text


def _as_list(value: object, name: str, kinds: tuple[type, ...]) -> list[Any]:
    """One item or a collection of them, as a list of items: ``ingest("papers.jsonl")`` read each
    character as a path (and "." the whole current folder)."""
    if isinstance(value, kinds):
        return [value]
    wanted = " or ".join("a path" if k is os.PathLike else "text" if k is str else f"an {k.__name__}" for k in kinds)
    if value is None or isinstance(value, (bytes, dict)) or not isinstance(value, Iterable):
        raise AssistantError(f"{name}: expected {wanted} or a list of them, got {type(value).__name__}")
    items = list(value)
    bad = next((x for x in items if not isinstance(x, kinds)), None)
    if bad is not None:
        raise AssistantError(f"{name}: each item must be {wanted}, got {type(bad).__name__}")
    return items


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
        if isinstance(value, datetime.date):  # a date or datetime: its day
            continue
        text = str(value).strip()
        m = _DATE_FILTER.fullmatch(text) if isinstance(value, (str, int)) and not isinstance(value, bool) else None
        if m is not None:
            try:
                datetime.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
                continue
            except ValueError:
                pass
        raise AssistantError(f"date filter --{name} '{text}' is not a real date "
                             "(expected YYYY, YYYY-MM or YYYY-MM-DD)")
    from .retrieval import date_range_problem

    problem = date_range_problem(since, until)
    if problem:
        raise AssistantError(problem)


__all__ = ["REFUSAL", "AddReport", "Assistant", "ChatSession", "Reporter", "SilentReporter", "IngestReport"]
