"""Answers written by an LLM on any OpenAI-compatible server, then citation-checked.

Sources go into the prompt numbered and fenced as data; the model must cite [n]
for every sentence or give the fixed refusal sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..records import Source
from .base import AnswerContext, Draft
from .citations import neutralise_reference_markers
from .prompts import load_prompt, render

if TYPE_CHECKING:
    from types import ModuleType

    from ..settings import Settings


def format_sources(sources: Sequence[Source], budget_chars: int = 16000) -> str:
    """Numbered sources; each abstract gets an equal share of the budget so the prompt
    fits small-context local models."""
    blocks = []
    per_source = max(400, budget_chars // max(1, len(sources)))
    for i, s in enumerate(sources, 1):
        date = f" ({s.paper.date})" if s.paper.date else ""
        # The abstract's own "[5]" must not read as source [5] to the model.
        abstract = neutralise_reference_markers(s.paper.abstract[:per_source])
        blocks.append(f"[{i}] {neutralise_reference_markers(s.paper.title)}{date}\n{abstract}")
    return "\n\n".join(blocks)


def build_messages(question: str, sources: Sequence[Source], budget_chars: int = 16000) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": load_prompt("answer_system").strip()},
        {"role": "user", "content": render("answer_user", sources=format_sources(sources, budget_chars),
                                           question=question)},
    ]


def generate(client: Any, question: str, sources: Sequence[Source], *,
             on_token: Callable[[str], None] | None = None, budget_chars: int = 16000,
             max_tokens: int | None = None) -> str:
    messages = build_messages(question, sources, budget_chars)
    return str(client.complete(messages, stream=on_token is not None, on_token=on_token, max_tokens=max_tokens))


def condense(client: Any, history: Sequence[tuple[str, str]], question: str) -> str:
    """Make a follow-up standalone with the LLM (chat with the openai backend)."""
    lines = []
    for q, a in history[-3:]:
        lines.append(f"User: {q}\nAssistant: {a}")
    prompt = render("condense", history="\n".join(lines), question=question)
    out = str(client.complete([{"role": "user", "content": prompt}], max_tokens=120)).strip()
    out = out.splitlines()[0].strip().strip('"') if out else ""
    return out or question


class OpenAIAnswerer:
    """An LLM on any OpenAI-compatible server writes the answer; the checker verifies it."""

    name = "openai"
    streams = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ..llm import ChatClient

            self._client = ChatClient(self.settings)
        return self._client

    def label(self) -> str:
        return f"openai:{self.settings.llm.model}"

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft:
        raw = generate(self.client, question, sources, on_token=context.on_token,
                       budget_chars=self.settings.llm.prompt_char_budget,
                       max_tokens=self.settings.llm.max_answer_tokens)
        return Draft(raw, checks={"raw_answer": raw})

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        return condense(self.client, history, question)


def register_backends(registry: ModuleType) -> None:
    registry.answerers.register("openai", OpenAIAnswerer,
                                description="an LLM on any OpenAI-compatible server (OPENAI_BASE_URL)")
