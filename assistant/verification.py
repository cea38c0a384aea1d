"""Claim verification: does the literature in the index support a claim, contradict it, or say
nothing about it? Per paper, a verdict with at most three rationale sentences quoted exactly.

Two paths over the same retrieval and the same scored sentences:

* offline (default): the label model of ``answering/stance.py`` (fitted on SciFact train);
* LLM (``backend="openai"``): the model is shown the best sentences, numbered, of the papers the offline
  model keeps as evidence (``llm.verify_papers``), and labels each through a structured-output prompt
  (``prompts/verify_system.txt``); a verdict keeps only sentences that are that paper's own (so every
  quote is an exact abstract sentence), and a SUPPORT / CONTRADICT without any becomes not enough evidence.

When no paper bears on the claim the verdict is NOT_ENOUGH_EVIDENCE and the closest papers are listed
as such (``Verdicts.closest``), never forced into a label.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .answering.generative import rejected_format
from .answering.stance import (
    CONTRADICT,
    NEI,
    SUPPORT,
    ClaimEvidence,
    PaperLabel,
    VerifyModel,
    claim_evidence,
    label_papers,
    rationale,
)
from .records import Source, clean_text, run_fields
from .text import addresses_model, blank

MIXED = "MIXED"
CLOSEST_PAPERS = 3
"""Papers listed as closest when none bears on the claim."""
LLM_PAPERS = 3
"""Candidate papers (most likely evidence first) shown to the LLM."""
LLM_SENTENCES = 5
"""Best sentences of each paper shown to the LLM."""

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"papers": {"type": "array", "items": {
        "type": "object",
        "properties": {"paper": {"type": "integer"},
                       "verdict": {"type": "string", "enum": [SUPPORT, CONTRADICT, NEI]},
                       "sentences": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["paper", "verdict", "sentences"]}}},
    "required": ["papers"],
}
"""The LLM's reply: per paper shown, a verdict and the ids ("2.3") of its rationale sentences."""
VERDICT_FORMAT: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "verdicts", "schema": VERDICT_SCHEMA}}


@dataclass
class Quote:
    """An exact sentence of the paper's abstract: ``abstract[start:end] == text``."""

    text: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "start": self.start, "end": self.end}


@dataclass
class PaperVerdict:
    paper_id: str
    title: str
    verdict: str
    """SUPPORT, CONTRADICT or NOT_ENOUGH_EVIDENCE."""
    confidence: float
    """Probability of the verdict (offline: the label model's; LLM: the offline model's evidence
    probability, as the LLM gives none)."""
    quotes: list[Quote] = field(default_factory=list)
    """The rationale (at most 3, best first); for a closest paper, its sentences nearest the claim."""
    date: str | None = None
    rank: int = 0
    """The paper's rank in retrieval (1 = first)."""

    def to_dict(self) -> dict[str, Any]:
        return {"paper_id": self.paper_id, "title": self.title, "date": self.date, "rank": self.rank,
                "verdict": self.verdict, "confidence": round(float(self.confidence), 4),
                "quotes": [q.to_dict() for q in self.quotes]}


@dataclass
class Verdicts:
    """A claim's verdicts. ``to_dict`` is the stable JSON contract (README: JSON schema)."""

    claim: str
    verdict: str
    """SUPPORT / CONTRADICT (every paper bearing on it agrees), MIXED, or NOT_ENOUGH_EVIDENCE."""
    papers: list[PaperVerdict] = field(default_factory=list)
    """Papers that bear on the claim, most likely first."""
    closest: list[PaperVerdict] = field(default_factory=list)
    """When no paper bears on it: the closest papers, each NOT_ENOUGH_EVIDENCE."""
    backend: dict[str, str] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "verdict": self.verdict, "papers": [p.to_dict() for p in self.papers],
                "closest": [p.to_dict() for p in self.closest],
                **run_fields(self.backend, self.timings_ms, self.checks)}


def overall(papers: Sequence[PaperVerdict]) -> str:
    labels = {p.verdict for p in papers if p.verdict != NEI}
    if not labels:
        return NEI
    return labels.pop() if len(labels) == 1 else MIXED


