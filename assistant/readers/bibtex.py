"""BibTeX entries that carry an ``abstract`` field (what Zotero exports).

A small parser of our own, so every problem can name the entry key and line.
"""

from __future__ import annotations

import re
from pathlib import Path

from .common import FileResult, Problem, date_field, make_paper, read_text

_ENTRY = re.compile(r"@\s*([A-Za-z]+)\s*([{(])")
_SKIP = {"comment", "preamble", "string"}
_LATEX_CMD = re.compile(r"\\[a-zA-Z]+\s*")


def _strip_braces(value: str) -> str:
    value = _LATEX_CMD.sub("", value.replace("\\&", "&").replace("\\%", "%").replace("\\_", "_"))
    return value.replace("{", "").replace("}", "").strip()


def _read_value(body: str, pos: int) -> tuple[str, int]:
    """A field value starting at ``pos``: {...} with nesting, "..." or a bare word/number."""
    if pos >= len(body):
        return "", pos
    ch = body[pos]
    if ch == "{":
        depth, i = 0, pos
        while i < len(body):
            if body[i] == "{":
                depth += 1
            elif body[i] == "}":
                depth -= 1
                if depth == 0:
                    return body[pos + 1:i], i + 1
            i += 1
        raise ValueError("unbalanced braces")
    if ch == '"':
        i, depth = pos + 1, 0
        while i < len(body):
            if body[i] == "{":
                depth += 1
            elif body[i] == "}":
                depth -= 1
            elif body[i] == '"' and depth == 0:
                return body[pos + 1:i], i + 1
            i += 1
        raise ValueError("unterminated quoted value")
    m = re.match(r"[^,\s}]+", body[pos:])
    word = m.group(0) if m else ""
    return word, pos + len(word)


def parse_fields(body: str) -> tuple[str, dict[str, str]]:
    """``key, field = value, ...`` -> (key, fields); values may be joined with #."""
    key, _, rest = body.partition(",")
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = re.compile(r"\s*([A-Za-z][\w\-:.]*)\s*=\s*").match(rest, pos)
        if not m:
            nxt = rest.find(",", pos)
            if nxt < 0:
                break
            pos = nxt + 1
            continue
        name, pos = m.group(1).lower(), m.end()
        parts = []
        while True:
            value, pos = _read_value(rest, pos)
            parts.append(value)
            m2 = re.compile(r"\s*#\s*").match(rest, pos)
            if not m2:
                break
            pos = m2.end()
        fields[name] = " ".join(parts)
        m3 = re.compile(r"\s*,?").match(rest, pos)
        pos = m3.end() if m3 else pos + 1
    return key.strip(), fields


def read(path: Path, *, max_abstract_chars: int = 20000) -> FileResult:
    result = FileResult()
    text = read_text(path, result)
    if text is None:
        return result
    found = 0
    for m in _ENTRY.finditer(text):
        kind = m.group(1).lower()
        line = text.count("\n", 0, m.start()) + 1
        if kind in _SKIP:
            continue
        found += 1
        close = "}" if m.group(2) == "{" else ")"
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == m.group(2):
                depth += 1
            elif text[i] == close:
                depth -= 1
            i += 1
        if depth:
            result.problems.append(Problem(str(path), f"line {line}", f"@{kind} entry is not closed; skipped"))
            continue
        try:
            key, fields = parse_fields(text[m.end():i - 1])
        except ValueError as exc:
            result.problems.append(Problem(str(path), f"line {line}", f"@{kind} entry: {exc}; skipped"))
            continue
        where = f"entry {key or '?'} (line {line})"
        if "abstract" not in fields:
            result.problems.append(Problem(str(path), where, "no abstract field; skipped"))
            continue
        ax = None
        if fields.get("archiveprefix", "").lower() == "arxiv" or "arxiv" in fields.get("journal", "").lower():
            ax = fields.get("eprint") or fields.get("journal")
        ax = ax or fields.get("arxivid") or fields.get("arxiv")
        url = fields.get("url") or (f"https://doi.org/{fields['doi']}" if fields.get("doi") else None)
        make_paper(result, path, where, _strip_braces(fields.get("title", "")), _strip_braces(fields["abstract"]),
                   max_abstract_chars=max_abstract_chars, arxiv_id=ax, url=url,
                   authors=[a.strip() for a in re.split(r"\s+and\s+", _strip_braces(fields.get("author", "")))
                            if a.strip()],
                   date=date_field(result, path, where, fields.get("date") or fields.get("year"),
                                   fields.get("month")))
    if found == 0:
        result.problems.append(Problem(str(path), None, "no BibTeX entries found"))
    return result
