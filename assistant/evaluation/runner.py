"""run_eval: ask every question, judge every answer, and record how the run was made.

A report is only comparable with another when both say what produced them, so the
run records the effective settings (secrets masked), backend and judge models, the
corpus fingerprint the caller computed, and the git commit of the code.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import AssistantError, InputError
from ..records import Paper, normalise_title
from .files import check_outputs
from .html_report import render_html
from .judging import Judge, passage_text
from .questions import Question, load_questions, select
from .report import write_report
from .results import EvalReport, summarise
from .scoring import error_row, score_answer


def corpus_fingerprint(papers: Iterable[Paper]) -> str:
    """Hash of the indexed paper ids and content hashes: equal fingerprints = the same corpus."""
    h = hashlib.sha256()
    for line in sorted(f"{p.paper_id}\t{p.content_hash}" for p in papers):
        h.update(line.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def git_info(where: Path | None = None) -> dict[str, Any]:
    """Commit of the evaluated code (``git rev-parse HEAD``) and whether tracked files differ; None outside git."""
    cwd = where or Path(__file__).resolve().parents[2]

    def run(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    dirty = run("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


JUDGES = ("offline", "llm")


def check_run_options(*, judge: str | Judge = "offline", types: Sequence[str] | None = None,
                      limit: int | None = None, concurrency: int = 1) -> None:
    """Refuse what ``run_eval`` would refuse, at once: the CLI calls it before building the index (which
    on a fresh home is the whole sample corpus), ``run_eval`` before asking the first question."""
    if isinstance(judge, str) and judge not in JUDGES:
        raise InputError(f"--judge '{judge}' is not a judge (one of {', '.join(JUDGES)})")
    select([], types=types, limit=limit)  # the same checks as the real selection
    if concurrency < 1:
        raise InputError(f"--concurrency must be at least 1, got {concurrency}")


def make_judge(judge: str | Judge, *, embedder: Any = None, chat_client: Any = None,
               settings: Any = None) -> Judge:
    if not isinstance(judge, str):
        return judge
    if judge == "offline":
        from .offline_judge import OfflineJudge

        cfg = getattr(settings, "judge", None)
        if cfg is None:
            return OfflineJudge(embedder=embedder)
        return OfflineJudge(embedder=embedder, cosine_weight=cfg.cosine_weight,
                            threshold=cfg.threshold_semantic if embedder is not None else cfg.threshold_lexical)
    if judge == "llm":
        from .llm_judge import LLMJudge

        if chat_client is None:
            if settings is None:
                raise InputError("the llm judge needs a chat client or settings to build one")
            from ..llm import ChatClient

            chat_client = ChatClient(settings)
        return LLMJudge(chat_client)
    raise InputError(f"--judge '{judge}' is not a judge (one of {', '.join(JUDGES)})")


def _passages(answer: Any, data: dict[str, Any], get_paper: Callable[[str], Paper | None]) -> dict[str, str]:
    """Text of every cited paper: from the answer's sources when it carries them, else the index."""
    papers: dict[str, Paper] = {}
    for src in getattr(answer, "sources", None) or []:
        paper = getattr(src, "paper", None)
        if isinstance(paper, Paper):
            papers[paper.paper_id] = paper
    out: dict[str, str] = {}
    for c in data.get("citations") or []:
        pid = str(c.get("paper_id", ""))
        paper = papers.get(pid) or get_paper(pid)
        if paper is not None:
            out[pid] = passage_text(paper.title, paper.abstract)
    return out


class _Progress:
    """A rich bar on stderr; without a terminal, a plain line at most every 30 s (CI logs)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.failed = 0
        self._last = 0.0
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, markup=False)
        self.plain = not self.console.is_terminal
        self.bar = Progress(TextColumn("Evaluating"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[failed]} failing"), TimeElapsedColumn(),
                            console=self.console, disable=self.plain)
        self.task = self.bar.add_task("eval", total=total, failed=0)
        self.bar.start()

    def advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.failed += bool(row["failed"])
        if not self.enabled:
            return
        self.bar.update(self.task, advance=1, failed=self.failed)
        now = time.monotonic()
        if self.plain and (now - self._last >= 30 or self.done == self.total):
            self._last = now
            self.console.print(f"Evaluating: {self.done}/{self.total} ({self.failed} failing)",
                               markup=False, highlight=False)

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def missing_gold(questions: Sequence[Question], assistant: Any) -> list[str]:
    """One line per gold paper no indexed paper is (a typo in a title, a question set for another
    collection): its question's retrieval and citation scores count it as a miss, which read as the
    system's failure without a word. By id when the question has ``gold_ids``, else by title (the
    index's titles read once, through ``assistant.papers()`` when it has one)."""
    out: list[str] = []
    titles: set[str] | None = None
    for q in questions:
        ids = q.gold_ids
        for i, title in enumerate(q.gold_titles):
            if ids:
                if assistant.get_paper(str(ids[i])) is None:
                    out.append(f"{q.qid}: gold paper id {ids[i]!r} is not in the index; the question scores it as "
                               "missed")
                continue
            if titles is None:
                papers = getattr(assistant, "papers", None)
                if not callable(papers):
                    return out
                titles = {normalise_title(p.title) for p in papers()}
            if normalise_title(title) not in titles:
                out.append(f"{q.qid}: no indexed paper is titled {title!r}; the question scores it as missed")
    return out


