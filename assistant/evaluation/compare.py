"""Baseline comparison: per-metric deltas and per-question changes between two reports.

A question IMPROVED from A to B when it went from failing to passing, or kept its
status while the sum of its score changes (hit@k, MRR, recall@k, citation precision
and recall, sentence support, faithfulness, token F1) rose by more than 0.05;
REGRESSED is the mirror image. Questions present in only one report are "added"
or "removed" (a changed question set makes the summary deltas less meaningful,
so the comparison says how many questions the reports share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gate import GATE_METRICS, LOWER_IS_BETTER
from .results import EvalReport

CHANGE_METRICS = ("hit_at_k", "mrr", "recall_at_k", "citation_precision", "citation_recall", "sentence_support",
                  "faithfulness", "correctness_f1")
EPSILON = 0.05


@dataclass
class Comparison:
    metrics: list[dict[str, Any]] = field(default_factory=list)
    """{"metric", "a", "b", "delta", "better": True | False | None (unchanged or unmeasured)}."""
    questions: list[dict[str, Any]] = field(default_factory=list)
    """{"qid", "type", "change", "a_failed", "b_failed", "deltas", "a_reasons", "b_reasons"}."""
    meta: dict[str, Any] = field(default_factory=dict)

    def by_change(self, change: str) -> list[dict[str, Any]]:
        return [q for q in self.questions if q["change"] == change]

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "metrics": self.metrics, "questions": self.questions}


def _delta(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    return float(b) - float(a)


def question_change(ra: dict[str, Any], rb: dict[str, Any]) -> tuple[str, dict[str, float]]:
    deltas = {m: d for m in CHANGE_METRICS
              if (d := _delta(ra["scores"].get(m), rb["scores"].get(m))) is not None and abs(d) > 1e-9}
    if ra["failed"] and not rb["failed"]:
        return "improved", deltas
    if rb["failed"] and not ra["failed"]:
        return "regressed", deltas
    total = sum(deltas.values())
    if total > EPSILON:
        return "improved", deltas
    if total < -EPSILON:
        return "regressed", deltas
    return "unchanged", deltas


def compare_reports(a: EvalReport | str | Path, b: EvalReport | str | Path) -> Comparison:
    """B relative to A (A = baseline)."""
    ra = a if isinstance(a, EvalReport) else EvalReport.load(a)
    rb = b if isinstance(b, EvalReport) else EvalReport.load(b)
    out = Comparison()
    for m in GATE_METRICS:
        va, vb = ra.summary.get(m), rb.summary.get(m)
        if va is None and vb is None:
            continue
        d = _delta(va, vb)
        better = None if d is None or abs(d) < 1e-9 else ((d < 0) if m in LOWER_IS_BETTER else (d > 0))
        out.metrics.append({"metric": m, "a": va, "b": vb, "delta": d, "better": better})
    rows_a = {r["qid"]: r for r in ra.rows}
    rows_b = {r["qid"]: r for r in rb.rows}
    for qid, row_a in rows_a.items():
        row_b = rows_b.get(qid)
        if row_b is None:
            out.questions.append({"qid": qid, "type": row_a["type"], "change": "removed", "a_failed": row_a["failed"],
                                  "b_failed": None, "deltas": {}, "a_reasons": row_a.get("fail_reasons", []),
                                  "b_reasons": []})
            continue
        change, deltas = question_change(row_a, row_b)
        out.questions.append({"qid": qid, "type": row_a["type"], "change": change, "a_failed": row_a["failed"],
                              "b_failed": row_b["failed"], "deltas": deltas,
                              "a_reasons": row_a.get("fail_reasons", []), "b_reasons": row_b.get("fail_reasons", [])})
    for qid, row_b in rows_b.items():
        if qid not in rows_a:
            out.questions.append({"qid": qid, "type": row_b["type"], "change": "added", "a_failed": None,
                                  "b_failed": row_b["failed"], "deltas": {}, "a_reasons": [],
                                  "b_reasons": row_b.get("fail_reasons", [])})
    ma, mb = ra.meta, rb.meta
    out.meta = {
        "shared_questions": len(set(rows_a) & set(rows_b)),
        "a": {"commit": (ma.get("git") or {}).get("commit"), "corpus": ma.get("corpus_fingerprint"),
              "backend": ma.get("backend"), "judge": ma.get("judge")},
        "b": {"commit": (mb.get("git") or {}).get("commit"), "corpus": mb.get("corpus_fingerprint"),
              "backend": mb.get("backend"), "judge": mb.get("judge")},
    }
    warnings = []
    if ma.get("corpus_fingerprint") != mb.get("corpus_fingerprint"):
        warnings.append("the reports were run on different corpora (corpus fingerprints differ)")
    if (ma.get("judge") or {}).get("name") != (mb.get("judge") or {}).get("name"):
        warnings.append("the reports used different judges; support metrics are not comparable")
    if not out.meta["shared_questions"]:
        warnings.append("the reports share no question (different question sets?); there is nothing to compare "
                        "question by question, and the summary deltas compare different questions")
    out.meta["warnings"] = warnings
    return out
