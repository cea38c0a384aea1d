"""Request bodies. Unknown fields are rejected (a typo must not be silently ignored),
except the OpenAI parameters that chat front-ends send and this server has no use for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from ..errors import AssistantError
from ..retrieval import parse_date_bound
from ..text import blank

#: Strict: ``true`` is not the year 1, nor ``"k": true`` the number 1.
DateBound = StrictStr | StrictInt | None
MAX_QUESTION_CHARS = 4000
"""Longest question, on /v1/ask and as the last message of /v1/chat/completions (and earlier user turns)."""
MAX_HISTORY_TEXT_CHARS = 20_000
"""Longest earlier assistant turn or citation field kept from a chat history."""


def check_date(value: DateBound, upper: bool) -> DateBound:
    """A date filter the API can apply: YYYY, YYYY-MM or YYYY-MM-DD, and a real date (2024-13-45 and
    2023-02-30 are 422s, as the CLI refuses them)."""
    import datetime

    try:
        parse_date_bound(value, upper=upper)
    except AssistantError as exc:
        raise ValueError(str(exc)) from None
    if value is None or value == "":
        return value
    parts = str(value).strip().split("-")
    try:
        datetime.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
    except ValueError:
        raise ValueError(f"date filter '{value}' is not a real date (expected YYYY, YYYY-MM or YYYY-MM-DD)") from None
    return value


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: StrictInt | None = Field(None, ge=1, le=100, description="Papers to retrieve (default: settings.top_k).")
    since: DateBound = Field(None, description="Only papers dated on/after YYYY[-MM[-DD]].")
    until: DateBound = Field(None, description="Only papers dated on/before YYYY[-MM[-DD]].")
    backend: str | None = Field(None, description="Answer backend by registered name (default: settings).")
    collection: str | None = Field(None, description="Named collection to answer from (default: the served one; "
                                                     "in chat completions also the model paper-assistant:NAME).")

    @field_validator("collection")
    @classmethod
    def _collection(cls, v: str | None) -> str | None:
        from ..collection_names import check_name

        return None if v is None else check_name(v)

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str | None) -> str | None:
        from ..registry import answerers

        if v is not None and v not in answerers.names():
            raise ValueError(f"unknown answer backend '{v}' (one of {', '.join(answerers.names())})")
        return v

    @field_validator("since")
    @classmethod
    def _since(cls, v: DateBound) -> DateBound:
        return check_date(v, upper=False)

    @field_validator("until")
    @classmethod
    def _until(cls, v: DateBound) -> DateBound:
        return check_date(v, upper=True)

    @model_validator(mode="after")
    def _range(self) -> Filters:
        from ..retrieval import date_range_problem

        problem = date_range_problem(self.since, self.until, names=("since", "until"))
        if problem:
            raise ValueError(problem)
        return self


class AskRequest(Filters):
    question: str = Field(..., max_length=MAX_QUESTION_CHARS)

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if blank(v):
            raise ValueError("the question is empty")
        return v.strip()


class VerifyRequest(Filters):
    claim: str = Field(..., max_length=4000)

    @field_validator("claim")
    @classmethod
    def _claim(cls, v: str) -> str:
        if blank(v):
            raise ValueError("the claim is empty")
        return v.strip()


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class HistoryCitation(BaseModel):
    """A citation of an earlier answer, as the web page sends it back with the conversation."""

    model_config = ConfigDict(extra="allow")

    marker: StrictInt | None = Field(None, ge=1, le=10_000)
    paper_id: StrictStr = Field("", max_length=1000)
    title: StrictStr = Field("", max_length=MAX_HISTORY_TEXT_CHARS)
    quote: StrictStr | None = Field(None, max_length=MAX_HISTORY_TEXT_CHARS)


class ChatMessage(BaseModel):
    """OpenAI message; extra keys (name, ...) are allowed. ``citations`` is what our page sends
    back with an earlier answer: checked, since it steers the follow-up."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    citations: list[HistoryCitation] | None = Field(None, max_length=1000)

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content if p.type in ("text", "input_text"))
        return self.content or ""


class ChatRequest(Filters):
    """POST /v1/chat/completions. The OpenAI sampling knobs are accepted and ignored: the
    answer is built by the configured backend with its own settings."""

    model: str = "paper-assistant"
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: StrictBool = False
    """Strict: ``"no"`` or ``"false"`` is not a choice of format (a wrong type is a 422)."""
    stream_options: dict[str, Any] | None = None
    n: int = Field(1, ge=1, le=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    user: str | None = None
    logit_bias: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    # Sent by some front-ends whatever the model; there are no tools, audio or reasoning knobs here.
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    reasoning_effort: str | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None

    @model_validator(mode="after")
    def _last_is_question(self) -> ChatRequest:
        last = self.messages[-1]
        if last.role != "user" or blank(last.text):
            raise ValueError("the last message must be a user message with a non-empty question")
        for i, m in enumerate(self.messages):
            cap = MAX_QUESTION_CHARS if m.role == "user" else MAX_HISTORY_TEXT_CHARS
            if m.role in ("user", "assistant") and len(m.text) > cap:
                article = "an" if m.role == "assistant" else "a"
                raise ValueError(f"messages.{i}: {article} {m.role} message may hold at most {cap} characters "
                                 f"(got {len(m.text)})")
        return self

    def turns(self) -> list[dict[str, Any]]:
        """user/assistant turns as plain dicts (system prompts do not steer a cited answer)."""
        out = []
        for m in self.messages:
            if m.role in ("user", "assistant"):
                d: dict[str, Any] = {"role": m.role, "text": m.text.strip()}
                if m.role == "assistant" and m.citations is not None:
                    d["citations"] = [c.model_dump() for c in m.citations]
                out.append(d)
        return out
