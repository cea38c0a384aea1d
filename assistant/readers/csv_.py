"""CSV / TSV with title and abstract columns (Zotero's CSV export works as is)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from .common import FileResult, Problem, date_field, decode_line, make_paper, open_checked, split_authors

TITLE_COLS = ("title", "paper title", "name")
ABSTRACT_COLS = ("abstract", "abstract note", "summary", "abstractnote")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


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
        text = (decode_line(line, result, path, n) for n, line in enumerate(raw, start=1))
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        reader = csv.reader(text, delimiter=delimiter)
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

        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                result.problems.append(Problem(str(path), f"line {reader.line_num}", f"malformed CSV ({exc})"))
                continue
            if not any(cell.strip() for cell in row):
                continue
            where = f"line {reader.line_num}"
            make_paper(result, path, where, row[t_col] if t_col < len(row) else None,
                       row[a_col] if a_col < len(row) else None, max_abstract_chars=max_abstract_chars,
                       explicit_id=get(row, ("id", "paper_id", "key")),
                       arxiv_id=get(row, ("arxiv_id", "arxiv", "eprint")),
                       authors=split_authors(get(row, ("authors", "author"))),
                       date=date_field(result, path, where, get(row, ("date", "published", "publication year",
                                                                       "year"))),
                       url=get(row, ("url",)))
    return result
