"""One question + one answer (``Answer.to_dict``) -> one report row with every per-question score.

Metrics (per question; the summary averages the defined ones, None = not applicable):
  hit_at_1 / hit_at_k  1 if a gold paper is the top source / among the k sources (answerable questions).
  mrr                  1 / rank of the first gold source, 0 if none.
  recall_at_k          share of the gold papers among the k sources.
  citation_validity    share of [n] markers in the answer text that resolve to a listed citation.
  citation_precision   share of distinct cited papers that are gold or support a sentence citing them (judge).
  citation_recall      share of gold papers the answer cites (a refusal cites none).
  evidence_quote       share of cited gold papers (with evidence quotes) quoted by their evidence sentence.
  sentence_support     ALCE: share of answer sentences entailed by their own citations (uncited = not).
  faithfulness         share of claims supported by the passages their sentence cites (offline: a sentence
                       is one claim, so it equals sentence_support; llm: claims extracted by the judge).
  support_score        offline judge only: mean continuous support score behind its verdicts.
  refusal_accuracy     summary: share of unanswerable questions refused.
  false_refusal_rate   summary: share of answerable questions refused.
  correctness_f1       SQuAD token F1 against the reference answer (refusal = 0).
  gold_numbers         share of the reference answer's numbers the answer states (refusal = 0; None when
                       the reference has none).
  content_recall       share of the reference answer's content words the answer contains (refusal = 0).
  correctness_cosine   cosine of answer and reference embeddings, when an embedder is given.
  latency_p50/p95_ms   summary: percentiles of timings_ms["total"] (wall clock when absent).

A question FAILS (report.md, JUnit) when any of these holds:
  - asking raised an error;
  - it is answerable and the answer refused, or unanswerable and the answer did not refuse;
  - it is answerable and no gold paper is among the retrieved sources;
  - a sentence of a non-refused answer is not supported by its own citations (uncited counts as unsupported);
  - a citation marker in the text resolves to no citation.
Judge errors do not fail a question (the judge failed, not the system); they are counted in the summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..text import strip_markers
from .judging import AnswerJudgement, Judge, Passage
from .metrics import (
    GoldMatcher,
    answer_sentences,
    citation_recall,
    citation_validity,
    content_recall,
    evidence_quote,
    gold_numbers,
    mean,
    retrieval_scores,
    token_f1,
)
from .questions import Question

#: Per-question scores that average into the summary (higher is better), in report order.
ROW_METRICS = ("hit_at_1", "hit_at_k", "mrr", "recall_at_k", "citation_validity", "citation_precision",
               "citation_recall", "evidence_quote", "sentence_support", "faithfulness", "correctness_f1",
               "gold_numbers", "content_recall", "correctness_cosine")


def score_answer(question: Question, answer: Mapping[str, Any], passages: Mapping[str, str], judge: Judge, *,
                 embedder: Any = None, k: int | None = None, latency_ms: float | None = None) -> dict[str, Any]:
    """Score one answer. ``passages`` maps a cited paper_id to its text (title + abstract);
    latency defaults to the answer's own ``timings_ms["total"]``."""
    if latency_ms is None:
        total = (answer.get("timings_ms") or {}).get("total")
        latency_ms = float(total) if total is not None else None
    matcher = GoldMatcher(question.gold_titles, question.gold_ids)
    refused = bool(answer.get("refused"))
    text = str(answer.get("answer", ""))
    citations = list(answer.get("citations") or [])
    sources = list(answer.get("sources") or [])
    scores: dict[str, Any] = dict.fromkeys(ROW_METRICS)
    scores.update(retrieval_scores(sources, matcher, k))

    by_marker = {int(c["marker"]): c for c in citations if "marker" in c}
    judged = AnswerJudgement(judge=judge.name)
    if not refused:
        sentences = answer_sentences(text)
        cited = {m: Passage(m, str(c.get("paper_id", "")), str(c.get("title", "")), passages[str(c["paper_id"])])
                 for m, c in by_marker.items() if str(c.get("paper_id", "")) in passages}
        judged = judge.judge(question.question, sentences, cited)
        scores["citation_validity"] = citation_validity(text, by_marker)
        scores["citation_precision"] = citation_precision(citations, judged, matcher)
        verdicts = [s.supported for s in judged.sentences if s.supported is not None]
        scores["sentence_support"] = (sum(verdicts) / len(verdicts)) if verdicts else None
        claims = [c["supported"] for c in judged.claims if c.get("supported") is not None]
        scores["faithfulness"] = (sum(claims) / len(claims)) if claims else None
        offline = [s.score for s in judged.sentences if s.score is not None]
        if offline:
            scores["support_score"] = sum(offline) / len(offline)
    if question.answerable:
        scores["citation_recall"] = citation_recall(citations, matcher)
        if not refused:
            scores["evidence_quote"] = evidence_quote(citations, question.evidence, matcher)
        if question.answer.strip():
            scores["correctness_f1"] = 0.0 if refused else token_f1(text, question.answer)
            answer_text = "" if refused else strip_markers(text)
            scores["gold_numbers"] = gold_numbers(answer_text, question.answer)
            scores["content_recall"] = content_recall(answer_text, question.answer)
            if embedder is not None:
                scores["correctness_cosine"] = 0.0 if refused else embedding_cosine(embedder, text, question.answer)

    row: dict[str, Any] = {
        "qid": question.qid, "type": question.type, "question": question.question,
        "answerable": question.answerable, "gold_titles": question.gold_titles,
        "reference_answer": question.answer,
        "answer": text, "refused": refused, "citations": citations,
        "sources": [{k_: s.get(k_) for k_ in ("rank", "paper_id", "title", "score")} for s in sources],
        "backend": dict(answer.get("backend") or {}), "timings_ms": dict(answer.get("timings_ms") or {}),
        "latency_ms": latency_ms, "scores": scores,
        "sentences": [s.to_dict() for s in judged.sentences], "judge_errors": list(judged.errors),
        "error": None,
    }
    row["fail_reasons"] = fail_reasons(row)
    row["failed"] = bool(row["fail_reasons"])
    return row


