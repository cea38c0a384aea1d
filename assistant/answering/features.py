"""Features of candidate answer sentences and of a question's evidence as a whole.

The fitted answerer (``fitted.py``) and the script that fits it (``fit.py``) both call
these functions, so the model is always scored on exactly the features it was fitted on.
Everything here is computed from the question, the retrieved sources, the index's BM25
idf and the chunk similarities retrieval already has: no model call per sentence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..records import Source
from ..text import content_tokens, evidence_spans, name_tokens, query_tokens, split_sentences

# "Which papers / what methods ..." and lists: one sentence from each qualifying paper.
MULTI = re.compile(r"\b(which|what) (papers|works|studies|methods|approaches|models|benchmarks|frameworks)\b|"
                   r"\b(papers|works|studies|approaches|methods) (that|which|propose|use|address)\b|\blist\b",
                   re.IGNORECASE)
COMPARE = re.compile(r"\b(compare|comparison|contrast|differ|difference|versus|vs\.?|both)\b", re.IGNORECASE)
QUANTITY = re.compile(
    r"\b(how (many|much|large|big|long|fast|often|small)|by how much|number of|what (percentage|number|fraction|"
    r"proportion|size|accuracy|score|rate|learning rate|batch size|value|speed-?up|gain|improvement)|"
    r"what (\w+ ){0,2}(accuracy|score|rate|percentage|fraction|speed-?up)|to what (extent|length))\b",
    re.IGNORECASE)
ASKS = re.compile(r"\?|^\W*(?:(?:and|so|but|also|then|now|ok|okay|hi|hello|hey|please|well)\b\W*)*"
                  r"(which|what|whats|how|why|when|where|who|whom|whose|is|isn't|are|aren't|was|were|does|doesn't|"
                  r"do|did|can|could|should|would|will|has|have|list|compare|name|give|find|show|tell|explain|"
                  r"define|describe|summari[sz]e|search|i'm|i am|i want|i need|i'd like|looking for|any)\b",
                  re.IGNORECASE)
"""A question or request: a question mark anywhere, or a question or request word opening it (after
"and", "please", "ok"...)."""


def is_claim(text: str) -> bool:
    """A statement to check (a SciFact-style claim) rather than a question: a sentence ending with a
    full stop that asks nothing. Keyword queries ("ARRA loss"), requests and questions are questions;
    so is a claim typed without its full stop (20 of SciFact's 809 train claims), which then gets the
    question models, as every input did before claims had their own."""
    return text.rstrip().rstrip("\"')").endswith(".") and not ASKS.search(text)


WHAT_IS = re.compile(r"^\s*(what is|what are|what does \S+ stand for|define|explain)\b", re.IGNORECASE)
_DEFINES = re.compile(r"\b(we (propose|introduce|present|develop|design)|"
                      r"this (paper|work) (proposes|introduces|presents)|(is|are) (a|an) |"
                      r"called|named|dubbed|termed)\b",
                      re.IGNORECASE)
INTRODUCES = re.compile(r"\b(we (\w+ )?(propose|introduce|present|develop|design)|"
                        r"this (paper|work) (proposes|introduces|presents)|(is|are) (a|an) |"
                        r"called|named|dubbed|termed)\b",
                        re.IGNORECASE)
"""A sentence that introduces something, for "what is X" (the feature ``defines`` is the narrower
pattern above without "we thus propose": the fitted weights were chosen with that one)."""
_RESULT = re.compile(r"\b(results? (show|demonstrate|indicate)|outperform|achiev|improv|reduc|increas|"
                     r"surpass|speed-?up|accuracy)\w*", re.IGNORECASE)
_NUMBER = re.compile(r"\d")
_WORD = re.compile(r"\S+")
RARE_IDF = 3.0
"""Question names at least this rare (BM25 idf) are 'rare names' a paper must carry."""
_NO_SUCH_TOKEN = "\x00"
SIM_DECIMALS = 4
"""Similarities and retrieval scores are rounded to this many decimals before they become features
(here, at fitting and at answer time alike): their last digits carry float noise from the vector
store and the embedder, which would otherwise make a refit differ from the shipped weights."""

SENTENCE_FEATURES = (
    "cov_sent", "cov_title", "focus", "cov_gap", "focus_gap", "idf_sum", "chunk_sim", "paper_dense",
    "rank_prior", "fused_rel", "rare_in_sent", "rare_in_paper", "has_number", "q_quantity_x_number",
    "q_quantity_x_number_near", "position", "first", "log_len", "defines", "q_what_is_x_defines",
    "result_cue", "q_multi_x_rank", "sent_sim", "sent_sim_gap", "sent_sim_paper_gap", "sent_sim_rank",
    "bigram_cov",
)
QUESTION_FEATURES = (
    "best_logit", "second_logit", "top_paper_best_logit", "top_dense", "max_cov", "max_focus",
    "rare_share_missing", "has_rare", "quantity", "quantity_best_near", "log_q_tokens", "fused_gap",
    "multi", "compare", "uncovered_top", "uncovered_all", "best_focus", "best_sent_sim", "top_sent_sim",
    "top_cov", "top_bigram_cov",
)
PAPER_FEATURES = (
    "p_best_logit", "p_best_gap", "p_second_logit", "paper_cov", "paper_cov_gap", "top_term_in", "fused_rel",
    "dense", "rank_prior", "title_cov", "rare_in_paper", "likely_sentences", "q_list",
)
"""Per retrieved paper: does it answer the question by itself (for "which papers ..." lists)."""
SENT_SIM = SENTENCE_FEATURES.index("sent_sim")


@dataclass
class Candidate:
    """One abstract sentence of a retrieved paper, with its features."""

    source_index: int
    start: int
    end: int
    text: str
    tokens: frozenset[str]
    features: list[float]
    number_near: float = 0.0
    score: float = 0.0
    """Fitted probability that this sentence answers the question (set by the scorer)."""


@dataclass
class QuestionView:
    """What the features of one question need: its tokens, weights, names and shape."""

    question: str
    tokens: list[str]
    weights: dict[str, float]
    focus: list[str]
    rare: list[str]
    quantity: bool
    multi: bool
    compare: bool
    what_is: bool
    claim: bool = False
    """A statement to check rather than a question (no question mark, no question or request word)."""
    unknown: list[str] = field(default_factory=list)
    """Rare names that no indexed paper contains at all."""
    paper_tokens: list[set[str]] = field(default_factory=list)
    titles: list[frozenset[str]] = field(default_factory=list)


def question_view(question: str, idf: Callable[[list[str]], dict[str, float]]) -> QuestionView | None:
    toks = query_tokens(question)
    if not toks:
        return None
    weights = idf(toks)
    anchors = name_tokens(question)
    focus = [t for t in toks if t not in anchors]
    rare: list[str] = []
    if anchors:
        rare_w = idf([*sorted(anchors), _NO_SUCH_TOKEN])
        # A name in no paper at all counts as rare however small the index (idf is capped by size).
        bar = min(RARE_IDF, rare_w.get(_NO_SUCH_TOKEN, 0.0) - 1e-9)
        # A compound ("llama-3" of "Llama-3-8B") is checked through its parts, which the
        # tokenizer also yields: the compound itself may be spelled differently in abstracts.
        rare = [t for t in sorted(anchors) if rare_w[t] >= bar and not re.search(r"\w[-.]\w", t)]
        unknown = [t for t in rare if rare_w[t] >= rare_w.get(_NO_SUCH_TOKEN, 0.0) - 1e-9]
    return QuestionView(question, toks, weights, focus, rare, bool(QUANTITY.search(question)),
                        bool(MULTI.search(question)), bool(COMPARE.search(question)),
                        bool(WHAT_IS.search(question)), is_claim(question), unknown if anchors else [])


def candidates(view: QuestionView, sources: Sequence[Source], chunk_sims: dict[str, float] | None,
               max_papers: int, sentence_sims: dict[tuple[str, int, int], float] | None = None) -> list[Candidate]:
    """Every sentence of the first ``max_papers`` sources, with SENTENCE_FEATURES.

    ``sentence_sims`` (question-sentence cosines from the vectors stored at ingest) feed the dense
    sentence features; a sentence without one (an older home, bm25 mode) takes its chunk's cosine.
    Text addressing the model (``text.evidence_spans``) is no candidate and no paper word: it is
    never evidence. Positions still count every sentence, so other sentences' features do not move."""
    w = view.weights
    bigrams = _bigrams(view.tokens)
    total = sum(w.values()) or 1.0
    ftotal = sum(w[t] for t in view.focus) or 1.0
    focus_set = set(view.focus)
    top_score = sources[0].score if sources and sources[0].score else 1.0
    out: list[Candidate] = []
    view.paper_tokens, view.titles = [], []
    for si, src in enumerate(sources[:max_papers]):
        abstract = src.paper.abstract
        title = frozenset(content_tokens(src.paper.title))
        spans = split_sentences(abstract)
        view.titles.append(title)
        ptoks: set[str] = set(title)
        rows: list[Candidate] = []
        for j, (a, b) in enumerate(evidence_spans(abstract)):
            sent = abstract[a:b]
            words = content_tokens(sent)
            toks = frozenset(words)
            ptoks |= toks
            cov = sum(v for t, v in w.items() if t in toks) / total
            cov_t = sum(v for t, v in w.items() if t in toks or t in title) / total
            foc = sum(w[t] for t in view.focus if t in toks) / ftotal if view.focus else 1.0
            near = _number_near(words, focus_set) if view.quantity else 0.0
            has_num = 1.0 if _NUMBER.search(sent) else 0.0
            csim = _sim(chunk_sim(src, a, b, chunk_sims))
            # Stored vectors are keyed by the full sentence (one cut short before an injection too).
            ssim = (sentence_sims or {}).get((src.paper.paper_id, *spans[j]))
            ssim = csim if ssim is None else _sim(ssim)
            rows.append(Candidate(si, a, b, sent, toks, [
                cov, cov_t, foc, 0.0, 0.0, math.log1p(sum(v for t, v in w.items() if t in toks)),
                csim, _sim(src.dense_score or 0.0), 1.0 / (1 + si),
                _sim((src.score or 0.0) / top_score),
                (sum(t in toks for t in view.rare) / len(view.rare)) if view.rare else 0.0,
                0.0, has_num, has_num * view.quantity, near * view.quantity,
                j / max(1, len(spans) - 1), 1.0 if j == 0 else 0.0, math.log1p(len(_WORD.findall(sent))),
                1.0 if _DEFINES.search(sent) else 0.0, 0.0, 1.0 if _RESULT.search(sent) else 0.0,
                view.multi * (1.0 / (1 + si)), ssim, 0.0, 0.0, 0.0,
                (len(bigrams & _bigrams(words)) / len(bigrams)) if bigrams else 0.0,
            ], number_near=near))
        rare_in_paper = (sum(t in ptoks for t in view.rare) / len(view.rare)) if view.rare else 0.0
        paper_best = max((c.features[SENT_SIM] for c in rows), default=0.0)
        by_sim = sorted(range(len(rows)), key=lambda i: (-rows[i].features[SENT_SIM], i))
        for rank, i in enumerate(by_sim):
            rows[i].features[SENT_SIM + 3] = 1.0 / (1 + rank)
        for c in rows:
            c.features[11] = rare_in_paper
            c.features[19] = c.features[18] * view.what_is
            c.features[SENT_SIM + 2] = _sim(c.features[SENT_SIM] - paper_best)
        view.paper_tokens.append(ptoks)
        out.extend(rows)
    if out:
        best_cov = max(c.features[0] for c in out)
        best_focus = max(c.features[2] for c in out)
        best_sim = max(c.features[SENT_SIM] for c in out)
        for c in out:
            c.features[3] = c.features[0] - best_cov
            c.features[4] = c.features[2] - best_focus
            c.features[SENT_SIM + 1] = _sim(c.features[SENT_SIM] - best_sim)
    return out


def question_features(view: QuestionView, cands: Sequence[Candidate], sources: Sequence[Source]) -> list[float]:
    """QUESTION_FEATURES, once the candidates carry their fitted scores."""
    ranked = sorted(cands, key=lambda c: -c.score)
    logit = lambda p: math.log(max(p, 1e-6) / max(1 - p, 1e-6))  # noqa: E731
    best = logit(ranked[0].score) if ranked else -10.0
    second = logit(ranked[1].score) if len(ranked) > 1 else -10.0
    top_paper = [c.score for c in cands if c.source_index == 0]
    covered: set[str] = set().union(*view.paper_tokens) if view.paper_tokens else set()
    missing = (sum(t not in covered for t in view.rare) / len(view.rare)) if view.rare else 0.0
    near = max((c.number_near for c in ranked[:10]), default=0.0)
    s0 = sources[0].score if sources else 0.0
    s1 = sources[1].score if len(sources) > 1 else 0.0
    # Question words no retrieved paper has (weighted by idf): an absent study, or a detail not stated.
    total = sum(view.weights.values()) or 1.0
    top_toks = view.paper_tokens[ranked[0].source_index] if ranked and view.paper_tokens else set()
    uncovered_top = sum(w for t, w in view.weights.items() if t not in top_toks) / total
    uncovered_all = sum(w for t, w in view.weights.items() if t not in covered) / total
    return [best, second, logit(max(top_paper)) if top_paper else -10.0,
            _sim(max((s.dense_score or 0.0) for s in sources[:3])) if sources else 0.0,
            max((c.features[0] for c in cands), default=0.0), max((c.features[2] for c in cands), default=0.0),
            missing, 1.0 if view.rare else 0.0, float(view.quantity), near * view.quantity,
            math.log1p(len(view.tokens)), _sim((s0 - s1) / s0) if s0 else 0.0, float(view.multi), float(view.compare),
            uncovered_top, uncovered_all, ranked[0].features[2] if ranked else 0.0,
            max((c.features[SENT_SIM] for c in cands), default=0.0), ranked[0].features[SENT_SIM] if ranked else 0.0,
            ranked[0].features[0] if ranked else 0.0, ranked[0].features[SENT_SIM + 4] if ranked else 0.0]


def paper_features(view: QuestionView, cands: Sequence[Candidate], sources: Sequence[Source]) -> list[list[float]]:
    """PAPER_FEATURES of each candidate paper (index = source index), once the candidates carry scores."""
    logit = lambda p: math.log(max(p, 1e-6) / max(1 - p, 1e-6))  # noqa: E731
    w = view.weights
    total = sum(w.values()) or 1.0
    top_term = max(w, key=lambda t: (w[t], t)) if w else None
    n = len(view.paper_tokens)
    best_all = logit(max((c.score for c in cands), default=0.0))
    covs = [sum(v for t, v in w.items() if t in view.paper_tokens[i]) / total for i in range(n)]
    top_score = (sources[0].score or 1.0) if sources else 1.0
    rows = []
    for i in range(n):
        scores = sorted((c.score for c in cands if c.source_index == i), reverse=True) or [0.0]
        src = sources[i]
        best = logit(scores[0])
        rows.append([best, best - best_all, logit(scores[1]) if len(scores) > 1 else -10.0, covs[i],
                     covs[i] - max(covs), float(top_term in view.paper_tokens[i]),
                     _sim((src.score or 0.0) / top_score), _sim(src.dense_score or 0.0), 1.0 / (1 + i),
                     sum(v for t, v in w.items() if t in view.titles[i]) / total,
                     (sum(t in view.paper_tokens[i] for t in view.rare) / len(view.rare)) if view.rare else 0.0,
                     float(sum(c.score > 0.5 for c in cands if c.source_index == i)),
                     float(view.multi or view.compare)])
    return rows


def _bigrams(tokens: Sequence[str]) -> set[tuple[str, str]]:
    """Adjacent pairs of content tokens: 'reference model' asked and stated as a phrase."""
    return set(zip(tokens, tokens[1:], strict=False))


def _sim(x: float) -> float:
    """A similarity or score as a feature: rounded (``SIM_DECIMALS``) so float noise cannot reach the model."""
    return round(float(x), SIM_DECIMALS) + 0.0


def _number_near(words: list[str], focus: set[str], window: int = 4) -> float:
    """1 when a number sits within ``window`` tokens of an asked-for (focus) word, else 0."""
    nums = [i for i, t in enumerate(words) if _NUMBER.search(t)]
    if not nums or not focus:
        return 0.0
    hits = [i for i, t in enumerate(words) if t in focus]
    return 1.0 if any(abs(i - j) <= window for i in nums for j in hits) else 0.0


def chunk_sim(src: Source, a: int, b: int, chunk_sims: dict[str, float] | None) -> float:
    """Cosine of the best retrieved chunk holding characters a..b (else the paper's best)."""
    if not chunk_sims:
        return src.dense_score or 0.0
    best = 0.0
    for c in src.chunks:
        if c.start <= a < c.end or c.start < b <= c.end:
            best = max(best, chunk_sims.get(c.chunk_id, 0.0))
    return best or (src.dense_score or 0.0)
