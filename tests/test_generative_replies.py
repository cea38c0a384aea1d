"""Replies real llama.cpp servers sent that the openai backend misread: a plain-text answer cut by
max_tokens, a ```json fence after a line of prose or cut before it closed, and a prompt over the
context window (HTTP 400) taken for a rejected response_format.

Scripted as whole replies (tests/scripted_chat.py): (content, finish_reason) or (HTTP status, error body).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from assistant.answering.generative import parse_plain, parse_structured, rejected_format
from assistant.api import Assistant
from assistant.errors import AssistantError, BackendError
from tests.scripted_chat import ScriptedChat
from tests.test_generative import ARRA_Q, _arra_sentence

#: llama.cpp's reply to a prompt longer than its context window (server.cpp, exceed_context_size_error).
CONTEXT_ERROR = (400, {"error": {"code": 400, "message": "the request exceeds the available context size, "
                                                          "try increasing it", "type": "exceed_context_size_error",
                                 "n_prompt_tokens": 4100, "n_ctx": 2048}})
#: What ARRA's abstract says, cut by max_tokens mid-sentence (Qwen2.5-1.5B, ASSISTANT_MAX_ANSWER_TOKENS=20).
CUT = ("ARRA [{n}] aligns LLM hidden states with visual representations from external visual foundational models "
       "via a global visual alignment loss and a hybrid token, which is then used to")

@pytest.fixture()
def reply_assistant(llm_assistant: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[Any, Any]]:
    """conftest's ``llm_assistant``: Assistants answering from a ScriptedChat."""
    return llm_assistant


def _no_json(text: str) -> None:
    for syntax in ("{", "}", '"sources"', '"text"', "```"):
        assert syntax not in text, text


# -- 1. a plain-text reply cut by max_tokens --------------------------------------------------------
def test_plain_text_cut_by_max_tokens_drops_its_unfinished_sentence(
        reply_assistant: Callable[..., tuple[Assistant, ScriptedChat]]) -> None:
    n, sent, _ = _arra_sentence(*reply_assistant([]))
    reply = f"{sent[:-1]} [{n}]. {CUT.format(n=n)}"
    a, _ = reply_assistant([(reply, "length")], llm_structured="off")
    ans = a.ask(ARRA_Q)
    assert ans.checks["truncated"] is True and ans.checks["decision"] == "answered by the model"
    assert "then used to" not in ans.text, ans.text  # was shown as "... then used to [1]."
    assert "unfinished last sentence" in ans.checks["parse_error"]
    assert "ARRA" in ans.text  # the complete sentence before it stays
    # The same reply, finished ("stop"), is not cut: the rule follows the server's finish_reason.
    assert len(parse_plain(reply).sentences) == 2


def test_a_cut_reply_keeps_a_last_sentence_the_model_ended() -> None:
    assert parse_plain("A is b [1]. C is d [2].", truncated=True).sentences == [("A is b.", [1]), ("C is d.", [2])]
    assert parse_plain("A is b [1]. C is d. [2]", truncated=True).sentences == [("A is b.", [1]), ("C is d.", [2])]
    # The citation written but not the end, or the end but not its citation: it may go on.
    assert parse_plain("A is b [1]. C is d [2]", truncated=True).sentences == [("A is b.", [1])]
    assert parse_plain("A is b [1]. C improves by 3.", truncated=True).sentences == [("A is b.", [1])]
    # A structured reply the server cut that is not JSON after all: the same rule.
    assert parse_structured("A is b [1]. C is", truncated=True).sentences == [("A is b.", [1])]


# -- 2. a prompt over the context window is that request's error, not a rejected format ---------------
def test_a_prompt_over_the_context_window_does_not_switch_off_structured_output(
        reply_assistant: Callable[..., tuple[Assistant, ScriptedChat]]) -> None:
    n, sent, _ = _arra_sentence(*reply_assistant([]))
    structured = json.dumps({"answerable": True, "sentences": [{"text": sent, "sources": [n]}]})
    a, server = reply_assistant([CONTEXT_ERROR, (structured, "stop")])
    with pytest.raises(AssistantError) as err:
        a.ask(ARRA_Q + " Considering alignment losses and hybrid tokens." * 3)
    assert "exceeds the available context size" in str(err.value) and "\n" not in str(err.value)
    assert len(server.requests) == 1  # no plain-text retry of a prompt that cannot fit either
    ans = a.ask(ARRA_Q)  # the same client (serve and chat keep one): structured output still on
    assert server.requests[1]["response_format"]["type"] == "json_schema"
    assert ans.checks["structured"] is True and "structured_fallback" not in ans.checks
    assert not ans.refused and "ARRA" in ans.text


