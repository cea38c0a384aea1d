"""Report files: report.json (everything), report.md (for people: per-type table, worst
questions first) and JUnit XML (for CI: one test case per question, failing as defined
in scoring.py)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..display import markdown_text
from .files import json_text, printable, printable_line, write_all_atomic
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


def _flat(text: object) -> str:
    """Text as one line: runs of whitespace (newlines too) as one space, other control characters as
    their escape, a lone surrogate as U+FFFD. In Markdown a line break inside a paragraph renders as a
    space anyway, while a line of its own could start a list item or a heading the text never was."""
    return printable_line(" ".join(str(text).split()))


def _short(text: object, limit: int) -> str:
    """``_flat(text)`` cut to ``limit`` characters."""
    flat = _flat(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cell(text: str, limit: int = 90) -> str:
    """One line of paper or model text for the Markdown report, cut to ``limit`` and escaped (it is
    pasted into CI summaries and pull requests, which render it: see ``display.py``)."""
    return markdown_text(_short(text, limit))


def _inline(value: object) -> str:
    """An id, type, title, path or number as one escaped line, whole: a newline in a qid ended its table
    row and started a forged one, and a ``|`` split its cell (a hand-edited report.json may hold any)."""
    return markdown_text(printable_line(value))


def _num(value: Any, metric: str = "") -> str:
    return _inline(fmt(value, metric))


def render_markdown(report: EvalReport) -> str:
    s, meta = report.summary, report.meta
    git = meta.get("git") or {}
    judge = meta.get("judge") or {}
    lines = ["# Evaluation report", ""]
    lines += [f"- questions: {_inline(s['questions'])} ({_inline(meta.get('questions_file') or 'in memory')}), "
              f"failed: {_inline(s['failed'])}, errors: {_inline(s['errors'])}",
              f"- backend: {_inline(json.dumps(meta.get('backend', {})))}; judge: {_inline(judge.get('name'))}"
              + (f" ({_inline(judge['model'])})" if judge.get("model") else "")
              + (f", threshold {_inline(judge['threshold'])}" if judge.get("threshold") is not None else ""),
              f"- corpus fingerprint: {_inline(meta.get('corpus_fingerprint') or '–')}; "
              f"commit: {_inline(git.get('commit') or '–')}"
              + (" (uncommitted changes)" if git.get("dirty") else ""),
              f"- started {_inline(meta.get('started_at', '–'))}, took {_inline(meta.get('duration_s', '–'))} s", ""]
    lines += ["## Summary", "", "| metric | value |", "|---|---|"]
    lines += [f"| {label} | {_num(s.get(m), m)} |" for m, label in SUMMARY_METRICS.items() if m in s]
    lines += ["", "## By question type", "",
              "| type | n | failed | " + " | ".join(SHORT_LABELS[c] for c in TYPE_COLUMNS) + " |",
              "|---|---|---|" + "---|" * len(TYPE_COLUMNS)]
    for t, ts in (s.get("by_type") or {}).items():
        lines.append(f"| {_inline(t)} | {_inline(ts['questions'])} | {_inline(ts['failed'])} | "
                     + " | ".join(_num(ts.get(c), c) for c in TYPE_COLUMNS) + " |")
    lines += ["", "## Questions, worst first", "",
              "A question fails when asking errors, it refuses an answerable question or answers an unanswerable "
              "one, no gold paper is retrieved, a sentence is not supported by its own citations, or a marker "
              "resolves to no citation.", "",
              "| qid | type | status | hit@k | support | cit.P | F1 | why |", "|---|---|---|---|---|---|---|---|"]
    for r in worst_first(report.rows):
        sc = r["scores"]
        lines.append(f"| {_inline(r['qid'])} | {_inline(r['type'])} | {'FAIL' if r['failed'] else 'pass'} | "
                     f"{_num(sc.get('hit_at_k'))} | {_num(sc.get('sentence_support'))} | "
                     f"{_num(sc.get('citation_precision'))} | {_num(sc.get('correctness_f1'))} | "
                     f"{_cell('; '.join(r.get('fail_reasons', [])))} |")
    failing = [r for r in worst_first(report.rows) if r["failed"]]
    if failing:
        lines += ["", "## Failing questions in detail", ""]
        for r in failing:
            lines += [f"### {_inline(r['qid'])} ({_inline(r['type'])})", "",
                      f"**Q:** {markdown_text(_flat(r['question']))}", "",
                      f"**A:** {markdown_text(_flat(r['answer'])) if r['answer'] else '(no answer)'}", ""]
            lines += [f"- {_inline(reason)}" for reason in r.get("fail_reasons", [])]
            if r["gold_titles"]:
                lines.append("- gold: " + "; ".join(_inline(t) for t in r["gold_titles"]))
            for c in r.get("citations", []):
                lines.append(f"- \\[{_inline(c.get('marker'))}\\] {_inline(c.get('title'))}")
            for v in r.get("sentences", []):
                if v.get("supported") is False:
                    lines.append(f"- unsupported: “{_cell(v['sentence'], 200)}” — {_cell(v.get('rationale', ''), 300)}")
            lines.append("")
    return printable("\n".join(lines).rstrip() + "\n")  # printed by `eval report`: no lone surrogate


_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What XML 1.0 cannot hold, not even as a character reference (``&#1;`` is as ill-formed as the byte)."""


