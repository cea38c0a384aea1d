"""JSON Lines (one record per line, streamed) and JSON arrays of records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import FileResult, Problem, date_field, decode_line, make_paper, open_checked, split_authors

ABSTRACT_KEYS = ("abstract", "summary", "abstractNote", "abstract_note")
ID_KEYS = ("id", "paper_id", "doc_id", "_id")
ARXIV_KEYS = ("arxiv_id", "arxiv", "arxivId", "eprint")
DATE_KEYS = ("date", "published", "publication_date", "year")


def _first(rec: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, Any]:
    return next(((k, rec[k]) for k in keys if rec.get(k) not in (None, "")), (keys[0], None))


def _kind(value: Any) -> str:
    return {"list": "a list", "dict": "an object", "bool": "true/false", "int": "a number",
            "float": "a fractional number"}.get(type(value).__name__, type(value).__name__)


def _arxiv_text(value: Any) -> str:
    """An arXiv id written as a JSON number: 2401.10200 arrives as the float 2401.102, which lost only
    its trailing zeros, so the fraction is padded back to the id's width (5 digits from 1501, else 4)."""
    if isinstance(value, float):
        head, _, frac = repr(value).partition(".")
        head = head.zfill(4)  # 0704.0001 arrives as 704.0001
        width = 5 if len(head) == 4 and head >= "1501" else 4
        return f"{head}.{frac.ljust(width, '0')}" if len(frac) <= width else str(value)
    return str(value)


def _is(value: Any, *kinds: type) -> bool:
    return value is None or (isinstance(value, kinds) and not isinstance(value, bool))


def _authors(result: FileResult, path: Path, where: str, value: Any) -> list[str]:
    """Authors as text or a list of names / {name | given, family} objects; anything else is dropped."""
    if value is None or value == "" or isinstance(value, str):
        return split_authors(value)
    if not isinstance(value, list):
        result.warnings.append(Problem(str(path), where, f"field 'authors' is {_kind(value)}, expected a list of "
                                                         "names; dropped"))
        return []
    ok = [a for a in value if isinstance(a, str) or (isinstance(a, dict) and all(
        _is(a.get(k), str) for k in ("name", "given", "family")))]
    if len(ok) < len(value):
        result.warnings.append(Problem(str(path), where, f"field 'authors': {len(value) - len(ok)} entr"
                                                         f"{'y is' if len(value) - len(ok) == 1 else 'ies are'} not "
                                                         "a name; dropped"))
    return split_authors(ok)


