"""The records that flow through the pipeline: readers → index → retrieval → answers.

Plain dataclasses so every layer (CLI, Python API, evaluation) shares one shape,
and ``Answer.to_dict`` is the stable JSON contract the eval harness reads.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

REFUSAL = "The indexed papers do not answer this."

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
"""Month names for ``Paper.date`` (ISO) as readers meet them and exports write them."""
MONTH_ABBREVIATIONS = tuple(m[:3].lower() for m in MONTHS)
"""``jan`` ... ``dec``: BibTeX's month macros and the prefix readers match."""

MAX_BATCH_PAPERS = 100_000
"""Papers an ingest writes per crash-safe batch at most (one transaction, one embedding pass)."""

SURROGATE = re.compile("[\ud800-\udfff]")
"""A lone UTF-16 surrogate: what a stray byte from a terminal or a JSON "\\ud800" becomes; no UTF-8 file,
terminal or database can take one."""

_WS = re.compile(r"\s+")
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
"""Explicit direction embeddings, overrides and isolates (not the implicit marks LRM / RLM)."""
CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
"""C0 and C1 control characters other than the ones ``\\s`` counts as whitespace (tab, line and page breaks,
\\x1c-\\x1f, NEL: those collapse to a space)."""
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise_title(title: str) -> str:
    """Case-, accent- and punctuation-insensitive form used for ids and matching."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub(" ", text.lower()).strip()


def short_hash(*parts: str, n: int = 12) -> str:
    h = hashlib.sha1()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:n]


def title_id(title: str) -> str:
    """Paper id for records with no arXiv id or explicit id: stable across re-ingests."""
    return "t-" + short_hash(normalise_title(title))


def clean_text(text: str) -> str:
    """Collapse whitespace (abstracts arrive with arbitrary line breaks) and drop what only steers a
    screen: control characters (an ESC sequence in a title would recolour, retitle or link the user's
    terminal) and explicit direction overrides and isolates (U+202A-U+202E, U+2066-U+2069: an unclosed
    one turns the rest of a line around, ids and dates included). No abstract's meaning rests on them."""
    return _WS.sub(" ", CONTROLS.sub("", BIDI_CONTROLS.sub("", text))).strip()


_INVISIBLE = re.compile("[\u00ad\u180e\u200b\u200e\u200f\u2060-\u2064\ufeff\U000e0000-\U000e007f]")
"""Characters that show nothing and mean nothing in an id: soft hyphen, zero-width space, direction marks,
word joiner and invisible operators, byte-order mark, tag characters. (Not the zero-width (non-)joiners,
which change how Persian or Indic text is written, nor Arabic number signs.)"""


def clean_id(text: str) -> str:
    """``clean_text`` without invisible characters: "p\u200b1" displayed as "p1" but was another paper."""
    return _INVISIBLE.sub("", clean_text(text))


@dataclass
class Paper:
    """One paper as read from any source format."""

    paper_id: str
    title: str
    abstract: str
    authors: list[str] = field(default_factory=list)
    n_authors: int | None = None
    date: str | None = None
    """ISO date (YYYY-MM-DD, YYYY-MM or YYYY) when known."""
    url: str | None = None
    arxiv_id: str | None = None
    upvotes: int | None = None
    source: str = ""
    """File the record came from, with ``:line`` or ``#entry`` when useful."""
    extra: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Absolute source file -> the fields that file gave this paper. The fields above are
    ``merge_provenance`` of these, so re-reading one file replaces only what it said."""

    @property
    def content_hash(self) -> str:
        """What decides 'unchanged' on re-ingest: the text that gets embedded plus metadata."""
        return short_hash(self.title, self.abstract, self.date or "", ",".join(self.authors),
                          str(self.n_authors or ""), self.url or "", n=16)

    @property
    def year(self) -> int | None:
        if self.date and self.date[:4].isdigit():
            return int(self.date[:4])
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Paper:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


MERGED_FIELDS = ("title", "authors", "n_authors", "date", "url", "arxiv_id", "upvotes", "source", "extra")


def _pick(name: str, values: list[Any]) -> Any:
    """One value per field from what several files said, independent of file order:
    the more specific date, the longer author list, the larger count, else the first file's."""
    if name == "date":
        return max(values, key=lambda v: (len(v), [-ord(c) for c in v]))
    if name == "authors":
        return max(values, key=lambda v: (len(v), [[-ord(c) for c in a] for a in v]))
    if name in ("n_authors", "upvotes"):
        return max(values)
    return values[0]