def xml_legal(text: str) -> str:
    """``text`` with every character XML 1.0 forbids shown as its escape (``\\x01``), and a lone surrogate
    as U+FFFD (as in every other report): ElementTree writes them as they are, and a CI server then cannot
    parse the JUnit file at all. Their escape is plain text, so it is safe in an attribute too."""
    return _NOT_XML.sub(lambda m: "\ufffd" if "\ud800" <= m.group() <= "\udfff" else repr(m.group())[1:-1], text)


def render_junit(report: EvalReport) -> str:
    suite = ET.Element("testsuite", name="eval", tests=str(len(report.rows)),
                       failures=str(sum(1 for r in report.rows if r["failed"] and not r.get("error"))),
                       errors=str(sum(1 for r in report.rows if r.get("error"))),
                       time=f"{float(report.meta.get('duration_s') or 0):.3f}")
    for r in report.rows:
        case = ET.SubElement(suite, "testcase", classname=f"eval.{r['type']}",
                             name=f"{r['qid']}: {_short(r['question'], 100)}",  # (XML, not Markdown)
                             time=f"{(r.get('latency_ms') or 0) / 1000:.3f}")
        detail = "\n".join([f"question: {r['question']}", f"answer: {r.get('answer') or '(none)'}"]
                           + [f"unsupported: {v['sentence']} -- {v.get('rationale', '')}"
                              for v in r.get("sentences", []) if v.get("supported") is False])
        if r.get("error"):
            ET.SubElement(case, "error", message=_short(r["error"], 300)).text = detail
        elif r["failed"]:
            ET.SubElement(case, "failure", message=_short("; ".join(r["fail_reasons"]), 300)).text = detail
        if r.get("judge_errors"):
            ET.SubElement(case, "system-out").text = "judge errors:\n" + "\n".join(r["judge_errors"])
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + xml_legal(ET.tostring(root, encoding="unicode")) + "\n"


def write_report(report: EvalReport, out_dir: str | Path | None, *, junit: str | Path | None = None,
                 extra: Sequence[tuple[str | Path, str]] = ()) -> list[Path]:
    """Write report.json and report.md into ``out_dir`` (created), the JUnit file and each ``extra``
    (path, text) file already rendered (the HTML page); returns the paths.

    Every file is rendered before the first is written, and all are replaced in one atomic batch, so a
    failure (an HTML path that cannot be written) leaves the previous run's reports whole, and the
    error's "nothing was replaced" is true."""
    outputs: list[tuple[Path, str]] = []
    if out_dir is not None:
        out = Path(out_dir)
        outputs += [(out / "report.json", json_text(report.to_dict(), indent=1) + "\n"),
                    (out / "report.md", render_markdown(report))]  # (printable already)
    if junit is not None:
        outputs.append((Path(junit), printable(render_junit(report))))
    outputs += [(Path(path), printable(text)) for path, text in extra]
    return write_all_atomic(outputs)
