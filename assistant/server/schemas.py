"""Request bodies. Unknown fields are rejected (a typo must not be silently ignored),
except the OpenAI parameters that chat front-ends send and this server has no use for."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..errors import AssistantError
from ..retrieval import parse_date_bound

DateBound = str | int | None


def _check_date(value: DateBound, upper: bool) -> DateBound:
    try:
        parse_date_bound(value, upper=upper)
    except AssistantError as exc:
        raise ValueError(str(exc)) from None
    return value


class Filters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int | None = Field(None, ge=1, le=100, description="Papers to retrieve (default: settings.top_k).")
    since: DateBound = Field(None, description="Only papers dated on/after YYYY[-MM[-DD]].")
    until: DateBound = Field(None, description="Only papers dated on/before YYYY[-MM[-DD]].")
    backend: str | None = Field(None, description="Answer backend by registered name (default: settings).")

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
        return _check_date(v, upper=False)

    @field_validator("until")
    @classmethod
    def _until(cls, v: DateBound) -> DateBound:
        return _check_date(v, upper=True)


class AskRequest(Filters):
    question: str = Field(..., max_length=4000)

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the question is empty")
        return v.strip()


class VerifyRequest(Filters):
    claim: str = Field(..., max_length=4000)

    @field_validator("claim")
    @classmethod
    def _claim(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the claim is empty")
        return v.strip()


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """OpenAI message; extra keys (name, citations sent back by our page, ...) are allowed."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

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
    stream: bool = False
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
        if last.role != "user" or not last.text.strip():
            raise ValueError("the last message must be a user message with a non-empty question")
        return self

    def turns(self) -> list[dict[str, Any]]:
        """user/assistant turns as plain dicts (system prompts do not steer a cited answer)."""
        out = []
        for m in self.messages:
            if m.role in ("user", "assistant"):
                d: dict[str, Any] = {"role": m.role, "text": m.text.strip()}
                extra = m.model_extra or {}
                if m.role == "assistant" and "citations" in extra:
                    d["citations"] = extra["citations"]
                out.append(d)
        return out
