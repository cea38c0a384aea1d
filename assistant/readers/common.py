"""What every reader shares: the Problem record, record building and field clean-up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..records import Paper, clean_text, title_id

MAX_TITLE_CHARS = 1000
_ARXIV_NEW = re.compile(r"(\d{4}\.\d{4,5})(v\d+)?")
_ARXIV_OLD = re.compile(r"([a-z\-]+(?:\.[A-Z]{2})?/\d{7})(v\d+)?")


@dataclass
class Problem:
    """One bad file or record, shown to the user as one line."""

    path: str
    where: str | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.where}: {self.message}" if self.where else f"{self.path}: {self.message}"


@dataclass
class FileResult:
    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def arxiv_id(value: str | None) -> str | None:
    """'http://arxiv.org/abs/2401.01234v2' / 'arXiv:2401.01234' / 'hep-th/9901001' -> bare id."""
    if not value:
        return None
    text = str(value).strip()
    m = _ARXIV_NEW.search(text)
    if m:
        return m.group(1)
    m = _ARXIV_OLD.search(text)
    return m.group(1) if m else None


def split_authors(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        out = []
        for a in value:
            if isinstance(a, dict):
                a = a.get("name") or " ".join(str(a.get(k, "")) for k in ("given", "family")).strip()
            out.append(clean_text(str(a)))
        return [a for a in out if a]
    text = clean_text(str(value))
    parts = re.split(r"\s+and\s+|;", text) if (" and " in text or ";" in text) else text.split(",")
    return [p.strip() for p in parts if p.strip()]


_MONTHS = {m: i for i, m in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}


def iso_date(value: Any, month: Any = None) -> str | None:
    """Best-effort ISO date (YYYY[-MM[-DD]]) from common shapes; None when unknown."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    m = re.match(r"^(\d{4})(?:[-/](\d{1,2})(?:[-/](\d{1,2}))?)?", text)
    if not m:
        return None
    year, mon, day = m.group(1), m.group(2), m.group(3)
    if mon is None and month:
        mm = str(month).strip().lower()[:3]
        mon = str(_MONTHS[mm]) if mm in _MONTHS else (mm if mm.isdigit() else None)
    if mon and not 1 <= int(mon) <= 12:
        mon, day = None, None
    if day and not 1 <= int(day) <= 31:
        day = None
    out = year
    if mon:
        out += f"-{int(mon):02d}"
        if day:
            out += f"-{int(day):02d}"
    return out


def make_paper(result: FileResult, path: Path, where: str | None, title: Any, abstract: Any, *,
               max_abstract_chars: int, explicit_id: Any = None, **meta: Any) -> Paper | None:
    """Validate and build a Paper; problems and truncation warnings go into ``result``."""
    title_s = clean_text(str(title)) if title is not None else ""
    abstract_s = clean_text(str(abstract)) if abstract is not None else ""
    if not title_s:
        result.problems.append(Problem(str(path), where, "record has no title; skipped"))
        return None
    if not abstract_s:
        result.problems.append(Problem(str(path), where, "record has no abstract; skipped"))
        return None
    if len(title_s) > MAX_TITLE_CHARS:
        result.warnings.append(Problem(str(path), where, f"title truncated to {MAX_TITLE_CHARS} characters"))
        title_s = title_s[:MAX_TITLE_CHARS]
    if len(abstract_s) > max_abstract_chars:
        result.warnings.append(Problem(str(path), where, f"abstract of {len(abstract_s)} characters truncated "
                                                         f"to {max_abstract_chars}"))
        abstract_s = abstract_s[:max_abstract_chars]
    ax = arxiv_id(meta.pop("arxiv_id", None))
    pid = ax or (clean_text(str(explicit_id)) if explicit_id not in (None, "") else None) or title_id(title_s)
    source = f"{path}:{where}" if where else str(path)
    paper = Paper(paper_id=pid, title=title_s, abstract=abstract_s, arxiv_id=ax, source=source,
                  **{k: v for k, v in meta.items() if k in Paper.__dataclass_fields__})
    if explicit_id not in (None, "") and not ax:
        paper.extra["explicit_id"] = True
    result.papers.append(paper)
    return paper


def read_text(path: Path, result: FileResult) -> str | None:
    """File text as UTF-8 (BOM accepted); binary or unreadable files become a Problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append(Problem(str(path), None, f"cannot read file: {exc.strerror or exc}"))
        return None
    problem = _content_problem(data, "a supported text format")
    if problem:
        result.problems.append(Problem(str(path), None, problem))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        result.warnings.append(Problem(str(path), None, f"invalid UTF-8 at byte {exc.start}; undecodable "
                                                        "bytes replaced"))
        return data.decode("utf-8-sig", errors="replace")


def open_checked(path: Path, result: FileResult, kind: str) -> BinaryIO | None:
    """Open for streaming; an unreadable, empty or binary file becomes a Problem (None)."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        result.problems.append(Problem(str(path), None, f"cannot read file: {exc.strerror or exc}"))
        return None
    problem = _content_problem(fh.read(8192), kind)
    if problem:
        fh.close()
        result.problems.append(Problem(str(path), None, problem))
        return None
    fh.seek(0)
    return fh


def _content_problem(data: bytes, kind: str) -> str | None:
    """Why a file's bytes (all, or the head of a streamed one) rule it out: empty, or binary."""
    if not data.strip():
        return "file is empty"
    if b"\x00" in data[:8192]:
        return f"binary file (NUL bytes); not {kind}"
    return None
