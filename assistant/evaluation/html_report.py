"""One self-contained HTML file for one run, or two runs side by side.

Everything is inline: CSS in a <style> block, plots as hand-written SVG (no plotting library, no
script, no external link), so the file can be mailed or attached to a CI run and opened anywhere.
Every piece of text from a report (questions, answers, quotes, judge rationales, titles, paths) is
escaped: answers quote arbitrary abstract text.

Plots carry their numbers as data attributes (``data-metric``, ``data-type``, ``data-run``,
``data-value``, ``data-lo``/``data-hi``/``data-count``) so they can be read back and checked.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .compare import compare_reports
from .files import printable, write_atomic
from .gate import LOWER_IS_BETTER
from .report import SHORT_LABELS, SUMMARY_METRICS, TYPE_COLUMNS, fmt, worst_first
from .results import EvalReport

#: Bar colours for run A and run B.
COLOURS = ("#4C78A8", "#F58518")
#: Bins of the latency histogram.
LATENCY_BINS = 12
#: Worst questions shown in detail.
WORST = 10

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.better{color:#1a7f37}.worse{color:#cf222e}.fail{color:#cf222e;font-weight:600}.pass{color:#1a7f37}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.chart{border:1px solid #eee;padding:.25rem}
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em;vertical-align:middle}
.q{border:1px solid #ddd;margin:1rem 0;padding:.5rem 1rem}.q blockquote{margin:.25rem 0 .25rem 1rem;color:#555;
border-left:3px solid #ddd;padding-left:.5rem}.meta{color:#555}code{font-size:90%}
"""


