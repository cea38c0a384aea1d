"""The `assistant chat` REPL: prompt_toolkit line editing and history over ChatSession."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ..errors import AssistantError

if TYPE_CHECKING:
    from ..api import Assistant

HELP = """Commands:
  /sources   papers retrieved for the last answer
  /quotes    the last answer with the supporting quote of each citation
  /export FILE  write the references cited so far (.bib, .ris, .json = CSL-JSON, .md)
  /verify CLAIM  does the literature support it? per paper: supports / contradicts
             (with exact quotes) or not enough evidence
  /reset     forget the conversation (follow-ups start fresh)
  /help      this text
  /quit      leave (also Ctrl-D)
Ctrl-C stops an answer in progress; the session goes on."""


def _read_line(session: Any) -> str:
    if session is None:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line
    return str(session.prompt("you> "))


def error_text(exc: Exception) -> Any:
    """``error: ...`` in red, the message as plain text (a title in it is no rich markup)."""
    from rich.text import Text

    from ..display import one_line

    return Text.assemble(("error:", "red"), f" {one_line(str(exc))}")


def run_repl(assistant: Assistant, backend: str | None = None) -> None:
    from rich.console import Console
    from rich.text import Text

    con = Console(markup=False)  # what the user typed and the papers' text printed as they are
    chat = assistant.chat(backend=backend)
    from .progress import reporter

    with reporter() as rep:
        assistant.ensure_index(progress=rep)
    session = None
    if sys.stdin.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory

        hist = assistant.settings.home / "chat_history"
        try:
            hist.parent.mkdir(parents=True, exist_ok=True)
            session = PromptSession(history=FileHistory(str(hist)))
        except OSError:
            session = PromptSession()
    where = "" if assistant.collection == "default" else f" in collection {assistant.collection}"
    con.print(Text.assemble(("Paper assistant", "bold"), f" — {assistant.status()['papers']} papers{where}, "
                            f"backend {chat.backend}. /help for commands, /quit to leave."))
    streaming = chat.backend == "openai"
    while True:
        try:
            if not _turn(chat, session, con, streaming):
                break
        except KeyboardInterrupt:
            # Ctrl-C between prompts or during an answer stops that, not the session.
            print()
            con.print(Text("interrupted", style="yellow"))
    con.print("bye")


def _turn(chat: Any, session: Any, con: Any, streaming: bool) -> bool:
    """One prompt and its answer or command; False when the user leaves."""
    from .render import answer_renderable, sources_renderable

    try:
        line = _read_line(session).strip()
    except KeyboardInterrupt:
        return True
    except EOFError:
        return False
    if not line:
        return True
    if line.startswith("/"):
        cmd = line.split()[0].lower()
        if cmd in ("/quit", "/exit", "/q"):
            return False
        if cmd == "/help":
            con.print(HELP, markup=False)
        elif cmd == "/verify":
            claim = line[len(cmd):].strip()
            if not claim:
                con.print("usage: /verify CLAIM")
            else:
                try:
                    from .render import verdicts_renderable

                    con.print(verdicts_renderable(chat.assistant.verify(claim, backend=chat.backend)))
                except AssistantError as exc:
                    con.print(error_text(exc))
        elif cmd == "/reset":
            chat.reset()
            con.print("conversation reset")
        elif cmd == "/export":
            target = line[len(cmd):].strip()
            if not target:
                con.print("usage: /export FILE (.bib, .ris, .json or .md)")
            else:
                try:
                    n = chat.export(target)
                    con.print(f"wrote {n} reference(s) to {target}", markup=False, highlight=False)
                except AssistantError as exc:
                    con.print(error_text(exc))
        elif cmd in ("/sources", "/quotes"):
            if chat.last is None:
                con.print("no answer yet")
            elif cmd == "/sources":
                con.print(sources_renderable(chat.last))
            else:
                con.print(answer_renderable(chat.last, quotes=True))
        else:
            con.print(f"unknown command {cmd}; /help lists them")
        return True
    from .render import DraftPrinter

    draft = DraftPrinter(con) if streaming else None
    try:
        ans = chat.ask(line, on_token=draft)
        if draft is not None:
            draft.end()
            con.rule("checked answer")
        con.print(answer_renderable(ans))
    except AssistantError as exc:
        if draft is not None:
            draft.end()
        con.print(error_text(exc))
    return True
