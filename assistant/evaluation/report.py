"""Report files: report.json (everything), report.md (for people: per-type table, worst
questions first) and JUnit XML (for CI: one test case per question, failing as defined
in scoring.py)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from ..display import markdown_text
from .files import json_text, printable, write_all_atomic
from .results import EvalReport
from .scoring import ROW_METRICS

#: Summary metrics in display order, with short labels.
SUMMARY_METRICS: dict[str, str] = {
    "pass_rate": "pass rate", "hit_at_1": "hit@1", "hit_at_k": "hit@k", "mrr": "MRR", "recall_at_k": "recall@k",
    "citation_validity": "citation validity", "citation_precision": "citation precision",
    "citation_recall": "citation recall", "evidence_quote": "quote = evidence sentence",
    "sentence_support": "sentence support (ALCE)",
    "faithfulness": "faithfulness", "support_score": "mean offline support score",
    "refusal_accuracy": "refusal accuracy (unanswerable)", "false_refusal_rate": "false-refusal rate (answerable)",
    "correctness_f1": "answer token F1", "gold_numbers": "reference numbers stated",
    "content_recall": "reference content words stated", "correctness_cosine": "answer embedding cosine",
    "latency_p50_ms": "latency p50 (ms)", "latency_p95_ms": "latency p95 (ms)", "judge_errors": "judge errors",
}
TYPE_COLUMNS = ("pass_rate", "hit_at_k", "mrr", "recall_at_k", "citation_precision", "citation_recall",
                "sentence_support", "faithfulness", "correctness_f1", "refusal_accuracy", "false_refusal_rate")
SHORT_LABELS = {"pass_rate": "pass", "hit_at_k": "hit@k", "mrr": "MRR", "recall_at_k": "rec@k",
          "citation_precision": "cit.P", "citation_recall": "cit.R", "sentence_support": "support",
          "faithfulness": "faithful", "correctness_f1": "F1", "refusal_accuracy": "refuse",
          "false_refusal_rate": "false-ref"}


def fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if metric.endswith("_ms") else f"{value:.3f}"
    return str(value)


def badness(row: dict[str, Any]) -> tuple[int, int, float]:
    """Sort key, worst first: failing, then more failure reasons, then lower mean score
    (a passing row with no scores, e.g. a correct refusal, counts as perfect)."""
    vals = [v for m in ROW_METRICS if (v := row["scores"].get(m)) is not None]
    return (-int(bool(row["failed"])), -len(row.get("fail_reasons", [])), sum(vals) / len(vals) if vals else 1.0)


def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=badness)


def _cell(text: str, limit: int = 90) -> str:
    """One line of paper or model text for the Markdown report, cut to ``limit`` and escaped (it is
    pasted into CI summaries and pull requests, which render it: see ``display.py``)."""
    text = " ".join(str(text).split())
    return markdown_text(text if len(text) <= limit else text[: limit - 1] + "…")


def render_markdown(report: EvalReport) -> str:
    s, meta = report.summary, report.meta
    git = meta.get("git") or {}
    judge = meta.get("judge") or {}
    lines = ["# Evaluation report", ""]
    lines += [f"- questions: {s['questions']} ({meta.get('questions_file') or 'in memory'}), "
              f"failed: {s['failed']}, errors: {s['errors']}",
              f"- backend: {json.dumps(meta.get('backend', {}))}; judge: {judge.get('name')}"
              + (f" ({judge['model']})" if judge.get("model") else "")
              + (f", threshold {judge['threshold']}" if judge.get("threshold") is not None else ""),
              f"- corpus fingerprint: {meta.get('corpus_fingerprint') or '–'}; commit: {git.get('commit') or '–'}"
              + (" (uncommitted changes)" if git.get("dirty") else ""),
              f"- started {meta.get('started_at', '–')}, took {meta.get('duration_s', '–')} s", ""]
    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {fmt(s.get(m), m)} |" for m, label in SUMMARY_METRICS.items() if m in s]
    lines += ["", "## By question type", "",
              "| type | n | failed | " + " | ".join(SHORT_LABELS[c] for c in TYPE_COLUMNS) + " |",
              "|---|---|---|" + "---|" * len(TYPE_COLUMNS)]
    for t, ts in (s.get("by_type") or {}).items():
        lines.append(f"| {t} | {ts['questions']} | {ts['failed']} | "
                     + " | ".join(fmt(ts.get(c), c) for c in TYPE_COLUMNS) + " |")
    lines += ["", "## Questions, worst first", "",
              "A question fails when asking errors, it refuses an answerable question or answers an unanswerable "
              "one, no gold paper is retrieved, a sentence is not supported by its own citations, or a marker "
              "resolves to no citation.", "",
              "| qid | type | status | hit@k | support | cit.P | F1 | why |", "|---|---|---|---|---|---|---|---|"]
    for r in worst_first(report.rows):
        sc = r["scores"]
        lines.append(f"| {r['qid']} | {r['type']} | {'FAIL' if r['failed'] else 'pass'} | "
                     f"{fmt(sc.get('hit_at_k'))} | {fmt(sc.get('sentence_support'))} | "
                     f"{fmt(sc.get('citation_precision'))} | {fmt(sc.get('correctness_f1'))} | "
                     f"{_cell('; '.join(r.get('fail_reasons', [])))} |")
    failing = [r for r in worst_first(report.rows) if r["failed"]]
    if failing:
        lines += ["", "## Failing questions in detail", ""]
        for r in failing:
            lines += [f"### {markdown_text(str(r['qid']))} ({r['type']})", "",
                      f"**Q:** {markdown_text(str(r['question']))}", "",
                      f"**A:** {markdown_text(str(r['answer'])) if r['answer'] else '(no answer)'}", ""]
            lines += [f"- {markdown_text(str(reason))}" for reason in r.get("fail_reasons", [])]
            if r["gold_titles"]:
                lines.append("- gold: " + "; ".join(markdown_text(str(t)) for t in r["gold_titles"]))
            for c in r.get("citations", []):
                lines.append(f"- \\[{c.get('marker')}\\] {markdown_text(str(c.get('title')))}")
            for v in r.get("sentences", []):
                if v.get("supported") is False:
                    lines.append(f"- unsupported: “{_cell(v['sentence'], 200)}” — {_cell(v.get('rationale', ''), 300)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_junit(report: EvalReport) -> str:
    suite = ET.Element("testsuite", name="eval", tests=str(len(report.rows)),
                       failures=str(sum(1 for r in report.rows if r["failed"] and not r.get("error"))),
                       errors=str(sum(1 for r in report.rows if r.get("error"))),
                       time=f"{float(report.meta.get('duration_s') or 0):.3f}")
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"eval.{r['type']}",
                             name=f"{r['qid']}: {_cell(r['question'], 100)}",
                             time=f"{(r.get('latency_ms') or 0) / 1000:.3f}")
        detail = "\n".join([f"question: {r['question']}", f"answer: {r.get('answer') or '(none)'}"]
                           + [f"unsupported: {v['sentence']} -- {v.get('rationale', '')}"
                              for v in r.get("sentences", []) if v.get("supported") is False])
        if r.get("error"):
            ET.SubElement(case, "error", message=_cell(r["error"], 300)).text = detail
        elif r["failed"]:
            ET.SubElement(case, "failure", message=_cell("; ".join(r["fail_reasons"]), 300)).text = detail
        if r.get("judge_errors"):
            ET.SubElement(case, "system-out").text = "judge errors:\n" + "\n".join(r["judge_errors"])
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_report(report: EvalReport, out_dir: str | Path | None, *, junit: str | Path | None = None) -> list[Path]:
    """Write report.json and report.md into ``out_dir`` (created) and the JUnit file; returns the paths.

    Every file is rendered before the first is written, and each is replaced atomically, so a
    failure leaves the previous run's reports in ``out_dir`` whole."""
    outputs: list[tuple[Path, str]] = []
    if out_dir is not None:
        out = Path(out_dir)
        outputs += [(out / "report.json", json_text(report.to_dict(), indent=1) + "\n"),
                    (out / "report.md", printable(render_markdown(report)))]
    if junit is not None:
        outputs.append((Path(junit), printable(render_junit(report))))
    return write_all_atomic(outputs)
