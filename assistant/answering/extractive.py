"""Offline, deterministic answerer: the answer is made of the retrieved abstracts'
own sentences, each followed by its [n] marker.

Sentences are scored by idf-weighted coverage of the question's content words,
the semantic match of the chunk they sit in, and the paper's fused rank. It
refuses when the evidence does not answer: weak best matches, or a question
asking for a specific quantity/setting that no candidate sentence states.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .base import AnswerContext, Draft

if TYPE_CHECKING:
    from types import ModuleType

    from ..settings import Settings

from ..records import REFUSAL, Source
from ..settings import ExtractiveSettings
from ..text import content_tokens, evidence_spans, name_tokens, query_tokens
from .citations import cited_sentence
from .features import chunk_sim

# Questions that ask for several papers get one sentence from each of several papers.
_MULTI = re.compile(r"\b(which|what) (papers|works|studies|methods|approaches|models|benchmarks|frameworks)\b|"
                    r"\b(papers|works|studies|approaches|methods) (that|which|propose|use|address)\b|"
                    r"\b(compare|comparison|contrast|differ|difference|versus|vs\.?|both)\b|\blist\b",
                    re.IGNORECASE)
# Questions that ask for a quantity: the answer sentence must contain a number.
_NO_SUCH_TOKEN = "\x00"
_QUANTITY = re.compile(
    r"\b(how (many|much|large|big|long|fast|often)|by how much|number of|what (percentage|number|fraction|"
    r"proportion|size|accuracy|score|rate|learning rate|batch size|value|speed-?up))\b", re.IGNORECASE)


@dataclass
class ScoredSentence:
    source_index: int
    start: int
    end: int
    text: str
    coverage: float
    focus: float
    score: float
    tokens: frozenset[str] = frozenset()


@dataclass
class ExtractiveResult:
    text: str
    refused: bool
    reason: str
    picked: list[ScoredSentence]


def answer(question: str, sources: Sequence[Source], idf: Callable[[list[str]], dict[str, float]],
           config: ExtractiveSettings | None = None, chunk_sims: dict[str, float] | None = None) -> ExtractiveResult:
    cfg = config or ExtractiveSettings()
    if not sources:
        return ExtractiveResult(REFUSAL, True, "nothing retrieved", [])
    q_tokens = query_tokens(question)
    if not q_tokens:
        return ExtractiveResult(REFUSAL, True, "question has no content words", [])
    weights = idf(q_tokens)
    total = sum(weights.values()) or 1.0
    top_dense = max((s.dense_score or 0.0) for s in sources[:3])
    if sources[0].dense_score is not None and top_dense < cfg.min_dense:
        return ExtractiveResult(REFUSAL, True, f"best paper similarity {top_dense:.2f} < {cfg.min_dense}", [])

    # Words of the question that are not names of the paper or method must be answered too
    # ("what learning rate does X use?" is not answered by a sentence about X).
    anchors = name_tokens(question)
    focus = [t for t in q_tokens if t not in anchors]
    ftotal = sum(weights[t] for t in focus) or 1.0

    candidates: list[ScoredSentence] = []
    pool = list(sources[: cfg.max_papers])
    titles: list[frozenset[str]] = []
    paper_toks: list[set[str]] = []  # title + abstract words, for the name check below
    for si, src in enumerate(pool):
        abstract = src.paper.abstract
        title_toks = frozenset(content_tokens(src.paper.title))
        titles.append(title_toks)
        paper_toks.append(set(title_toks))
        rank_prior = 1.0 / (1 + si)
        for a, b in evidence_spans(abstract):  # never text addressing the model
            sent = abstract[a:b]
            toks = frozenset(content_tokens(sent))
            paper_toks[si] |= toks
            # The title counts for part of the coverage: it says what the paper is about,
            # but the sentence itself must carry the answer.
            cov_sent = sum(w for t, w in weights.items() if t in toks) / total
            cov_title = sum(w for t, w in weights.items() if t in toks | title_toks) / total
            cov = 0.7 * cov_sent + 0.3 * cov_title
            fcov = sum(weights[t] for t in focus if t in toks) / ftotal if focus else 1.0
            dense = chunk_sim(src, a, b, chunk_sims)
            score = (cfg.w_coverage * cov + cfg.w_focus * fcov + cfg.w_dense * dense
                     + cfg.w_rank * rank_prior)
            candidates.append(ScoredSentence(si, a, b, sent, cov, fcov, score, toks))
    if not candidates:
        return ExtractiveResult(REFUSAL, True, "no sentences", [])
    candidates.sort(key=lambda c: -c.score)
    best = candidates[0]
    if best.coverage < cfg.min_coverage:
        return ExtractiveResult(REFUSAL, True, f"best coverage {best.coverage:.2f} < {cfg.min_coverage}", [])
    if best.focus < cfg.min_focus_coverage:
        return ExtractiveResult(REFUSAL, True, f"focus coverage {best.focus:.2f} < {cfg.min_focus_coverage}", [])
    if _QUANTITY.search(question):
        # The number must come with what the question asks about, in the same sentence.
        numeric = [c.focus for c in candidates[:12] if re.search(r"\d", c.text)]
        if not numeric or max(numeric) < cfg.min_quantity_focus:
            return ExtractiveResult(REFUSAL, True, "asks for a quantity no candidate sentence states", [])

    multi = bool(_MULTI.search(question))
    picked: list[ScoredSentence] = [best]
    if multi:
        seen = {best.source_index}
        for c in candidates[1:]:
            if len(picked) >= cfg.multi_max_sentences:
                break
            if (c.source_index in seen or c.coverage < cfg.min_coverage or c.focus < cfg.min_focus_coverage
                    or c.score < cfg.multi_min_ratio * best.score):
                continue
            picked.append(c)
            seen.add(c.source_index)
    else:
        for c in candidates[1:]:
            if len(picked) >= cfg.max_sentences:
                break
            if (c.score >= cfg.second_sentence_ratio * best.score and c.coverage >= cfg.min_coverage
                    and c.focus >= cfg.min_focus_coverage):
                picked.append(c)
    # Names the question turns on (rare in the index: a method, model, dataset) must be in
    # what is cited: a sentence about a neighbouring paper's method is no answer.
    rare_w = idf([*sorted(anchors), _NO_SUCH_TOKEN]) if anchors else {}
    # A name in no paper at all counts as rare however small the index (idf is capped by size).
    bar = min(cfg.min_anchor_idf, rare_w.get(_NO_SUCH_TOKEN, 0.0) - 1e-9)
    rare = [t for t in sorted(anchors) if rare_w[t] >= bar]
    if rare:
        covered = set().union(*(paper_toks[p.source_index] for p in picked))
        if multi:
            # A comparison names several papers: each named one gets its best sentence.
            for t in rare:
                if t in covered or len(picked) >= cfg.multi_max_sentences:
                    continue
                used = {p.source_index for p in picked}
                # The sentence (or its paper's title) must name it: a paper that only lists
                # it as a baseline elsewhere in the abstract does not speak for it.
                extra = next((c for c in candidates if c.source_index not in used
                              and c.coverage >= cfg.min_named_coverage
                              and (t in c.tokens or t in titles[c.source_index])), None)
                if extra is not None:
                    picked.append(extra)
                    covered |= paper_toks[extra.source_index]
        missing = [t for t in rare if t not in covered]
        if (cfg.anchors_all and not multi and missing) or len(missing) == len(rare):
            return ExtractiveResult(REFUSAL, True, f"no cited paper mentions {', '.join(missing)}", [])
    # Keep each paper's sentences in abstract order, papers in order of first pick.
    order = list(dict.fromkeys(p.source_index for p in picked))
    picked.sort(key=lambda p: (order.index(p.source_index), p.start))
    # The abstract's own "[5]" stays text, never a citation of source 5.
    text = " ".join(cited_sentence(p.text, p.source_index + 1) for p in picked)
    return ExtractiveResult(text, False, "", picked)


class ExtractiveAnswerer:
    """Offline and deterministic: quotes the retrieved abstracts' own sentences (hand-set rules)."""

    name = "extractive-rules"
    streams = False

    def __init__(self, settings: Settings) -> None:
        self.config = settings.extractive

    def label(self) -> str:
        return self.name

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft:
        res = answer(question, sources, context.idf, self.config, chunk_sims=context.chunk_sims)
        return Draft(res.text, res.reason)

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        return None


def register_backends(registry: ModuleType) -> None:
    registry.answerers.register("extractive-rules", ExtractiveAnswerer,
                                description="offline: cited sentences chosen by hand-set rules ([extractive] settings)")
    # The default offline backend is the fitted one (it beat these rules on evals/questions/validation.jsonl).
    from .fitted import register_backends as register_fitted

    register_fitted(registry)