def run_eval(questions: Sequence[Question] | str | Path, assistant: Any, *, judge: str | Judge = "offline",
             limit: int | None = None, types: Sequence[str] | None = None, concurrency: int = 1,
             embedder: Any = None, chat_client: Any = None, out_dir: str | Path | None = None,
             junit: str | Path | None = None, corpus_fingerprint: str | None = None,
             progress: bool = True, html: str | Path | None = None) -> EvalReport:
    """Ask each question, score it, summarise; write report.json/report.md to ``out_dir`` and JUnit XML
    to ``junit`` and the HTML page (html_report) to ``html`` when given. ``assistant`` needs
    ``.ask(question)``, ``.get_paper(id)`` and ``.settings``.
    ``concurrency`` > 1 runs questions (ask + judge) in a thread pool: for the LLM backends and judge."""
    # Every input error before the first question: not after an hour of answers.
    check_run_options(judge=judge, types=types, limit=limit, concurrency=concurrency)
    check_outputs(Path(out_dir) if out_dir is not None else None,
                  [("junit", Path(junit) if junit is not None else None),
                   ("html", Path(html) if html is not None else None)], out_option="out_dir")
    source = None
    if isinstance(questions, (str, Path)):
        source = str(questions)
        questions = load_questions(questions)
    chosen = select(questions, types=types, limit=limit)
    settings = assistant.settings
    judge_obj = make_judge(judge, embedder=embedder, chat_client=chat_client, settings=settings)
    k = getattr(getattr(settings, "retrieval", None), "top_k", None)
    llm = getattr(settings, "llm", None)

    def one(q: Question) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            answer = assistant.ask(q.question)
        except AssistantError as exc:
            return error_row(q, str(exc), (time.perf_counter() - t0) * 1000)
        wall = (time.perf_counter() - t0) * 1000
        data = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
        latency = (data.get("timings_ms") or {}).get("total", wall)
        return score_answer(q, data, _passages(answer, data, assistant.get_paper), judge_obj,
                            embedder=embedder, k=k, latency_ms=float(latency))

    warnings = missing_gold(chosen, assistant)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    bar = _Progress(len(chosen), progress)
    rows: list[dict[str, Any]] = []
    try:
        if concurrency == 1:
            for q in chosen:
                rows.append(one(q))
                bar.advance(rows[-1])
        else:
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                futures = [pool.submit(one, q) for q in chosen]
                for fut in futures:
                    rows.append(fut.result())
                    bar.advance(rows[-1])
    finally:
        bar.close()

    backend = next((r["backend"] for r in rows if r.get("backend")), {})
    meta: dict[str, Any] = {
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t0, 2),
        "questions_file": source, "questions_total": len(questions), "questions_run": len(chosen),
        "filters": {"limit": limit, "types": list(types) if types else None},
        "concurrency": concurrency, "k": k,
        "backend": backend or {"llm": getattr(llm, "backend", None)},
        "judge": {"name": judge_obj.name, "model": judge_obj.model,
                  "threshold": getattr(judge_obj, "threshold", None)},
        "models": {"llm": getattr(llm, "model", None) if getattr(llm, "backend", "") == "openai" else "extractive",
                   "embedding": getattr(settings, "embedding_model_name", None),
                   "judge": judge_obj.model,
                   "eval_embedder": getattr(embedder, "name", None) if embedder is not None else None},
        "settings": settings.public_dict() if hasattr(settings, "public_dict") else {},
        "corpus_fingerprint": corpus_fingerprint,
        "git": git_info(),
        "python": platform.python_version(),
        "warnings": warnings,
    }
    report = EvalReport(summary=summarise(rows), rows=rows, meta=meta)
    if out_dir is not None or junit is not None or html is not None:
        page = [(Path(html), render_html(report))] if html is not None else []
        write_report(report, out_dir, junit=junit, extra=page)  # one batch: a failed page replaces no report
    return report
