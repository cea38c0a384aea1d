"""EvalReport, the result of a run: what runner produces and report, compare and html_report read.

It lives apart from runner.py so the modules that only read reports never import the runner
(data flows one way: runner -> report -> results).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import read_text_file
from .scoring import summarise_rows

REPORT_VERSION = 1


@dataclass
class EvalReport:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["failed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"version": REPORT_VERSION, "meta": self.meta, "summary": self.summary, "rows": self.rows}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "report") -> EvalReport:
        if not isinstance(data, dict) or not {"summary", "rows"} <= set(data):
            raise InputError(f"{where}: not an eval report (needs 'summary' and 'rows')")
        return cls(summary=data["summary"], rows=data["rows"], meta=data.get("meta", {}))

    @classmethod
    def load(cls, path: str | Path) -> EvalReport:
        """A report.json, or a run directory holding one."""
        path = Path(path)
        if path.is_dir():
            path = path / "report.json"
        try:
            data = json.loads(read_text_file(path, "report"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: cannot read report: {exc}") from None
        return cls.from_dict(data, str(path))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall summary plus the same summary per question type."""
    out = summarise_rows(rows)
    types = sorted({r["type"] for r in rows})
    out["by_type"] = {t: summarise_rows([r for r in rows if r["type"] == t]) for t in types}
    return out
