"""BibTeX entries that carry an ``abstract`` field (what Zotero exports).

Parsed with bibtexparser 2 (maintained; its LaTeX decoding keeps accents: ``{\\"u}`` -> ü),
and every problem still names the entry key and line.
"""

from __future__ import annotations

import functools
import logging
import re
from pathlib import Path
from typing import Any

from ..records import MONTH_ABBREVIATIONS, MONTHS, clean_text
from .common import FileResult, Problem, date_field, make_paper, read_text


def _parse(text: str) -> Any:
    import bibtexparser

    # bibtexparser logs each failed block itself; the reader reports them as one-line problems.
    logging.getLogger("bibtexparser").setLevel(logging.CRITICAL)
    # String macros resolved and enclosing braces removed (the default stack); LaTeX is decoded
    # here, per field, so that author lists are split *before* decoding ('{R and D Team}' is one
    # name, '\&' stays '&') - bibtexparser's own name splitter mishandles backslashes.
    return bibtexparser.parse_string(text)


@functools.lru_cache(maxsize=1)
def _decoder() -> Any:
    """The LaTeX decoder bibtexparser's LatexDecodingMiddleware builds by default (math kept verbatim)."""
    from pylatexenc.latex2text import LatexNodes2Text, MacroTextSpec, get_default_latex_context_db

    db = get_default_latex_context_db()
    # \textasciicircum (how the export writes "^") reads back as "^", not "ˆ" (U+02C6).
    macros = [MacroTextSpec("url", "%s"), MacroTextSpec("textasciicircum", "^")]
    db.add_context_category("bibtexparse-default-context", prepend=True, macros=macros)
    return LatexNodes2Text(latex_context=db, keep_braced_groups=False, math_mode="verbatim")


def _decode(latex: str) -> str:
    # A bare % is a comment to LaTeX, not to BibTeX: "by 50% over baselines" was cut at the %.
    latex = re.sub(r"(?<!\\)%", r"\\%", latex)
    try:
        return str(_decoder().latex_to_text(latex))
    except Exception:  # noqa: BLE001 - pylatexenc's errors are not one type; keep the text as written
        return latex


def split_names(value: str) -> list[str]:
    """'A and {B and C} and D' -> ['A', '{B and C}', 'D']: split on ' and ' outside braces,
    where an escaped brace (\\{ \\}) does not count."""
    names: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(value):
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth = max(depth - 1, 0)
        elif depth == 0 and ch.isspace():
            m = re.match(r"\s+and\s+", value[i:], re.IGNORECASE)
            if m:
                names.append(value[start:i])
                i += m.end()
                start = i
                continue
        i += 1
    names.append(value[start:])
    return [n.strip() for n in names if n.strip()]


def _value(fields: dict[str, Any], name: str) -> Any:
    field = fields.get(name)
    if field is None:
        return None
    if name == "author":
        return [_decode(n) for n in split_names(str(field.value))]
    if name in VERBATIM_FIELDS:
        return _verbatim(str(field.value))
    return _decode(str(field.value))


VERBATIM_FIELDS = ("url", "doi")
"""Fields biblatex reads verbatim: LaTeX decoding took a url's ``%20`` for a comment and cut it."""


def _verbatim(value: str) -> str:
    r"""A url or DOI as written, outer braces off; the escapes some tools write anyway (``\_``,
    ``\%``, ``\&``, ``\#``, ``\~``) undone, and ``\url{...}`` unwrapped (no address holds a backslash)."""
    value = value.strip()
    m = re.fullmatch(r"\\url\s*\{(.*)\}", value, re.DOTALL)
    if m:
        value = m.group(1)
    while value.startswith("{") and value.endswith("}"):
        value = value[1:-1].strip()
    value = re.sub(r"\{?\\textasciitilde(?:\{\}|\s+|(?![A-Za-z]))\}?|\\~\{\}", "~", value)  # this tool's own, before
    return re.sub(r"\\([_%&#~$])", r"\1", value)


_MONTHS = dict(zip(MONTH_ABBREVIATIONS, MONTHS, strict=True))


def _concatenation(value: str, strings: dict[str, str]) -> str | None:
    """``"a " # macro # {b}`` joined, or None when ``value`` is not such a concatenation (bibtexparser 2
    leaves one as written, quotes and # included). Every part must be quoted, braced, a number or a
    known macro, so a title such as ``{C # sharp}`` (braces already removed) is left alone."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, ch in enumerate(value):
        if ch == "\\":
            continue
        if ch == '"' and depth == 0 and (i == 0 or value[i - 1] != "\\"):
            quoted = not quoted
        elif ch == "{" and not quoted:
            depth += 1
        elif ch == "}" and not quoted:
            depth = max(depth - 1, 0)
        elif ch == "#" and depth == 0 and not quoted:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    if len(parts) < 2:
        return None
    out: list[str] = []
    for part in parts:
        if len(part) >= 2 and part[0] == part[-1] == '"' or (part[:1] == "{" and part[-1:] == "}"):
            out.append(part[1:-1])
        elif part.isdigit():
            out.append(part)
        elif part.lower() in strings:
            out.append(strings[part.lower()])
        elif part.lower() in _MONTHS:
            out.append(_MONTHS[part.lower()])
        else:
            return None
    return "".join(out)


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
    strings = {str(s.key).lower(): str(s.value) for s in library.strings}
    for entry in library.entries:
        fields = {name.lower(): f for name, f in entry.fields_dict.items()}
        for f in fields.values():
            joined = _concatenation(str(f.value), strings)
            if joined is not None:
                f.value = joined
        where = f"entry {entry.key or '?'} (line {entry.start_line + 1})"
        if "abstract" not in fields:
            result.problems.append(Problem(str(path), where, "no abstract field; skipped"))
            continue
        text_of = functools.partial(_text, fields)
        ax = None
        if text_of("archiveprefix").lower() == "arxiv" or "arxiv" in text_of("journal").lower():
            ax = text_of("eprint") or text_of("journal")
        ax = ax or text_of("arxivid") or text_of("arxiv") or None
        doi = text_of("doi")
        url = text_of("url") or (f"https://doi.org/{doi}" if doi else None)
        authors = _value(fields, "author") or []
        authors = [authors] if isinstance(authors, str) else authors
        paper = make_paper(result, path, where, text_of("title"), text_of("abstract"),
                   max_abstract_chars=max_abstract_chars, arxiv_id=ax, url=url,
                   authors=[clean_text(a) for a in authors if clean_text(a)],
                   date=date_field(result, path, where, text_of("date") or text_of("year"), text_of("month")))
        if paper is not None and doi:
            paper.extra["doi"] = doi
    if not library.entries and not library.failed_blocks:
        result.problems.append(Problem(str(path), None, "no BibTeX entries found"))
    return result
