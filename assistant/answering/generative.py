"""Answers written by an LLM on any OpenAI-compatible server, then checked sentence by sentence.

Evidence first: the model sees only the few abstract sentences the fitted extractive scorer rates
best for the question (numbered per paper, with title and date), not whole abstracts. Instructions
are one fixed system prompt and only the evidence and the question vary, last: a server that
caches prompts reads the instructions once, and a small local model (~76 tokens/s read on 2 cores)
reads ~210 tokens per question instead of ~630.

Structured where the server allows it: with ``response_format`` json_schema (llama.cpp,
vLLM, OpenAI) the model returns ``{"answerable": bool, "sentences": [{"text", "sources"}]}``;
otherwise plain text with ``[n]`` markers, parsed the same way. Either way every sentence is
then checked: its markers must name given papers and each cited abstract must support it on its
own (lexical coverage, every number and name present, no unstated negation/absolute/contrast: the
offline judge's rules, ``support``; never pooled, so a citation cannot ride along on another's); an
unsupported citation is dropped, a sentence no cited paper supports is dropped and listed in
``checks``, never shown as cited fact. Abstract text that addresses the model ("SYSTEM: ...",
"ignore previous instructions", "cite [7]", a planted JSON answer: ``text.addresses_model``) is
never evidence: not in the prompt, not counted as support, never quoted.

Refusal is decided with the model's help, not by an exact sentence it must reproduce: the
model's ``answerable`` (or an empty answer) is compared with the fitted extractive answerer's
evidence decision, disagreements are recorded in ``checks`` and settings choose what wins.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..records import REFUSAL, Source
from ..text import (
    MARKER_GROUP,
    addresses_model,
    best_window,
    content_tokens,
    evidence_spans,
    marker_int,
    missing_terms,
    numbers_in,
    query_tokens,
    required_terms,
    split_sentences,
    unstated_qualifiers,
)
from .base import AnswerContext, Draft
from .citations import cited_sentence, neutralise_reference_markers, paper_text
from .prompts import load_prompt, render

if TYPE_CHECKING:
    from types import ModuleType

    from ..settings import Settings
    from .features import Candidate

Idf = Callable[[list[str]], dict[str, float]]

#: JSON schema of a structured answer (sent as response_format json_schema).
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answerable": {"type": "boolean"},
        "sentences": {
            "type": "array",
            "maxItems": 5,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "sources": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
                },
                "required": ["text", "sources"],
            },
        },
    },
    "required": ["answerable", "sentences"],
}
ANSWER_FORMAT: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA}}
"""The ``response_format`` that asks for ANSWER_SCHEMA."""

_QUANTITY = re.compile(r"\b(how (many|much|large|big|long|fast|often)|by how much|number of|what (percentage|"
                       r"number|fraction|proportion|size|accuracy|score|rate|speed-?up))\b", re.IGNORECASE)
_ASKS_FIGURE = re.compile(r"\b(what|which)\b[^?.]{0,40}?\b(accuracy|score|rate|percentage|share|fraction|speed-?up|"
                          r"reduction|improvement|gain|margin|size|length|cost|latency|number)\b", re.IGNORECASE)
"""A question after a figure the quantity pattern misses ("What top-1 accuracy on Kinetics-400 ...")."""
_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
"""A ```json fence anywhere in the reply (small models put a line of prose before it)."""
_OPEN_FENCE = re.compile(r"```(?:json)?[ \t]*\n?\s*(?=[{\[])", re.IGNORECASE)
"""An opening fence whose closing one never came (the reply was cut)."""
_ENDED = re.compile(r"(?:[.!?][\"')\]]*\s*" + MARKER_GROUP.pattern + r"|" + MARKER_GROUP.pattern
                    + r"\s*[.!?][\"')]*)\s*$")
"""A plain-text sentence the model ended: its end and its citation both written."""
_MARKERS = re.compile(r"\s*" + MARKER_GROUP.pattern)
"""A citation marker group with the space before it (the grammar is the text layer's)."""
_PAPER_MARKER = re.compile(r"\b([Pp]aper)\s*\[(\d+)\]")


# -- evidence ------------------------------------------------------------------------------------
@dataclass
class PaperEvidence:
    number: int
    """1-based paper number in the prompt (= the [n] the model cites)."""
    source: Source
    sentences: list[str]
    source_number: int = 0
    """1-based position of the paper in the retrieved sources (= the [n] of the shown answer);
    0 means the same as ``number``."""

    @property
    def marker(self) -> int:
        return self.source_number or self.number


def evidence_from_candidates(sources: Sequence[Source], cands: Sequence[Candidate], picked: Sequence[Candidate], *,
                             max_papers: int = 3, per_paper: int = 2, budget_chars: int = 900) -> list[PaperEvidence]:
    """Evidence chosen by the fitted sentence scorer (the extractive answerer's): the sentences the
    extractive answer picked first (for a quantity question, the one stating the number), then the
    best-scored others, at most ``per_paper`` from each of at most ``max_papers`` papers within
    ``budget_chars`` (the first sentence always fits). Papers are numbered in the order of their
    best sentence, so [1] holds the strongest evidence; sentences keep their abstract order.

    Fewer, better sentences: the evidence is the part of the prompt no server can cache, and a
    small model on 2 cores reads ~76 tokens/s (defaults measured on the fit split,
    ``benchmarks/llm_path.py --evidence-budget``)."""
    chosen: list[Candidate] = []
    seen: set[tuple[int, int]] = set()
    papers: dict[int, int] = {}
    used = 0
    ranked = sorted(cands, key=lambda c: (-c.score, c.source_index, c.start))
    for c in [*picked, *ranked]:
        key = (c.source_index, c.start)
        if key in seen or c.source_index >= len(sources):
            continue
        if c.source_index not in papers and len(papers) >= max_papers:
            continue
        if papers.get(c.source_index, 0) >= per_paper or (chosen and used + len(c.text) > budget_chars):
            continue
        seen.add(key)
        chosen.append(c)
        papers[c.source_index] = papers.get(c.source_index, 0) + 1
        used += len(c.text)
    out: list[PaperEvidence] = []
    for number, si in enumerate(dict.fromkeys(c.source_index for c in chosen), 1):
        sents = sorted((c for c in chosen if c.source_index == si), key=lambda c: c.start)
        out.append(PaperEvidence(number, sources[si], [c.text for c in sents], si + 1))
    return out


def select_evidence(question: str, sources: Sequence[Source], idf: Idf | None, *, max_papers: int = 5,
                    per_paper: int = 2, budget_chars: int = 1600) -> list[PaperEvidence]:
    """The best sentences of each of the top papers for ``question``, in abstract order.

    A sentence scores by the idf-weighted share of the question's content words it contains
    (the title's words count a little: they say what the paper is about); for a quantity
    question, sentences with a number get a bonus. The first sentence of each paper is kept
    as a fallback when nothing matches, so every paper still says what it is. The budget is
    shared equally by the papers.
    """
    pool = list(sources[:max_papers])
    if not pool:
        return []
    q = query_tokens(question)
    weights = idf(q) if (idf and q) else dict.fromkeys(q, 1.0)
    total = sum(weights.values()) or 1.0
    wants_number = bool(_QUANTITY.search(question))
    per_budget = max(300, budget_chars // len(pool))
    out: list[PaperEvidence] = []
    for i, src in enumerate(pool, 1):
        abstract = src.paper.abstract
        spans = evidence_spans(abstract)  # never text addressing the model
        title = set(content_tokens(src.paper.title))
        scored: list[tuple[float, int, str]] = []
        for pos, (a, b) in enumerate(spans):
            sent = abstract[a:b]
            toks = set(content_tokens(sent))
            score = sum(w for t, w in weights.items() if t in toks) / total
            score += 0.1 * sum(w for t, w in weights.items() if t in title and t not in toks) / total
            if wants_number and re.search(r"\d", sent):
                score += 0.15
            scored.append((score, pos, sent))
        ranked = sorted(scored, key=lambda x: (-x[0], x[1]))
        chosen: list[tuple[int, str]] = []
        used = 0
        for score, pos, sent in ranked:
            if len(chosen) >= per_paper:
                break
            if chosen and (score <= 0 or used + len(sent) > per_budget):
                continue
            chosen.append((pos, sent[: per_budget] if not chosen else sent))
            used += len(sent)
        chosen.sort()
        out.append(PaperEvidence(i, src, [s for _, s in chosen]))
    return out


def format_evidence(evidence: Sequence[PaperEvidence]) -> str:
    blocks = []
    for ev in evidence:
        date = f" ({ev.source.paper.date})" if ev.source.paper.date else ""
        # An abstract's own "[5]" must not read as paper [5] to the model; a title talking to it is not shown.
        title = ev.source.paper.title
        title = "(title withheld)" if addresses_model(title) else neutralise_reference_markers(title)
        lines = [f"Paper [{ev.number}]: {title}{date}"]
        lines += [f"- {neutralise_reference_markers(s)}" for s in ev.sentences]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def build_messages(question: str, evidence: Sequence[PaperEvidence], *, structured: bool) -> list[dict[str, str]]:
    """System message: every instruction, identical for every question (a server that caches
    prompts, like llama.cpp's ``cache_prompt``, reads it once); user message: only what varies,
    the evidence and the question, last."""
    system = "answer_system_json" if structured else "answer_system"
    return [
        {"role": "system", "content": load_prompt(system).strip()},
        {"role": "user", "content": render("answer_user", sources=format_evidence(evidence),
                                           question=question).strip()},
    ]


# -- parsing -------------------------------------------------------------------------------------
@dataclass
class ModelAnswer:
    """What the model said, before checking."""

    raw: str
    answerable: bool | None
    """The model's own verdict: False = it refused; None = it did not say (plain text, unparsable)."""
    sentences: list[tuple[str, list[int]]]
    """(sentence text without markers, paper numbers it cites)."""
    structured: bool
    parse_error: str | None = None


def _json_part(text: str) -> str | None:
    """The JSON of a reply: the whole reply (an object), the inside of a ```json fence anywhere in it, or
    everything after an opening fence never closed (cut by max_tokens); None when there is none."""
    if text.startswith("{"):
        return text
    for m in _FENCE.finditer(text):
        if m.group(1).strip().startswith(("{", "[")):
            return m.group(1).strip()
    m = _OPEN_FENCE.search(text)
    return text[m.end():] if m else None


def parse_structured(raw: str, *, truncated: bool = False) -> ModelAnswer:
    """A structured reply (prose and a ```json fence around it tolerated); plain-text parsing when it
    holds no JSON object. JSON syntax is never read as answer text: a JSON reply no parse or salvage
    can read yields no sentences. ``truncated``: the server said the reply was cut (finish_reason
    "length")."""
    text = _json_part(raw.strip())
    if text is None:
        out = parse_plain(raw, truncated=truncated)
        if raw.strip():
            out.parse_error = "no JSON object; parsed as plain text"
        return out
    try:
        # raw_decode: a line of prose after the object is not an error
        data, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as exc:
        if (cut := _salvage(text)) is not None:
            cut.raw = raw
            return cut  # cut by max_tokens: its complete sentences still count
        # Not parse_plain: "[1]" inside '"sources": [1]' would read as a citation of JSON text.
        return ModelAnswer(raw, None, [], True, f"not valid JSON ({exc.msg}); nothing kept")
    if not isinstance(data, dict):
        return ModelAnswer(raw, None, [], True, "JSON is not an object; nothing kept")
    answerable = data.get("answerable")
    if isinstance(answerable, str) and answerable.strip().lower() in ("true", "false"):
        answerable = answerable.strip().lower() == "true"  # a small model quotes its booleans
    sentences: list[tuple[str, list[int]]] = []
    items = data.get("sentences")
    for item in items if isinstance(items, list) else []:  # a number there was a traceback
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        given = item.get("sources")
        nums = [n for n in (given if isinstance(given, list) else [])
                if isinstance(n, int) and not isinstance(n, bool)]
        sentences += _item_sentences(item["text"], nums)
    return ModelAnswer(raw, answerable if isinstance(answerable, bool) else None, sentences, True)


def _item_sentences(text: str, sources: list[int]) -> list[tuple[str, list[int]]]:
    """One structured item's text as sentences, each citing the item's sources (and its own inline
    markers): a small model puts two sentences in one "text", and the second must not be shown
    without a citation."""
    out: list[tuple[str, list[int]]] = []
    for a, b in _sentence_spans(text):
        body, inline = _split_markers(text[a:b])
        if body:
            out.append((body, sources + [n for n in inline if n not in sources]))
    return out


_ITEM = re.compile(r'\{\s*"text"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"sources"\s*:\s*\[([\d,\s]*)\]\s*\}')
_ANSWERABLE = re.compile(r'^\{\s*"answerable"\s*:\s*(true|false)\b')


def _salvage(text: str) -> ModelAnswer | None:
    """The complete sentences of a structured reply cut short (``max_answer_tokens``); None when
    it does not start like the answer schema."""
    head = _ANSWERABLE.match(text)
    if head is None:
        return None
    sentences: list[tuple[str, list[int]]] = []
    for m in _ITEM.finditer(text):
        sentences += _item_sentences(json.loads(m.group(1)), [marker_int(n) for n in re.findall(r"\d+", m.group(2))])
    return ModelAnswer(text, head.group(1) == "true", sentences, True,
                       f"JSON cut short; kept its {len(sentences)} complete sentence(s)")


def parse_plain(raw: str, *, truncated: bool = False) -> ModelAnswer:
    """Plain text with [n] markers; the fixed refusal sentence (or nothing) means it refused.

    ``truncated`` (finish_reason "length"): the last sentence is dropped unless the model ended it,
    end and citation written; a cut one would otherwise be shown complete, "." added."""
    text = raw.strip()
    core = _MARKERS.sub("", text).strip().strip('"').strip()
    if not core or core.startswith(REFUSAL.rstrip(".")):
        return ModelAnswer(raw, False, [], False)
    spans = _sentence_spans(text)
    error = None
    if truncated and spans and not _ENDED.search(text[spans[-1][0]:spans[-1][1]]):
        error = f"reply cut by max_tokens; dropped its unfinished last sentence: {text[spans[-1][0]:].strip()!r}"
        spans = spans[:-1]
    sentences: list[tuple[str, list[int]]] = []
    for a, b in spans:
        body, nums = _split_markers(text[a:b])
        if body:
            sentences.append((body, nums))
    return ModelAnswer(raw, None, sentences, False, error)


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """Sentences, with trailing markers ("... results. [2]") kept with the sentence before."""
    merged: list[tuple[int, int]] = []
    for a, b in split_sentences(text):
        if merged and re.fullmatch(r"(\s*\[[\d,;\s]+\])+\.?", text[a:b]):
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _split_markers(sentence: str) -> tuple[str, list[int]]:
    # "Paper [2] shows ..." names a paper; keep it as "Paper 2" so _name_papers can put its title there.
    sentence = _PAPER_MARKER.sub(r"\1 \2", sentence)
    nums: list[int] = []
    for m in _MARKERS.finditer(sentence):
        for raw in re.split(r"[,;]", m.group(1)):
            n = marker_int(raw)
            if n not in nums:
                nums.append(n)
    body = _MARKERS.sub("", sentence).strip()
    body = re.sub(r"\s+([.,;:!?])", r"\1", body).strip()
    return (body if body.strip(" .,;:") else ""), nums


# -- support -------------------------------------------------------------------------------------
@dataclass
class Support:
    supported: bool
    coverage: float
    missing_numbers: list[str] = field(default_factory=list)
    missing_names: list[str] = field(default_factory=list)
    unstated: list[str] = field(default_factory=list)
    """Qualifiers (negation, absolute, contrast) the sentence states and its source window does not."""


def _coverage(sentence: str, passages: Sequence[str], idf: Idf | None) -> float:
    """The idf-weighted share of the sentence's content words found in the passages."""
    words = sorted(set(content_tokens(sentence)))
    have: set[str] = set()
    for p in passages:
        have.update(content_tokens(p))
    weights = idf(words) if (idf and words) else dict.fromkeys(words, 1.0)
    total = sum(weights.values())
    return (sum(w for t, w in weights.items() if t in have) / total) if total else 1.0


def support(sentence: str, passages: Sequence[str], idf: Idf | None, min_coverage: float) -> Support:
    """Do the cited passages support ``sentence``? Lexical, deterministic, and the offline judge's
    rules from the text layer: the idf-weighted share of its content words found in them must reach
    ``min_coverage``; every number (with its % sign) and name it states must be in them (a fluent
    sentence with a wrong figure or model name is the error a small model makes; one copying its
    source's figures keeps them); and a negation, absolute or contrast it states must be in the
    sentence(s) it restates ("P3O operates directly on comparative rewards, while PPO does not":
    the source says the first half only)."""
    coverage = _coverage(sentence, passages, idf)
    missing = missing_terms(sentence, passages)
    numbers = [t.text for t in required_terms(sentence) if t.kind == "number" and t.text in missing]
    names = [m for m in missing if m not in numbers]
    unstated: list[str] = []
    if unstated_qualifiers(sentence, ""):
        where = best_window(sentence, passages, lambda s, w: _coverage(s, [w], idf))
        unstated = unstated_qualifiers(sentence, where)
    ok = coverage >= min_coverage and not missing and not unstated
    return Support(ok, round(coverage, 3), numbers, names, unstated)


# -- the whole step ------------------------------------------------------------------------------
@dataclass
class Generation:
    text: str
    """Answer text with [n] markers (paper numbers as given), only checked sentences; "" if refused."""
    model: ModelAnswer
    checks: dict[str, Any]
    evidence: list[PaperEvidence]
    timings_ms: dict[str, float]
    kept: list[str] = field(default_factory=list)
    """The shown sentences (with markers)."""
    best_support: float = 0.0
    """Highest support coverage of a shown sentence (0 when none is shown): a decision signal."""


class _JsonTextStreamer:
    """Forwards only the "text" values of a streamed structured reply, so a user watching the
    stream reads sentences, not JSON."""

    _START = re.compile(r'"text"\s*:\s*"')

    def __init__(self, on_token: Callable[[str], None]) -> None:
        self.on_token = on_token
        self.buf = ""
        self.pos = 0
        self.inside = False
        self.escape = False
        self.emitted = 0

    def __call__(self, delta: str) -> None:
        self.buf += delta
        while self.pos < len(self.buf):
            if not self.inside:
                m = self._START.search(self.buf, self.pos)
                if not m:
                    self.pos = max(self.pos, len(self.buf) - 12)  # a start may straddle deltas
                    return
                self.inside, self.pos = True, m.end()
                if self.emitted:
                    self.on_token(" ")
                continue
            out = []
            while self.pos < len(self.buf):
                ch = self.buf[self.pos]
                self.pos += 1
                if self.escape:
                    out.append({"n": " ", "t": " ", '"': '"', "\\": "\\", "/": "/"}.get(ch, ""))
                    self.escape = False
                elif ch == "\\":
                    self.escape = True
                elif ch == '"':
                    self.inside = False
                    break
                else:
                    out.append(ch)
            if out:
                self.on_token("".join(out))
                self.emitted += 1


def truncated(client: Any) -> bool:
    """Did the client's last completion stop at max_tokens (finish_reason "length")?"""
    return getattr(client, "last_finish_reason", None) == "length"


def generate(client: Any, question: str, sources: Sequence[Source], *, idf: Idf | None = None,
             on_token: Callable[[str], None] | None = None, max_tokens: int | None = None,
             structured: str = "auto", max_papers: int = 5, per_paper: int = 2, budget_chars: int = 1600,
             min_support: float = 0.5, evidence: list[PaperEvidence] | None = None,
             copy_numbers: bool = False) -> Generation:
    """Ask the model with evidence sentences, parse its reply and keep only cited, supported sentences.

    ``structured``: "json_schema" asks for the answer schema, "off" for plain text, "auto" tries
    the schema and falls back to plain text for the rest of the client's life when the server
    rejects it (an error naming response_format, json_schema or grammar: ``rejected_format``).

    The copy check: a number in a sentence must be in the evidence sentences of a paper it cites
    (what the model was shown), not merely somewhere in that abstract. ``copy_numbers``: a sentence
    that restates an evidence sentence but drops its figures is replaced by that sentence, quoted
    (small models paraphrase "reaches 88.7% top-1" into "achieves strong accuracy").
    """
    if evidence is None:
        evidence = select_evidence(question, sources, idf, max_papers=max_papers, per_paper=per_paper,
                                   budget_chars=budget_chars)
    checks: dict[str, Any] = {}
    t0 = time.perf_counter()
    use_schema = structured == "json_schema" or (structured == "auto" and
                                                 not getattr(client, "_no_json_schema", False))
    raw: str | None = None
    if use_schema:
        messages = build_messages(question, evidence, structured=True)
        try:
            raw = client.complete(messages, stream=on_token is not None,
                                  on_token=_JsonTextStreamer(on_token) if on_token else None,
                                  max_tokens=max_tokens, response_format=ANSWER_FORMAT)
        except Exception as exc:  # BackendError from the client; only a rejected format falls back
            if structured != "auto" or not rejected_format(exc):
                raise
            client._no_json_schema = True
            checks["structured_fallback"] = f"server rejected response_format json_schema: {exc}"
    if raw is None:
        messages = build_messages(question, evidence, structured=False)
        raw = client.complete(messages, stream=on_token is not None, on_token=on_token, max_tokens=max_tokens)
        model = parse_plain(str(raw), truncated=truncated(client))
    else:
        model = parse_structured(str(raw), truncated=truncated(client))
    gen_ms = (time.perf_counter() - t0) * 1000
    checks["prompt_chars"] = sum(len(m["content"]) for m in messages)
    checks["structured"] = model.structured
    if model.parse_error:
        checks["parse_error"] = model.parse_error
    if truncated(client):
        checks["truncated"] = True
    usage = getattr(client, "last_usage", None)
    if usage:
        checks["usage"] = usage

    kept: list[str] = []
    dropped: list[dict[str, Any]] = []
    recited: list[dict[str, Any]] = []
    riders: list[dict[str, Any]] = []
    copied: list[dict[str, Any]] = []
    best_support = 0.0
    # Numbers the model cited that name no given paper (the checker below never sees them).
    checks["unknown_markers"] = sum(1 for _, nums in model.sentences for n in nums if not 1 <= n <= len(evidence))
    for body, nums in model.sentences:
        body, named = _name_papers(body, evidence)
        nums = nums + [n for n in named if n not in nums]
        valid = [n for n in nums if 1 <= n <= len(evidence)]
        if not valid:
            dropped.append({"sentence": body, "reason": "no citation" if not nums else f"unknown source(s) {nums}"})
            continue
        # Each cited paper must support the sentence on its own: support is never pooled, so a
        # citation cannot ride along on another's ("... [1] [2] [3]" with [3] unrelated drops [3]).
        verdicts = {n: _checked(body, evidence[n - 1], idf, min_support) for n in valid}
        backing = [n for n in valid if verdicts[n].supported]
        if backing and len(backing) < len(valid):
            riders.extend({"sentence": body, "source": n, "reason": _why_unsupported(verdicts[n], min_support)}
                          for n in valid if n not in backing)
        if not backing:
            # Small models often copy a sentence right and number it wrong: when exactly one given
            # paper supports the sentence, cite that one (and say so) instead of dropping a true fact.
            others = [ev.number for ev in evidence if ev.number not in valid
                      and _checked(body, ev, idf, min_support).supported]
            if len(others) == 1:
                recited.append({"sentence": body, "cited": valid, "now": others})
                backing = others
                verdicts[others[0]] = _checked(body, evidence[others[0] - 1], idf, min_support)
        if not backing:
            best = max(verdicts.values(), key=lambda v: v.coverage)
            dropped.append({"sentence": body, "sources": valid, "reason": _why_unsupported(best, min_support)})
            continue
        best_support = max(best_support, *(verdicts[n].coverage for n in backing))
        if copy_numbers and (quote := _dropped_figures(body, question, [evidence[n - 1] for n in backing],
                                                       idf)) is not None:
            ev, sentence = quote
            copied.append({"sentence": body, "quote": sentence, "source": ev.marker})
            kept.append(cited_sentence(sentence, ev.marker))
            continue
        end = body[-1] if body[-1] in ".!?" else "."
        core = body[:-1] if body[-1] in ".!?" else body
        kept.append(core + "".join(f" [{evidence[n - 1].marker}]" for n in backing) + end)
    checks["dropped_sentences"] = dropped
    if riders:
        checks["dropped_citations"] = riders
    if recited:
        checks["recited_sentences"] = recited
    if copied:
        checks["copied_figures"] = copied
    return Generation(" ".join(kept), model, checks, evidence, {"generate": gen_ms}, kept, best_support)


def _checked(body: str, ev: PaperEvidence, idf: Idf | None, min_support: float) -> Support:
    """``support`` against the whole cited abstract, plus the copy check: every number the sentence
    states must be in that paper's evidence sentences (what the model saw)."""
    verdict = support(body, [_passage(ev)], idf, min_support)
    if verdict.supported:
        shown = [t.text for t in required_terms(body) if t.kind == "number"
                 and t.text in missing_terms(body, [ev.source.paper.title, *ev.sentences])]
        if shown:
            verdict = Support(False, verdict.coverage, shown, verdict.missing_names, verdict.unstated)
    return verdict


def _dropped_figures(body: str, question: str, cited: Sequence[PaperEvidence],
                     idf: Idf | None) -> tuple[PaperEvidence, str] | None:
    """The evidence sentence ``body`` restates (best coverage among the cited papers' evidence) when
    that sentence states figures the question does not ("88.7%" for "top-1 on Kinetics-400") and
    ``body`` keeps none of them; else None."""
    best: tuple[float, PaperEvidence, str] | None = None
    for ev in cited:
        for sent in ev.sentences:
            cov = _coverage(body, [sent], idf)
            if best is None or cov > best[0]:
                best = (cov, ev, sent)
    if best is None or best[0] < 0.5:
        return None
    _, ev, sent = best
    figures = numbers_in(sent) - numbers_in(ev.source.paper.title) - numbers_in(question)
    if not figures or figures & numbers_in(body):
        return None
    return ev, sent


def _why_unsupported(verdict: Support, min_support: float) -> str:
    """Why a cited abstract does not support a sentence, in words (for ``checks``)."""
    why = [f"coverage {verdict.coverage:.2f} < {min_support}"] if verdict.coverage < min_support else []
    if verdict.missing_numbers:
        why.append("numbers not in the cited abstracts: " + ", ".join(verdict.missing_numbers))
    if verdict.missing_names:
        why.append("names not in the cited abstracts: " + ", ".join(verdict.missing_names))
    if verdict.unstated:
        why.append("not stated where the cited abstract says it: " + ", ".join(verdict.unstated))
    return "; ".join(why)


def answer_with_llm(client: Any, question: str, sources: Sequence[Source], settings: Settings, idf: Idf | None, *,
                    on_token: Callable[[str], None] | None = None,
                    chunk_sims: dict[str, float] | None = None,
                    sentence_sims: dict[tuple[str, int, int], float] | None = None) -> tuple[str, dict[str, Any]]:
    """The openai backend's answer text (markers numbered as ``sources``) and its checks.

    The fitted extractive model (the offline backend's, ``extractive.model_file``) scores every
    sentence of the retrieved papers: its best sentences are the model's evidence (as many as the
    model's profile and context window allow), and its answerability is one half of the decision.
    A near miss (the question asks for a count, setting or licence no retrieved sentence states) is
    refused before the model is asked. Otherwise the model's reply is checked sentence by sentence,
    and answer-or-refuse is the profile's fitted combination of the evidence check and the model's
    verdict (``calibration.decide``): the model can rescue a question the evidence check alone would
    refuse, and refuse a near miss it lets through. Answering with no supported model sentence
    shows the extractive answer.
    """
    from dataclasses import replace

    from .calibration import Signals, decide, evidence_budget, find_profile
    from .features import question_view
    from .fitted import compose, configured_model, score
    from .near_miss import describe, near_miss

    cfg = settings.llm
    profile = find_profile(cfg.model, cfg.profile, settings.home)
    checks: dict[str, Any] = {"profile": profile.model if profile.matched else f"{profile.model} (default)"}
    # Near miss: asked-for thing stated by no sentence of the papers the evidence comes from.
    missing = near_miss(question, sources)
    if missing:
        checks.update(near_miss=describe(missing), model_answerable=None, evidence_answers=False,
                      decision="refused: near miss", refusal_reason=describe(missing))
        return REFUSAL, checks
    context = cfg.context_tokens or (client.context_tokens() if hasattr(client, "context_tokens") else None)
    budget = evidence_budget(profile, context, cap_chars=cfg.prompt_char_budget, papers=cfg.evidence_papers,
                             sentences=cfg.evidence_sentences, chars=cfg.evidence_chars)
    checks["evidence_budget"] = {"papers": budget.papers, "sentences": budget.sentences, "chars": budget.chars,
                                 "context_tokens": context}
    ext = forced = view = None
    evidence = None
    if idf is not None:
        model = configured_model(settings)
        view = question_view(question, idf)
        cands = score(model, view, sources, chunk_sims, sentence_sims) if view is not None and sources else []
        ext = compose(model, view, sources, cands)
        forced = ext if not ext.refused else compose(model, view, sources, cands,
                                                     replace(model.decisions, answer_threshold=0.0))
        if cands:
            evidence = evidence_from_candidates(sources, cands, ext.picked or forced.picked,
                                                max_papers=budget.papers, per_paper=budget.sentences,
                                                budget_chars=budget.chars)
    wants_number = bool(view is not None and view.quantity) or bool(_QUANTITY.search(question)
                                                                   or _ASKS_FIGURE.search(question))
    copy = profile.copy_numbers == "all" or (profile.copy_numbers == "quantity" and wants_number)
    gen = generate(client, question, sources, idf=idf, on_token=on_token, max_tokens=cfg.max_answer_tokens,
                   structured=cfg.structured, max_papers=budget.papers, per_paper=budget.sentences,
                   budget_chars=budget.chars, min_support=cfg.min_support, evidence=evidence, copy_numbers=copy)
    checks.update(gen.checks)
    # The reply as sent, for debugging; a server ignoring max_tokens sent 100 MB, echoed whole in --json.
    raw = gen.model.raw
    checks["raw_answer"] = raw if len(raw) <= RAW_ANSWER_CHARS else raw[:RAW_ANSWER_CHARS] + " … [cut]"
    checks["model_answerable"] = gen.model.answerable
    evidence_answers = ext is not None and not ext.refused
    checks["evidence_answers"] = evidence_answers
    evidence_p = float((ext.checks if ext is not None else {}).get("answerability", 0.0))
    signals = Signals(evidence_p, gen.model.answerable, len(gen.kept), len(gen.model.sentences), gen.best_support)
    checks["signals"] = signals.to_dict()
    answer, p = decide(profile, signals)
    if p is not None:
        checks["decision_p"] = round(p, 4)
    if ext is not None and ext.refused:
        checks["refusal_reason"] = ext.reason
    model_refused = gen.model.answerable is False or not gen.text
    if model_refused == evidence_answers:
        checks["disagreement"] = ("the model answered" if not model_refused else "the model refused") + \
            (" but the evidence check refuses" if not evidence_answers else " but the evidence check finds an answer")
    if answer != evidence_answers:
        checks["overrules_evidence_check"] = True
    if not answer:
        checks["decision"] = "refused" + (f": p {p:.2f} < {profile.threshold:.2f}" if p is not None else "")
        if "refusal_reason" not in checks:
            checks["refusal_reason"] = f"the model's profile ({profile.model}) weighs the evidence as not answering"
        return REFUSAL, checks
    checks.pop("refusal_reason", None)
    if gen.text:
        checks["decision"] = "answered by the model"
        return gen.text, checks
    if forced is not None and not forced.refused and forced.text:
        checks["decision"] = "extractive: the model kept no supported sentence"
        return forced.text, checks
    checks["decision"] = "refused: nothing to show"
    checks["refusal_reason"] = "no supported sentence"
    return REFUSAL, checks


class OpenAIAnswerer:
    """An LLM on any OpenAI-compatible server writes the answer; the checker verifies it."""

    name = "openai"
    streams = True

    def __init__(self, settings: Settings) -> None:
        from ..llm import ChatClient

        ChatClient.check_configured(settings)  # `ask` names the missing server before it builds an index
        self.settings = settings
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from ..llm import ChatClient

            self._client = ChatClient(self.settings)
        return self._client

    @client.setter
    def client(self, client: Any) -> None:
        """Another chat client (calibration reads the model's stored replies through one)."""
        self._client = client

    def label(self) -> str:
        return f"openai:{self.settings.llm.model}"

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft:
        text, checks = answer_with_llm(self.client, question, sources, self.settings, context.idf,
                                       on_token=context.on_token, chunk_sims=context.chunk_sims,
                                       sentence_sims=context.sentence_sims)
        return Draft(text, checks.pop("refusal_reason", None), checks=checks)

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        return condense(self.client, history, question)


def register_backends(registry: ModuleType) -> None:
    registry.answerers.register("openai", OpenAIAnswerer,
                                description="an LLM on any OpenAI-compatible server (OPENAI_BASE_URL)")


_PAPER_REF = re.compile(r"\b(?:the )?paper\s*\[?(\d+)\]?", re.IGNORECASE)


def _name_papers(sentence: str, evidence: Sequence[PaperEvidence]) -> tuple[str, list[int]]:
    """'Paper [2] shows ...' -> '"<title of 2>" shows ...' (and cites 2): a reader has no numbered list."""
    named: list[int] = []

    def repl(m: re.Match[str]) -> str:
        n = marker_int(m.group(1))
        if not 1 <= n <= len(evidence):
            return m.group(0)
        named.append(n)
        title = evidence[n - 1].source.paper.title
        # A title that talks to the model is never written into an answer (the prompt withheld it too).
        if addresses_model(title):
            return "The cited paper" if m.start() == 0 else "the cited paper"
        return f'"{_sentence_safe_title(title)}"'

    out = _PAPER_REF.sub(repl, sentence)
    # Models copy the evidence header: drop a repeated title and the "(date)" that followed it there.
    for ev in evidence:
        title, date = ev.source.paper.title, ev.source.paper.date
        if date:
            out = out.replace(f" ({date})", "")
        short = _sentence_safe_title(title)
        out = out.replace(f'"{short}" {title}', f'"{short}"')
    return out, named


def _sentence_safe_title(title: str) -> str:
    """A title that reads as two sentences ("Mix Data or Merge Models? Balancing ...") would split
    the answer sentence naming it, leaving its first half uncited: keep its first part, which ends
    at the quote ("Mix Data or Merge Models?")."""
    spans = split_sentences(title)
    return title[spans[0][0]:spans[0][1]] if len(spans) > 1 else title


def _passage(ev: PaperEvidence) -> str:
    """What may support a sentence citing this paper: never text addressing the model."""
    return paper_text(ev.source.paper.title, ev.source.paper.abstract)


RAW_ANSWER_CHARS = 20_000
"""The most of the model's raw reply kept in ``checks.raw_answer`` (256 tokens are ~1,000 characters)."""


_FORMAT_ERROR = re.compile(r"response_format|json_?schema|json schema|grammar", re.IGNORECASE)
"""Words of an error about the structured-output request itself (llama.cpp, vLLM, OpenAI, LM Studio)."""


def rejected_format(exc: Exception) -> bool:
    """The server refused ``response_format`` (so a plain-JSON retry may succeed): an error status
    whose server message names response_format, a JSON schema or a grammar. Not any 400: llama.cpp
    answers a prompt over its context with 400 too, and taking that for a refused format switched
    the client to plain text for good. Our own words never count: "timed out after 400s", or a host
    named gpu-400 or grammar-1, must not send a second whole request."""
    cause = exc.__cause__
    status = getattr(cause, "status_code", None) or getattr(exc, "status_code", None)
    ours = re.sub(r"\w+://\S+", "", str(exc))  # our message names the server's URL
    if not isinstance(status, int):  # an error event inside a stream carries no status: its words then
        return bool(_FORMAT_ERROR.search(ours))
    body = getattr(cause, "body", None) if cause is not None else getattr(exc, "body", None)
    said = json.dumps(body) if isinstance(body, (dict, list)) else str(body or "")
    return status >= 400 and bool(_FORMAT_ERROR.search(said or ours))


def condense(client: Any, history: Sequence[tuple[str, str]], question: str) -> str:
    """Make a follow-up standalone with the LLM (chat with the openai backend)."""
    lines = []
    for q, a in history[-3:]:
        lines.append(f"User: {q}\nAssistant: {a}")
    prompt = render("condense", history="\n".join(lines), question=question)
    out = str(client.complete([{"role": "user", "content": prompt}], max_tokens=120)).strip()
    out = out.splitlines()[0].strip().strip('"') if out else ""
    return out or question
