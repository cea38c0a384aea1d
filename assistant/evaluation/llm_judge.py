"""The LLM judge, RAGAS-style: extract the answer's claims, then verify each against the
passages its sentence cites.

Judge output is parsed strictly (a JSON object whose keys and types are checked);
a malformed reply gets one retry that names the problem, and a second failure is
recorded as a judge error, never raised: one bad reply must not end a long run.
Passages go into the prompt between <passage> tags, declared as data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from ..answering.generative import rejected_format
from ..answering.prompts import render
from ..errors import BackendError
from .judging import AnswerJudgement, Passage, SentenceVerdict, cited_passages
from .metrics import AnswerSentence


class JudgeOutputError(ValueError):
    """The judge's reply is not the JSON object the prompt asked for."""


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_INNER_FENCE = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)

#: JSON schemas sent as response_format, so servers that support it (llama.cpp, vLLM, OpenAI)
#: constrain even a small model to the exact shape the parsers below check.
CLAIMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"claims": {"type": "array", "items": {
        "type": "object",
        "properties": {"sentence": {"type": "integer"}, "claim": {"type": "string"}},
        "required": ["sentence", "claim"]}}},
    "required": ["claims"],
}
VERDICTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"verdicts": {"type": "array", "items": {
        "type": "object",
        "properties": {"claim": {"type": "integer"}, "supported": {"type": "boolean"},
                       "passages": {"type": "array", "items": {"type": "integer"}},
                       "reason": {"type": "string"}},
        "required": ["claim", "supported", "passages", "reason"]}}},
    "required": ["verdicts"],
}


