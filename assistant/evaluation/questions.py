"""Question sets (JSONL): one question per line, gold papers named by title.

Titles, not ids, name the gold papers because ids differ between indexes (a
title-hash in one, an arXiv id in another); a set may add ``gold_ids`` aligned
with ``gold_titles`` when the index keeps the source's ids (SciFact). Unknown
fields are kept in ``extra`` and written back unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import jsonl_records

QUESTION_TYPES = ("lookup", "detail", "multi", "compare", "unanswerable")
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
    """Validate one record; ``where`` ("file:line") starts every error message."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in data]
    if missing:
        raise InputError(f"{where}: missing required field{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)}")
    for key in ("qid", "type", "question", "answer"):
        if not isinstance(data[key], str):
            raise InputError(f"{where}: field '{key}' must be a string, got {type(data[key]).__name__}")
    if not data["qid"].strip() or not data["question"].strip():
        raise InputError(f"{where}: fields 'qid' and 'question' must not be empty")
    if data["type"] not in QUESTION_TYPES:
        raise InputError(f"{where}: type '{data['type']}' is not one of {', '.join(QUESTION_TYPES)}")
    titles = data["gold_titles"]
    if not isinstance(titles, list) or not all(isinstance(t, str) and t.strip() for t in titles):
        raise InputError(f"{where}: field 'gold_titles' must be a list of non-empty strings")
    evidence = data["evidence"]
    if not isinstance(evidence, list) or not all(
            isinstance(e, dict) and isinstance(e.get("title"), str) and isinstance(e.get("quote"), str)
            for e in evidence):
        raise InputError(f"{where}: field 'evidence' must be a list of {{\"title\": str, \"quote\": str}} objects")
    if data["type"] == "unanswerable" and titles:
        raise InputError(f"{where}: an 'unanswerable' question must have empty 'gold_titles'")
    if data["type"] != "unanswerable" and not titles:
        raise InputError(f"{where}: type '{data['type']}' needs at least one gold title "
                         "(use type 'unanswerable' when the corpus does not answer it)")
    ids = data.get("gold_ids")
    if ids is not None and (not isinstance(ids, list) or len(ids) != len(titles)
                            or not all(isinstance(i, (str, int)) for i in ids)):
        raise InputError(f"{where}: 'gold_ids' must be a list of ids aligned with 'gold_titles' "
                         f"({len(titles)} titles)")
    extra = {k: v for k, v in data.items() if k not in REQUIRED_FIELDS}
    return Question(qid=data["qid"], type=data["type"], question=data["question"], gold_titles=list(titles),
                    answer=data["answer"], evidence=[dict(e) for e in evidence], extra=extra)


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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for q in questions:
            fh.write(json.dumps(q.to_dict() if isinstance(q, Question) else q, ensure_ascii=False) + "\n")
            n += 1
    return n


def select(questions: Sequence[Question], *, types: Sequence[str] | None = None,
           limit: int | None = None) -> list[Question]:
    """Filter by type (validated), then keep the first ``limit``."""
    if types:
        bad = [t for t in types if t not in QUESTION_TYPES]
        if bad:
            raise InputError(f"unknown question type(s) {', '.join(bad)}; expected: {', '.join(QUESTION_TYPES)}")
        questions = [q for q in questions if q.type in types]
    out = list(questions)
    if limit is not None:
        if limit < 0:
            raise InputError("--limit must be zero or more")
        out = out[:limit]
    return out
