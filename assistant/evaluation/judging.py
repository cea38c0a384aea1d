"""What every judge returns, and how an answer's sentences meet their cited passages.

A judge sees each answer sentence with the passages of exactly the papers that
sentence cites (title + abstract), never the rest of the answer's sources: a
sentence is supported only by its own citations (ALCE citation recall).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from .metrics import AnswerSentence


@dataclass
class Passage:
    marker: int
    paper_id: str
    title: str
    text: str


@dataclass
class SentenceVerdict:
    sentence: str
    markers: list[int]
    supported: bool | None
    """Entailed by its own citations; None = the judge failed on it (counted as a judge error)."""
    per_citation: dict[int, bool | None] = field(default_factory=dict)
    """Marker -> does that citation alone support the sentence (citation precision)."""
    score: float | None = None
    """Offline judge: the continuous support score behind ``supported``."""
    claims: list[dict[str, Any]] = field(default_factory=list)
    """Claims checked ({"claim", "supported", "reason"}); the offline judge treats the sentence as one claim."""
    rationale: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["per_citation"] = {str(k): v for k, v in self.per_citation.items()}
        return out


@dataclass
class AnswerJudgement:
    judge: str
    sentences: list[SentenceVerdict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """One message per failed judge call (malformed output twice, server failure)."""

    @property
    def claims(self) -> list[dict[str, Any]]:
        return [c for s in self.sentences for c in s.claims]


class Judge(Protocol):
    name: str
    model: str | None

    def judge(self, question: str, sentences: Sequence[AnswerSentence],
              passages: dict[int, Passage]) -> AnswerJudgement: ...


def cited_passages(sentence: AnswerSentence, passages: dict[int, Passage]) -> tuple[list[Passage], list[int]]:
    """The passages a sentence cites, and its markers that resolve to no citation."""
    found = [passages[m] for m in sentence.markers if m in passages]
    unknown = [m for m in sentence.markers if m not in passages]
    return found, unknown


def passage_text(title: str, abstract: str) -> str:
    """What a citation stands for: the paper's title and abstract (the answerer saw both)."""
    title = title.strip()
    if title and title[-1] not in ".?!":
        title += "."
    return f"{title} {abstract}".strip()
