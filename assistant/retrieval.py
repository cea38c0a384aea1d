"""Hybrid retrieval: dense (Chroma) + BM25, fused per paper (z-scored scores by default,
reciprocal rank with ``fusion = "rrf"``).

Fusion is at the paper level: dense chunk hits are grouped to their paper (best
chunk wins), BM25 scores whole papers, and each paper appears once in the
ranking with its best chunks attached.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import AssistantError, IndexStateError
from .index.paper_index import PaperIndex
from .index.vectors import DateFilter
from .records import Chunk, Source

if TYPE_CHECKING:
    from .exact_search import VectorTable

_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?$")
MODES = ("hybrid", "dense", "bm25")
RETRIES_AFTER_WRITES = 3
"""Times a question is asked again when another process wrote the index while it read."""


def parse_date_bound(value: str | int | None, *, upper: bool) -> int | None:
    """'2024' / '2024-03' / '2024-03-15' → YYYYMMDD int; an upper bound covers the whole period."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime.date):  # a date or datetime from Python: its day
        value = value.strftime("%Y-%m-%d")
    m = _DATE.match(str(value).strip())
    if not m:
        raise AssistantError(f"date filter '{value}': expected YYYY, YYYY-MM or YYYY-MM-DD")
    year, month, day = int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)
    if upper:
        month = month or 12
        day = day or 31
    return year * 10000 + month * 100 + day


def date_range_problem(since: str | int | None, until: str | int | None, *, names: tuple[str, str] = (
        "--since", "--until")) -> str | None:
    """Why two date filters can match no paper (--since after --until), or None (the CLI, the Python
    API and the server all refuse it rather than answer with a refusal); ``names`` as the caller's user
    calls them (the server's JSON fields)."""
    if since in (None, "") or until in (None, ""):
        return None
    lo, hi = parse_date_bound(since, upper=False), parse_date_bound(until, upper=True)
    if lo is not None and hi is not None and lo > hi:
        return f"date filters: {names[0]} {since} is after {names[1]} {until}, so no paper can match"
    return None


def rrf_fuse(rankings: list[tuple[dict[str, int], float]], k: int) -> dict[str, float]:
    """Reciprocal rank fusion: sum of weight / (k + rank)."""
    fused: dict[str, float] = {}
    for ranks, weight in rankings:
        for pid, r in ranks.items():
            fused[pid] = fused.get(pid, 0.0) + weight / (k + r)
    return fused


