"""Plain-text saves of Hugging Face Papers listing pages.

Structure, not line numbers, decides what is what: a title is a short line
followed by a blank line and a long abstract line; page headers are skipped;
an optional `• N authors` / `·` / date (+ upvotes) block follows an abstract.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

from ..records import MONTH_ABBREVIATIONS
from .common import FileResult, Problem, make_paper, read_text

HEADER_LINES = {"new", "get trending papers in your email inbox!", "subscribe", "daily papers",
                "byak and the research community"}
_DATE = re.compile(r"^(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? (\d{1,2})(?:, (\d{4}))?(?: (\d+))?$")
_AUTHORS = re.compile(r"^[•·*\-]?\s*(\d+) authors?$")
MIN_ABSTRACT_CHARS = 200
"""A paragraph this long after a title and a blank line is an abstract ..."""
MIN_SHORT_ABSTRACT_CHARS = 20
"""... and a shorter one is when the page's authors / date line follows it (else a short abstract was lost
without a word, and ``ingest --prune`` removed its paper)."""


def _meta_follows(lines: list[str], j: int) -> bool:
    """The first line from ``j`` that is not blank or "·" is an authors or date line."""
    for cur in (x.strip() for x in lines[j:j + 6]):
        if cur and cur != "·":
            return bool(_AUTHORS.match(cur) or _DATE.match(cur))
    return False


def _short_abstract(title: str, para: str) -> bool:
    """A short abstract with no authors / date line after it: a paragraph of sentences, longer than
    the line above it (a page's header lines, author counts and dates end in no full stop, and an
    abstract above the next title is longer than that title). Such papers were dropped silently."""
    return (len(para) >= MIN_SHORT_ABSTRACT_CHARS and len(para) > len(title) and para[-1:] in ".!?"
            and " " in para)


def read(path: Path, *, max_abstract_chars: int = 20000, page_year: int = 0) -> FileResult:
    result = FileResult()
    text = read_text(path, result)
    if text is None:
        return result
    # Lines end at line breaks only: str.splitlines() also split at U+2028, U+0085 and form feeds, and
    # an abstract holding one lost its rest without a word.
    lines = [line.rstrip() for line in re.split(r"\r\n|\r|\n", text)]
    explicit_years = [int(m.group(3)) for line in lines if (m := _DATE.match(line.strip())) and m.group(3)]
    year = page_year or (max(explicit_years) + 1 if explicit_years else 0)
    i, n = 0, len(lines)
    found = 0
    while i < n:
        line = lines[i].strip()
        para = lines[i + 2].strip() if i + 2 < n else ""
        if (line and line.lower() not in HEADER_LINES and not _DATE.match(line) and i + 2 < n
                and not lines[i + 1].strip()
                and ((len(para) >= MIN_ABSTRACT_CHARS and len(line) < len(para))
                     or (len(para) >= MIN_SHORT_ABSTRACT_CHARS and _meta_follows(lines, i + 3))
                     or _short_abstract(line, para))):
            title, abstract, where = line, lines[i + 2].strip(), f"line {i + 1}"
            meta: dict[str, object] = {}
            j = i + 3
            # Optional metadata block: "• N authors", "·", "Mon D[, YYYY][ upvotes]".
            while j < n and j <= i + 8:
                cur = lines[j].strip()
                if not cur or cur == "·":
                    j += 1
                    continue
                if m := _AUTHORS.match(cur):
                    meta["n_authors"] = int(m.group(1))
                    j += 1
                    continue
                if m := _DATE.match(cur):
                    month = MONTH_ABBREVIATIONS.index(m.group(1)[:3].lower()) + 1
                    y = int(m.group(3)) if m.group(3) else year
                    try:
                        day = datetime.date(y, month, int(m.group(2))) if y else None
                    except ValueError:  # "Feb 30" was stored as 2025-02-30
                        result.warnings.append(Problem(str(path), f"line {j + 1}", f"date '{cur}' is not a possible "
                                                                                  "date; dropped"))
                        day = None
                    if day is not None:
                        meta["date"] = day.isoformat()
                    else:
                        meta["extra"] = {"date_text": cur}
                    if m.group(4):
                        meta["upvotes"] = int(m.group(4))
                    j += 1
                    continue
                break
            extra = meta.pop("extra", None)
            paper = make_paper(result, path, where, title, abstract, max_abstract_chars=max_abstract_chars, **meta)
            if paper is not None and isinstance(extra, dict):
                paper.extra.update(extra)
            found += 1
            i = j
            continue
        i += 1
    if found == 0:
        result.problems.append(Problem(str(path), None, "no papers found (expected title, blank line, abstract "
                                                        "as in a Hugging Face Papers page save)"))
    return result