def error_row(question: Question, message: str, latency_ms: float | None = None) -> dict[str, Any]:
    """The row of a question whose ask raised: it fails, and no score is defined."""
    row: dict[str, Any] = {
        "qid": question.qid, "type": question.type, "question": question.question,
        "answerable": question.answerable, "gold_titles": question.gold_titles,
        "reference_answer": question.answer, "answer": "", "refused": None, "citations": [], "sources": [],
        "backend": {}, "timings_ms": {}, "latency_ms": latency_ms, "scores": dict.fromkeys(ROW_METRICS),
        "sentences": [], "judge_errors": [], "error": message,
    }
    row["fail_reasons"] = fail_reasons(row)
    row["failed"] = True
    return row


def citation_precision(citations: list[dict[str, Any]], judged: AnswerJudgement, matcher: GoldMatcher) -> float | None:
    """Share of distinct cited papers that are gold or support a sentence that cites them.
    A non-gold paper whose support the judge could not decide is left out; None without citations."""
    marker_paper = {int(c["marker"]): str(c.get("paper_id", "")) for c in citations if "marker" in c}
    verdicts: dict[str, list[bool | None]] = {}
    for s in judged.sentences:
        for m, ok in s.per_citation.items():
            pid = marker_paper.get(int(m))
            if pid is not None:
                verdicts.setdefault(pid, []).append(ok)
    good = total = 0
    seen: set[str] = set()
    for c in citations:
        pid = str(c.get("paper_id", ""))
        if pid in seen:
            continue
        seen.add(pid)
        v = verdicts.get(pid, [])
        if matcher.match(pid, c.get("title")) is not None or True in v:
            good += 1
        elif None in v:
            continue  # undecided: the judge failed on every sentence citing it
        total += 1
    return good / total if total else None


def embedding_cosine(embedder: Any, a: str, b: str) -> float:
    import numpy as np

    vecs = np.asarray(embedder.embed([strip_markers(a), strip_markers(b)]), dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1)
    if not norms.all():
        return 0.0
    return float(np.dot(vecs[0], vecs[1]) / (norms[0] * norms[1]))


def fail_reasons(row: Mapping[str, Any]) -> list[str]:
    """The failure rule in the module docstring, as messages for report.md and JUnit."""
    if row.get("error"):
        return [f"error: {row['error']}"]
    reasons: list[str] = []
    s = row["scores"]
    if row["answerable"] and row["refused"]:
        reasons.append("refused an answerable question")
    if not row["answerable"] and not row["refused"]:
        reasons.append("did not refuse an unanswerable question")
    if row["answerable"] and s.get("hit_at_k") == 0.0:
        reasons.append("no gold paper among the retrieved sources")
    bad = [v for v in row.get("sentences", []) if v.get("supported") is False]
    if bad:
        reasons.append(f"{len(bad)} of {len(row['sentences'])} sentence(s) not supported by their citations")
    if s.get("citation_validity") is not None and s["citation_validity"] < 1.0:
        reasons.append("citation markers that resolve to no citation")
    return reasons


def summarise_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of the per-question scores plus refusal rates, latency percentiles and counts."""
    from .metrics import percentile

    out: dict[str, Any] = {"questions": len(rows), "failed": sum(1 for r in rows if r["failed"]),
                           "errors": sum(1 for r in rows if r.get("error"))}
    out["pass_rate"] = (1 - out["failed"] / len(rows)) if rows else None
    for m in ROW_METRICS:
        out[m] = mean(r["scores"].get(m) for r in rows)
    out["support_score"] = mean(r["scores"].get("support_score") for r in rows)
    ok = [r for r in rows if not r.get("error")]
    out["refusal_accuracy"] = mean(float(r["refused"]) for r in ok if not r["answerable"])
    out["false_refusal_rate"] = mean(float(r["refused"]) for r in ok if r["answerable"])
    lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    out["latency_p50_ms"] = percentile(lat, 50)
    out["latency_p95_ms"] = percentile(lat, 95)
    out["judge_errors"] = sum(len(r.get("judge_errors", [])) for r in rows)
    out["sentences_judged"] = sum(len(r.get("sentences", [])) for r in rows)
    return out
