"""Pydantic models for the harness's hand-written inputs: question sets, gate files, calibration labels.

The models say what a valid record is; ``validate`` turns pydantic's multi-line ValidationError into the
project's ONE-line InputError that starts with where the record came from ("file:line" for JSONL,
"file [section]" for TOML), so a bad row reads ``q.jsonl:7: field 'qid' must be a string, got int``.
Checks that need a sentence of their own (type names, alignment of ids) raise ValueError with that
sentence, which is passed through as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, StrictInt, StrictStr, ValidationError, field_validator, model_validator

from ..errors import InputError
from ..text import blank

QUESTION_TYPES = ("lookup", "detail", "multi", "compare", "unanswerable")
#: Metrics a gate may name: the summary's keys.
GATE_METRICS = ("pass_rate", "hit_at_1", "hit_at_k", "mrr", "recall_at_k", "citation_validity",
                "citation_precision", "citation_recall", "evidence_quote", "sentence_support", "faithfulness",
                "support_score",
                "refusal_accuracy", "false_refusal_rate", "correctness_f1", "gold_numbers", "content_recall",
                "correctness_cosine",
                "latency_p50_ms", "latency_p95_ms", "judge_errors", "failed", "errors")

M = TypeVar("M", bound=BaseModel)


def describe(exc: ValidationError, messages: Mapping[str, str] | None = None) -> str:
    """One line for the first problem (all missing fields at once); ``messages`` maps a field to the
    sentence used when its value has the wrong shape."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = first["loc"]
    if not loc and first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a JSON object, got {type(first['input']).__name__}"
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    if missing:
        return (f"missing required field{'s' if len(missing) > 1 else ''} "
                + ", ".join(repr(m) for m in missing))
    if first["type"] == "value_error":
        return str(first["ctx"]["error"])
    field = str(loc[0]) if loc else ""
    if messages and field in messages:
        return messages[field]
    if first["type"] == "string_type" and len(loc) == 1:
        return f"field '{field}' must be a string, got {type(first['input']).__name__}"
    return f"field '{'.'.join(str(p) for p in loc)}': {first['msg']}"


def validate(model: type[M], data: Any, where: str, messages: Mapping[str, str] | None = None) -> M:
    """``model.model_validate(data)``, or an InputError "where: what is wrong"."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where}: {describe(exc, messages)}") from None


class Evidence(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")
    title: StrictStr
    quote: StrictStr


class QuestionRecord(BaseModel):
    """One line of a question set; unknown fields are allowed (kept by the loader as ``extra``)."""

    model_config = ConfigDict(strict=True, extra="allow")
    qid: StrictStr
    type: StrictStr
    question: StrictStr
    gold_titles: list[StrictStr]
    answer: StrictStr
    evidence: list[Evidence]
    gold_ids: list[StrictStr | StrictInt] | None = None

    MESSAGES: ClassVar[dict[str, str]] = {
        "gold_titles": "field 'gold_titles' must be a list of non-empty strings",
        "evidence": "field 'evidence' must be a list of {\"title\": str, \"quote\": str} objects",
        "gold_ids": "'gold_ids' must be a list of ids (strings or integers) aligned with 'gold_titles'",
    }

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in QUESTION_TYPES:
            raise ValueError(f"type '{value}' is not one of {', '.join(QUESTION_TYPES)}")
        return value

    @field_validator("gold_titles")
    @classmethod
    def _titles_not_blank(cls, value: list[str]) -> list[str]:
        if any(blank(t) for t in value):
            raise ValueError(cls.MESSAGES["gold_titles"])
        return value

    @model_validator(mode="after")
    def _consistent(self) -> QuestionRecord:
        # blank(), as the Assistant tests a question: one of only zero-width spaces or control characters
        # passed .strip() here and failed at run time as an error row instead of at its line.
        if blank(self.qid) or blank(self.question):
            raise ValueError("fields 'qid' and 'question' must not be empty (nor only invisible characters)")
        if self.type == "unanswerable" and self.gold_titles:
            raise ValueError("an 'unanswerable' question must have empty 'gold_titles'")
        if self.type != "unanswerable" and not self.gold_titles:
            raise ValueError(f"type '{self.type}' needs at least one gold title "
                             "(use type 'unanswerable' when the corpus does not answer it)")
        if self.gold_ids is not None and len(self.gold_ids) != len(self.gold_titles):
            raise ValueError(f"'gold_ids' must be a list of ids aligned with 'gold_titles' "
                             f"({len(self.gold_titles)} titles)")
        return self


class LabelRecord(BaseModel):
    """One human support label of evals/calibration/support_labels.jsonl."""

    model_config = ConfigDict(strict=True, extra="allow")
    id: StrictStr | StrictInt | None = None
    sentence: StrictStr
    passages: list[StrictStr]
    label: Literal["supported", "unsupported"]
    why: StrictStr = ""

    MESSAGES: ClassVar[dict[str, str]] = {
        "label": "'label' must be one of ('supported', 'unsupported')",
        "sentence": "'sentence' must be a non-empty string",
        "passages": "'passages' must be a non-empty list of strings",
        "why": "'why' must be a string",
        "id": "'id' must be a string or an integer",
    }

    @field_validator("sentence")
    @classmethod
    def _sentence_not_blank(cls, value: str) -> str:
        if blank(value):
            raise ValueError(cls.MESSAGES["sentence"])
        return value

    @field_validator("passages")
    @classmethod
    def _some_passages(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(cls.MESSAGES["passages"])
        return value


Threshold = StrictInt | float


class GateFile(BaseModel):
    """evals/gate.toml: ``[min]`` and ``[max]`` tables of metric = number, nothing else."""

    model_config = ConfigDict(strict=True, extra="forbid")
    min: dict[str, Threshold] = {}
    max: dict[str, Threshold] = {}

    @field_validator("min", "max", mode="before")
    @classmethod
    def _table(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must be a table of metric = value")
        for name, number in value.items():
            if name not in GATE_METRICS:
                raise ValueError(f"unknown metric '{name}'; known: {', '.join(GATE_METRICS)}")
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise ValueError(f"{name}: expected a number, got {number!r}")
        return value


def validate_gate(data: Any, where: str) -> GateFile:
    """Gate errors name the section: ``gate.toml [min]: unknown metric 'hitk'; ...``."""
    try:
        return GateFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            raise InputError(f"{where}: unknown section(s) {unknown}; expected [min] and [max]") from None
        first = errors[0]
        section = f" [{first['loc'][0]}]" if first["loc"] else ""
        raise InputError(f"{where}{section}: {describe(exc)}") from None
