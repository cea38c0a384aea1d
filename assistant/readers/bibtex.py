"""BibTeX entries that carry an ``abstract`` field (what Zotero exports).

Parsed with bibtexparser 2 (maintained; its LaTeX decoding keeps accents: ``{\\"u}`` -> ü),
and every problem still names the entry key and line.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from ..records import clean_text
from .common import FileResult, Problem, date_field, make_paper, read_text


def _parse(text: str) -> Any:
    import bibtexparser
    from bibtexparser import middlewares

    # bibtexparser logs each failed block itself; the reader reports them as one-line problems.
    logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)
    return bibtexparser.parse_string(text, append_middleware=[middlewares.LatexDecodingMiddleware(),
                                                              middlewares.SeparateCoAuthors()])


def _value(fields: dict[str, Any], name: str) -> Any:
    field = fields.get(name)
    return None if field is None else field.value


def _text(fields: dict[str, Any], name: str) -> str:
    value = _value(fields, name)
    return clean_text(str(value)) if value is not None else ""


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    text = read_text(path, result)
    if text is None:
        return result
    try:
        library = _parse(text)
    except (RecursionError, ValueError) as exc:
        result.problems.append(Problem(str(path), None, f"cannot parse BibTeX ({type(exc).__name__}); skipped"))
        return result
    for block in library.failed_blocks:
        line = block.start_line + 1
        key = getattr(block, "key", None) or ""
        reason = "duplicate key" if type(block).__name__ == "DuplicateBlockKeyBlock" else "syntax error"
        head = " ".join(block.raw.split())[:60]
        result.problems.append(Problem(str(path), f"line {line}", f"BibTeX {reason} in '{head}'"
                                                                  f"{f' (entry {key})' if key else ''}; skipped"))
    for entry in library.entries:
        fields = {name.lower(): f for name, f in entry.fields_dict.items()}
        where = f"entry {entry.key or '?'} (line {entry.start_line + 1})"
        if "abstract" not in fields:
            result.problems.append(Problem(str(path), where, "no abstract field; skipped"))
            continue
        text_of = functools.partial(_text, fields)
        ax = None
        if text_of("archiveprefix").lower() == "arxiv" or "arxiv" in text_of("journal").lower():
            ax = text_of("eprint") or text_of("journal")
        ax = ax or text_of("arxivid") or text_of("arxiv") or None
        url = text_of("url") or (f"https://doi.org/{text_of('doi')}" if text_of("doi") else None)
        authors = _value(fields, "author") or []
        if isinstance(authors, str):
            authors = [authors]
        make_paper(result, path, where, text_of("title"), text_of("abstract"),
                   max_abstract_chars=max_abstract_chars, arxiv_id=ax, url=url,
                   authors=[clean_text(a) for a in authors if clean_text(a)],
                   date=date_field(result, path, where, text_of("date") or text_of("year"), text_of("month")))
    if not library.entries and not library.failed_blocks:
        result.problems.append(Problem(str(path), None, "no BibTeX entries found"))
    return result
