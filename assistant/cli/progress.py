"""Rich progress bars for ingest (reading, embedding) written to stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class RichReporter:
    LABELS = {"read": "Reading sources", "embed": "Embedding papers"}

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True, markup=False)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        # Without a terminal (CI logs, nohup) rich draws nothing until the end: print
        # a plain line at most every 30 s instead, so a long ingest shows progress. The
        # bars are then never drawn: stopping them would print them once more at the end.
        self.plain = not self.console.is_terminal
        self._last_line = 0.0
        self._started = False

    def _live(self) -> None:
        # Drawn on first use: a command that needs no progress prints nothing at all.
        if not self._started:
            self._started = True
            if not self.plain:
                self.progress.start()

    def start(self, task: str, total: int | None) -> None:
        self._live()
        self.tasks[task] = self.progress.add_task(self.LABELS.get(task, task), total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task in self.tasks:
            self.progress.advance(self.tasks[task], n)
            if self.plain:
                import time

                now = time.monotonic()
                t = self.progress.tasks[self.tasks[task]]
                if now - self._last_line >= 30 or t.finished:
                    self._last_line = now
                    total = f"/{int(t.total)}" if t.total else ""
                    self.console.print(f"{self.LABELS.get(task, task)}: {int(t.completed)}{total} "
                                       f"({t.elapsed or 0:.0f} s)", markup=False, highlight=False)

    def message(self, text: str) -> None:
        """One problem or warning, one line whatever the width (a log without a terminal is 80 columns)."""
        from ..display import one_line

        self._live()
        self.progress.console.print(one_line(text), markup=False, highlight=False, soft_wrap=True)

    def finish(self, task: str) -> None:
        if task in self.tasks:
            t = self.progress.tasks[self.tasks[task]]
            self.progress.update(self.tasks[task], total=t.total if t.total is not None else t.completed or 1,
                                 completed=t.total if t.total is not None else t.completed or 1)

    def close(self) -> None:
        if self._started and not self.plain:
            self.progress.stop()


@contextmanager
def reporter(enabled: bool = True) -> Iterator[RichReporter | None]:
    """A rich reporter for the API's ``progress=`` (None when disabled), stopped on exit."""
    if not enabled:
        yield None
        return
    rep = RichReporter()
    try:
        yield rep
    finally:
        rep.close()
