"""The OpenAI chat-completions shape around an Answer.

The message text carries the ``[n]`` markers plus a references list (what any chat
front-end shows); the same citations come structured in a ``citations`` field, and
the whole Answer JSON in ``paper_assistant``. Earlier turns arrive as plain text, so
the references list is parsed back to know what the previous answer cited.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from ..display import markdown_text, markdown_unescape, web_link
from ..records import REFUSAL, Answer, Citation
from ..text import MARKER_GROUP, marker_int

MODEL_NAME = "paper-assistant"
REFERENCES_HEADER = "References:"
_ARXIV = re.compile(r"^(?:arXiv:)?(\d{4}\.\d{4,5}(?:v\d+)?|[a-z][a-z.-]+/\d{7}(?:v\d+)?)$", re.IGNORECASE)
_REF_LINE = re.compile(r"^\[(\d+)\] (.+) \(([^()\s,]+)(?:, [^()]*)?\)$")
_PIECE = re.compile(r"\S+\s*")


def arxiv_url(paper_id: str, arxiv_id: str | None = None) -> str | None:
    """Link to arXiv only when the id really is an arXiv id (new or old style)."""
    for cand in (arxiv_id, paper_id):
        if cand and _ARXIV.match(cand):
            return f"https://arxiv.org/abs/{_ARXIV.match(cand).group(1)}"  # type: ignore[union-attr]
    return None


def paper_link(paper_id: str, arxiv_id: str | None, url: object) -> str | None:
    """arXiv's page when the id is an arXiv id, else the record's own http(s) url."""
    return arxiv_url(paper_id, arxiv_id) or web_link(url)


def citation_dicts(answer: Answer) -> list[dict[str, Any]]:
    """Citations with what a reader needs to open them: date and link besides title and quote."""
    papers = {s.paper.paper_id: s.paper for s in answer.sources}
    out = []
    for c in answer.citations:
        p = papers.get(c.paper_id)
        d = c.to_dict()
        d["date"] = c.date or (p.date if p else None)
        d["url"] = paper_link(c.paper_id, p.arxiv_id if p else None, p.url if p else None)
        out.append(d)
    return out


def references_text(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return ""
    lines = [REFERENCES_HEADER]
    for c in citations:
        tail = f", {markdown_text(str(c['date']))}" if c.get("date") else ""
        lines.append(f"[{c['marker']}] {markdown_text(' '.join(str(c['title']).split()))} "
                     f"({markdown_text(c['paper_id'])}{tail})")
    return "\n".join(lines)


def answer_markdown(text: str) -> str:
    """The answer as Markdown: its quoted paper text escaped, its own ``[n]`` markers kept, and a "(", "["
    or ":" right after a marker escaped (``[1](https://...)`` or a line ``[1]: https://...`` is a link)."""
    out, at = [], 0
    for m in MARKER_GROUP.finditer(text):
        out += [markdown_text(text[at:m.start()]), m.group(0)]
        at = m.end()
        if text[at:at + 1] in ("(", ":"):  # ("[" is escaped by markdown_text anyway)
            out.append("\\" + text[at])
            at += 1
    return "".join([*out, markdown_text(text[at:])])


def message_text(answer: Answer, citations: list[dict[str, Any]]) -> str:
    """The ``content`` a chat front-end renders as Markdown (paper text escaped, see ``display.py``)."""
    refs = references_text(citations)
    body = answer_markdown(answer.text)
    return f"{body}\n\n{refs}" if refs else body


def split_references(content: str) -> tuple[str, list[Citation]]:
    """Undo :func:`message_text` on an earlier assistant turn: (answer text, citations)."""
    body, sep, refs = content.rpartition("\n\n" + REFERENCES_HEADER + "\n")
    if not sep:
        return markdown_unescape(content.strip()), []
    cites = []
    for line in refs.splitlines():
        m = _REF_LINE.match(line.strip())
        if m:
            cites.append(Citation(marker=marker_int(m.group(1)), paper_id=markdown_unescape(m.group(3)),
                                  title=markdown_unescape(m.group(2))))
    return markdown_unescape(body.strip()), cites


def history_from_messages(messages: list[dict[str, Any]]) -> list[tuple[str, Answer]]:
    """Earlier (question, answer) turns, as ChatSession keeps them, from an OpenAI messages list."""
    pairs: list[tuple[str, Answer]] = []
    pending: str | None = None
    for m in messages:
        if m["role"] == "user":
            pending = m["text"]
        elif m["role"] == "assistant" and pending is not None:
            structured = m.get("citations")
            text, cites = split_references(m["text"])
            if isinstance(structured, list):
                cites = [Citation(marker=_marker(c.get("marker"), i + 1), paper_id=str(c.get("paper_id") or ""),
                                  title=str(c.get("title") or ""),
                                  quote=c.get("quote") if isinstance(c.get("quote"), str) else None)
                         for i, c in enumerate(structured) if isinstance(c, dict)]
            pairs.append((pending, Answer(question=pending, text=text, refused=text.strip() == REFUSAL,
                                          citations=cites)))
            pending = None
    return pairs


def _marker(value: Any, default: int) -> int:
    """A citation marker as sent back by a client: a whole number, else its position ("abc", null,
    [1], 1e400 and true are not markers)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else default


def _usage(prompt: str, answer_text: str) -> dict[str, int]:
    """Word counts stand in for tokens: there is no tokenizer-bound model behind the answer."""
    p, c = len(prompt.split()), len(answer_text.split())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(answer: Answer, prompt: str, model: str = MODEL_NAME) -> dict[str, Any]:
    cites = citation_dicts(answer)
    text = message_text(answer, cites)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text, "citations": cites}}],
        "usage": _usage(prompt, text),
        "citations": cites, "refused": answer.refused, "paper_assistant": answer.to_dict(),
    }


def stream_events(answer: Answer, prompt: str, words_per_chunk: int = 4,
                  include_usage: bool = False, model: str = MODEL_NAME) -> Iterator[str]:
    """Server-sent events: role, the text in small deltas, the references, then a final chunk
    with the structured citations and the Answer JSON, then ``[DONE]``."""
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    cites = citation_dicts(answer)
    yield chunk({"role": "assistant", "content": ""})
    pieces = _PIECE.findall(answer_markdown(answer.text))
    for i in range(0, len(pieces), words_per_chunk):
        yield chunk({"content": "".join(pieces[i:i + words_per_chunk])})
    refs = references_text(cites)
    if refs:
        yield chunk({"content": "\n\n" + refs})
    yield chunk({}, "stop", citations=cites, refused=answer.refused, paper_assistant=answer.to_dict())
    if include_usage:
        body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [], "usage": _usage(prompt, message_text(answer, cites))}
        yield f"data: {json.dumps(body)}\n\n"
    yield "data: [DONE]\n\n"
