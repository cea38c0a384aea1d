"""arXiv API Atom feeds (what export.arxiv.org/api/query returns)."""

from __future__ import annotations

import re
from pathlib import Path
from xml.etree import ElementTree as ET

from .common import FileResult, Problem, date_field, make_paper, read_text

NS = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom"}
# Entity declarations enable "billion laughs" expansion; arXiv feeds never carry them.
_UNSAFE = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    text = read_text(path, result)
    if text is None:
        return result
    if _UNSAFE.search(text):
        result.problems.append(Problem(str(path), None, "XML with DOCTYPE/ENTITY declarations is refused"))
        return result
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        result.problems.append(Problem(str(path), f"line {line}" if line else None, f"malformed XML ({exc.msg})"))
        return result
    entries = root.findall("a:entry", NS) if root.tag.endswith("feed") else (
        [root] if root.tag.endswith("entry") else [])
    if not entries:
        result.problems.append(Problem(str(path), None, "no Atom <entry> elements found"))
        return result
    for i, entry in enumerate(entries, start=1):
        raw_id = (entry.findtext("a:id", default="", namespaces=NS) or "").strip()
        where = f"entry {i}" + (f" ({raw_id})" if raw_id else "")
        authors = [(a.findtext("a:name", default="", namespaces=NS) or "").strip()
                   for a in entry.findall("a:author", NS)]
        url = None
        for link in entry.findall("a:link", NS):
            if link.get("rel") == "alternate" or (url is None and link.get("type") == "text/html"):
                url = link.get("href")
        make_paper(result, path, where, entry.findtext("a:title", default=None, namespaces=NS),
                   entry.findtext("a:summary", default=None, namespaces=NS),
                   max_abstract_chars=max_abstract_chars, arxiv_id=raw_id or None,
                   authors=[a for a in authors if a], url=url or raw_id or None,
                   date=date_field(result, path, where,
                                   (entry.findtext("a:published", default="", namespaces=NS) or "")[:10]))
    return result