def esc(value: Any) -> str:
    """Text and attribute values, escaped (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    """A number as an attribute: full precision for checking, empty for None."""
    return "" if value is None else repr(float(value))


def _run_meta(name: str, report: EvalReport) -> str:
    meta, s = report.meta, report.summary
    judge = meta.get("judge") or {}
    git = meta.get("git") or {}
    return (f"<p class='meta'><b>{esc(name)}</b>: {esc(s.get('questions'))} questions "
            f"({esc(meta.get('questions_file') or 'in memory')}), {esc(s.get('failed'))} failing, "
            f"{esc(s.get('errors'))} errors; backend {esc((meta.get('backend') or {}).get('llm'))}; "
            f"judge {esc(judge.get('name'))}{' (' + esc(judge['model']) + ')' if judge.get('model') else ''}; "
            f"corpus {esc(meta.get('corpus_fingerprint') or '–')}; commit "
            f"<code>{esc((git.get('commit') or '–')[:12])}</code>{' (dirty)' if git.get('dirty') else ''}; "
            f"started {esc(meta.get('started_at', '–'))}</p>")


def _legend(names: Sequence[str]) -> str:
    return "<p class='legend'>" + "".join(f"<span style='background:{COLOURS[i]}'></span>{esc(n)}"
                                         for i, n in enumerate(names)) + "</p>"


def type_bars(metric: str, runs: Sequence[EvalReport], types: Sequence[str]) -> str:
    """One small bar chart: ``metric`` per question type, one bar per run (values in [0, 1])."""
    group_w, bar_w, top, plot_h, left = 56, 20 if len(runs) > 1 else 30, 34, 110, 30
    width, height = max(250, left + group_w * len(types) + 10), top + plot_h + 50
    parts = [f"<svg class='chart' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"role='img' data-chart='type-bars' data-metric='{esc(metric)}'>",
             f"<text x='{left}' y='14' font-size='12' font-weight='600'>{esc(SUMMARY_METRICS.get(metric, metric))}"
             "</text>"]
    for tick in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - tick)
        parts.append(f"<line x1='{left}' x2='{left + group_w * len(types)}' y1='{y:.1f}' y2='{y:.1f}' stroke='#ddd'/>"
                     f"<text x='{left - 4}' y='{y + 3:.1f}' font-size='9' text-anchor='end'>{tick:g}</text>")
    for g, t in enumerate(types):
        x0 = left + g * group_w + (group_w - bar_w * len(runs)) / 2
        for i, run in enumerate(runs):
            value = ((run.summary.get("by_type") or {}).get(t) or {}).get(metric)
            x = x0 + i * bar_w
            label = f"{t}, run {'AB'[i]}: {fmt(value, metric)}"
            if value is None:
                parts.append(f"<text x='{x + bar_w / 2:.1f}' y='{top + plot_h - 3}' font-size='9' "
                             f"text-anchor='middle' data-type='{esc(t)}' data-run='{'AB'[i]}' "
                             f"data-value=''>–</text>")
                continue
            h = plot_h * max(0.0, min(1.0, float(value)))
            parts.append(f"<rect class='bar' x='{x:.1f}' y='{top + plot_h - h:.1f}' width='{bar_w - 2}' "
                         f"height='{h:.1f}' fill='{COLOURS[i]}' data-metric='{esc(metric)}' data-type='{esc(t)}' "
                         f"data-run='{'AB'[i]}' data-value='{_num(value)}'><title>{esc(label)}</title></rect>"
                         f"<text x='{x + (bar_w - 2) / 2:.1f}' y='{top + plot_h - h - 3:.1f}' font-size='8' "
                         f"text-anchor='middle'>{float(value):.2f}</text>")
        cx = left + g * group_w + group_w / 2
        parts.append(f"<text x='{cx:.1f}' y='{top + plot_h + 14}' font-size='9' text-anchor='end' "
                     f"transform='rotate(-30 {cx:.1f} {top + plot_h + 14})'>{esc(t)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def latency_edges(runs: Sequence[EvalReport], bins: int = LATENCY_BINS) -> list[float]:
    """Shared bin edges over every run's latencies (so two runs' bars line up)."""
    import numpy as np

    values = [float(r["latency_ms"]) for run in runs for r in run.rows if r.get("latency_ms") is not None]
    if not values:
        return []
    return [float(e) for e in np.histogram_bin_edges(np.asarray(values), bins=bins)]


def latency_histogram(runs: Sequence[EvalReport], bins: int = LATENCY_BINS) -> str:
    """Per-question answer time (ms) as a histogram, one bar per run in each bin."""
    import numpy as np

    edges = latency_edges(runs, bins)
    if not edges:
        return "<p>No latencies recorded.</p>"
    counts = [np.histogram([float(r["latency_ms"]) for r in run.rows if r.get("latency_ms") is not None],
                           bins=edges)[0].tolist() for run in runs]
    peak = max(max(c) for c in counts) or 1
    n_bins = len(edges) - 1
    bin_w, top, plot_h, left = 52, 20, 160, 34
    bar_w = (bin_w - 6) / len(runs)
    width, height = left + bin_w * n_bins + 10, top + plot_h + 52
    parts = [f"<svg class='chart' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
             f"data-chart='latency'>"]
    for tick in sorted({0, peak // 2, peak}):
        y = top + plot_h * (1 - tick / peak)
        parts.append(f"<line x1='{left}' x2='{width - 10}' y1='{y:.1f}' y2='{y:.1f}' stroke='#ddd'/>"
                     f"<text x='{left - 4}' y='{y + 3:.1f}' font-size='9' text-anchor='end'>{tick}</text>")
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        for i, c in enumerate(counts):
            h = plot_h * c[b] / peak
            x = left + b * bin_w + 3 + i * bar_w
            run_name = "AB"[i]
            tip = f"run {run_name}: {c[b]} question(s) at {lo:.0f}-{hi:.0f} ms"
            parts.append(f"<rect class='bin' x='{x:.1f}' y='{top + plot_h - h:.1f}' width='{bar_w:.1f}' "
                         f"height='{h:.1f}' fill='{COLOURS[i]}' data-run='{run_name}' data-lo='{_num(lo)}' "
                         f"data-hi='{_num(hi)}' data-count='{c[b]}'><title>{esc(tip)}</title></rect>")
        cx = left + b * bin_w + bin_w / 2
        parts.append(f"<text x='{cx:.1f}' y='{top + plot_h + 14}' font-size='9' text-anchor='end' "
                     f"transform='rotate(-30 {cx:.1f} {top + plot_h + 14})'>{lo:.0f}–{hi:.0f}</text>")
    parts.append(f"<text x='{left + bin_w * n_bins / 2:.1f}' y='{height - 4}' font-size='10' "
                 "text-anchor='middle'>latency (ms)</text></svg>")
    return "".join(parts)


def _summary_table(runs: Sequence[EvalReport], names: Sequence[str]) -> str:
    if len(runs) == 1:
        s = runs[0].summary
        rows = "".join(f"<tr data-metric='{esc(m)}'><td>{esc(label)}</td><td class='num' data-value='{_num(s[m])}'>"
                       f"{esc(fmt(s[m], m))}</td></tr>" for m, label in SUMMARY_METRICS.items() if m in s)
        return f"<table class='summary'><tr><th>metric</th><th>{esc(names[0])}</th></tr>{rows}</table>"
    cmp = compare_reports(runs[0], runs[1])
    out = [f"<table class='summary deltas'><tr><th>metric</th><th>A: {esc(names[0])}</th><th>B: {esc(names[1])}</th>"
           "<th>B − A</th></tr>"]
    for m in cmp.metrics:
        d, metric = m["delta"], m["metric"]
        css = {True: "better", False: "worse"}.get(m["better"], "")
        whole = metric.endswith("_ms") or metric in ("failed", "errors", "judge_errors")
        text = "–" if d is None else (f"{d:+.0f}" if whole else f"{d:+.3f}")
        arrow = "" if not css else (" ↓" if metric in LOWER_IS_BETTER else " ↑") if m["better"] else ""
        out.append(f"<tr data-metric='{esc(metric)}'><td>{esc(SUMMARY_METRICS.get(metric, metric))}</td>"
                   f"<td class='num'>{esc(fmt(m['a'], metric))}</td><td class='num'>{esc(fmt(m['b'], metric))}</td>"
                   f"<td class='num {css}' data-delta='{_num(d)}'>{esc(text)}{arrow}</td></tr>")
    out.append("</table>")
    counts = {c: len(cmp.by_change(c)) for c in ("improved", "regressed", "unchanged", "added", "removed")}
    out.append("<p>" + esc(f"{cmp.meta['shared_questions']} shared questions: "
                           + ", ".join(f"{n} {c}" for c, n in counts.items() if n)) + "</p>")
    for w in cmp.meta.get("warnings", []):
        out.append(f"<p class='worse'>warning: {esc(w)}</p>")
    changed = [q for q in cmp.questions if q["change"] in ("improved", "regressed")]
    if changed:
        out.append("<table class='changes'><tr><th>qid</th><th>type</th><th>change</th><th>A</th><th>B</th>"
                   "<th>score changes</th></tr>")
        for q in changed:
            out.append(f"<tr data-qid='{esc(q['qid'])}'><td>{esc(q['qid'])}</td><td>{esc(q['type'])}</td>"
                       f"<td class='{'better' if q['change'] == 'improved' else 'worse'}'>{esc(q['change'])}</td>"
                       f"<td>{'FAIL' if q['a_failed'] else 'pass'}</td><td>{'FAIL' if q['b_failed'] else 'pass'}</td>"
                       f"<td>{esc(', '.join(f'{k} {v:+.2f}' for k, v in q['deltas'].items()) or '–')}</td></tr>")
        out.append("</table>")
    return "".join(out)


def _type_table(run: EvalReport) -> str:
    head = "".join(f"<th>{esc(SHORT_LABELS[c])}</th>" for c in TYPE_COLUMNS)
    rows = []
    for t, ts in (run.summary.get("by_type") or {}).items():
        rows.append(f"<tr data-type='{esc(t)}'><td>{esc(t)}</td><td class='num'>{esc(ts['questions'])}</td>"
                    f"<td class='num'>{esc(ts['failed'])}</td>"
                    + "".join(f"<td class='num'>{esc(fmt(ts.get(c), c))}</td>" for c in TYPE_COLUMNS) + "</tr>")
    return f"<table class='by-type'><tr><th>type</th><th>n</th><th>failed</th>{head}</tr>{''.join(rows)}</table>"


def _question(row: dict[str, Any]) -> str:
    """One question in detail: answer, each citation with its quote, each sentence with the judge's reason."""
    sc = row.get("scores") or {}
    status = "FAIL" if row["failed"] else "pass"
    out = [f"<div class='q' data-qid='{esc(row['qid'])}'>",
           f"<h3>{esc(row['qid'])} <small>({esc(row['type'])})</small> "
           f"<span class='{status.lower()}'>{status}</span></h3>",
           f"<p><b>Q:</b> <span class='question'>{esc(row['question'])}</span></p>",
           f"<p><b>A:</b> <span class='answer'>{esc(row.get('answer') or '(no answer)')}</span></p>"]
    if row.get("fail_reasons"):
        out.append("<ul class='reasons'>" + "".join(f"<li>{esc(r)}</li>" for r in row["fail_reasons"]) + "</ul>")
    out.append("<p class='meta'>" + esc(", ".join(f"{SHORT_LABELS.get(m, m)} {fmt(sc.get(m))}" for m in
                                                 ("hit_at_k", "sentence_support", "citation_precision",
                                                  "correctness_f1"))
                                        + f"; latency {fmt(row.get('latency_ms'), '_ms')} ms") + "</p>")
    if row.get("gold_titles"):
        out.append(f"<p class='meta'>gold: {esc('; '.join(row['gold_titles']))}</p>")
    for c in row.get("citations") or []:
        out.append(f"<div class='citation' data-marker='{esc(c.get('marker'))}'>[{esc(c.get('marker'))}] "
                   f"{esc(c.get('title'))} <code>{esc(c.get('paper_id'))}</code>"
                   + (f"<blockquote class='quote'>{esc(c['quote'])}</blockquote>" if c.get("quote") else "")
                   + "</div>")
    verdicts = row.get("sentences") or []
    if verdicts:
        out.append("<table class='verdicts'><tr><th>sentence</th><th>judge</th><th>reason</th></tr>")
        for v in verdicts:
            ok = v.get("supported")
            label = "supported" if ok else "undecided" if ok is None else "unsupported"
            out.append(f"<tr><td>{esc(v.get('sentence'))}</td><td class='{'pass' if ok else 'fail'}'>{label}</td>"
                       f"<td class='rationale'>{esc(v.get('rationale'))}</td></tr>")
        out.append("</table>")
    if row.get("judge_errors"):
        out.append("<p class='worse'>judge errors: " + esc("; ".join(row["judge_errors"])) + "</p>")
    out.append("</div>")
    return "".join(out)


