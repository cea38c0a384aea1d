"""arXiv API Atom feeds (what export.arxiv.org/api/query returns)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from ..records import clean_id, clean_text
from .common import FileResult, Problem, arxiv_id, date_field, make_paper, read_text

NS = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom",
      "os": "http://a9.com/-/spec/opensearch/1.1/"}
_VERSION = re.compile(r"(v\d+)$")
# Entity declarations enable "billion laughs" expansion; arXiv feeds never carry them.
_UNSAFE = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
# A count of digits the int() limit (4300) and any real feed stay far below.
_TOTAL = re.compile(r"[0-9]{1,18}")
_DTD_REFUSED = "XML with DOCTYPE/ENTITY declarations is refused"


class _DoctypeRefused(Exception):
    """Raised by the parser itself at a DOCTYPE: the text check above cannot see one that a declared
    encoding (UTF-16 bytes read as UTF-8) hides from it, but expat sees what it parses."""


class _NoDoctypeBuilder(ET.TreeBuilder):
    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _DoctypeRefused(name)


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    text = read_text(path, result, xml=True)
    if text is None:
        return result
    info = parse_feed(text, path, result, max_abstract_chars=max_abstract_chars)
    for error in info.errors:  # a saved API error: not an empty feed (--prune would empty the index)
        result.problems.append(Problem(str(path), None, f"the arXiv API answered with an error: {error}"))
    return result


def parse_feed(text: str, path: Path | str, result: FileResult, *, max_abstract_chars: int = 20000) -> FeedInfo:
    """Papers of one Atom feed into ``result`` (the file reader and the arXiv API client share this).
    ``path`` names the source in problems: a file, or the API's URL as text (a Path would make
    'http://' 'http:/'). Keeps what arXiv says beyond the abstract in ``Paper.extra``: doi,
    categories, primary_category, version, journal_ref, comment."""
    info = FeedInfo()
    if _UNSAFE.search(text):
        result.problems.append(Problem(str(path), None, _DTD_REFUSED))
        return info
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(text)
        root = parser.close()
    except _DoctypeRefused:
        result.problems.append(Problem(str(path), None, _DTD_REFUSED))
        return info
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        result.problems.append(Problem(str(path), f"line {line}" if line else None, f"malformed XML ({exc.msg})"))
        return info
    total = (root.findtext("os:totalResults", default="", namespaces=NS) or "").strip()
    # str.isdigit() accepts '²' and other digits int() refuses: ASCII digits only.
    info.total_results = int(total) if _TOTAL.fullmatch(total) else None
    entries = root.findall("a:entry", NS) if root.tag.endswith("feed") else (
        [root] if root.tag.endswith("entry") else [])
    info.entries = len(entries)
    if not entries:
        if root.tag.endswith("feed") and info.total_results == 0:
            info.readable = True
            return info  # an API answer with no results is a valid, empty feed
        result.problems.append(Problem(str(path), None, "no Atom <entry> elements found"))
        return info
    info.readable = True
    for i, entry in enumerate(entries, start=1):
        raw_id = (entry.findtext("a:id", default="", namespaces=NS) or "").strip()
        where = f"entry {i}" + (f" ({raw_id})" if raw_id else "")
        if "/api/errors" in raw_id:  # the API reports a bad request as an entry titled "Error"
            summary = clean_text(entry.findtext("a:summary", default="", namespaces=NS) or "")
            info.errors.append(summary or raw_id)
            continue
        bare = arxiv_id(clean_id(raw_id))  # as make_paper names the paper
        if bare:
            info.ids.add(bare)
        authors = [(a.findtext("a:name", default="", namespaces=NS) or "").strip()
                   for a in entry.findall("a:author", NS)]
        url = None
        for link in entry.findall("a:link", NS):
            if link.get("rel") == "alternate" or (url is None and link.get("type") == "text/html"):
                url = link.get("href")
        paper = make_paper(result, path, where, entry.findtext("a:title", default=None, namespaces=NS),
                           entry.findtext("a:summary", default=None, namespaces=NS),
                           max_abstract_chars=max_abstract_chars, arxiv_id=raw_id or None,
                           authors=[a for a in authors if a], url=url or raw_id or None,
                           date=date_field(result, path, where,
                                           (entry.findtext("a:published", default="", namespaces=NS) or "")[:10]))
        if paper is not None:
            paper.extra.update(_arxiv_extra(entry, raw_id))
    return info


@dataclass
class FeedInfo:
    """What a feed says about itself: the API's total hit count (for paging) and its error entries."""

    total_results: int | None = None
    entries: int = 0
    errors: list[str] = field(default_factory=list)
    readable: bool = False
    """Well-formed XML with entries, or an empty result set: an id it lacks is not there. False when
    refused, malformed or without entries - what it holds is unknown, not absent."""
    ids: set[str] = field(default_factory=set)
    """Bare arXiv ids of every entry, kept or not (an entry skipped for a problem was still found)."""


def _arxiv_extra(entry: ET.Element, raw_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    m = _VERSION.search(raw_id)
    if m and arxiv_id(raw_id):
        out["version"] = m.group(1)
    doi = clean_text(entry.findtext("arxiv:doi", default="", namespaces=NS) or "")
    if doi:
        out["doi"] = doi
    primary = entry.find("arxiv:primary_category", NS)
    # Category terms are text like the rest (a CSI in one reached the terminal through `papers show`).
    if primary is not None and clean_text(primary.get("term") or ""):
        out["primary_category"] = clean_text(primary.get("term") or "")
    cats = [clean_text(c.get("term") or "") for c in entry.findall("a:category", NS)]
    cats = [c for c in cats if c]
    if cats:
        out["categories"] = list(dict.fromkeys(cats))
    for name in ("journal_ref", "comment"):
        value = clean_text(entry.findtext(f"arxiv:{name}", default="", namespaces=NS) or "")
        if value:
            out[name] = value
    return out