def own_fields(paper: Paper) -> dict[str, Any]:
    """The non-empty mergeable fields of a record as one file read it."""
    return {name: getattr(paper, name) for name in MERGED_FIELDS if getattr(paper, name) not in (None, "", [], {})}


def combine_provenance(into: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]) -> None:
    """Add ``other``'s per-file fields to ``into``; a file that gave the paper twice is merged
    with the same picks as two files."""
    for f, fields in other.items():
        have = into.setdefault(f, {})
        for name, value in fields.items():
            have[name] = _pick(name, [have[name], value]) if name in have else value


def merge_provenance(paper: Paper) -> None:
    """Set the paper's fields from its per-file provenance (files in path order, so the
    result does not depend on which file was read or ingested first). A field is empty
    only when no file gave it."""
    files = sorted(paper.provenance)
    if not files:
        return
    for name in MERGED_FIELDS:
        values = [paper.provenance[f][name] for f in files if paper.provenance[f].get(name) not in (None, "", [], {})]
        if name == "extra":
            merged: dict[str, Any] = {}
            for v in values:
                for k, x in v.items():
                    merged.setdefault(k, x)
            paper.extra = merged
        elif name == "title":
            paper.title = values[0] if values else paper.title
        else:
            setattr(paper, name, _pick(name, values) if values else ([] if name == "authors" else
                                                                     ("" if name == "source" else None)))


@dataclass
class Chunk:
    """A token-bounded piece of an abstract, with its character offsets in the abstract."""

    chunk_id: str
    paper_id: str
    index: int
    text: str
    start: int
    end: int


@dataclass
class Source:
    """A retrieved paper: its best chunks, fused score and rank."""

    rank: int
    paper: Paper
    score: float
    chunks: list[Chunk] = field(default_factory=list)
    dense_score: float | None = None
    """Best cosine similarity of the paper's chunks to the query, when dense retrieval ran."""

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "paper_id": self.paper.paper_id, "title": self.paper.title,
                "score": round(float(self.score), 6)}


@dataclass
class Citation:
    marker: int
    paper_id: str
    title: str
    quote: str | None = None
    date: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"marker": self.marker, "paper_id": self.paper_id, "title": self.title, "quote": self.quote}


def run_fields(backend: dict[str, str], timings_ms: dict[str, float], checks: dict[str, Any]) -> dict[str, Any]:
    """The closing fields of an answer's and a claim's verdicts' JSON, one rule for both: which backend
    ran, each stage's time (ms, 2 decimals) and what the checks found."""
    return {"backend": dict(backend), "timings_ms": {k: round(float(v), 2) for k, v in timings_ms.items()},
            "checks": checks}


@dataclass
class Answer:
    """A checked answer. ``to_dict`` is the stable JSON contract (docs/asking.md; modelled in contracts.py)."""

    question: str
    text: str
    refused: bool
    citations: list[Citation] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    backend: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    """Citation-check findings: unknown markers removed, uncited sentences, per-sentence quotes."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "citations": [c.to_dict() for c in self.citations],
            "sources": [s.to_dict() for s in self.sources],
            **run_fields(self.backend, self.timings_ms, self.checks),
        }

    @property
    def cited_papers(self) -> list[str]:
        seen: list[str] = []
        for c in self.citations:
            if c.paper_id not in seen:
                seen.append(c.paper_id)
        return seen