def parse_json_object(reply: str) -> dict[str, Any]:
    """The reply as a JSON object: the whole reply, or the one ```json fence in it (small models
    wrap JSON in a fence, sometimes with a line of prose around it); nothing looser."""
    text = reply.strip()
    m = _FENCE.match(text)
    if m:
        text = m.group(1)
    elif not text.startswith("{"):
        inner = _INNER_FENCE.findall(text)
        if len(inner) == 1:
            text = inner[0]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JudgeOutputError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(data, dict):
        raise JudgeOutputError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_claims(reply: str, n_sentences: int) -> dict[int, list[str]]:
    """{"claims": [{"sentence": int, "claim": str}]} -> sentence number -> claims."""
    data = parse_json_object(reply)
    items = data.get("claims")
    if not isinstance(items, list):
        raise JudgeOutputError('missing key "claims" (a list)')
    out: dict[int, list[str]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise JudgeOutputError(f"claims[{i}] is not an object")
        n = _int(item.get("sentence"))
        claim = item.get("claim")
        if n is None or not 1 <= n <= n_sentences:
            raise JudgeOutputError(f'claims[{i}]: "sentence" must be a number from 1 to {n_sentences}')
        if not isinstance(claim, str) or not claim.strip():
            raise JudgeOutputError(f'claims[{i}]: "claim" must be a non-empty string')
        out.setdefault(n, []).append(claim.strip())
    return out


def parse_verdicts(reply: str, n_claims: int, passage_ids: set[str]) -> dict[int, dict[str, Any]]:
    """{"verdicts": [{"claim": int, "supported": bool, "passages": [id], "reason": str}]}, one per claim."""
    data = parse_json_object(reply)
    items = data.get("verdicts")
    if not isinstance(items, list):
        raise JudgeOutputError('missing key "verdicts" (a list)')
    out: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise JudgeOutputError(f"verdicts[{i}] is not an object")
        n = _int(item.get("claim"))
        if n is None or not 1 <= n <= n_claims:
            raise JudgeOutputError(f'verdicts[{i}]: "claim" must be a number from 1 to {n_claims}')
        if n in out:
            raise JudgeOutputError(f"verdicts[{i}]: claim {n} judged twice")
        if not isinstance(item.get("supported"), bool):
            raise JudgeOutputError(f'verdicts[{i}]: "supported" must be true or false')
        ids = item.get("passages", [])
        if not isinstance(ids, list):
            raise JudgeOutputError(f'verdicts[{i}]: "passages" must be a list of passage ids')
        norm = [str(x).strip().strip("[]") for x in ids if isinstance(x, (str, int)) and not isinstance(x, bool)]
        if len(norm) != len(ids) or not set(norm) <= passage_ids:
            raise JudgeOutputError(f'verdicts[{i}]: "passages" must list ids from {sorted(passage_ids)}')
        reason = item.get("reason", "")
        if not isinstance(reason, str):
            raise JudgeOutputError(f'verdicts[{i}]: "reason" must be a string')
        out[n] = {"supported": item["supported"], "passages": norm, "reason": reason.strip()}
    missing = sorted(set(range(1, n_claims + 1)) - set(out))
    if missing:
        raise JudgeOutputError(f"no verdict for claim(s) {missing}")
    return out


def format_passages(passages: Sequence[Passage]) -> str:
    blocks = []
    for p in passages:
        text = re.sub(r"</?\s*passage", lambda m: m.group(0).replace("passage", "passage\u200b"), p.text,
                      flags=re.IGNORECASE)
        title = p.title.replace('"', "'")
        blocks.append(f'<passage id="{p.marker}" title="{title}">\n{text}\n</passage>')
    return "\n\n".join(blocks)


class LLMJudge:
    """Claims + verification with any OpenAI-compatible chat model (``ChatClient``)."""

    name = "llm"

    def __init__(self, chat_client: Any, *, max_tokens: int = 1024) -> None:
        self.client = chat_client
        self.max_tokens = max_tokens
        self.model: str | None = getattr(chat_client, "model_name", None)
        self._no_schema = False

    def _complete(self, messages: list[dict[str, Any]], schema: dict[str, Any] | None) -> str:
        """A JSON reply: constrained by ``schema`` when the server takes json_schema, else json_object
        (a server that rejects the schema once is not asked with one again; any other error, e.g. a
        prompt over the context, is this call's alone)."""
        if schema is not None and not self._no_schema:
            fmt = {"type": "json_schema", "json_schema": {"name": "judge", "schema": schema}}
            try:
                return str(self.client.complete(messages, max_tokens=self.max_tokens, response_format=fmt))
            except BackendError as exc:
                if not rejected_format(exc):
                    raise
                self._no_schema = True
        return str(self.client.complete(messages, max_tokens=self.max_tokens, json_mode=True))

    def _ask_json(self, prompt: str, parse: Any, schema: dict[str, Any] | None = None) -> Any:
        """One call, one retry on a malformed reply; raises JudgeOutputError or BackendError."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        reply = self._complete(messages, schema)
        try:
            return parse(reply)
        except JudgeOutputError as exc:
            messages += [{"role": "assistant", "content": reply},
                         {"role": "user", "content": f"That reply was not valid: {exc}. Reply again with only "
                                                     "the JSON object described above, nothing else."}]
        reply = self._complete(messages, schema)
        try:
            return parse(reply)
        except JudgeOutputError as exc:
            raise JudgeOutputError(f"malformed judge output twice: {exc}") from None

    def claims(self, question: str, sentences: Sequence[AnswerSentence]) -> dict[int, list[str]]:
        numbered = "\n".join(f"{i}. {s.bare}" for i, s in enumerate(sentences, 1))
        prompt = render("judge_claims", question=question, sentences=numbered)
        return self._ask_json(prompt, lambda r: parse_claims(r, len(sentences)), CLAIMS_SCHEMA)

    def verify(self, claims: Sequence[str], passages: Sequence[Passage]) -> dict[int, dict[str, Any]]:
        numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
        prompt = render("judge_verify", passages=format_passages(passages), claims=numbered)
        ids = {str(p.marker) for p in passages}
        return self._ask_json(prompt, lambda r: parse_verdicts(r, len(claims), ids), VERDICTS_SCHEMA)

    def judge(self, question: str, sentences: Sequence[AnswerSentence],
              passages: dict[int, Passage]) -> AnswerJudgement:
        out = AnswerJudgement(judge=self.name)
        if not sentences:
            return out
        try:
            by_sentence = self.claims(question, sentences)
        except (JudgeOutputError, BackendError) as exc:
            # Degrade, do not stop: each sentence becomes its own claim, and the error is counted.
            out.errors.append(f"claims: {exc}")
            by_sentence = {}
        for i, s in enumerate(sentences, 1):
            claims = by_sentence.get(i) or [s.bare]
            found, unknown = cited_passages(s, passages)
            if not found:
                why = "no citation" if not s.markers else f"cites unknown marker(s) {unknown}"
                out.sentences.append(SentenceVerdict(
                    s.text, s.markers, False, {}, None,
                    [{"claim": c, "supported": False, "reason": why} for c in claims], why))
                continue
            try:
                verdicts = self.verify(claims, found)
            except (JudgeOutputError, BackendError) as exc:
                out.errors.append(f"verify sentence {i}: {exc}")
                out.sentences.append(SentenceVerdict(
                    s.text, s.markers, None, {p.marker: None for p in found}, None,
                    [{"claim": c, "supported": None, "reason": "judge error"} for c in claims],
                    f"judge error: {exc}"))
                continue
            rows = [{"claim": c, "supported": verdicts[j]["supported"], "reason": verdicts[j]["reason"]}
                    for j, c in enumerate(claims, 1)]
            # A supported verdict naming no passage (the schema allows it) backs what the sentence cites.
            cited = [str(p.marker) for p in found]
            backing = {pid for v in verdicts.values() if v["supported"] for pid in (v["passages"] or cited)}
            per: dict[int, bool | None] = {p.marker: str(p.marker) in backing for p in found}
            per.update(dict.fromkeys(unknown, False))
            supported = all(r["supported"] for r in rows)
            why = " ".join(f"({j}) {'yes' if r['supported'] else 'no'}: {r['reason']}" for j, r in enumerate(rows, 1))
            out.sentences.append(SentenceVerdict(s.text, s.markers, supported, per, None, rows, why))
        return out