def _verdict(src: Source, label: str, confidence: float, quotes: Sequence[Any]) -> PaperVerdict:
    return PaperVerdict(src.paper.paper_id, src.paper.title, label, confidence,
                        [Quote(c.text, c.start, c.end) for c in quotes], src.paper.date, src.rank)


def assemble(claim: str, sources: Sequence[Source], labels: Sequence[PaperLabel]) -> tuple[str, list[PaperVerdict],
                                                                                          list[PaperVerdict]]:
    """(overall verdict, papers bearing on the claim, closest papers when none does)."""
    bearing = [_verdict(sources[x.source_index], x.label, x.confidence, x.rationale) for x in labels if x.label != NEI]
    closest = [] if bearing else [_verdict(sources[x.source_index], NEI, x.confidence, x.rationale)
                                  for x in labels[:CLOSEST_PAPERS]]
    return overall(bearing), bearing, closest


def verify_offline(claim: str, sources: Sequence[Source], idf: Callable[[list[str]], dict[str, float]],
                   chunk_sims: dict[str, float] | None, sentence_sims: dict[tuple[str, int, int], float] | None,
                   model: VerifyModel) -> tuple[ClaimEvidence, list[PaperLabel]]:
    ev = claim_evidence(claim, sources, idf, chunk_sims, sentence_sims, model.decisions.max_papers, model.sentence)
    return ev, label_papers(model, ev)


# -- the LLM path ---------------------------------------------------------------------------
def llm_messages(claim: str, sources: Sequence[Source], labels: Sequence[PaperLabel],
                 evidence: ClaimEvidence) -> tuple[list[dict[str, str]], dict[str, tuple[int, Any]]]:
    """The prompt and the sentence ids it shows ("2.3" = paper 2, sentence 3) -> (source index, sentence)."""
    from .answering.prompts import load_prompt, render

    ranked = {p.source_index: p.ranked for p in evidence.papers}
    blocks, ids = [], {}
    for n, lab in enumerate(labels[:LLM_PAPERS], 1):
        src = sources[lab.source_index]
        # A title that talks to the model is withheld, as the answer prompt withholds it.
        title = "(title withheld)" if addresses_model(src.paper.title) else _attr(src.paper.title)
        lines = [f'<paper id="{n}" title="{title}">']
        for j, c in enumerate(sorted(ranked[lab.source_index][:LLM_SENTENCES], key=lambda c: c.start), 1):
            ids[f"{n}.{j}"] = (lab.source_index, c)
            lines.append(f"[{n}.{j}] {c.text}")
        lines.append("</paper>")
        blocks.append("\n".join(lines))
    user = render("verify_user", claim=claim, papers="\n\n".join(blocks))
    return [{"role": "system", "content": load_prompt("verify_system")}, {"role": "user", "content": user}], ids


def _attr(text: str) -> str:
    return text.replace('"', "'").replace("<", "(").replace(">", ")")


def parse_llm_verdicts(raw: str) -> list[dict[str, Any]]:
    """The ``papers`` list of the reply (the first JSON object in it); [] when there is none. Decoded
    from the first ``{`` on, so text after the object ("... and also {...}") is not part of it."""
    start = raw.find("{")
    if start < 0:
        return []
    try:
        data, _ = json.JSONDecoder().raw_decode(raw, start)
    except (ValueError, RecursionError):
        return []
    items = data.get("papers") if isinstance(data, dict) else None
    return [x for x in items if isinstance(x, dict)] if isinstance(items, list) else []


