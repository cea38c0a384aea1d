"""`assistant eval ...`: run a question set, compare two runs, calibrate the judge, draft questions.

Thin on purpose: every command parses options, calls assistant.evaluation, prints
a rich table and sets the exit code (1 when the gate fails). The Assistant is
built inside the command, so `assistant --help` stays instant.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer

from ..errors import AssistantError
from .options import CollectionOpt

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate answers: metrics, judges, reports, CI gate.")

ConfigOpt = typer.Option(None, "--config", help="TOML settings file (default: ASSISTANT_CONFIG).")


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, markup=False)  # data printed as it is (cli._console)


def _shown(value: object) -> str:
    """evaluation.files.printable_line (imported when used: `assistant --help` stays light)."""
    from ..evaluation.files import printable_line

    return printable_line(value)


def _split(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    return [v.strip() for raw in values for v in raw.split(",") if v.strip()]


def _fmt(value: Any, metric: str = "") -> str:
    from ..evaluation.report import fmt

    return fmt(value, metric)


@eval_app.command("run")
def run_cmd(
    questions: Path = typer.Argument(..., help="Question-set JSONL (evals/questions/dev.jsonl)."),
    judge: str = typer.Option("offline", "--judge", help="offline (deterministic, no network) or llm."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions (after --types)."),
    types: list[str] | None = typer.Option(None, "--types", help="Question types to run (repeat or comma-list)."),
    concurrency: int = typer.Option(1, "--concurrency", help="Questions in flight at once (LLM backend/judge)."),
    out: Path | None = typer.Option(None, "--out", help="Directory for report.json and report.md "
                                                        "(default: <home>/eval-runs/<time>)."),
    junit: Path | None = typer.Option(None, "--junit", help="Also write JUnit XML here (one case per question)."),
    html: Path | None = typer.Option(None, "--html", help="Also write a self-contained HTML report here "
                                                          "(per-type bars, latency histogram, worst questions)."),
    minimum: list[str] | None = typer.Option(None, "--min", help="Gate: metric=value, e.g. hit_at_k=0.8 "
                                                                 "(repeatable)."),
    maximum: list[str] | None = typer.Option(None, "--max", help="Gate for lower-is-better metrics, e.g. "
                                                                 "latency_p95_ms=2000."),
    gate: Path | None = typer.Option(None, "--gate", help="Gate thresholds from a TOML file "
                                                           "(\\[min] / \\[max] tables)."),
    backend: str | None = typer.Option(None, "--backend", help="Answer backend: extractive or openai."),
    k: int | None = typer.Option(None, "-k", "--top-k", help="Papers retrieved per question."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Model for the llm judge "
                                                                       "(default: the answer model)."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Judge and score without embeddings (lexical only)."),
    no_progress: bool = typer.Option(False, "--no-progress", help="No progress bar."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    collection: str | None = CollectionOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Ask every question, judge the answers, write reports, and apply the gate (exit 1 when it fails)."""
    from ..api import Assistant
    from ..evaluation import (
        Gate,
        check_gate,
        check_outputs,
        check_run_options,
        corpus_fingerprint,
        load_gate,
        load_questions,
        parse_thresholds,
        render_html,
        write_report,
    )
    from ..evaluation import run_eval as run
    from ..settings import Settings

    # Everything that can be wrong with the inputs fails before the index is built (on a fresh home, the
    # whole sample corpus) and before the first question is asked.
    check_outputs(out, [("--junit", junit), ("--html", html)])
    check_run_options(judge=judge, types=_split(types), limit=limit, concurrency=concurrency)
    qs = load_questions(questions)
    thresholds = load_gate(gate) if gate else Gate()
    thresholds = thresholds.merged(Gate(parse_thresholds(minimum or [], "--min"),
                                        parse_thresholds(maximum or [], "--max")))
    if k is not None and k < 1:  # named as typed, not as the setting it sets ("top_k: input should be ...")
        raise AssistantError(f"-k/--top-k must be at least 1, got {k}")
    from ..registry import answerers

    if backend is not None and backend not in answerers.names():  # (named as typed too: not "llm: ...")
        raise AssistantError(f"--backend '{backend}' is not an answer backend (one of {', '.join(answerers.names())})")
    settings = Settings.load(config_file=config, llm=backend, top_k=k, collection=collection)
    chat_client = None
    if judge == "llm":  # (no server or key configured is said here, before the index is built)
        from ..llm import ChatClient

        chat_client = ChatClient(settings.with_(llm_model=judge_model) if judge_model else settings)
    a = Assistant(settings)
    from .progress import reporter

    with reporter(not no_progress) as rep:
        a.ensure_index(progress=rep)
    out_dir = out or settings.home / "eval-runs" / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    report = run(qs, a, judge=judge, limit=limit, types=_split(types), concurrency=concurrency,
                 embedder=None if no_embed else a.embedder, chat_client=chat_client,
                 corpus_fingerprint=corpus_fingerprint(a.papers()), progress=not no_progress)
    report.meta["questions_file"] = str(questions)
    err = _console(stderr=True)
    for line in report.meta.get("warnings") or []:
        err.print(f"warning: {_shown(line)}", markup=False, highlight=False)
    # The page goes in the reports' batch: a page that cannot be written replaces no report either.
    page = [(html, render_html(report, names=[str(out_dir)]))] if html is not None else []
    write_report(report, out_dir, junit=junit, extra=page)
    failures = check_gate(report.summary, thresholds) if thresholds else []
    if json_out:
        print(json.dumps({"summary": report.summary, "gate_failures": failures, "out": str(out_dir)}, indent=1))
    else:
        _print_summary(report, out_dir, junit, html)
    if gate and not thresholds:
        err.print(f"gate: {gate} sets no thresholds yet", markup=False)
    if thresholds:
        if failures:
            from rich.text import Text

            err.print(Text("gate failed:", style="bold red"))
            for f in failures:
                err.print(f"  - {f}", markup=False)
            raise typer.Exit(1)
        err.print(f"gate passed ({len(thresholds.min) + len(thresholds.max)} thresholds)")


