"""The offline judge: a deterministic support score of a sentence against the passages it cites.

score = IDF-weighted coverage of the sentence's stemmed content words by the
passages, averaged with the best cosine between the sentence and any one- or
two-sentence window of the passages when an embedder is given. A sentence is
supported when score >= threshold AND every number (with its % sign) and every
name (acronyms, mixed-case or digit-bearing words, capitalised words after the
first) in it occurs in the passages: a fluent sentence with a wrong figure or a
wrong model name is the hallucination this judge must catch. Thresholds are
chosen on evals/calibration/support_labels.jsonl (see calibration.py).

IDF comes from the bundled sample corpus, a fixed reference, so a score never
depends on which system produced the answer or what else is indexed: two runs
on the same answers always score the same. Words absent from it get the highest
weight (rare = informative).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..settings import JudgeSettings
from ..text import (
    RequiredTerm,  # noqa: F401 - re-exported: the judge's terms are the text layer's
    best_window,
    bm25_idf,
    content_tokens,
    missing_terms,
    required_terms,  # noqa: F401
    sentence_windows,
    strip_markers,
    unstated_qualifiers,
)
from .judging import AnswerJudgement, Passage, SentenceVerdict, cited_passages
from .metrics import AnswerSentence

# Chosen on evals/calibration/support_labels.jsonl by calibration.calibrate (the accuracy-maximising
# midpoint between neighbouring scores); re-run `assistant eval calibrate` after changing the score.
# The calibrated values live in settings ([judge]); these names are their defaults.
THRESHOLD_LEXICAL = JudgeSettings().threshold_lexical
THRESHOLD_SEMANTIC = JudgeSettings().threshold_semantic
COSINE_WEIGHT = JudgeSettings().cosine_weight

#: The qualifiers (text.QUALIFIERS) this judge checks; its thresholds were calibrated with these two.
JUDGE_QUALIFIERS = ("negation", "absolute")


@cache
def reference_idf() -> dict[str, float]:
    """IDF of stemmed content words over the 247 bundled sample abstracts (BM25's positive form),
    read with the real readers. The calibrated thresholds depend on it: the calibration test
    pins the judge's agreement with the hand labels, so a reader change that moved it would fail."""
    from ..index.ingest import sample_paths
    from ..readers import read_paths

    papers = read_paths(sample_paths()).papers
    return idf_from_texts(sorted({f"{p.title} {p.abstract}" for p in papers}))


def idf_from_texts(texts: Sequence[str]) -> dict[str, float]:
    df: dict[str, int] = {}
    for text in texts:
        for tok in set(content_tokens(text)):
            df[tok] = df.get(tok, 0) + 1
    n = len(texts)
    out = {t: bm25_idf(n, d) for t, d in df.items()}
    out[""] = bm25_idf(n, 0)  # weight of an unseen word
    return out


@dataclass
class SupportResult:
    supported: bool
    score: float
    coverage: float
    cosine: float | None
    missing: list[str] = field(default_factory=list)

    def rationale(self, threshold: float) -> str:
        parts = [f"coverage {self.coverage:.2f}"]
        if self.cosine is not None:
            parts.append(f"cosine {self.cosine:.2f}")
        parts.append(f"score {self.score:.2f} {'>=' if self.score >= threshold else '<'} {threshold:.2f}")
        if self.missing:
            parts.append("not in cited passages: " + ", ".join(repr(m) for m in self.missing))
        return "; ".join(parts)


class OfflineJudge:
    """Deterministic, offline support judge (see module docstring)."""

    name = "offline"
    model: str | None = None

    def __init__(self, embedder: Any = None, threshold: float | None = None,
                 idf: dict[str, float] | None = None, cosine_weight: float = COSINE_WEIGHT) -> None:
        self.embedder = embedder
        self.threshold = threshold if threshold is not None else (
            THRESHOLD_SEMANTIC if embedder is not None else THRESHOLD_LEXICAL)
        self.idf = idf if idf is not None else reference_idf()
        self.cosine_weight = cosine_weight if embedder is not None else 0.0
        self.model = getattr(embedder, "name", None) if embedder is not None else None
        self._vectors: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- scoring ------------------------------------------------------------------------------
    def coverage(self, sentence: str, passages: Sequence[str]) -> float:
        """IDF-weighted share of the sentence's distinct content stems found in the passages."""
        words = set(content_tokens(strip_markers(sentence)))
        if not words:
            return 1.0
        have: set[str] = set()
        for p in passages:
            have.update(content_tokens(p))
        unseen = self.idf[""]
        total = sum(self.idf.get(w, unseen) for w in words)
        return sum(self.idf.get(w, unseen) for w in words & have) / total

    def missing_terms(self, sentence: str, passages: Sequence[str]) -> list[str]:
        """Numbers and names absent from the passages (text.missing_terms), then negations and
        absolutes absent from the part of the passages the sentence restates."""
        missing = missing_terms(sentence, passages)
        if unstated_qualifiers(sentence, "", JUDGE_QUALIFIERS):
            # A negation or absolute must be in the part of the passages the sentence restates.
            where = self.best_window(sentence, passages)
            missing.extend(unstated_qualifiers(sentence, where, JUDGE_QUALIFIERS))
        return missing

    def best_window(self, sentence: str, passages: Sequence[str]) -> str:
        """The part of the passages the sentence restates (text.best_window with this judge's coverage)."""
        return best_window(sentence, passages, lambda s, w: self.coverage(s, [w]))

    def _embed(self, texts: list[str]) -> Any:
        import numpy as np

        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
            if todo:
                vecs = np.asarray(self.embedder.embed(todo), dtype=np.float32)
                for t, v in zip(todo, vecs, strict=True):
                    norm = float(np.linalg.norm(v))
                    self._vectors[t] = v / norm if norm > 0 else v
            return np.vstack([self._vectors[t] for t in texts])

    def max_cosine(self, sentence: str, passages: Sequence[str]) -> float:
        """Best cosine between the sentence and any one- or two-sentence window of a passage."""
        windows = sentence_windows(passages)
        if not windows:
            return 0.0
        vecs = self._embed([strip_markers(sentence), *windows])
        return float(max(0.0, (vecs[1:] @ vecs[0]).max()))

    def score(self, sentence: str, passages: Sequence[str]) -> SupportResult:
        cov = self.coverage(sentence, passages)
        cos = self.max_cosine(sentence, passages) if self.embedder is not None and passages else None
        score = cov if cos is None else (1 - self.cosine_weight) * cov + self.cosine_weight * cos
        missing = self.missing_terms(sentence, passages)
        return SupportResult(supported=score >= self.threshold and not missing, score=score, coverage=cov,
                             cosine=cos, missing=missing)

    def supports(self, sentence: str, passages: Sequence[str]) -> bool:
        return self.score(sentence, passages).supported

    # -- answers --------------------------------------------------------------------------------
    def judge(self, question: str, sentences: Sequence[AnswerSentence],
              passages: dict[int, Passage]) -> AnswerJudgement:
        out = AnswerJudgement(judge=self.name)
        for s in sentences:
            found, unknown = cited_passages(s, passages)
            if not found:
                why = "no citation" if not s.markers else f"cites unknown marker(s) {unknown}"
                out.sentences.append(SentenceVerdict(s.text, s.markers, False, {}, 0.0,
                                                     [{"claim": s.bare, "supported": False, "reason": why}], why))
                continue
            joint = self.score(s.bare, [p.text for p in found])
            per: dict[int, bool | None] = {}
            for p in found:
                per[p.marker] = joint.supported if len(found) == 1 else self.supports(s.bare, [p.text])
            for m in unknown:
                per[m] = False
            why = joint.rationale(self.threshold)
            out.sentences.append(SentenceVerdict(s.text, s.markers, joint.supported, per, round(joint.score, 4),
                                                 [{"claim": s.bare, "supported": joint.supported, "reason": why}],
                                                 why))
        return out