def zscore_fuse(scorings: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Weighted sum of per-query z-scored retriever scores; a paper one retriever did
    not return gets that retriever's lowest candidate score. Beat RRF on SciFact train
    claims (nDCG@10 0.737 vs 0.720, benchmarks/README.md)."""
    import statistics

    fused: dict[str, float] = {}
    normed: list[tuple[dict[str, float], float, float]] = []
    for scores, weight in scorings:
        if not scores or weight == 0:
            continue
        values = list(scores.values())
        mean = statistics.fmean(values)
        sd = statistics.pstdev(values) or 1.0
        z = {p: (v - mean) / sd for p, v in scores.items()}
        normed.append((z, weight, min(z.values())))
    for z, _, _ in normed:
        for pid in z:
            fused[pid] = 0.0
    for z, weight, floor in normed:
        for pid in fused:
            fused[pid] += weight * z.get(pid, floor)
    return fused


@dataclass
class Retrieval:
    sources: list[Source]
    timings_ms: dict[str, float] = field(default_factory=dict)
    chunk_sims: dict[str, float] = field(default_factory=dict)
    """Cosine similarity of each dense-retrieved chunk to the query."""
    sentence_sims: dict[tuple[str, int, int], float] = field(default_factory=dict)
    """Cosine similarity to the query of every stored sentence vector of the returned sources,
    keyed (paper_id, start, end) with the offsets of ``text.split_sentences(abstract)``; a
    sentence (or paper) without a stored vector is absent. Empty in ``bm25`` mode."""


class HybridRetriever:
    def __init__(self, index: PaperIndex, embedder: Any) -> None:
        self.index = index
        self.embedder = embedder
        self.settings = index.settings
        self._exact: dict[str, tuple[tuple[tuple[int, int], int], VectorTable | None]] = {}
        self._exact_lock = threading.Lock()
        self._forgotten = 0
        self._strategy: tuple[tuple[int, int], str] | None = None
        self._query_time: Any = None
        """Sentence vectors embedded at question time (index.sentence_strategy top / query-time)."""

    def retrieve(self, query: str, k: int | None = None, *, since: str | int | None = None,
                 until: str | int | None = None, mode: str = "hybrid") -> Retrieval:
        if mode not in MODES:
            raise AssistantError(f"retrieval mode '{mode}': expected one of {', '.join(MODES)}")
        from .index.vectors import TRANSIENT_CHROMA

        for attempt in range(RETRIES_AFTER_WRITES + 1):
            with self.index.reading():  # sees other processes' writes; the store stays open meanwhile
                gen = self.index.catalogue.generation if self.index.exists() else 0
                try:
                    return self._retrieve(query, k, since, until, mode)
                except IndexStateError as exc:
                    # Another process wrote while this question read (its papers are in the
                    # catalogue, not yet in this process's copy of the vectors; or a collection it
                    # made is not on disk yet): ask again on a reopened store, a few times. A failure
                    # with no write meanwhile and no sign of one is real.
                    moved = self.index.exists() and self.index.catalogue.generation != gen
                    transient = any(m in str(exc) for m in TRANSIENT_CHROMA)
                    if not (moved or transient) or attempt == RETRIES_AFTER_WRITES:
                        raise
                    self.index.stale_vectors()
            time.sleep(0.05 * (attempt + 1))  # outside the read: the reopen waits for no one
        raise AssertionError("unreachable")  # pragma: no cover

    def _retrieve(self, query: str, k: int | None, since: str | int | None, until: str | int | None,
                  mode: str) -> Retrieval:
        s = self.settings
        k = k or s.retrieval.top_k
        lo = parse_date_bound(since, upper=False)
        hi = parse_date_bound(until, upper=True)
        timings: dict[str, float] = {}
        n_cand = max(s.retrieval.candidates, k)

        dense_rank: dict[str, int] = {}
        dense_best: dict[str, float] = {}
        dense_chunks: dict[str, list[str]] = {}
        chunk_sims: dict[str, float] = {}
        qvec = None
        lex_rank: dict[str, int] = {}
        lex_score: dict[str, float] = {}
        if mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            lex = self.index.lexical()
            for i, hit in enumerate(lex.query(query, n_cand, (lo, hi))):
                lex_rank[hit.paper_id] = i + 1
                lex_score[hit.paper_id] = hit.score
            timings["bm25"] = (time.perf_counter() - t) * 1000
        share = None
        if mode != "bm25" and (lo is not None or hi is not None) and self.index.exists():
            # How much of the index the range holds, from the BM25 index's dates (hybrid has it loaded):
            # it decides whether the vector search filters by date itself or leaves that to Chroma.
            share = self.index.lexical().date_share(lo, hi)
        dates = DateFilter(lo, hi, share, s.retrieval.date_post_filter_max)
        if mode in ("hybrid", "dense"):
            t = time.perf_counter()
            qvec = self.embedder.embed_query(query)
            timings["embed_query"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            hits = self.dense_hits(qvec, n_cand * 2, dates)
            timings["dense"] = (time.perf_counter() - t) * 1000
            for cid, pid, sim in hits:
                if pid not in dense_rank:
                    dense_rank[pid] = len(dense_rank) + 1
                    dense_best[pid] = sim
                dense_chunks.setdefault(pid, []).append(cid)
                chunk_sims[cid] = sim
        sent_rank: dict[str, int] = {}
        sent_best: dict[str, float] = {}
        if (qvec is not None and s.retrieval.sentence_weight > 0 and s.index.sentence_vectors
                and self.sentence_strategy() != "query-time"):
            # Each paper's best-matching sentence, as a third signal beside its best chunk and BM25.
            t = time.perf_counter()
            for pid, _, _, sim in self.sentence_hits(qvec, s.retrieval.sentence_candidates, dates):
                if pid not in sent_rank:
                    sent_rank[pid] = len(sent_rank) + 1
                    sent_best[pid] = sim
            timings["dense_sentences"] = (time.perf_counter() - t) * 1000


        t = time.perf_counter()
        r = s.retrieval
        if r.fusion == "rrf":
            fused = rrf_fuse([(dense_rank, r.dense_weight), (lex_rank, r.bm25_weight),
                              (sent_rank, r.sentence_weight)], r.rrf_k)
        else:
            fused = zscore_fuse([(dense_best, r.dense_weight), (lex_score, r.bm25_weight),
                                 (sent_best, r.sentence_weight)])
        ranked = sorted(fused, key=lambda p: (-fused[p], p))
        # Vectors of a paper the catalogue does not know (a killed ingest) are ignored.
        papers = self.index.catalogue.get_many(ranked[: k * 2])
        ranked = [p for p in ranked if p in papers][:k]
        spans = self.index.catalogue.chunk_spans(ranked)
        sources: list[Source] = []
        for i, pid in enumerate(ranked):
            paper = papers[pid]
            chunk_list = [Chunk(cid, pid, idx, paper.abstract[a:b], a, b) for cid, idx, a, b in spans.get(pid, [])]
            order = {cid: j for j, cid in enumerate(dense_chunks.get(pid, []))}
            chunk_list.sort(key=lambda c: order.get(c.chunk_id, len(order) + c.index))
            sources.append(Source(rank=i + 1, paper=paper, score=fused[pid], chunks=chunk_list,
                                  dense_score=dense_best.get(pid)))
        timings["fuse"] = (time.perf_counter() - t) * 1000
        sentence_sims: dict[tuple[str, int, int], float] = {}
        if qvec is not None and sources and s.index.sentence_vectors:
            t = time.perf_counter()
            sentence_sims = self.sentence_sims(qvec, sources)
            timings["sentences"] = (time.perf_counter() - t) * 1000
        return Retrieval(sources=sources, timings_ms=timings, chunk_sims=chunk_sims, sentence_sims=sentence_sims)

    def dense_hits(self, qvec: Any, n: int, dates: DateFilter | None) -> list[tuple[str, str, float]]:
        """(chunk_id, paper_id, cosine) of the ``n`` nearest chunks, best first: exact up to
        ``retrieval.exact_search_max`` chunks, else Chroma's HNSW (approximate)."""
        table = self._exact_table("chunks")
        if table is None:
            return self.index.vectors.query(qvec, n, dates)
        from .exact_search import search as exact_search

        where = dates.where() if dates is not None else None
        return [(cid, meta["paper_id"], sim) for cid, meta, sim in exact_search(table, qvec, n, where)]

    def sentence_hits(self, qvec: Any, n: int, dates: DateFilter | None) -> list[tuple[str, int, int, float]]:
        """(paper_id, start, end, cosine) of the ``n`` nearest abstract sentences, best first (exact or
        HNSW, as ``dense_hits``)."""
        table = self._exact_table("sentences")
        if table is None:
            return self.index.vectors.sentences.query(qvec, n, dates)
        from .exact_search import search as exact_search

        where = dates.where() if dates is not None else None
        return [(m["paper_id"], int(m["start"]), int(m["end"]), sim)
                for _, m, sim in exact_search(table, qvec, n, where)]

    def _exact_table(self, kind: str) -> VectorTable | None:
        """The collection's vectors for an exact search, or None (HNSW). Both collections switch
        together: exact only while the larger (sentences, ~4.5 per chunk) has at most
        ``retrieval.exact_search_max`` vectors. Loaded once per catalogue generation (an ingest by
        any process changes it; ``forget_exact`` after this process writes), so a question costs no
        count or load; one load at a time (server threads share the retriever)."""
        limit = self.settings.retrieval.exact_search_max
        if limit <= 0:
            return None
        gen = (self.index.catalogue.generation, self.index.epoch)
        cached = self._exact.get(kind)
        if cached is not None and cached[0] == (gen, self._forgotten):
            return cached[1]
        with self._exact_lock:
            forgotten = self._forgotten
            cached = self._exact.get(kind)
            if cached is not None and cached[0] == (gen, forgotten):
                return cached[1]
            counts = (self.index.vectors.count(), self.index.vectors.sentences.count())
            table = None
            if 0 < max(counts) <= limit and counts[kind != "chunks"]:
                from .exact_search import load_table

                store = self.index.vectors if kind == "chunks" else self.index.vectors.sentences
                table = load_table(store.collection(create=False))
                if table is None:  # not readable whole just now: HNSW this time, try again next time
                    return None
            if forgotten == self._forgotten:  # not forgotten while loading: keep it
                self._exact[kind] = ((gen, forgotten), table)
            return table

    def forget_exact(self) -> None:
        """Drop the loaded vectors after this process wrote the index. Every write that changes
        vectors now also moves the catalogue generation (a backfill and a rebuild too), so this only
        makes sure; kept because tests and callers rely on a write emptying the cache at once."""
        self._forgotten += 1
        self._exact.clear()

    def sentence_sims(self, qvec: Any, sources: list[Source]) -> dict[tuple[str, int, int], float]:
        """Cosine of ``qvec`` with each stored vector of the sources' abstract sentences: one
        batched fetch by id and one matrix product (vectors are unit length), no model call. Under
        ``index.sentence_strategy`` top / query-time, the sentences of the first
        ``index.sentence_query_papers`` sources that have no stored vector are embedded now."""
        import numpy as np

        from .index.vectors import paper_sentences, sentence_id

        keys = [(src.paper.paper_id, a, b) for src in sources for a, b in paper_sentences(src.paper)]
        strategy = self.sentence_strategy()
        stored: dict[str, Any] = {}
        if strategy != "query-time":
            table = self._exact_table("sentences")
            fetch = table.get if table is not None else self.index.vectors.sentences.get
            stored = fetch([sentence_id(*k) for k in keys])
        have = [k for k in keys if sentence_id(*k) in stored]
        vecs = [stored[sentence_id(*k)] for k in have]
        if strategy in ("top", "query-time"):
            from .index.sentences import QueryTimeVectors

            firsts = {src.paper.paper_id: src.paper for src in sources[:self.settings.index.sentence_query_papers]}
            todo = [k for k in keys if k[0] in firsts and sentence_id(*k) not in stored]
            if todo:
                if self._query_time is None:
                    self._query_time = QueryTimeVectors()
                texts = [firsts[pid].abstract[a:b] for pid, a, b in todo]
                have += todo
                vecs.extend(self._query_time.vectors(self.embedder, todo, texts))
        if not have:
            return {}
        sims = np.stack(vecs) @ np.asarray(qvec, dtype=np.float32)
        return {k: float(v) for k, v in zip(have, sims.tolist(), strict=True)}

    def sentence_strategy(self) -> str:
        """The index's recorded ``index.sentence_strategy`` (read once per catalogue generation)."""
        from .index.sentences import recorded

        gen = (self.index.catalogue.generation, self.index.epoch)
        if self._strategy is None or self._strategy[0] != gen:
            self._strategy = (gen, recorded(self.index.catalogue, self.settings))
        return self._strategy[1]
