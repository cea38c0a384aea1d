"""The `assistant` command: a thin typer layer over :class:`assistant.api.Assistant`.

Nothing heavy is imported at module load, so `assistant --help` stays instant;
every command builds the Assistant inside its body.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..errors import AssistantError
from ..records import MAX_BATCH_PAPERS
from .options import CollectionOpt

if TYPE_CHECKING:
    from ..api import Assistant

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Ask questions of a collection of paper abstracts; every claim cited.")
papers_app = typer.Typer(no_args_is_help=True, help="List, show and search indexed papers.")
config_app = typer.Typer(no_args_is_help=True, help="Show the effective settings.")
app.add_typer(papers_app, name="papers")
app.add_typer(config_app, name="config")


def _mount_collections() -> None:
    from .collections_cmd import collections_app

    app.add_typer(collections_app, name="collections")


_mount_collections()

ConfigOpt = typer.Option(None, "--config", help="TOML settings file (default: ASSISTANT_CONFIG).")


def _assistant(config: Path | None = None, **overrides: Any) -> Assistant:
    from ..api import Assistant
    from ..settings import Settings

    return Assistant(Settings.load(config_file=config, **overrides))


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    # markup=False: titles, ids, quotes, questions and paths are printed as they are ('[/x]' in a title
    # raised MarkupError; '[bold]' in one styled it); styles go in as Text.
    return Console(stderr=stderr, soft_wrap=False, markup=False)


@app.command("ingest")
def ingest_cmd(
    # Text, not Path: an unreadable path is the reader's one-line problem (the others are still ingested),
    # and "" stays "" for the API to refuse (as a Path it was ".": `--prune "$UNSET"` took the current folder).
    paths: list[str] = typer.Argument(..., help="Files or folders (HF Papers .txt, JSONL/JSON, "
                                                                 "arXiv Atom, BibTeX, CSV, a Zotero library: "
                                                                 "zotero.sqlite or its folder)."),
    prune: bool = typer.Option(False, "--prune", help="Remove papers no longer in these sources."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Drop the index and build it again."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another ingest holds the lock."),
    batch: int = typer.Option(256, "--batch", min=1, max=MAX_BATCH_PAPERS,
                              help="Papers written per crash-safe batch."),
    collection: str | None = CollectionOpt,
    zotero_collection: str | None = typer.Option(None, "--zotero-collection",
                                                 help="Only this collection (and its subcollections) of a "
                                                      "Zotero library."),
    config: Path | None = ConfigOpt,
) -> None:
    """Read, chunk, embed and index papers (incremental: unchanged papers are skipped).

    A collection named with -c that does not exist yet is created."""
    a = _assistant(config, collection=collection)
    a.auto_sample = False
    from .progress import reporter

    with reporter() as rep:
        report = a.ingest(paths, prune=prune, rebuild=rebuild, wait=not no_wait, progress=rep, batch_papers=batch,
                          zotero_collection=zotero_collection)
    from rich.table import Table

    t = Table(title="Ingest summary", show_header=False)
    for label, value in [("files read", report.files), ("entries", report.entries),
                         ("duplicates merged", f"{report.duplicates_merged} entries "
                                               f"({report.duplicate_papers} papers seen more than once)"),
                         ("papers new", report.new),
                         ("papers updated", report.updated), ("papers unchanged", report.unchanged),
                         ("records skipped", report.skipped), ("papers removed (prune)", report.removed),
                         ("chunks written", report.chunks_written),
                         ("index now", f"{report.papers_total} papers, {report.chunks_total} chunks"
                                       f" (collection {a.collection})"),
                         ("time", f"{report.seconds:.1f} s (embedding {report.embed_seconds:.1f} s)")]:
        t.add_row(label, str(value))
    _console(stderr=True).print(t)
    if not report.ok:
        raise typer.Exit(1)


@app.command("add")
def add_cmd(
    ids: list[str] = typer.Argument(None, help="arXiv ids or URLs: 2401.01234, 2401.01234v2, hep-th/9901001v2, "
                                               "https://arxiv.org/abs/2402.00001"),
    search: str | None = typer.Option(None, "--search", help="An arXiv API query, e.g. 'all:\"direct preference "
                                                             "optimization\"' or 'au:hinton AND cat:cs.LG'."),
    max_results: int = typer.Option(50, "--max", help="Most search results to add."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Fail at once if another ingest holds the lock."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    collection: str | None = CollectionOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Add papers from arXiv by id, URL or search (resumable: indexed, unchanged papers are skipped)."""
    a = _assistant(config, collection=collection)
    a.auto_sample = False
    from .progress import reporter

    with reporter(not json_out) as rep:
        report = a.add(ids or [], search=search, max_results=max_results, progress=rep, wait=not no_wait)
    if json_out:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        err = _console(stderr=True)
        total = report.ingest.papers_total if report.ingest else None
        err.print(f"arXiv: {len(report.added)} added, {report.updated} updated, {report.skipped} skipped "
                  f"(already indexed and unchanged)" + (f"; index now {total} papers" if total is not None else ""),
                  highlight=False, markup=False)
        if report.not_found:
            err.print(f"not found on arXiv: {', '.join(report.not_found)}", highlight=False, markup=False)
        from ..display import one_line

        for line in report.problems:
            err.print(one_line(line), highlight=False, markup=False)
        for line in report.warnings:  # (a truncated abstract was said only with --json)
            err.print(f"warning: {one_line(line)}", highlight=False, markup=False)
        if report.error:
            err.print(f"stopped early: {report.error}; the papers fetched before were added - run the same "
                      "command again to go on", highlight=False, markup=False)
    if not report.ok:
        raise typer.Exit(1)


