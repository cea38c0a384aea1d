"""Paper records -> references: BibTeX, RIS, CSL-JSON and Markdown.

BibTeX keys are ``firstauthorYEARfirstword`` (ASCII), made unique with a/b/... suffixes in a
fixed order, so the same papers always get the same keys. Text is written so that it reads back
unchanged through bibtexparser's LaTeX decoding (and so through readers/bibtex.py): accents stay
UTF-8, LaTeX specials are escaped, and ``$...$`` math is kept as written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .display import markdown_text, one_line, url_part, web_link
from .errors import AssistantError
from .records import MONTH_ABBREVIATIONS, SURROGATE, Paper

FORMATS = ("bibtex", "ris", "csl-json", "markdown")
#: File suffix -> format, for `/export FILE` and `papers export -o FILE`.
SUFFIXES = {".bib": "bibtex", ".bibtex": "bibtex", ".ris": "ris", ".json": "csl-json", ".md": "markdown",
            ".markdown": "markdown"}

_STOP = {"a", "an", "the", "on", "of", "in", "for", "to", "and", "with", "from", "by", "at", "is", "are", "via",
         "towards", "toward", "do", "does", "what", "how", "why", "when", "can"}
_DOI_URL = re.compile(r"^https?://(?:dx\.)?doi\.org/(10\..+)$", re.IGNORECASE)


def check_format(fmt: str) -> None:
    """One line for a format that is not one of FORMATS (callers check before reading any paper)."""
    if fmt not in FORMATS:
        raise AssistantError(f"unknown reference format '{fmt}' (one of {', '.join(FORMATS)})")


def export(papers: Sequence[Paper], fmt: str) -> str:
    """The references of ``papers`` in ``fmt`` (one of FORMATS)."""
    writers: dict[str, Callable[[Sequence[Paper]], str]] = {
        "bibtex": to_bibtex, "ris": to_ris, "csl-json": to_csl_json, "markdown": to_markdown}
    check_format(fmt)
    return writers[fmt](papers)


def write_file(path: str | os.PathLike[str], text: str, *, overwrite: bool = True) -> Path:
    """Write references to ``path`` whole or not at all (a temporary file beside it, renamed over it);
    without ``overwrite``, a file already there is refused: it may be the user's own .bib."""
    if not isinstance(path, (str, os.PathLike)):
        raise AssistantError(f"the file to write is a {type(path).__name__}, not a path")
    if "\x00" in str(path):  # (open() raised ValueError: a traceback that ended the chat session)
        raise AssistantError(f"{one_line(str(path))}: a file name cannot hold a NUL character; nothing written")
    if SURROGATE.search(str(path)):
        raise AssistantError(f"{one_line(str(path))}: not a file name this system can write (a stray byte or "
                             "lone surrogate); nothing written")
    target = Path(path).expanduser()
    try:
        folder, there = target.is_dir(), target.exists() or target.is_symlink()
        if target.is_symlink() and overwrite:
            # Written through the link, which stays (renaming over it replaced the link with a file); only a
            # link of the user's own: one planted in a shared folder (/tmp) would send the file anywhere.
            if hasattr(os, "geteuid") and target.lstat().st_uid != os.geteuid():
                raise AssistantError(f"{target}: a link another user owns; nothing written - give another name")
            target = target.resolve()
            folder, there = target.is_dir(), target.exists()
        special = there and not folder and not target.is_file()
    except (OSError, RuntimeError):  # e.g. a name too long, a link loop: said by the write below
        folder = there = special = False
    if not str(path).strip() or not target.name or folder:
        raise AssistantError(f"'{path}': not a file name; give one to write the references to (e.g. refs.bib)")
    if not overwrite and there:
        raise AssistantError(f"{target}: already exists; nothing written - give another name, or remove it first")
    if special:  # a pipe, a socket or a device: replacing it with a file broke whatever used it
        raise AssistantError(f"{target}: not a regular file (a pipe or a device); nothing written")
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
    except OSError as exc:
        with contextlib.suppress(OSError):  # a name that could not be written cannot be removed either
            tmp.unlink(missing_ok=True)
        raise AssistantError(f"{target}: cannot write the references ({exc.strerror or exc})") from None
    return target


def format_for(path: str, default: str = "bibtex") -> str:
    """The format a file name asks for by its suffix (.bib, .ris, .json, .md)."""
    m = re.search(r"(\.[A-Za-z]+)$", path)
    return SUFFIXES.get(m.group(1).lower(), default) if m else default


# -- shared fields ---------------------------------------------------------------------

_ARXIV_ID = re.compile(r"^(?:\d{4}\.\d{4,5}|[a-z][a-z\-]*(?:\.[A-Za-z]{2})?/\d{7})$")


def arxiv_of(paper: Paper) -> str | None:
    """The paper's arXiv id: its own, or its paper id when that is one (JSONL ``id: 2502.99999``)."""
    if paper.arxiv_id:
        return paper.arxiv_id
    return paper.paper_id if _ARXIV_ID.match(paper.paper_id) else None


