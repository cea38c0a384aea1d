"""What every reader shares: the Problem record, record building and field clean-up."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..display import one_line
from ..errors import line_of_byte
from ..records import MONTH_ABBREVIATIONS, SURROGATE, Paper, clean_id, clean_text, title_id

MAX_ID_CHARS = 512
"""Longest paper id: ids are shown, linked and echoed in errors."""
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
        """One line, whatever a file name or an entry key holds (a newline is shown as \\n)."""
        return one_line(f"{self.path}:{self.where}: {self.message}" if self.where else f"{self.path}: {self.message}")


@dataclass
class FileResult:
    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def flush(self, every: int = 1000) -> None:
        """Hand the papers read so far to ``read_paths`` once there are ``every`` of them, so a
        file of a million records is never held whole (readers of line formats call this)."""
        sink = PAPER_SINK.get()
        if sink is not None and len(self.papers) >= every:
            done, self.papers = self.papers, []
            sink(done)


PAPER_SINK: ContextVar[Callable[[list[Paper]], None] | None] = ContextVar("paper_sink", default=None)
"""Set by ``read_paths`` while a reader runs: where ``FileResult.flush`` hands papers."""


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
    if " and " in text or ";" in text:
        parts = re.split(r"\s+and\s+|;", text)
    else:
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if len(parts) % 2 == 0 and all(_initials(p) for p in parts[1::2]):
            # "Roe, R." / "Roe, R. J., Doe, A.": family names with their initials, not one author a part.
            parts = [f"{family}, {given}" for family, given in zip(parts[::2], parts[1::2], strict=True)]
    return [p.strip() for p in parts if p.strip()]


def _initials(text: str) -> bool:
    """Given names as initials, in any script: "R.", "R. J.", "J.-P.", "Ö."; "RJ" is not (it could be a name)."""
    parts = [p for p in re.split(r"[\s-]+|(?<=\.)", text.strip()) if p]
    return 1 <= len(parts) <= 4 and all(
        p[0].isalpha() and p[0].isupper() and (len(p) == 1 or p[1:] == ".") for p in parts)


_MONTHS = {m: i for i, m in enumerate(MONTH_ABBREVIATIONS, start=1)}


def parse_date(value: Any, month: Any = None) -> tuple[str | None, bool]:
    """ISO date (YYYY[-MM[-DD]]) from common shapes, and whether ``value`` was a possible date
    (False for '2024-13-45', '99999-01-01', '2023-02-30', 'someday'); empty is (None, True)."""
    if value is None or value == "":
        return None, True
    text = str(value).strip()
    m = re.match(r"^(\d{4})(?!\d)(?:[-/](\d{1,2})(?!\d)(?:[-/](\d{1,2})(?!\d))?)?", text)
    if not m or int(m.group(1)) < 1:
        return None, False
    year, mon, day = m.group(1), m.group(2), m.group(3)
    if mon is None and month:
        mm = str(month).strip().lower()[:3]
        mon = str(_MONTHS[mm]) if mm in _MONTHS else (mm if mm.isdigit() else None)
    if mon and not 1 <= int(mon) <= 12:
        return None, False
    if day:
        try:
            datetime.date(int(year), int(mon), int(day))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None, False
    out = year
    if mon:
        out += f"-{int(mon):02d}"
        if day:
            out += f"-{int(day):02d}"
    return out, True


def iso_date(value: Any, month: Any = None) -> str | None:
    """Best-effort ISO date; None when unknown or impossible (``date_field`` also warns)."""
    return parse_date(value, month)[0]


def date_field(result: FileResult, path: Path | str, where: str | None, value: Any, month: Any = None,
               name: str = "date") -> str | None:
    """The ISO date of a record's date field; an impossible or unreadable one is dropped
    with a warning naming the file and line, the record is kept."""
    date, ok = parse_date(value, month)
    if not ok:
        shown = " ".join(str(value).split())[:60]
        if month not in (None, ""):  # (BibTeX: year and month are two fields; either may be the bad one)
            shown += f"' with month '{' '.join(str(month).split())[:20]}"
        result.warnings.append(Problem(str(path), where, f"field '{name}' value '{shown}' is not a possible date "
                                                         "(expected YYYY[-MM[-DD]]); dropped"))
    return date




def no_surrogates(result: FileResult, path: Path | str, where: str | None, name: str, value: Any) -> Any:
    """Lone UTF-16 surrogates (JSON '\\ud800') cannot be encoded, embedded or stored: replace
    them with U+FFFD and warn, naming the field."""
    if isinstance(value, str) and SURROGATE.search(value):
        result.warnings.append(Problem(str(path), where, f"field '{name}' has an invalid character (lone "
                                                         "surrogate); replaced with U+FFFD"))
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, list) and any(isinstance(v, str) and SURROGATE.search(v) for v in value):
        result.warnings.append(Problem(str(path), where, f"field '{name}' has an invalid character (lone "
                                                         "surrogate); replaced with U+FFFD"))
        return [SURROGATE.sub("\ufffd", v) if isinstance(v, str) else v for v in value]
    return value


def decode_line(raw: bytes, result: FileResult, path: Path, lineno: int) -> str:
    """One line of a streamed file as text; invalid UTF-8 is replaced with a warning naming the line."""
    encoding = "utf-8-sig" if lineno == 1 else "utf-8"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        result.warnings.append(Problem(str(path), f"line {lineno}", f"invalid UTF-8 (byte {exc.start + 1} of the "
                                                                    "line); undecodable bytes replaced"))
        return raw.decode(encoding, errors="replace")


def _clean_meta(value: Any) -> Any:
    """A url, a date, each author: text like the title (an author from a feed kept a CSI or an RLO, and
    `papers show` wrote it to the terminal)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [c for c in (clean_text(v) for v in value) if c]
    return value