def _hint_if_empty(a: Any, found: list[Any]) -> None:
    """Nothing found on an empty index: say on stderr what to run next (stdout stays the result)."""
    hint = None if found else a.empty_index_hint()
    if hint:
        print(hint, file=sys.stderr)


@app.command("status")
def status_cmd(json_out: bool = typer.Option(False, "--json"), collection: str | None = CollectionOpt,
               config: Path | None = ConfigOpt) -> None:
    """Where the index lives, how many papers and chunks, which embedding model."""
    st = _assistant(config, collection=collection).status()
    if json_out:
        print(json.dumps(st, indent=2))
        return
    from rich.table import Table

    t = Table(show_header=False, title="Index status")
    for k, v in st.items():
        t.add_row(k, str(v))
    _console().print(t)


@papers_app.command("list")
def papers_list(order: str = typer.Option("title", help="title | date | id"),
                json_out: bool = typer.Option(False, "--json"), collection: str | None = CollectionOpt,
                config: Path | None = ConfigOpt) -> None:
    """All indexed papers."""
    a = _assistant(config, collection=collection)
    papers = a.papers(order=order)
    _hint_if_empty(a, papers)
    if json_out:
        print(json.dumps([p.to_dict() for p in papers], ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(title=f"{len(papers)} papers")
    t.add_column("paper id", style="dim", no_wrap=True)
    t.add_column("date")
    t.add_column("title")
    for p in papers:
        t.add_row(p.paper_id, p.date or "", p.title)
    _console().print(t)


@papers_app.command("show")
def papers_show(paper_id: str, json_out: bool = typer.Option(False, "--json"),
                collection: str | None = CollectionOpt, config: Path | None = ConfigOpt) -> None:
    """One paper's metadata and abstract."""
    a = _assistant(config, collection=collection)
    p = a.get_paper(paper_id)
    if p is None:
        shown = paper_id if len(paper_id) <= 200 else paper_id[:200] + "..."
        raise AssistantError(f"no paper with id '{shown}' (see `assistant papers list`)")
    if json_out:
        print(json.dumps(p.to_dict(), ensure_ascii=False, indent=2))
        return
    from .render import paper_renderable

    _console().print(paper_renderable(p))


@papers_app.command("search")
def papers_search(query: str, k: int = typer.Option(10, "-k"), since: str | None = typer.Option(None),
                  until: str | None = typer.Option(None), mode: str = typer.Option("hybrid", help="hybrid|dense|bm25"),
                  json_out: bool = typer.Option(False, "--json"), collection: str | None = CollectionOpt,
                  config: Path | None = ConfigOpt) -> None:
    """Retrieval only: the best-matching papers."""
    a = _assistant(config, collection=collection)
    sources = a.search(query, k, since=since, until=until, mode=mode)
    _hint_if_empty(a, sources)
    if json_out:
        print(json.dumps([s.to_dict() for s in sources], ensure_ascii=False))
        return
    from rich.table import Table

    t = Table(title=f"{query}")
    t.add_column("#", justify="right")
    t.add_column("score", justify="right")
    t.add_column("title")
    t.add_column("paper id", style="dim")
    for s in sources:
        t.add_row(str(s.rank), f"{s.score:.4f}", s.paper.title, s.paper.paper_id)
    _console().print(t)


@papers_app.command("export")
def papers_export(ids: list[str] = typer.Argument(None, help="Paper ids (default: every indexed paper)."),
                  fmt: str | None = typer.Option(None, "--format", "-f", help="bibtex | ris | csl-json | markdown "
                                   "(default: from the -o file's suffix, else bibtex)"),
                  output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
                  collection: str | None = CollectionOpt, config: Path | None = ConfigOpt) -> None:
    """References of indexed papers (BibTeX keys stable and unique; arXiv eprints and DOIs kept)."""
    from ..export import format_for, write_file

    _check_format(fmt)
    fmt = fmt or (format_for(str(output)) if output is not None else "bibtex")
    text = _assistant(config, collection=collection).export(ids or None, fmt)
    if output is None:
        sys.stdout.write(text)
        return
    write_file(output, text)
    _console(stderr=True).print(f"wrote {fmt} references to {output}", highlight=False)


@config_app.command("show")
def config_show(json_out: bool = typer.Option(False, "--json"), config: Path | None = ConfigOpt) -> None:
    """Effective settings (env vars ASSISTANT_*, config file, defaults); secrets masked."""
    from ..settings import Settings, env_var_for

    settings = Settings.load(config_file=config)
    if json_out:
        print(json.dumps(settings.public_dict(), indent=2))
        return
    from rich.table import Table

    t = Table(title="Effective settings")
    for col in ("setting", "value", "variable", "meaning"):
        t.add_column(col, overflow="fold")
    for name, value, doc in settings.describe():
        section, _, field = name.rpartition(".")
        var = env_var_for(section, field) if section else f"ASSISTANT_{field.upper()}"
        t.add_row(name, str(value), var, doc)
    _console().print(t)


@app.command("ask")
def ask_cmd(
    question: str = typer.Argument(..., help="Your question."),
    k: int | None = typer.Option(None, "-k", help="Papers to retrieve (default 10)."),
    since: str | None = typer.Option(None, help="Only papers dated on/after YYYY[-MM[-DD]]."),
    until: str | None = typer.Option(None, help="Only papers dated on/before YYYY[-MM[-DD]]."),
    backend: str | None = typer.Option(None, "--backend", help="extractive | openai"),
    json_out: bool = typer.Option(False, "--json", help="Print the answer as JSON (stable schema)."),
    quotes: bool = typer.Option(False, "--quotes", help="Show the supporting quote of each citation."),
    sources: bool = typer.Option(False, "--sources", help="Also list the retrieved papers."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Do not stream model output."),
    collection: str | None = CollectionOpt,
    cite: str | None = typer.Option(None, "--cite", help="Print the cited papers' references after the answer: "
                                                         "bibtex | ris | csl-json | markdown."),
    config: Path | None = ConfigOpt,
) -> None:
    """Answer a question from the indexed papers, every sentence cited."""
    a = _assistant(config, collection=collection)
    a.check_request(question, k=k, since=since, until=until)  # bad input fails before the index is built
    _check_format(cite)
    streams = a.answerer(backend).streams  # so does a backend that cannot run (no server configured)
    from .progress import reporter

    with reporter(not json_out) as rep:
        a.ensure_index(progress=rep)
    streaming = streams and not json_out and not no_stream and sys.stdout.isatty()
    from .render import DraftPrinter

    draft = DraftPrinter(_console()) if streaming else None
    try:
        ans = a.ask(question, k=k, since=since, until=until, backend=backend, on_token=draft)
    finally:
        if draft is not None:
            draft.end()
    refs = a.references(ans, cite) if cite else None
    if json_out:
        out = ans.to_dict()
        if cite:
            out["references"] = {"format": cite, "text": refs}
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return
    con = _console()
    if streaming:
        con.rule("checked answer")
    from .render import answer_renderable, sources_renderable

    con.print(answer_renderable(ans, quotes=quotes))
    if sources:
        con.print(sources_renderable(ans))
    if cite:
        con.rule(f"references ({cite})")
        sys.stdout.write(refs or "(no papers cited)\n")  # as is: no wrapping or markup, ready to paste
        sys.stdout.flush()


def _check_format(fmt: str | None) -> None:
    from ..export import FORMATS

    if fmt is not None and fmt not in FORMATS:
        raise AssistantError(f"--cite/--format '{fmt}' is not a reference format (one of {', '.join(FORMATS)})")


@app.command("verify")
def verify_cmd(
    claim: str | None = typer.Argument(None, help="The claim to check (or --file)."),
    file: Path | None = typer.Option(None, "--file", help="Claims to check, one a line (# comments, blank lines "
                                                          "skipped)."),
    k: int | None = typer.Option(None, "-k", help="Papers to retrieve (default 10)."),
    since: str | None = typer.Option(None, help="Only papers dated on/after YYYY[-MM[-DD]]."),
    until: str | None = typer.Option(None, help="Only papers dated on/before YYYY[-MM[-DD]]."),
    backend: str | None = typer.Option(None, "--backend", help="extractive (offline label model) | openai (LLM)"),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (stable schema; one object a line with --file)."),
    collection: str | None = CollectionOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Does the literature support a claim? Per paper: supports / contradicts with exact quotes, or not enough
    evidence (the closest papers listed as such)."""
    from ..verification import read_claims

    if (claim is None) == (file is None):
        raise AssistantError("give either a claim or --file FILE (one claim a line)")
    claims = read_claims(file) if file is not None else [claim or ""]
    a = _assistant(config, collection=collection)
    for c in claims:
        a.check_claim(c, k=k, since=since, until=until)  # bad input fails before the index is built
    a.answerer(backend)  # and a backend that cannot run (--file printed a first verdict, then failed)
    from .progress import reporter

    with reporter(not json_out) as rep:
        a.ensure_index(progress=rep)
    con = _console()
    from .render import verdicts_renderable

    if file is None:
        v = a.verify(claims[0], k=k, since=since, until=until, backend=backend)
        if json_out:
            print(json.dumps(v.to_dict(), ensure_ascii=False, indent=2))
        else:
            con.print(verdicts_renderable(v))
        return
    from rich.progress import Progress

    with Progress(console=_console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(f"verifying {len(claims)} claims", total=len(claims))
        for v in a.verify_many(claims, k=k, since=since, until=until, backend=backend,
                               on_done=lambda i: bar.update(task, completed=i)):
            if json_out:
                print(json.dumps(v.to_dict(), ensure_ascii=False), flush=True)
            else:
                con.print(verdicts_renderable(v))
    _console(stderr=True).print(f"verified {len(claims)} claim(s) from {file}")


@app.command("chat")
def chat_cmd(backend: str | None = typer.Option(None, "--backend", help="extractive | openai"),
             collection: str | None = CollectionOpt, config: Path | None = ConfigOpt) -> None:
    """Multi-turn chat: /sources /quotes /verify /export /reset /help /quit; Ctrl-C stops an answer."""
    from .chat_repl import run_repl

    run_repl(_assistant(config, collection=collection), backend=backend)


@app.command("serve")
def serve_cmd(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default serve.host, 127.0.0.1); "
                                                          "anything but loopback needs --token-file."),
    port: int | None = typer.Option(None, "--port", help="Port (default serve.port, 8000)."),
    token_file: str | None = typer.Option(None, "--token-file",  # text: as a Path, "" was "."
                                          help="File holding the bearer token every request must send."),
    allow_ingest: bool = typer.Option(False, "--allow-ingest",
                                      help="Accept POST /v1/ingest without a token (it needs one otherwise)."),
    max_concurrent: int | None = typer.Option(None, "--max-concurrent",
                                              help="Answers computed at once (default serve.max_concurrent)."),
    queue: int | None = typer.Option(None, "--queue",
                                     help="Requests that may wait for a slot before 503s (default serve.max_queue)."),
    collection: str | None = CollectionOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """HTTP API, OpenAI-compatible /v1/chat/completions and the web chat at http://HOST:PORT/.

    Every collection is served; -c sets the one requests get when they name none."""
    from ..server.options import make_options, serve

    if token_file == "":
        raise AssistantError("--token-file: an empty path ('') names no file")
    a = _assistant(config, collection=collection)
    serve(a, make_options(a.settings, host, port, Path(token_file) if token_file else None, allow_ingest,
                          max_concurrent, queue))


def _mount_eval() -> None:
    try:
        from .eval_cmd import eval_app
    except ImportError:  # the evaluation extra is part of the package; this guards partial installs
        return
    app.add_typer(eval_app, name="eval", help="Evaluate answers: faithfulness, citations, refusals, retrieval.")


_mount_eval()


def main() -> None:
    from ..display import one_line

    try:
        code = app(standalone_mode=False)  # click's usage errors come here, to be said in one line too
    except AssistantError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        raise SystemExit(1) from None
    except typer.Abort:  # end of input at a confirmation prompt
        print("aborted", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        _interrupted()
    except SystemExit as exc:
        if exc.code == 130:
            _interrupted()
        raise
    except Exception as exc:
        if not _usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":  # a command group alone: its help
            exc.show()  # type: ignore[attr-defined]
        else:  # a bad option or argument: was a five-line box without "error:"
            ctx = getattr(exc, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            print(f"error: {one_line(exc.format_message())}{hint}", file=sys.stderr)  # type: ignore[attr-defined]
        raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        _interrupted()
    raise SystemExit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> bool:
    """click's ClickException, vendored by typer since 0.2x (typer._click) and click's own before."""
    return any(k.__name__ == "ClickException" for k in type(exc).__mro__) and hasattr(exc, "format_message")


def _interrupted() -> None:
    """Ctrl-C: say so and leave at once, without the interpreter's teardown. A native thread (onnxruntime,
    Chroma) may still be running, and tearing its pools down under it aborted the process ("terminate
    called without an active exception", exit 134). Every write is safe to stop at any point (as with
    kill -9: transactions, atomic renames, a resumable ingest), so nothing is left to clean up."""
    print("interrupted", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)