def verify_with_llm(client: Any, claim: str, sources: Sequence[Source], evidence: ClaimEvidence,
                    labels: Sequence[PaperLabel], structured: str = "auto",
                    max_tokens: int | None = 256, papers: str = "kept") -> tuple[list[PaperLabel], dict[str, Any]]:
    """The LLM labels the candidate papers; only sentence ids of the labelled paper itself are kept as
    its quotes, and a SUPPORT / CONTRADICT left without any quote is NOT_ENOUGH_EVIDENCE.

    ``papers`` "kept": only the papers the offline model keeps as evidence are shown (none kept = no
    call, the offline abstention stands), because a small model labels nearly every paper it is shown;
    "candidates": the most likely evidence papers whatever the offline model says."""
    shown = [x for x in labels if x.label != NEI][:LLM_PAPERS] if papers == "kept" else list(labels[:LLM_PAPERS])
    rest = [x for x in labels if all(x is not y for y in shown)]
    if not shown:
        return list(labels), {"llm_papers": 0}
    messages, ids = llm_messages(claim, sources, shown, evidence)
    checks: dict[str, Any] = {"llm_papers": len(shown), "prompt_chars": sum(len(m["content"]) for m in messages)}
    raw: str | None = None
    if structured != "off" and not getattr(client, "_no_json_schema", False):
        try:
            raw = client.complete(messages, max_tokens=max_tokens, response_format=VERDICT_FORMAT)
            checks["structured"] = True
        except Exception as exc:  # BackendError; only a rejected response_format falls back to plain JSON
            if structured != "auto" or not rejected_format(exc):
                raise
            client._no_json_schema = True
    if raw is None:
        raw = client.complete(messages, max_tokens=max_tokens)
        checks["structured"] = False
    items = parse_llm_verdicts(raw)
    if not items:
        checks["parse_error"] = "the reply held no verdicts"
    out = [replace(x, label=NEI, confidence=round(1 - x.p_evidence, 4),
                   rationale=rationale(next(p.ranked for p in evidence.papers if p.source_index == x.source_index),
                                       1.01))
           for x in shown]
    dropped: list[str] = []
    labelled: set[int] = set()
    for item in items:
        n, verdict = item.get("paper"), item.get("verdict")
        if (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(shown)
                or verdict not in (SUPPORT, CONTRADICT, NEI)):
            dropped.append(f"paper {n!r} / verdict {verdict!r} unknown")
            continue
        if n in labelled:  # the last of two conflicting verdicts won, without a word
            dropped.append(f"paper {n}: a second verdict ({verdict}) ignored; the first one stands")
            continue
        labelled.add(n)
        target = out[n - 1]
        if verdict == NEI:
            continue
        quotes = []
        given = item.get("sentences")
        for sid in given if isinstance(given, list) else []:  # a number there was a traceback
            hit = ids.get(str(sid).strip().strip("[]"))
            if hit is None or hit[0] != target.source_index:
                dropped.append(f"sentence {sid!r} is not one of paper {n}'s")
            elif hit[1] not in quotes:
                quotes.append(hit[1])
        if not quotes:
            dropped.append(f"paper {n}: {verdict} without a sentence of its own")
            continue
        target.label, target.rationale = verdict, quotes[:3]
        target.confidence = target.p_evidence
    if dropped:
        checks["dropped"] = dropped
    out += [replace(x, label=NEI, confidence=round(1 - x.p_evidence, 4)) for x in rest]
    out.sort(key=lambda x: (x.label == NEI, -x.p_evidence, x.source_index))
    return out, checks


def read_claims(path: str | Path) -> list[str]:
    """Claims of a text file, one a line; blank lines and ``#`` comments skipped. A file that cannot be
    read or holds no claim is a one-line error naming it."""
    from .errors import InputError, line_of_byte

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"{p}: cannot read the claims file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")  # a BOM (Windows editors write one) is not part of the first claim
    except UnicodeDecodeError as exc:
        line = line_of_byte(data, exc.start)
        raise InputError(f"{p}:{line}: not UTF-8 text (byte {exc.start + 1} of the file)") from None
    # Lines end at line breaks only: str.splitlines() also split a claim at a form feed, \x1c-\x1e, NEL or
    # U+2028 (two claims from one line); those are spaces within it. A line of zero-width or control
    # characters is blank (it was "the claim is empty", naming no line).
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    claims = [clean_text(line) for line in lines if not blank(line) and not line.lstrip().startswith("#")]
    if not claims:
        raise InputError(f"{p}: no claims (one a line; blank lines and # comments are skipped)")
    return claims
