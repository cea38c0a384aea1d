"""Which abstract sentences get a stored vector (``index.sentence_strategy``), and the vectors of
the rest, computed at question time for the papers an answer reads.

Storing every sentence's vector multiplies the stored vectors ~5x (Chroma's memory and disk) and
the ingest time ~2x. The strategies trade that against answer quality (benchmarks/README.md,
"Sentence vectors at scale"):

- ``all``: every sentence (the best figures; the default up to ``index.sentence_auto_papers``);
- ``top``: ``index.sentence_top`` sentences per paper, the longest (picked before any embedding, so
  ingest embeds fewer texts; the best such rule on SciFact train, benchmarks/sentence_selection.py).
  They feed the ranking signal; the other sentences of the papers an answer reads are embedded at
  question time;
- ``query-time``: none stored; no sentence ranking signal, and the sentences of the papers an answer
  reads are embedded at question time;
- ``auto``: ``all`` up to ``index.sentence_auto_papers`` papers, else ``query-time`` (it ties with
  ``top`` on the validation questions and stores no sentence vector: at 2.5M papers ``top``'s 7.5M
  vectors would take the index past one Chroma server).

The strategy an index was built with is recorded in its catalogue (``sentence_strategy``), so
questions and later ingests follow it, and a change of it (``auto`` crossing its size) re-aligns
the stored vectors on the next ingest.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..text import split_sentences

if TYPE_CHECKING:
    import numpy as np

    from ..records import Paper
    from ..settings import Settings

STRATEGIES = ("all", "top", "query-time")
RULES = ("lead", "tail", "ends", "spread", "longest")
"""Position rules for ``top``, compared on SciFact train by benchmarks/sentence_selection.py."""
TOP_RULE = "longest"
"""The rule ``top`` uses (chosen on SciFact train; see benchmarks/README.md)."""
META_KEY = "sentence_strategy"


def resolve(settings: Settings, papers: int) -> str:
    """The strategy for an index of ``papers`` papers: ``all``, ``top``, ``query-time`` or ``off``."""
    idx = settings.index
    if not idx.sentence_vectors:
        return "off"
    if idx.sentence_strategy == "auto":
        return "all" if papers <= idx.sentence_auto_papers else "query-time"
    return idx.sentence_strategy


def select_spans(abstract: str, spans: Sequence[tuple[int, int]], rule: str, k: int) -> list[tuple[int, int]]:
    """``k`` of ``spans`` (sentence offsets into ``abstract``, in order) by position or length, in order."""
    n = len(spans)
    if n <= k:
        return list(spans)
    if rule == "lead":
        picked = list(range(k))
    elif rule == "tail":
        picked = list(range(n - k, n))
    elif rule == "ends":  # the opening sentence (topic) and the closing ones (findings, conclusion)
        picked = [0, *range(n - k + 1, n)]
    elif rule == "spread":
        picked = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)}) if k > 1 else [0]
    elif rule == "longest":
        picked = sorted(sorted(range(n), key=lambda i: (-(spans[i][1] - spans[i][0]), i))[:k])
    else:
        raise ValueError(f"unknown sentence selection rule '{rule}'")
    return [spans[i] for i in picked]


def stored_spans(paper: Paper, strategy: str, k: int) -> list[tuple[int, int]]:
    """The spans of ``paper``'s sentences whose vectors the index stores under ``strategy``."""
    if strategy in ("off", "query-time"):
        return []
    spans = split_sentences(paper.abstract)
    if strategy == "top":
        return select_spans(paper.abstract, spans, TOP_RULE, k)
    return spans


def plan(catalogue: Any, settings: Settings, papers: int) -> str:
    """Decide the strategy for an index about to hold ``papers`` papers and record it in the
    catalogue. A strategy other than the recorded one marks the sentence vectors incomplete, so the
    ingest's backfill re-aligns every paper to it (it only adds, or replaces a paper's own vectors)."""
    strategy = resolve(settings, papers)
    if strategy == "off":
        return strategy
    before = catalogue.get_meta(META_KEY)
    if before != strategy:
        catalogue.set_meta(META_KEY, strategy)
        if before is not None and catalogue.get_meta("sentence_vectors") == "complete":
            catalogue.set_meta("sentence_vectors", "partial")
        catalogue.db.commit()
    return strategy


def recorded(catalogue: Any, settings: Settings) -> str:
    """The strategy the index was built with (an index from before strategies existed: ``all``);
    ``off`` when the settings turn sentence vectors off."""
    if not settings.index.sentence_vectors:
        return "off"
    return catalogue.get_meta(META_KEY) or "all"


def rows(papers: Sequence[Paper], strategy: str, k: int) -> list[tuple[Paper, int, int]]:
    """(paper, start, end) of every sentence to store for ``papers``."""
    return [(p, a, b) for p in papers for a, b in stored_spans(p, strategy, k)]


class QueryTimeVectors:
    """Vectors of sentences not stored, embedded when a question needs them, kept in a bounded LRU
    (papers come back across a chat's questions); keyed by (paper_id, start, end)."""

    def __init__(self, max_items: int = 20000) -> None:
        self.max_items = max_items
        self._cache: OrderedDict[tuple[str, int, int], Any] = OrderedDict()
        self.embedded = 0
        """Sentences embedded so far (benchmarks read it)."""

    def vectors(self, embedder: Any, keys: Sequence[tuple[str, int, int]], texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        if missing:
            vecs = embedder.embed([texts[i] for i in missing])
            self.embedded += len(missing)
            for j, i in enumerate(missing):
                self._cache[keys[i]] = np.asarray(vecs[j], dtype=np.float32)
        out = []
        for key in keys:
            self._cache.move_to_end(key)
            out.append(self._cache[key])
        while len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)
