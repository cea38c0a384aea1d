"""JSON Lines (one record per line, streamed) and JSON arrays of records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import FileResult, Problem, iso_date, make_paper, open_checked, split_authors

ABSTRACT_KEYS = ("abstract", "summary", "abstractNote", "abstract_note")
ID_KEYS = ("id", "paper_id", "doc_id", "_id")
ARXIV_KEYS = ("arxiv_id", "arxiv", "arxivId", "eprint")
DATE_KEYS = ("date", "published", "publication_date", "year")


def record_to_paper(result: FileResult, path: Path, where: str, rec: Any, max_abstract_chars: int) -> None:
    if not isinstance(rec, dict):
        result.problems.append(Problem(str(path), where, f"expected a JSON object, got {type(rec).__name__}"))
        return
    abstract = next((rec[k] for k in ABSTRACT_KEYS if rec.get(k) not in (None, "")), None)
    explicit = next((rec[k] for k in ID_KEYS if rec.get(k) not in (None, "")), None)
    ax = next((rec[k] for k in ARXIV_KEYS if rec.get(k) not in (None, "")), None)
    date = next((iso_date(rec[k]) for k in DATE_KEYS if rec.get(k) not in (None, "")), None)
    paper = make_paper(result, path, where, rec.get("title"), abstract, max_abstract_chars=max_abstract_chars,
                       explicit_id=explicit, arxiv_id=str(ax) if ax else None, date=date,
                       authors=split_authors(rec.get("authors")), url=rec.get("url") or None)
    if paper is not None and isinstance(rec.get("sentences"), list):
        paper.extra["sentences"] = len(rec["sentences"])


def json_error(exc: BaseException) -> str:
    """One line for what json.loads raised: syntax, nesting beyond the recursion limit, or an
    integer beyond Python's digit limit."""
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON ({exc.msg})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read"
    text = " ".join(str(exc).split())
    if "digits" in text:
        return "JSON number too long (more than 4300 digits)"
    return f"unreadable JSON ({text[:200]})"


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    fh = open_checked(path, result, "JSON")
    if fh is None:
        return result
    with fh:
        head = fh.read(8192)
        fh.seek(0)
        first = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if first == b"[" and path.suffix.lower() == ".json":
            return _read_array(path, fh.read(), result, max_abstract_chars)
        for lineno, raw in enumerate(fh, start=1):
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:
                result.problems.append(Problem(str(path), f"line {lineno}", f"{json_error(exc)}; skipped"))
                continue
            record_to_paper(result, path, f"line {lineno}", rec, max_abstract_chars)
    return result


def _read_array(path: Path, data: bytes, result: FileResult, max_abstract_chars: int) -> FileResult:
    try:
        records = json.loads(data.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else None
        result.problems.append(Problem(str(path), where, json_error(exc)))
        return result
    if isinstance(records, dict):
        records = records.get("papers") or records.get("records") or [records]
    if not isinstance(records, list):
        result.problems.append(Problem(str(path), None, "expected a JSON array of records"))
        return result
    for i, rec in enumerate(records):
        record_to_paper(result, path, f"record {i + 1}", rec, max_abstract_chars)
    return result
