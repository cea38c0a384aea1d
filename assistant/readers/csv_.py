"""CSV / TSV with title and abstract columns (Zotero's CSV export works as is)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from .common import (
    FileResult,
    Problem,
    date_field,
    decode_line,
    make_paper,
    open_checked,
    parse_date,
    split_authors,
)

TITLE_COLS = ("title", "paper title", "name")
ABSTRACT_COLS = ("abstract", "abstract note", "summary", "abstractnote")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


DATE_COLS = ("date", "published", "publication year", "year")


def _date(result: FileResult, path: Path, where: str, values: list[str | None]) -> str | None:
    """The first date column that holds a possible date (Zotero's "March 2023" Date beside its
    Publication Year 2023 dropped the year too); a warning only when none does."""
    given = [v for v in values if v]
    for value in given:
        date, ok = parse_date(value)
        if ok and date:
            return date
    return date_field(result, path, where, given[0]) if given else None


def _col(header: dict[str, int], names: tuple[str, ...]) -> int | None:
    for n in names:
        if n in header:
            return header[n]
    return None


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    raw = open_checked(path, result, "CSV")
    if raw is None:
        return result
    with raw:
        seen: list[str] = []  # the raw lines of the record being read

        def lines() -> Iterator[str]:
            for n, line in enumerate(raw, start=1):
                text = decode_line(line, result, path, n)
                seen.append(text)
                yield text

        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.reader(lines(), delimiter=delimiter)
        try:
            header_row = next(reader)
        except (StopIteration, csv.Error) as exc:
            result.problems.append(Problem(str(path), "line 1", f"cannot read CSV header ({exc})"))
            return result
        header = {h.strip().lower(): i for i, h in enumerate(header_row)}
        t_col, a_col = _col(header, TITLE_COLS), _col(header, ABSTRACT_COLS)
        if t_col is None or a_col is None:
            result.problems.append(Problem(str(path), "line 1", "header needs 'title' and 'abstract' columns "
                                                                f"(found: {', '.join(header_row)[:200]})"))
            return result

        def get(row: list[str], names: tuple[str, ...]) -> str | None:
            i = _col(header, names)
            return row[i] if i is not None and i < len(row) and row[i].strip() else None

        records = 0
        while True:
            start = reader.line_num + 1
            seen.clear()
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                result.problems.append(Problem(str(path), f"line {start}", f"malformed CSV ({exc})"))
                continue
            if len(seen) > 1 and sum(line.count('"') for line in seen) % 2:
                # A record over several lines with an odd number of quotes: its quote ran to the end of the
                # file and swallowed every line after it (read as one record, --prune then removed them).
                result.problems.append(Problem(str(path), f"line {start}", "a quoted field of this record is "
                                               "never closed (it runs to the end of the file); nothing from "
                                               "here on was read"))
                break
            if not any(cell.strip() for cell in row):
                continue
            records += 1
            where = f"line {start}"  # where the record starts (a quoted field may hold line breaks)
            make_paper(result, path, where, row[t_col] if t_col < len(row) else None,
                       row[a_col] if a_col < len(row) else None, max_abstract_chars=max_abstract_chars,
                       explicit_id=get(row, ("id", "paper_id", "key")),
                       arxiv_id=get(row, ("arxiv_id", "arxiv", "eprint")),
                       authors=split_authors(get(row, ("authors", "author"))),
                       date=_date(result, path, where, [get(row, (c,)) for c in DATE_COLS]),
                       url=get(row, ("url",)))
            result.flush()
    if not records and not result.problems:
        # As an empty file: a header alone may be a truncated export, and --prune would drop its papers.
        result.problems.append(Problem(str(path), None, "no records after the header line"))
    return result