def doi_of(paper: Paper) -> str | None:
    doi = paper.extra.get("doi")
    if isinstance(doi, str) and doi.strip():
        return doi.strip()
    m = _DOI_URL.match(paper.url or "")
    return m.group(1) if m else None


def split_name(name: str) -> tuple[str, str]:
    """(given, family): 'Smith, John' and 'John Smith' alike; one word is a family name."""
    if "," in name:
        family, _, given = name.partition(",")
        return given.strip(), family.strip()
    parts = name.split()
    if len(parts) <= 1:
        return "", name.strip()
    return " ".join(parts[:-1]), parts[-1]


def _ascii_word(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower())


def _date_parts(paper: Paper) -> list[int]:
    parts = [int(p) for p in (paper.date or "").split("-") if p.isdigit()]
    return parts[:3]


# -- BibTeX ----------------------------------------------------------------------------

def bibtex_keys(papers: Iterable[Paper]) -> dict[str, str]:
    """paper_id -> key, unique within ``papers`` and independent of their order."""
    groups: dict[str, list[Paper]] = {}
    for p in papers:
        groups.setdefault(_base_key(p), []).append(p)
    keys: dict[str, str] = {}
    for base, group in groups.items():
        if len(group) == 1:
            keys[group[0].paper_id] = base
            continue
        for i, p in enumerate(sorted(group, key=lambda p: (p.date or "", p.paper_id))):
            keys[p.paper_id] = base + _suffix(i)
    taken = set()
    for pid in sorted(keys):  # a suffixed key can equal another paper's plain one ('x2024a' + 'a')
        while keys[pid] in taken:
            keys[pid] += "x"
        taken.add(keys[pid])
    return keys


def _suffix(i: int) -> str:
    letters = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        letters = chr(ord("a") + r) + letters
    return letters


def _base_key(paper: Paper) -> str:
    author = _ascii_word(split_name(paper.authors[0])[1]) if paper.authors else ""
    words = [_ascii_word(w) for w in paper.title.split()]
    word = next((w for w in words if w and w not in _STOP), next((w for w in words if w), ""))
    year = str(paper.year) if paper.year else "nd"
    return (author or "anon") + year + (word or "untitled")


_MATH = re.compile(r"\$[^$]+\$")
_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$",
            "_": r"\_", "~": r"\textasciitilde{}", "^": r"{\string^}"}


def latex_escape(text: str) -> str:
    """Text as a BibTeX value that LaTeX decoding reads back as ``text``: specials escaped,
    TeX ligatures (-- `` '' ?` !`) broken with ``{}``, well-formed ``$...$`` math kept."""
    out: list[str] = []
    pos = 0
    for m in _MATH.finditer(text):
        if _plain_math(m.group(0)):
            out.append(_escape_plain(text[pos:m.start()]))
            out.append(m.group(0))
            pos = m.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def _plain_math(segment: str) -> bool:
    """Math LaTeX decoding keeps verbatim: braces balanced, no comment sign, no trailing backslash."""
    body = segment[1:-1]
    if "%" in body or body.endswith("\\") or not body.strip() or body[-1].isspace():
        return False  # "costs $5 and $10": a body ending in a space is two prices, not math
    depth = 0
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _escape_plain(text: str) -> str:
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch == "`":
            out.append("{}`")
        elif ch in "-'" and i + 1 < len(text) and text[i + 1] == ch:
            out.append(ch + "{}")
        else:
            out.append(ch)
    return "".join(out)


def _verbatim_value(text: str) -> str:
    """A url or DOI as biblatex reads it, verbatim (a LaTeX-escaped ``a\\_b`` came out with its backslash):
    only what would break the entry (braces, backslashes, spaces) is percent-encoded."""
    return re.sub(r"[{}\\\s]", lambda m: f"%{ord(m.group()):02X}", text)


def _bib_name(name: str) -> str:
    text = latex_escape(name)
    # A name that BibTeX would split (" and ") or reorder badly is kept whole in braces.
    return "{" + text + "}" if re.search(r"\band\b", name, re.IGNORECASE) else text


