"""`eval make-questions`: draft questions from indexed papers with an LLM, for a person to check.

Drafts are marked ``"draft": true``; the supporting quote must be an exact sentence
of the abstract (else the draft is retried once, then skipped), so a reviewer can
find it with a text search. A failing server stops the run with its own error.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from ..answering.prompts import render
from ..errors import BackendError, InputError
from ..records import Paper
from .llm_judge import JudgeOutputError, parse_json_object

DRAFT_TYPES = ("lookup", "detail")


def parse_draft(reply: str, abstract: str) -> dict[str, str]:
    data = parse_json_object(reply)
    out: dict[str, str] = {}
    for key in ("type", "question", "answer", "quote"):
        value = data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise JudgeOutputError(f'"{key}" must be a non-empty string')
        out[key] = value.strip()
    if out["type"] not in DRAFT_TYPES:
        raise JudgeOutputError(f'"type" must be one of {DRAFT_TYPES}')
    if out["quote"] not in abstract:
        raise JudgeOutputError('"quote" is not copied exactly from the abstract')
    return out


def draft_questions(papers: Sequence[Paper], chat_client: Any, *, n: int = 20, seed: int = 0,
                    on_draft: Callable[[int, dict[str, Any] | None], None] | None = None,
                    on_stop: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Up to ``n`` drafts from a seeded sample of ``papers`` (one question per paper). A BackendError from
    ``chat_client`` (which has already retried as configured) propagates while no draft is made (no
    server, a bad key); after that it ends the run with the drafts made so far, said to ``on_stop`` (one
    over-long abstract or a timeout threw every finished draft away)."""
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    pool = sorted(papers, key=lambda p: p.paper_id)
    chosen = random.Random(seed).sample(pool, min(n, len(pool)))
    out: list[dict[str, Any]] = []
    for i, paper in enumerate(chosen, 1):
        prompt = render("judge_draft_questions", title=paper.title, abstract=paper.abstract)
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        draft: dict[str, Any] | None = None
        for _ in range(2):
            # A BackendError (no server, a bad key) is not an invalid draft: it propagates, as one line,
            # rather than "skipped" for every paper and an empty file written over the user's.
            try:
                reply = chat_client.complete(messages, max_tokens=512, json_mode=True)
            except BackendError as exc:
                if not out:
                    raise
                if on_stop is not None:
                    on_stop(f"stopped after {len(out)} draft(s) at paper {i} of {len(chosen)}: {exc}")
                return out
            try:
                d = parse_draft(reply, paper.abstract)
            except JudgeOutputError as exc:
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": f"That reply was not valid: {exc}. Reply again with "
                                                         "only the JSON object."}]
                continue
            draft = {"qid": f"draft-{len(out) + 1:03d}", "type": d["type"], "question": d["question"],
                     "gold_titles": [paper.title], "answer": d["answer"],
                     "evidence": [{"title": paper.title, "quote": d["quote"]}], "draft": True,
                     "source_paper_id": paper.paper_id}
            out.append(draft)
            break
        if on_draft is not None:
            on_draft(i, draft)
    return out
