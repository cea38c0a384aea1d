"""Rich progress bars for ingest (reading, embedding) written to stderr."""

from __future__ import annotations

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

        self.console = Console(stderr=True)
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.progress.start()

    def start(self, task: str, total: int | None) -> None:
        self.tasks[task] = self.progress.add_task(self.LABELS.get(task, task), total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task in self.tasks:
            self.progress.advance(self.tasks[task], n)

    def message(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False)

    def finish(self, task: str) -> None:
        if task in self.tasks:
            t = self.progress.tasks[self.tasks[task]]
            self.progress.update(self.tasks[task], total=t.total if t.total is not None else t.completed or 1,
                                 completed=t.total if t.total is not None else t.completed or 1)

    def close(self) -> None:
        self.progress.stop()