def to_bibtex(papers: Sequence[Paper]) -> str:
    keys = bibtex_keys(papers)
    entries = []
    for p in papers:
        fields: list[tuple[str, str]] = []
        if p.authors:
            fields.append(("author", " and ".join(_bib_name(a) for a in p.authors)))
        fields.append(("title", "{" + latex_escape(p.title) + "}"))  # inner braces keep its capitals
        journal = p.extra.get("venue") or p.extra.get("journal")
        if isinstance(journal, str) and journal:
            fields.append(("journal", latex_escape(journal)))
        parts = _date_parts(p)
        if parts:
            fields.append(("year", str(parts[0])))
        if len(parts) > 1 and 1 <= parts[1] <= 12:
            fields.append(("month", MONTH_ABBREVIATIONS[parts[1] - 1]))
        if p.date and len(parts) > 1:
            fields.append(("date", p.date))
        doi = doi_of(p)
        if doi:
            fields.append(("doi", _verbatim_value(doi)))
        eprint = arxiv_of(p)
        if eprint:
            fields.append(("eprint", eprint))
            fields.append(("archivePrefix", "arXiv"))
            primary = p.extra.get("primary_category")
            if isinstance(primary, str) and primary:
                fields.append(("primaryClass", primary))
        url = web_link(p.url)
        if url:
            fields.append(("url", _verbatim_value(url)))
        fields.append(("abstract", latex_escape(p.abstract)))
        kind = "article" if isinstance(journal, str) and journal else "misc"
        width = max(len(k) for k, _ in fields)
        body = ",\n".join(f"  {k.ljust(width)} = {v}" if k == "month" else f"  {k.ljust(width)} = {{{v}}}"
                          for k, v in fields)
        entries.append(f"@{kind}{{{keys[p.paper_id]},\n{body}\n}}\n")
    return "\n".join(entries)


# -- RIS -------------------------------------------------------------------------------

def to_ris(papers: Sequence[Paper]) -> str:
    keys = bibtex_keys(papers)
    records = []
    for p in papers:
        journal = p.extra.get("venue") or p.extra.get("journal")
        eprint = arxiv_of(p)
        lines = [("TY", "JOUR" if journal else ("UNPB" if eprint else "GEN"))]
        lines += [("AU", _ris_name(a)) for a in p.authors]
        lines.append(("TI", p.title))
        if isinstance(journal, str) and journal:
            lines.append(("T2", journal))
        parts = _date_parts(p)
        if parts:
            lines.append(("PY", str(parts[0])))
            lines.append(("DA", "/".join(f"{x:02d}" if i else str(x) for i, x in enumerate(parts))
                          + ("/" * (3 - len(parts))) + "/"))
        doi = doi_of(p)
        if doi:
            lines.append(("DO", doi))
        url = web_link(p.url)
        if url:
            lines.append(("UR", url))
        if eprint:
            lines.append(("AN", f"arXiv:{eprint}"))
        lines.append(("AB", p.abstract))
        lines.append(("ID", keys[p.paper_id]))
        lines.append(("ER", ""))
        records.append("\n".join(f"{tag}  - {value}".rstrip() if tag == "ER" else f"{tag}  - {value}"
                                 for tag, value in lines))
    return "\n\n".join(records) + ("\n" if records else "")


def _ris_name(name: str) -> str:
    given, family = split_name(name)
    return f"{family}, {given}" if given else family


# -- CSL-JSON --------------------------------------------------------------------------

def to_csl_items(papers: Sequence[Paper]) -> list[dict[str, Any]]:
    keys = bibtex_keys(papers)
    items = []
    for p in papers:
        journal = p.extra.get("venue") or p.extra.get("journal")
        item: dict[str, Any] = {"id": keys[p.paper_id], "type": "article-journal" if journal else "article",
                                "title": p.title}
        authors = []
        for a in p.authors:
            given, family = split_name(a)
            authors.append({"family": family, "given": given} if given else {"literal": family})
        if authors:
            item["author"] = authors
        parts = _date_parts(p)
        if parts:
            item["issued"] = {"date-parts": [parts]}
        if isinstance(journal, str) and journal:
            item["container-title"] = journal
        doi = doi_of(p)
        if doi:
            item["DOI"] = doi
        url = web_link(p.url)
        if url:
            item["URL"] = url
        eprint = arxiv_of(p)
        if eprint:
            item["publisher"] = "arXiv"
            item["number"] = f"arXiv:{eprint}"
        item["abstract"] = p.abstract
        items.append(item)
    return items


def to_csl_json(papers: Sequence[Paper]) -> str:
    return json.dumps(to_csl_items(papers), ensure_ascii=False, indent=2) + "\n"


# -- Markdown --------------------------------------------------------------------------

def to_markdown(papers: Sequence[Paper]) -> str:
    """A numbered reference list; every field of the record is escaped (``display.markdown_text``) and
    the only links are arXiv's, doi.org's and the record's own http(s) url."""
    lines = []
    for i, p in enumerate(papers, start=1):
        authors = markdown_text(", ".join(p.authors[:3]) + (" et al." if len(p.authors) > 3 else ""))
        bits = [f"{authors} ({p.year or 'n.d.'})." if authors else f"({p.year or 'n.d.'}).",
                f"*{markdown_text(p.title)}*."]
        eprint = arxiv_of(p)
        if eprint:
            bits.append(f"[arXiv:{markdown_text(eprint)}](https://arxiv.org/abs/{url_part(eprint)}).")
        doi = doi_of(p)
        url = web_link(p.url)
        if doi:
            bits.append(f"[doi:{markdown_text(doi)}](https://doi.org/{url_part(doi)}).")
        elif url and not eprint:
            bits.append(f"<{url}>")
        lines.append(f"{i}. " + " ".join(bits))
    return "\n".join(lines) + ("\n" if lines else "")