def record_to_paper(result: FileResult, path: Path, where: str, rec: Any, max_abstract_chars: int) -> None:
    """One JSON record -> Paper. A title, abstract or id of the wrong type skips the record;
    an optional field of the wrong type is dropped; both are named with file:line."""
    if not isinstance(rec, dict):
        result.problems.append(Problem(str(path), where, f"expected a JSON object, got {type(rec).__name__}"))
        return
    title = rec.get("title")
    a_key, abstract = _first(rec, ABSTRACT_KEYS)
    i_key, explicit = _first(rec, ID_KEYS)
    for name, value, kinds in (("title", title, (str,)), (a_key, abstract, (str,)), (i_key, explicit, (str, int))):
        if not _is(value, *kinds):
            wanted = "text" if kinds == (str,) else "text or a whole number"
            result.problems.append(Problem(str(path), where, f"field '{name}' is {_kind(value)}, expected "
                                                             f"{wanted}; skipped"))
            return

    def optional(name: str, value: Any, *kinds: type) -> Any:
        if _is(value, *kinds):
            return value
        result.warnings.append(Problem(str(path), where, f"field '{name}' is {_kind(value)}, expected text; "
                                                         "dropped"))
        return None

    x_key, ax = _first(rec, ARXIV_KEYS)
    ax = optional(x_key, ax, str, int, float)
    d_key, raw_date = _first(rec, DATE_KEYS)
    raw_date = optional(d_key, raw_date, str, int)
    url = optional("url", rec.get("url") or None, str)
    paper = make_paper(result, path, where, title, abstract, max_abstract_chars=max_abstract_chars,
                       explicit_id=explicit, arxiv_id=_arxiv_text(ax) if ax else None,
                       date=date_field(result, path, where, raw_date, name=d_key),
                       authors=_authors(result, path, where, rec.get("authors")), url=url)
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
        if first == b"{" and path.suffix.lower() == ".json" and not _first_line_is_json(fh):
            # One indented object ({"papers": [...]} or a single record), not one record per line. If the
            # whole file does not parse either: JSON lines with a bad first line are read line by line
            # (their bad lines named one by one); an indented document is one error where it breaks (read
            # line by line, one missing comma was hundreds of errors, none at its line).
            data = fh.read()
            fh.seek(0)
            try:
                document = json.loads(data.decode("utf-8-sig", errors="replace"))
            except (ValueError, RecursionError) as exc:
                if not _later_lines_are_records(fh):
                    where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else None
                    hint = ("; several JSON documents one after another? write one array, or one record per line"
                            if isinstance(exc, json.JSONDecodeError) and exc.msg == "Extra data" else "")
                    result.problems.append(Problem(str(path), where, json_error(exc) + hint))
                    return result
            else:
                return _read_records(path, document, result, max_abstract_chars)
        for lineno, raw in enumerate(fh, start=1):
            line = decode_line(raw, result, path, lineno).strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except (ValueError, RecursionError) as exc:
                result.problems.append(Problem(str(path), f"line {lineno}", f"{json_error(exc)}; skipped"))
                continue
            record_to_paper(result, path, f"line {lineno}", rec, max_abstract_chars)
            result.flush()
    return result


def _first_line_is_json(fh: Any) -> bool:
    """Whether the file is JSON lines: its first non-blank line parses on its own and is not a wrapper
    (``{"papers": [...]}`` on one line is one document). The file is rewound."""
    try:
        for raw in fh:
            if raw.strip():
                first = json.loads(raw.decode("utf-8-sig", errors="replace"))
                return not (isinstance(first, dict) and any(isinstance(first.get(k), list)
                                                             for k in ("papers", "records")))
        return True
    except (ValueError, RecursionError):
        return False
    finally:
        fh.seek(0)


def _later_lines_are_records(fh: Any) -> bool:
    """Whether one of the lines after the first few non-blank ones is a JSON object on its own (JSON
    lines), not the inside of an indented document. The file is rewound."""
    try:
        seen = 0
        for raw in fh:
            if not raw.strip():
                continue
            seen += 1
            if seen > 1:
                try:
                    if isinstance(json.loads(raw.decode("utf-8-sig", errors="replace")), dict):
                        return True
                except (ValueError, RecursionError):
                    pass
            if seen >= 5:
                return False
        return False
    finally:
        fh.seek(0)


def _read_array(path: Path, data: bytes, result: FileResult, max_abstract_chars: int) -> FileResult:
    try:
        records = json.loads(data.decode("utf-8-sig", errors="replace"))
    except (ValueError, RecursionError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else None
        result.problems.append(Problem(str(path), where, json_error(exc)))
        return result
    return _read_records(path, records, result, max_abstract_chars)


def _read_records(path: Path, records: Any, result: FileResult, max_abstract_chars: int) -> FileResult:
    """A parsed JSON document: an array of records, ``{"papers" | "records": [...]}`` or one record."""
    if isinstance(records, dict):
        key = next((k for k in ("papers", "records") if k in records), None)
        if key is not None and not isinstance(records[key], list):
            result.problems.append(Problem(str(path), None, f"'{key}' should be a list of records"))
            return result
        records = records[key] if key is not None else [records]
    if not isinstance(records, list):
        result.problems.append(Problem(str(path), None, "expected a JSON array of records"))
        return result
    for i, rec in enumerate(records):
        record_to_paper(result, path, f"record {i + 1}", rec, max_abstract_chars)
    return result