def make_paper(result: FileResult, path: Path | str, where: str | None, title: Any, abstract: Any, *,
               max_abstract_chars: int, explicit_id: Any = None, **meta: Any) -> Paper | None:
    """Validate and build a Paper; problems and truncation warnings go into ``result``."""
    title = no_surrogates(result, path, where, "title", title)
    abstract = no_surrogates(result, path, where, "abstract", abstract)
    explicit_id = no_surrogates(result, path, where, "id", explicit_id)
    meta = {k: no_surrogates(result, path, where, k, v) for k, v in meta.items()}
    meta = {k: _clean_meta(v) for k, v in meta.items()}
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
    ax = meta.pop("arxiv_id", None)
    ax = arxiv_id(clean_id(ax) if isinstance(ax, str) else ax)
    given = clean_id(str(explicit_id)) if explicit_id is not None else ""
    pid = ax or given or title_id(title_s)
    if len(pid) > MAX_ID_CHARS:
        result.problems.append(Problem(str(path), where, f"id of {len(pid)} characters (at most {MAX_ID_CHARS}); "
                                                         "skipped"))
        return None
    if pid.strip(".") == "":
        result.problems.append(Problem(str(path), where, f"id '{pid}' cannot name a paper (a link to it would "
                                                         "resolve to another path); skipped"))
        return None
    source = f"{path}:{where}" if where else str(path)
    paper = Paper(paper_id=pid, title=title_s, abstract=abstract_s, arxiv_id=ax, source=source,
                  **{k: v for k, v in meta.items() if k in Paper.__dataclass_fields__})
    if given and not ax:
        paper.extra["explicit_id"] = True
    result.papers.append(paper)
    return paper


def read_text(path: Path, result: FileResult, *, xml: bool = False) -> str | None:
    """File text as UTF-8 (BOM accepted), or for ``xml`` the encoding its declaration names;
    binary or unreadable files become a Problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.problems.append(Problem(str(path), None, f"cannot read file: {exc.strerror or exc}"))
        return None
    if xml and data[:2] in _UTF16_BOMS:  # UTF-16 XML, as its byte-order mark says
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            result.problems.append(Problem(str(path), None, "not valid UTF-16 text though it starts with a UTF-16 "
                                                            "byte-order mark; save it as UTF-8"))
            return None
    problem = _content_problem(data, "a supported text format")
    if problem:
        result.problems.append(Problem(str(path), None, problem))
        return None
    declared = _XML_ENCODING.match(data) if xml else None
    if declared and declared.group(1).decode("ascii").lower().replace("_", "-") not in ("utf-8", "utf8"):
        import codecs

        name = declared.group(1).decode("ascii")
        try:
            codecs.lookup(name)
        except LookupError:
            result.problems.append(Problem(str(path), "line 1", f"unknown encoding '{name}' in the XML "
                                                                "declaration; save the file as UTF-8"))
            return None
        try:
            return data.decode(name)
        except UnicodeDecodeError as exc:
            result.warnings.append(Problem(str(path), f"line {line_of_byte(data, exc.start)}",
                                           f"invalid {name} (file byte {exc.start}); undecodable bytes replaced"))
            return data.decode(name, errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = line_of_byte(data, exc.start)
        result.warnings.append(Problem(str(path), f"line {line}", f"invalid UTF-8 (file byte {exc.start}); "
                                                                  "undecodable bytes replaced"))
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


_XML_ENCODING = re.compile(rb"""^(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z][\w.-]{0,39})["']""")


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark, or text whose every other byte is NUL (Excel's "Unicode Text")."""
    if data[:2] in _UTF16_BOMS:
        return True
    head = data[:16]
    if len(head) < 8:
        return False
    printable = lambda part: all(32 <= b < 127 or b in (9, 10, 13) for b in part)  # noqa: E731
    return any(set(head[zeros::2]) == {0} and printable(head[1 - zeros::2]) for zeros in (0, 1))


def _content_problem(data: bytes, kind: str) -> str | None:
    """Why a file's bytes (all, or the head of a streamed one) rule it out: empty, or binary."""
    if not data.strip():
        return "file is empty"
    if _utf16(data):
        return "the file is UTF-16 text; save it as UTF-8 (in Excel: 'CSV UTF-8') and ingest it again"
    if b"\x00" in data[:8192]:
        return f"binary file (NUL bytes); not {kind}"
    return None
