"""Metric primitives: pure functions of an answer and its question, unit-tested on hand-made cases.

Every per-question metric returns ``None`` when it is undefined for that question
(e.g. retrieval metrics on an unanswerable question); averages skip ``None``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..records import normalise_title
from ..text import answer_sentence_spans, marker_numbers, strip_markers

_WORD = re.compile(r"[a-z0-9]+")
_ARTICLES = frozenset({"a", "an", "the"})


# -- gold matching -----------------------------------------------------------------------
class GoldMatcher:
    """Which gold paper (index into ``gold_titles``) a retrieved or cited paper is.

    Ids win when the question carries ``gold_ids`` and the paper has a paper_id
    (SciFact has two different papers titled "Summary"); otherwise titles are
    compared after ``normalise_title``.
    """

    def __init__(self, gold_titles: Sequence[str], gold_ids: Sequence[str] | None = None) -> None:
        self.n = len(gold_titles)
        self._by_title: dict[str, int] = {}
        for i, t in enumerate(gold_titles):
            self._by_title.setdefault(normalise_title(t), i)
        self._by_id = {str(pid): i for i, pid in enumerate(gold_ids)} if gold_ids else None

    def match(self, paper_id: str | None, title: str | None) -> int | None:
        if self._by_id is not None and paper_id:
            return self._by_id.get(str(paper_id))
        return self._by_title.get(normalise_title(title or ""))


# -- retrieval ---------------------------------------------------------------------------
def retrieval_scores(sources: Sequence[dict[str, Any]], matcher: GoldMatcher, k: int | None = None) -> dict[str, Any]:
    """hit@1 / hit@k: 1 if a gold paper is in the top 1 / k sources. MRR: 1/rank of the first gold
    paper (0 if none). recall@k: share of distinct gold papers in the top k. ``None`` with no gold."""
    if matcher.n == 0:
        return {"hit_at_1": None, "hit_at_k": None, "mrr": None, "recall_at_k": None}
    ranked = sorted(sources, key=lambda s: s.get("rank", 0))[: k if k is not None else None]
    found: set[int] = set()
    first: int | None = None
    for pos, src in enumerate(ranked, 1):
        g = matcher.match(src.get("paper_id"), src.get("title"))
        if g is not None:
            found.add(g)
            if first is None:
                first = pos
    return {"hit_at_1": 1.0 if first == 1 else 0.0, "hit_at_k": 1.0 if first else 0.0,
            "mrr": 1.0 / first if first else 0.0, "recall_at_k": len(found) / matcher.n}


# -- answer sentences and citations -----------------------------------------------------------
@dataclass
class AnswerSentence:
    text: str
    """The sentence as written, markers included."""
    bare: str
    """Without citation markers: what gets judged."""
    markers: list[int]


def answer_sentences(text: str) -> list[AnswerSentence]:
    """Sentences of an answer with their markers; a markers-only fragment ("... results. [2]")
    belongs to the sentence before it, as in the answer checker."""
    text, spans = answer_sentence_spans(text)
    out: list[AnswerSentence] = []
    for a, b in spans:
        sent = text[a:b]
        markers = list(dict.fromkeys(marker_numbers(sent)))
        bare = strip_markers(sent)
        if bare.strip(" .,;:"):
            out.append(AnswerSentence(sent, bare, markers))
    return out


def citation_validity(text: str, citation_markers: Iterable[int]) -> float | None:
    """Share of [n] markers in the answer text that resolve to a listed citation; None without markers."""
    found = marker_numbers(text)
    if not found:
        return None
    valid = set(citation_markers)
    return sum(1 for n in found if n in valid) / len(found)


def citation_recall(cited: Sequence[dict[str, Any]], matcher: GoldMatcher) -> float | None:
    """Share of gold papers the answer cites; None when the question has no gold papers."""
    if matcher.n == 0:
        return None
    hit = {matcher.match(c.get("paper_id"), c.get("title")) for c in cited} - {None}
    return len(hit) / matcher.n


def evidence_quote(cited: Sequence[dict[str, Any]], evidence: Sequence[Mapping[str, str]],
                   matcher: GoldMatcher) -> float | None:
    """Share of the cited gold papers with an evidence quote whose citation quote is that evidence
    sentence (the two overlap by at least half of the shorter, as whitespace-normalised text);
    None when no such paper is cited."""
    norm = lambda s: " ".join(str(s or "").split())  # noqa: E731
    by_gold: dict[int, list[str]] = {}
    for e in evidence:
        g = matcher.match(None, e.get("title"))
        if g is not None and e.get("quote"):
            by_gold.setdefault(g, []).append(norm(e["quote"]))
    hits: dict[int, bool] = {}
    for c in cited:
        g = matcher.match(c.get("paper_id"), c.get("title"))
        if g is None or g not in by_gold:
            continue
        q = norm(c.get("quote"))
        hits[g] = hits.get(g, False) or any(_overlap(q, ev) for ev in by_gold[g])
    return sum(hits.values()) / len(hits) if hits else None


def _overlap(a: str, b: str) -> bool:
    if not a or not b:
        return False
    short, long_ = sorted((a, b), key=len)
    if short in long_:
        return True
    # the longest common substring of two sentences of one abstract is their shared stretch
    from difflib import SequenceMatcher

    m = SequenceMatcher(None, a, b, autojunk=False).find_longest_match(0, len(a), 0, len(b))
    return m.size >= 0.5 * len(short)


# -- answer correctness -----------------------------------------------------------------------
def answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: lower-case words, no punctuation, articles or citation markers."""
    return [t for t in _WORD.findall(strip_markers(text).lower()) if t not in _ARTICLES]


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (bag of words, SQuAD F1)."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def gold_numbers(answer: str, reference: str) -> float | None:
    """Share of the reference answer's numbers the answer states (None when it states none): a
    paraphrase that loses "88.7%" scores content words and still fails the reader."""
    from ..text import numbers_in

    gold = numbers_in(reference)
    if not gold:
        return None
    return len(gold & numbers_in(answer)) / len(gold)


def content_recall(answer: str, reference: str) -> float | None:
    """Share of the reference answer's content words (stemmed) the answer contains."""
    from ..text import content_tokens

    ref = set(content_tokens(reference))
    if not ref:
        return None
    return len(ref & set(content_tokens(answer))) / len(ref)


# -- aggregation ----------------------------------------------------------------------------
def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values; None when there are none."""
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """q-th percentile (0-100), numpy's linear interpolation; None for no values (a summary shows "–")."""
    if not len(values):
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def cohen_kappa(truth: Sequence[bool], pred: Sequence[bool]) -> float:
    """Agreement beyond chance for two binary raters: (p_o - p_e) / (1 - p_e); 0 when p_e = 1 and they differ."""
    if len(truth) != len(pred) or not truth:
        raise ValueError("cohen_kappa needs two equally long, non-empty label lists")
    n = len(truth)
    p_o = sum(1 for a, b in zip(truth, pred, strict=True) if a == b) / n
    t1, p1 = sum(truth) / n, sum(pred) / n
    p_e = t1 * p1 + (1 - t1) * (1 - p1)
    if p_e >= 1.0:
        return 1.0 if p_o == 1.0 else 0.0
    return (p_o - p_e) / (1 - p_e)
