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


ROW_KEYS = ("qid", "question", "type", "answerable", "refused", "failed", "fail_reasons", "scores", "latency_ms")
"""What every row of a report holds (the renderers and ``compare`` read them)."""


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
        summary, rows, meta = data["summary"], data["rows"], data.get("meta", {})
        if not isinstance(summary, dict) or not isinstance(summary.get("questions"), int):
            raise InputError(f"{where}: not an eval report ('summary' must be an object with 'questions')")
        if not isinstance(rows, list) or not isinstance(meta, dict):
            raise InputError(f"{where}: not an eval report ('rows' must be a list, 'meta' an object)")
        for i, row in enumerate(rows):
            missing = [k for k in ROW_KEYS if not isinstance(row, dict) or k not in row]
            if missing or not isinstance(row["scores"], dict) or not isinstance(row["fail_reasons"], list):
                what = f"lacks {', '.join(repr(k) for k in missing)}" if missing else "has a field of the wrong type"
                raise InputError(f"{where}: not an eval report (rows[{i}] {what})")
        return cls(summary=summary, rows=rows, meta=meta)

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
