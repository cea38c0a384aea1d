"""Question sets (JSONL): one question per line, gold papers named by title.

Titles, not ids, name the gold papers because ids differ between indexes (a
title-hash in one, an arXiv id in another); a set may add ``gold_ids`` aligned
with ``gold_titles`` when the index keeps the source's ids (SciFact). Unknown
fields are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import json_text, jsonl_records, write_atomic
from .schemas import QUESTION_TYPES, QuestionRecord, validate

__all__ = ["QUESTION_TYPES", "Question", "load_questions", "parse_question", "select", "write_questions"]
REQUIRED_FIELDS = ("qid", "type", "question", "gold_titles", "answer", "evidence")


@dataclass
class Question:
    qid: str
    type: str
    question: str
    gold_titles: list[str]
    answer: str
    evidence: list[dict[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def answerable(self) -> bool:
        """Gold titles empty = the corpus does not answer it (the system should refuse)."""
        return bool(self.gold_titles)

    @property
    def gold_ids(self) -> list[str] | None:
        ids = self.extra.get("gold_ids")
        return [str(i) for i in ids] if ids else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"qid": self.qid, "type": self.type, "question": self.question,
                               "gold_titles": list(self.gold_titles), "answer": self.answer,
                               "evidence": [dict(e) for e in self.evidence]}
        out.update(self.extra)
        return out


def parse_question(data: Any, where: str) -> Question:
    """Validate one record (schemas.QuestionRecord); ``where`` ("file:line") starts every error message.
    The dataclass keeps the record's own values, so unknown fields are written back unchanged."""
    rec = validate(QuestionRecord, data, where, QuestionRecord.MESSAGES)
    extra = {k: v for k, v in data.items() if k not in REQUIRED_FIELDS}
    return Question(qid=rec.qid, type=rec.type, question=rec.question, gold_titles=list(rec.gold_titles),
                    answer=rec.answer, evidence=[dict(e) for e in data["evidence"]], extra=extra)


def load_questions(path: str | Path) -> list[Question]:
    """Read and validate a question set; errors name the file and line."""
    out: list[Question] = []
    seen: dict[str, int] = {}
    for n, where, data in jsonl_records(Path(path), "question file"):
        q = parse_question(data, where)
        if q.qid in seen:
            raise InputError(f"{where}: duplicate qid '{q.qid}' (first on line {seen[q.qid]})")
        seen[q.qid] = n
        out.append(q)
    if not out:
        raise InputError(f"{path}: no questions in file")
    return out


def write_questions(questions: Iterable[Question | dict[str, Any]], path: str | Path) -> int:
    lines = [json_text(q.to_dict() if isinstance(q, Question) else q) + "\n" for q in questions]
    write_atomic(path, "".join(lines))
    return len(lines)


def select(questions: Sequence[Question], *, types: Sequence[str] | None = None,
           limit: int | None = None) -> list[Question]:
    """Filter by type (validated), then keep the first ``limit``."""
    if types:
        bad = [t for t in types if t not in QUESTION_TYPES]
        if bad:
            raise InputError(f"--types: unknown question type(s) {', '.join(bad)}; expected: "
                             f"{', '.join(QUESTION_TYPES)}")
        questions = [q for q in questions if q.type in types]
    out = list(questions)
    if limit is not None:
        if limit < 0:
            raise InputError(f"--limit must be zero or more, got {limit}")
        out = out[:limit]
    return out
