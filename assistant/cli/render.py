"""Terminal rendering of answers, papers and reports (rich)."""

from __future__ import annotations

import re
from typing import Any

from ..records import Answer, Paper


def answer_renderable(ans: Answer, quotes: bool = False) -> Any:
    from rich.console import Group
    from rich.text import Text

    body = Text()
    if ans.refused:
        body.append(ans.text, style="bold yellow")
    else:
        for part in re.split(r"(\[\d+\])", ans.text):
            body.append(part, style="bold cyan" if re.fullmatch(r"\[\d+\]", part) else "")
    items: list[Any] = [body]
    if ans.citations:
        items.append(Text(""))
        items.append(Text("References", style="bold"))
        for c in ans.citations:
            line = Text(f"[{c.marker}] ", style="bold cyan")
            line.append(c.title)
            meta = ", ".join(x for x in (c.date, c.paper_id) if x)
            line.append(f"  ({meta})", style="dim")
            items.append(line)
            if quotes and c.quote:
                items.append(Text(f"> {c.quote}", style="italic"))  # as text: a quote's [x](y) is no link
    flagged = ans.checks.get("uncited_sentences") or []
    unknown = ans.checks.get("unknown_markers") or 0
    unsupported = ans.checks.get("unsupported_citations") or []
    if flagged or unknown or unsupported:
        items.append(Text(f"check: {len(flagged)} uncited sentence(s), {unknown} unknown marker(s) removed, "
                          f"{len(unsupported)} citation(s) whose paper does not say it", style="red"))
    return Group(*items)


def sources_renderable(ans: Answer) -> Any:
    from rich.table import Table

    table = Table(title="Retrieved papers", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("title")
    table.add_column("paper id", style="dim")
    for s in ans.sources:
        table.add_row(str(s.rank), f"{s.score:.4f}", s.paper.title, s.paper.paper_id)
    return table


def paper_renderable(p: Paper) -> Any:
    from rich.console import Group
    from rich.text import Text

    meta = []
    if p.date:
        meta.append(p.date)
    if p.authors:
        meta.append(", ".join(p.authors[:8]) + (" et al." if len(p.authors) > 8 else ""))
    elif p.n_authors:
        meta.append(f"{p.n_authors} authors")
    if p.upvotes is not None:
        meta.append(f"{p.upvotes} upvotes")
    if p.arxiv_id:
        meta.append(f"arXiv:{p.arxiv_id}")
    if p.url:
        meta.append(p.url)
    return Group(Text(p.title, style="bold"), Text(f"{p.paper_id}  " + " · ".join(meta), style="dim"),
                 Text(""), Text(p.abstract), Text(f"\nsource: {p.source}", style="dim"))


VERDICT_STYLE = {"SUPPORT": "bold green", "CONTRADICT": "bold red", "MIXED": "bold magenta",
                 "NOT_ENOUGH_EVIDENCE": "bold yellow"}


def verdicts_renderable(v: Any) -> Any:
    """A claim's verdicts (``verification.Verdicts``): one row per paper with its exact quotes."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text("Claim: ", style="bold")
    head.append(v.claim)
    verdict = Text("Verdict: ", style="bold")
    verdict.append(v.verdict.replace("_", " ").lower(), style=VERDICT_STYLE.get(v.verdict, ""))
    rows = v.papers or v.closest
    if not v.papers:
        verdict.append("  (no indexed paper bears on it" + ("; the closest are listed)" if rows else ")"), style="dim")
    t = Table(show_lines=True, expand=False)
    t.add_column("paper", ratio=2)
    t.add_column("verdict")
    t.add_column("conf.", justify="right")
    t.add_column("quotes (exact abstract sentences)" if v.papers else "closest sentences", ratio=5)
    for p in rows:
        paper = Text(p.title)
        paper.append("\n" + ", ".join(x for x in (p.date, p.paper_id) if x), style="dim")
        label = "closest" if not v.papers else p.verdict.lower().replace("_", " ")
        t.add_row(paper, Text(label, style=VERDICT_STYLE.get(p.verdict, "") if v.papers else "dim"),
                  f"{p.confidence:.2f}", "\n".join(f"“{q.text}”" for q in p.quotes))
    return Group(head, verdict, t) if rows else Group(head, verdict)


class DraftPrinter:
    """``on_token`` for a terminal: the model's words as they come, under a rule that says they are its
    draft (the checked answer follows, and may drop sentences of it); ``end`` closes the draft's line,
    so an error after a few words is not glued to them ("ARRA alignserror: ...")."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.started = False

    def __call__(self, token: str) -> None:
        if not self.started:
            self.started = True
            self.console.rule("the model's draft, not yet checked", style="dim")
        print(token, end="", flush=True)

    def end(self) -> None:
        if self.started:
            self.started = False
            print(flush=True)