def test_only_an_error_about_the_format_counts_as_rejecting_it() -> None:
    class Status(Exception):
        def __init__(self, status_code: int, body: object) -> None:
            super().__init__(f"Error code: {status_code}")
            self.status_code, self.body = status_code, body

    def error(status_code: int, body: object, url: str = "http://127.0.0.1:8080/v1") -> BackendError:
        exc = BackendError(f"the server at {url} rejected the request (HTTP {status_code})")
        exc.__cause__ = Status(status_code, body)
        return exc

    assert not rejected_format(error(*CONTEXT_ERROR))
    assert not rejected_format(error(400, {"message": "'messages' must be a list"}))
    assert not rejected_format(error(400, None, url="http://grammar-1:8080/v1"))  # our words, not the server's
    assert rejected_format(error(400, {"message": "response_format is not supported"}))
    assert rejected_format(error(400, {"message": "Either \"json_schema\" or \"grammar\" can be specified"}))
    assert rejected_format(error(422, {"detail": [{"loc": ["body", "response_format", "type"]}]}))
    assert rejected_format(error(400, {"message": "Failed to parse grammar"}))


# -- 4. JSON is parsed wherever its fence is, and never shown as text -------------------------------
PROSE_FENCE = ('Here is the answer:\n```json\n{{"answerable": true, "sentences": [{{"text": {text}, '
               '"sources": [{n}]}}]}}\n```\n')
CUT_FENCE = ('```json\n{{"answerable": true, "sentences": [{{"text": {text}, "sources": [{n}]}}, '
             '{{"text": "It also uses a hybrid\n')


def test_a_fence_after_a_line_of_prose_is_read_as_the_structured_answer(
        reply_assistant: Callable[..., tuple[Assistant, ScriptedChat]]) -> None:
    n, sent, _ = _arra_sentence(*reply_assistant([]))
    a, _ = reply_assistant([(PROSE_FENCE.format(text=json.dumps(sent), n=n), "stop")])
    ans = a.ask(ARRA_Q)
    assert ans.checks["structured"] is True and "parse_error" not in ans.checks
    assert ans.checks["decision"] == "answered by the model" and "ARRA" in ans.text
    _no_json(ans.text)


def test_a_fenced_reply_cut_by_max_tokens_keeps_its_complete_sentences(
        reply_assistant: Callable[..., tuple[Assistant, ScriptedChat]]) -> None:
    n, sent, _ = _arra_sentence(*reply_assistant([]))
    a, _ = reply_assistant([(CUT_FENCE.format(text=json.dumps(sent), n=n), "length")])
    ans = a.ask(ARRA_Q)
    assert ans.checks["truncated"] is True and ans.checks["structured"] is True
    assert ans.checks["parse_error"] == "JSON cut short; kept its 1 complete sentence(s)"
    assert ans.checks["decision"] == "answered by the model" and "It also uses" not in ans.text
    _no_json(ans.text)


def test_unreadable_json_yields_no_sentence_rather_than_its_syntax() -> None:
    # Cut before any item ended, or not the answer schema: nothing to keep, and no "[1]" read from "sources".
    for raw in ('```json\n{"answerable": true, "sentences": [{"text": "ARRA aligns X.", "sources": [1',
                'Sure:\n```json\n{"sentences": [{"text": "ARRA aligns X.", "sources": [1]}], \n```',
                '```json\n[{"text": "ARRA aligns X.", "sources": [1]}]\n```'):
        m = parse_structured(raw)
        assert m.sentences == [] and m.structured and m.parse_error, raw
    # The object, then a line of prose after it.
    m = parse_structured('{"answerable": true, "sentences": [{"text": "X is 3%.", "sources": [2]}]}\nHope it helps!')
    assert m.sentences == [("X is 3%.", [2])] and m.parse_error is None