def render_html(report: EvalReport, other: EvalReport | None = None, *, names: Sequence[str] | None = None,
                worst: int = WORST) -> str:
    """The report page. With ``other``, ``report`` is run A (the baseline) and ``other`` run B: bars and the
    histogram show both, the summary shows B − A, and the worst questions are B's."""
    runs = [report] if other is None else [report, other]
    names = list(names or (["run"] if other is None else ["A", "B"]))
    types = sorted({t for run in runs for t in (run.summary.get("by_type") or {})})
    metrics = [m for m in TYPE_COLUMNS
               if any(((run.summary.get("by_type") or {}).get(t) or {}).get(m) is not None
                      for run in runs for t in types)]
    latest = runs[-1]
    shown = worst_first(latest.rows)[:worst]
    title = "Evaluation report" + (" — two runs" if other is not None else "")
    body = [f"<h1>{esc(title)}</h1>"]
    body += [_run_meta(f"{'AB'[i]}: {names[i]}" if other is not None else names[0], run)
             for i, run in enumerate(runs)]
    body += ["<h2>Summary</h2>", _summary_table(runs, names)]
    body += ["<h2>By question type</h2>", _legend([f"{'AB'[i]}: {n}" for i, n in enumerate(names)])
             if other is not None else "", "<div class='charts'>"]
    body += [type_bars(m, runs, types) for m in metrics]
    body.append("</div>")
    for i, run in enumerate(runs):
        if other is not None:
            body.append(f"<h3>{'AB'[i]}: {esc(names[i])}</h3>")
        body.append(_type_table(run))
    body += ["<h2>Latency</h2>", latency_histogram(runs)]
    body += [f"<h2>Worst questions{' in B' if other is not None else ''} "
             f"({len(shown)} of {len(latest.rows)}, {latest.summary.get('failed')} failing)</h2>"]
    body += [_question(r) for r in shown]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(b for b in body if b) + "\n</body></html>\n")


def write_html(path: str | Path, report: EvalReport, other: EvalReport | None = None, *,
               names: Sequence[str] | None = None, worst: int = WORST) -> Path:
    """Write ``render_html`` to ``path`` (parent directories created), atomically."""
    return write_atomic(path, printable(render_html(report, other, names=names, worst=worst)))
