"""SciFact's own metrics for claim verification, to the definitions of ``doc/evaluation.md`` in
github.com/allenai/scifact (and its ``verisci/evaluate/lib/metrics.py``).

A prediction per claim is ``{doc_id: {"label": "SUPPORT" | "CONTRADICT", "sentences": [i, ...]}}``
(sentence indices into the corpus record's ``sentences``, best first); a not-enough-info paper is
simply absent (an entry labelled ``NOT_ENOUGH_INFO`` is skipped, as the official evaluator does).

* Abstract level: a predicted abstract is correct for **Label-Only** when it is an evidence abstract
  and its label is the gold one, and for **Label+Rationale** when moreover some gold evidence set is
  contained in its *first three* predicted sentences. P = correct / predicted abstracts,
  R = correct / gold evidence abstracts.
* Sentence level: a predicted sentence is correct for **Selection-Only** when it is in a gold evidence
  set of an evidence abstract and every other sentence of that set is predicted too (all predicted
  sentences count); **Selection+Label** also needs the abstract's label right.
  P = correct / predicted sentences, R = correct / gold evidence sentences.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ABSTRACT_SENTS = 3
"""Only the first three predicted sentences of an abstract count at abstract level."""
LABELS = ("SUPPORT", "CONTRADICT")
NEI = "NOT_ENOUGH_INFO"


@dataclass(frozen=True)
class GoldAbstract:
    label: str
    rationales: tuple[frozenset[int], ...]


Gold = Mapping[str, Mapping[str, GoldAbstract]]
"""claim id -> evidence doc id -> label and evidence sets (claims without evidence map to {})."""
Predictions = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""claim id -> doc id -> {"label": ..., "sentences": [...]}."""


def gold_from_claims(claims: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, GoldAbstract]]:
    """Gold of claim records in either shape: the original release (``evidence``: doc -> list of
    {sentences, label}) or the derived ``claims.jsonl`` (``labels`` and ``rationales`` per doc).
    Keyed by the claim's ``id`` as text."""
    out: dict[str, dict[str, GoldAbstract]] = {}
    for c in claims:
        docs: dict[str, GoldAbstract] = {}
        if "evidence" in c:
            for doc, sets in (c.get("evidence") or {}).items():
                labels = {s["label"] for s in sets}
                if len(labels) != 1:
                    raise ValueError(f"claim {c.get('id')}: document {doc} has labels {sorted(labels)}, expected one")
                docs[str(doc)] = GoldAbstract(labels.pop(), tuple(frozenset(s["sentences"]) for s in sets))
        else:
            for doc, sets in (c.get("rationales") or {}).items():
                docs[str(doc)] = GoldAbstract(c["labels"][doc], tuple(frozenset(s) for s in sets))
        out[str(c["id"])] = docs
    return out


def prf(correct: float, predicted: float, relevant: float) -> dict[str, float]:
    """Precision, recall and F1 (0 when undefined, as the official ``safe_divide``)."""
    p = correct / predicted if predicted else 0.0
    r = correct / relevant if relevant else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def _contains_set(predicted: set[int], sets: Sequence[frozenset[int]]) -> bool:
    return any(s <= predicted for s in sets)


def counts(gold: Gold, predictions: Predictions) -> Counter[str]:
    """The raw counts behind ``scifact_metrics`` (claims missing from ``predictions`` predicted nothing)."""
    n: Counter[str] = Counter()
    for claim_id, evidence in gold.items():
        n["abstract_relevant"] += len(evidence)
        n["sentence_relevant"] += sum(len(s) for g in evidence.values() for s in g.rationales)
        for doc_id, pred in (predictions.get(claim_id) or {}).items():
            label = pred.get("label")
            if label == NEI:
                continue
            if label not in LABELS:
                raise ValueError(f"claim {claim_id}, document {doc_id}: label {label!r} is not one of {LABELS}")
            sents = [int(i) for i in pred.get("sentences") or []]
            n["abstract_retrieved"] += 1
            n["sentence_retrieved"] += len(sents)
            g = evidence.get(str(doc_id))
            if g is None:
                continue
            label_ok = label == g.label
            if label_ok:
                n["abstract_label_only"] += 1
                if _contains_set(set(sents[:MAX_ABSTRACT_SENTS]), g.rationales):
                    n["abstract_rationalized"] += 1
            chosen = set(sents)
            right = 0
            for i in chosen:
                holding = [s for s in g.rationales if i in s]
                if holding and holding[0] <= chosen:
                    right += 1
            n["sentence_selection"] += right
            n["sentence_label"] += right * label_ok
    return n


def scifact_metrics(gold: Gold, predictions: Predictions) -> dict[str, dict[str, float]]:
    """The four official P/R/F1 triples, keyed as the official evaluator's columns."""
    n = counts(gold, predictions)
    return {
        "abstract_label_only": prf(n["abstract_label_only"], n["abstract_retrieved"], n["abstract_relevant"]),
        "abstract_rationalized": prf(n["abstract_rationalized"], n["abstract_retrieved"], n["abstract_relevant"]),
        "sentence_selection": prf(n["sentence_selection"], n["sentence_retrieved"], n["sentence_relevant"]),
        "sentence_label": prf(n["sentence_label"], n["sentence_retrieved"], n["sentence_relevant"]),
    }


METRIC_NAMES = {
    "abstract_label_only": "abstract Label-Only",
    "abstract_rationalized": "abstract Label+Rationale",
    "sentence_selection": "sentence Selection-Only",
    "sentence_label": "sentence Selection+Label",
}


def sentence_spans(abstract: str, sentences: Sequence[str]) -> list[tuple[int, int] | None]:
    """Where each of SciFact's sentences sits in the abstract text (found in order; None if absent)."""
    spans: list[tuple[int, int] | None] = []
    at = 0
    for s in sentences:
        s = s.strip()
        i = abstract.find(s, at) if s else -1
        if i < 0:
            i = abstract.find(s) if s else -1
        spans.append((i, i + len(s)) if i >= 0 else None)
        if i >= 0:
            at = i + len(s)
    return spans


def sentence_indices(start: int, end: int, spans: Sequence[tuple[int, int] | None]) -> list[int]:
    """SciFact sentence indices that the span start..end covers (at least half of the SciFact sentence,
    or at least half of the span): our sentence splitter and SciFact's may cut differently."""
    out = []
    for j, sp in enumerate(spans):
        if sp is None:
            continue
        ov = min(end, sp[1]) - max(start, sp[0])
        if ov > 0 and (ov >= 0.5 * (sp[1] - sp[0]) or ov >= 0.5 * (end - start)):
            out.append(j)
    return out