def _print_summary(report: Any, out_dir: Path, junit: Path | None, html: Path | None = None) -> None:
    from rich.table import Table

    from ..evaluation.report import SHORT_LABELS as short
    from ..evaluation.report import SUMMARY_METRICS, TYPE_COLUMNS, worst_first

    s = report.summary
    console = _console()
    t = Table(title=f"Evaluation ({report.meta['judge']['name']} judge)")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("questions", str(s["questions"]))
    t.add_row("failing", str(s["failed"]) + (f" ({s['errors']} errors)" if s["errors"] else ""))
    for m, label in SUMMARY_METRICS.items():
        if s.get(m) is not None:
            t.add_row(label, _fmt(s[m], m))
    console.print(t)
    bt = Table(title="By question type")
    bt.add_column("type")
    bt.add_column("n", justify="right")
    bt.add_column("failed", justify="right")
    for c in TYPE_COLUMNS:
        bt.add_column(short[c], justify="right")
    for typ, ts in s.get("by_type", {}).items():
        bt.add_row(typ, str(ts["questions"]), str(ts["failed"]), *(_fmt(ts.get(c), c) for c in TYPE_COLUMNS))
    console.print(bt)
    worst = [r for r in worst_first(report.rows) if r["failed"]][:10]
    if worst:
        wt = Table(title=f"Worst questions (of {s['failed']} failing)")
        wt.add_column("qid")
        wt.add_column("type")
        wt.add_column("why")
        for r in worst:
            wt.add_row(_shown(r["qid"]), _shown(r["type"]), _shown("; ".join(r["fail_reasons"])))
        console.print(wt)
    console.print(_shown(f"reports: {out_dir / 'report.md'}, {out_dir / 'report.json'}"
                         + (f", JUnit: {junit}" if junit else "") + (f", HTML: {html}" if html else "")),
                  markup=False, highlight=False)


@contextlib.contextmanager
def _report_shape(where: object) -> Iterator[None]:
    """A report.json that passed the loader's checks but holds a field of another shape (hand-edited, or
    from a far older version) is one line naming it, not a traceback from the renderer."""
    from ..errors import InputError

    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:
        raise InputError(f"{where}: not an eval report this version can read ({type(exc).__name__}: {exc})"
                         ) from None


@eval_app.command("compare")
def compare_cmd(
    baseline: Path = typer.Argument(..., help="Report A (report.json or its run directory): the baseline."),
    candidate: Path = typer.Argument(..., help="Report B, compared with A."),
    json_out: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
    show: int = typer.Option(20, "--show", help="Changed questions listed per direction."),
) -> None:
    """Per-metric deltas (B - A) and which questions improved or regressed."""
    from rich.table import Table

    from ..evaluation import compare_reports

    with _report_shape(f"{baseline} or {candidate}"):
        cmp = compare_reports(baseline, candidate)
    if json_out:
        print(json.dumps(cmp.to_dict(), indent=1))
        return
    console = _console()
    from rich.text import Text

    err = _console(stderr=True)
    for w in cmp.meta.get("warnings", []):  # (as text: a report's path or name is no rich markup)
        err.print(Text.assemble(("warning:", "yellow"), f" {_shown(w)}"))
    t = Table(title=f"B - A ({cmp.meta['shared_questions']} shared questions)")
    for col in ("metric", "A", "B", "delta"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for m in cmp.metrics:
        d = m["delta"]
        style = "green" if m["better"] is True else "red" if m["better"] is False else ""
        whole = m["metric"].endswith("_ms") or m["metric"] in ("failed", "errors", "judge_errors")
        text = "–" if d is None else (f"{d:+.0f}" if whole else f"{d:+.3f}")
        t.add_row(m["metric"], _fmt(m["a"], m["metric"]), _fmt(m["b"], m["metric"]),
                  Text(text, style=style))
    console.print(t)
    counts = {c: len(cmp.by_change(c)) for c in ("improved", "regressed", "unchanged", "added", "removed")}
    console.print(", ".join(f"{n} {c}" for c, n in counts.items() if n), markup=False)
    for change, colour in (("regressed", "red"), ("improved", "green")):
        rows = cmp.by_change(change)
        if not rows:
            continue
        qt = Table(title=f"{change.capitalize()} questions", title_style=colour)
        qt.add_column("qid")
        qt.add_column("type")
        qt.add_column("A")
        qt.add_column("B")
        qt.add_column("score changes")
        for q in rows[:show]:
            qt.add_row(_shown(q["qid"]), _shown(q["type"]), "FAIL" if q["a_failed"] else "pass",
                       "FAIL" if q["b_failed"] else "pass",
                       ", ".join(f"{k} {v:+.2f}" for k, v in q["deltas"].items()) or "–")
        console.print(qt)


@eval_app.command("report")
def report_cmd(
    run: Path = typer.Argument(..., help="A run (report.json or its directory); run A when RUN2 is given."),
    run2: Path | None = typer.Argument(None, help="A second run, shown beside the first with deltas (B - A)."),
    html: Path | None = typer.Option(None, "--html", help="Write one self-contained HTML file here."),
    worst: int = typer.Option(10, "--worst", help="Worst questions shown in detail."),
) -> None:
    """Render a finished run (or two, side by side) as HTML; without --html, print its Markdown report."""
    from ..evaluation import EvalReport, check_outputs, render_markdown, write_html

    check_outputs(None, [("--html", html)])
    a = EvalReport.load(run)
    b = EvalReport.load(run2) if run2 is not None else None
    if html is None:
        if b is not None:
            raise typer.BadParameter("two runs need --html FILE (or use `eval compare A B` in the terminal)")
        with _report_shape(run):
            text = render_markdown(a)  # (one line per cell, and no lone surrogate stdout cannot encode)
        print(text, end="")
        return
    names = [str(run)] + ([str(run2)] if run2 is not None else [])
    with _report_shape(f"{run}" + (f" or {run2}" if run2 is not None else "")):
        path = write_html(html, a, b, names=names, worst=worst)
    _console(stderr=True).print(f"wrote {path}", markup=False, highlight=False)


@eval_app.command("calibrate")
def calibrate_cmd(
    labels: Path | None = typer.Option(None, "--labels", help="Support labels JSONL "
                                                              "(default: evals/calibration/support_labels.jsonl)."),
    judge: str = typer.Option("offline", "--judge", help="offline: choose thresholds; llm: measure agreement."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Only the lexical (no embedder) mode."),
    json_out: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOpt,
) -> None:
    """Agreement (accuracy, Cohen's kappa) of a judge with human support labels."""
    from rich.table import Table

    from ..evaluation.calibration import DEFAULT_LABELS, calibrate, judge_agreement, load_labels
    from ..settings import Settings

    if judge not in ("offline", "llm"):  # anything else ran the offline judge without a word
        raise AssistantError(f"--judge '{judge}' is not a judge to calibrate (offline or llm)")
    rows = load_labels(labels or DEFAULT_LABELS)
    settings = Settings.load(config_file=config)
    results: dict[str, Any] = {}
    if judge == "llm":
        from ..evaluation.llm_judge import LLMJudge
        from ..llm import ChatClient

        results["llm"] = {"agreement": judge_agreement(rows, LLMJudge(ChatClient(settings))).to_dict()}
    else:
        results["lexical"] = calibrate(rows).to_dict()
        if not no_embed:
            from ..index.embeddings import get_embedder

            results["semantic"] = calibrate(rows, get_embedder(settings)).to_dict()
    if json_out:
        print(json.dumps(results, indent=1))
        return
    t = Table(title=f"Judge agreement with {len(rows)} human labels")
    for col in ("mode", "threshold", "accuracy", "kappa", "leave-one-out acc.", "shipped threshold",
                "accuracy (shipped)", "kappa (shipped)"):
        t.add_column(col, justify="right")
    for mode, r in results.items():
        if mode == "llm":
            ag = r["agreement"]
            t.add_row("llm", "–", f"{ag['accuracy']:.3f}", f"{ag['kappa']:.3f}", "–", "–", "–", "–")
        else:
            t.add_row(mode, f"{r['threshold']:.4f}", f"{r['chosen']['accuracy']:.3f}", f"{r['chosen']['kappa']:.3f}",
                      f"{r['leave_one_out_accuracy']:.3f}", f"{r['current_threshold']:.4f}",
                      f"{r['current']['accuracy']:.3f}", f"{r['current']['kappa']:.3f}")
    _console().print(t)


@eval_app.command("calibrate-llm")
def calibrate_llm_cmd(
    fit: Path = typer.Argument(..., help="Questions the decision is fitted on (JSONL, the eval format)."),
    validation: Path = typer.Argument(..., help="Other questions: the threshold and copy rule are chosen here."),
    out: Path | None = typer.Option(None, "--out", help="Profile file (default: <home>/profiles/<model>.json, "
                                                        "which ask then loads for this model)."),
    papers: int | None = typer.Option(None, "--papers", help="Evidence papers to calibrate with (default: today's)."),
    sentences: int | None = typer.Option(None, "--sentences", help="Evidence sentences per paper."),
    chars: int | None = typer.Option(None, "--chars", help="Evidence characters in all."),
    json_out: bool = typer.Option(False, "--json", help="Print the chosen profile and figures as JSON."),
    collection: str | None = CollectionOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Fit how an LLM's own verdict combines with the evidence check (a profile for llm.model)."""
    from ..answering.calibration import Evidence, find_profile
    from ..api import Assistant
    from ..evaluation.calibrate_llm import calibrate
    from ..settings import Settings

    settings = Settings.load(config_file=config, llm="openai", collection=collection)
    a = Assistant(settings)
    evidence = None
    if papers or sentences or chars:
        base = find_profile(settings.llm.model, "", settings.home).evidence
        evidence = Evidence(papers or base.papers, sentences or base.sentences, chars or base.chars)
    from .progress import reporter

    with reporter(True) as rep:
        a.ensure_index(progress=rep)
    err = _console(stderr=True)
    result = calibrate(a, fit, validation, out=out, evidence=evidence,
                       progress=lambda msg: err.print(msg, markup=False))
    if json_out:
        print(json.dumps({"profile": result.profile.to_dict(), "path": str(result.path),
                          "validation": result.validation, "asked": result.asked, "replayed": result.replayed},
                         indent=1, default=str))
        return
    p = result.profile
    v = result.validation
    print(f"profile for {p.model}: {result.path}")
    print(f"  evidence {p.evidence.papers} papers x {p.evidence.sentences} sentences, {p.evidence.chars} chars; "
          f"answer when p >= {p.threshold:.2f}; copy figures: {p.copy_numbers}")
    print(f"  validation: answerable refused {_fmt(v.get('false_refusal_rate'))}, unanswerable refused "
          f"{_fmt(v.get('refusal_accuracy'))}, gold numbers {_fmt(v.get('gold_numbers'))}, "
          f"citation precision {_fmt(v.get('citation_precision'))}")
    print(f"  model asked {result.asked} times, {result.replayed} replies re-read")


@eval_app.command("make-questions")
def make_questions_cmd(
    n: int = typer.Option(20, "--n", help="Questions to draft (one per sampled paper)."),
    out: Path = typer.Option(Path("draft_questions.jsonl"), "--out", help="JSONL to write (\"draft\": true)."),
    seed: int = typer.Option(0, "--seed", help="Which papers are sampled."),
    config: Path | None = ConfigOpt,
) -> None:
    """Draft questions from indexed papers with the configured LLM, for a person to check and edit."""
    from ..api import Assistant
    from ..errors import InputError
    from ..evaluation import check_outputs, write_questions
    from ..evaluation.drafts import draft_questions
    from ..llm import ChatClient
    from ..settings import Settings

    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    check_outputs(None, [("--out", out)])
    settings = Settings.load(config_file=config)
    a = Assistant(settings)
    papers = a.papers()
    err = _console(stderr=True)
    with ChatClient(settings) as client:
        drafts = draft_questions(papers, client, n=n, seed=seed,
                                 on_draft=lambda i, d: err.print(f"{i}/{min(n, len(papers))} "
                                                                 f"{'ok' if d else 'skipped (invalid draft)'}"),
                                 on_stop=lambda why: err.print(_shown(f"warning: {why}"), markup=False,
                                                               highlight=False))
    if not drafts:  # an empty file written over the user's questions would lose them for nothing
        why = "no papers are indexed" if not papers else f"none of the {min(n, len(papers))} drafts passed the checks"
        raise AssistantError(f"{why}; nothing written to {out}")
    write_questions(drafts, out)
    err.print(_shown(f"wrote {len(drafts)} draft questions to {out}; review them before use (\"draft\": true)"),
              markup=False, highlight=False)
