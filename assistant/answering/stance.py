"""The offline claim-verification label model: which retrieved papers bear on a claim, and whether
each supports or contradicts it.

Per retrieved paper (the first ``VerifyDecisions.max_papers``), from what answering already computes:
the probabilities of its own rationale sentence scorer (the sentence features of ``features.py`` plus
cues of a stated finding, ``RATIONALE_FEATURES``), the paper features of ``features.py``,
the claim-sentence cosines from the vectors stored at ingest, and cheap stance cues of the paper's best
sentences against the claim: negation, null results ("no significant difference"), direction words
(increase / reduce ...), numbers and comparatives. Three logistic regressions, fitted on SciFact TRAIN
claims only by ``python -m assistant.answering.fit_verify`` and shipped as ``models/verify.json``:
``sentence`` (the rationale scorer), ``evidence`` (the paper holds evidence for or against the claim)
and ``contradict`` (given evidence, it contradicts). The decisions (thresholds, rationale length,
papers kept) were chosen by cross-validation on train; SciFact dev is only reported.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..records import Source
from ..text import content_tokens
from .features import (
    PAPER_FEATURES,
    SENT_SIM,
    SENTENCE_FEATURES,
    Candidate,
    QuestionView,
    candidates,
    paper_features,
)
from .features import question_view as make_view
from .fitted import LogReg, model_file, shipped_file

VERIFY_MODEL_FILE = "verify.json"
VERIFY_REFIT = "python -m assistant.answering.fit_verify"
"""The command that rebuilds ``VERIFY_MODEL_FILE`` (named in errors about a bad model file)."""
SUPPORT, CONTRADICT, NEI = "SUPPORT", "CONTRADICT", "NOT_ENOUGH_EVIDENCE"

_NEG = re.compile(r"\b(not|no|none|never|neither|nor|cannot|without|lacks?|lacking|absent|absence|fail(s|ed)?|"
                  r"unable|unrelated|independent(ly)? of|irrespective)\b|n't\b", re.IGNORECASE)
_NULL = re.compile(r"\b(no|not|nor) (statistically )?(significant(ly)?|difference|differences|association|associated|"
                   r"effect|change|changes|correlation|correlated|increase|decrease|evidence|benefit|improvement|"
                   r"relationship|impact)\b|\b(did|does|do|was|were|is|are) not\b|\bnon-?significant\w*|"
                   r"\b(similar|comparable|unchanged|unaffected|no longer)\b", re.IGNORECASE)
_UP = re.compile(r"\b(increas\w*|higher|more|greater|elevat\w*|enhanc\w*|improv\w*|promot\w*|activat\w*|induc\w*|"
                 r"up-?regulat\w*|stimulat\w*|accelerat\w*|augment\w*|rais\w*|gains?|exacerbat\w*|positive(ly)?|"
                 r"longer|faster|larger|amplif\w*|potentiat\w*|facilitat\w*|required|necessary|essential)\b",
                 re.IGNORECASE)
_DOWN = re.compile(r"\b(decreas\w*|lower\w*|less|fewer|reduc\w*|inhibit\w*|suppress\w*|impair\w*|prevent\w*|"
                   r"down-?regulat\w*|attenuat\w*|declin\w*|diminish\w*|loss|deplet\w*|block\w*|abolish\w*|"
                   r"negative(ly)?|protect\w*|deficien\w*|shorter|slower|smaller|delay\w*|limit\w*)\b", re.IGNORECASE)
_COMPARATIVE = re.compile(r"\b(than|compared|versus|vs\.?|relative to|\w+er than)\b", re.IGNORECASE)
_NUM = re.compile(r"\d+(?:[.,]\d+)?")
_CONCLUDES = re.compile(r"^\s*(CONCLUSIONS?|INTERPRETATION|RESULTS?|FINDINGS|Conclusions?|Results?|In conclusion|"
                        r"Together|Taken together|Thus|These (results|findings|data)|Our (results|findings|data)|"
                        r"We (found|show|demonstrate|conclude|report))")
"""A sentence stating a finding (structured abstracts' RESULTS / CONCLUSIONS, "we found ...")."""

RATIONALE_FEATURES = (*SENTENCE_FEATURES, "dir_word", "neg_word", "null_result", "concludes", "claim_dir_shared",
                      "claim_num_shared", "last", "sent_sim_sq", "cov_x_sim")
"""Is this sentence part of the claim's rationale: the answer models' sentence features, and whether it
states a finding (direction, negation, a null result, a concluding opener, the claim's direction words
and numbers) and sits last in its abstract."""

EVIDENCE_FEATURES = (*PAPER_FEATURES, "paper_best_sim", "paper_best_cov", "sim_rank",
                     "paper_top2_sim")
"""Does this paper bear on the claim: the answer models' paper features and more."""
STANCE_FEATURES = (
    "claim_neg", "sent_neg", "neg_xor", "top2_neg_xor", "null_result", "top2_null_result", "claim_dir",
    "sent_dir", "dir_agree", "top2_dir_agree", "dir_conflict", "claim_num", "num_shared", "num_conflict",
    "claim_comparative", "sent_comparative", "best_logit", "best_sim", "best_cov", "claim_null",
    "claim_missing", "claim_cue_missing", "paper_dir_conflict", "num_absent_paper", "neg_unmatched",
    "top3_null_result", "antonym_in_top2", "cue_missing_top2", "sent_cue_missing_claim",
)
"""Given evidence, does the paper contradict the claim: cues of its two best sentences against the claim."""


@dataclass(frozen=True)
class VerifyDecisions:
    """What the cross-validation on SciFact train chose (stored beside the weights)."""

    evidence_threshold: float = 0.5
    """A paper bears on the claim when the evidence model gives it at least this."""
    contradict_threshold: float = 0.5
    """A paper with evidence contradicts when the contradict model gives it at least this."""
    rationale_ratio: float = 0.8
    """Further rationale sentences (up to 3) score at least this share of the paper's best."""
    max_verdict_papers: int = 2
    """At most this many papers get a SUPPORT / CONTRADICT verdict (most likely first)."""
    max_papers: int = 5
    """Retrieved papers considered."""


@dataclass(frozen=True)
class VerifyModel:
    sentence: LogReg
    """Rationale scorer: is this sentence (of a retrieved paper) in a gold evidence set of the claim."""
    evidence: LogReg
    contradict: LogReg
    decisions: VerifyDecisions
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"sentence": self.sentence.to_dict(), "evidence": self.evidence.to_dict(),
                "contradict": self.contradict.to_dict(), "decisions": asdict(self.decisions),
                "meta": json.loads(json.dumps(self.meta))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VerifyModel:
        return cls(LogReg.from_dict(d["sentence"], RATIONALE_FEATURES, VERIFY_REFIT),
                   LogReg.from_dict(d["evidence"], EVIDENCE_FEATURES, VERIFY_REFIT),
                   LogReg.from_dict(d["contradict"], STANCE_FEATURES, VERIFY_REFIT),
                   VerifyDecisions(**d["decisions"]), d.get("meta", {}))


@lru_cache(maxsize=1)
def shipped_verify_model() -> VerifyModel:
    """The label model shipped in the package (read once per process)."""
    return shipped_file(VERIFY_MODEL_FILE, VerifyModel.from_dict)


def load_verify_model(path: Path) -> VerifyModel:
    """A model file written by ``fit_verify``; a bad one is a one-line error naming it."""
    return model_file(path, VerifyModel.from_dict, "verify", VERIFY_REFIT)


@dataclass
class PaperEvidence:
    """One retrieved paper's scored sentences and label features."""

    source_index: int
    ranked: list[Candidate]
    """The paper's sentences, best first (the verify model's rationale scorer)."""
    evidence_x: list[float]
    stance_x: list[float]


@dataclass
class ClaimEvidence:
    view: QuestionView | None
    papers: list[PaperEvidence]
    best_sentence: float
    """The highest rationale probability of any considered sentence."""


def _logit(p: float) -> float:
    return math.log(max(p, 1e-6) / max(1 - p, 1e-6))


def _direction(text: str) -> int:
    up, down = len(_UP.findall(text)), len(_DOWN.findall(text))
    return (up > down) - (down > up)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUM.findall(text)}


_ANTONYMS = [("increas", "decreas"), ("higher", "lower"), ("more", "less"), ("more", "fewer"), ("greater", "lower"),
             ("positive", "negative"), ("promot", "inhibit"), ("activat", "suppress"), ("activat", "inhibit"),
             ("enhanc", "reduc"), ("enhanc", "impair"), ("improv", "impair"), ("improv", "wors"), ("gain", "loss"),
             ("upregulat", "downregulat"), ("up-regulat", "down-regulat"), ("induc", "inhibit"), ("elevat", "reduc"),
             ("increas", "reduc"), ("rais", "lower"), ("longer", "shorter"), ("faster", "slower"),
             ("larger", "smaller"), ("accelerat", "delay"), ("high", "low"), ("risk", "protect"), ("benefi", "harm"),
             ("effective", "ineffective"),
             ("associated", "unrelated"), ("common", "rare"), ("major", "minor"), ("required", "dispensable")]
"""Stems of direction words and their opposites (either way round)."""


def _has(stem: str, words: set[str]) -> bool:
    return any(w.startswith(stem) for w in words)


def _antonym_swap(claim_words: set[str], sent_words: set[str]) -> float:
    """1 when the claim uses a direction word whose opposite the sentences use and they do not use it."""
    for a, b in _ANTONYMS:
        for x, y in ((a, b), (b, a)):
            if _has(x, claim_words) and not _has(x, sent_words) and _has(y, sent_words) and not _has(y, claim_words):
                return 1.0
    return 0.0


def _cue_words(text: str) -> set[str]:
    """The claim's negation and direction words, lower-cased."""
    return {m.group(0).lower() for rx in (_NEG, _UP, _DOWN) for m in rx.finditer(text)}


def stance_features(claim: str, ranked: Sequence[Candidate]) -> list[float]:
    """STANCE_FEATURES of a paper's best sentences (``ranked``, best first; all of its abstract's
    sentences) against the claim. SciFact's contradicted claims are mostly a finding rewritten: a
    direction swapped, a negation added or dropped, a number changed, so the features look for a
    claim's cue words and numbers that the paper never uses, and the opposite direction where it does."""
    best = ranked[0].text if ranked else ""
    top2 = [c.text for c in ranked[:2]]
    c_neg = bool(_NEG.search(claim))
    s_neg = bool(_NEG.search(best))
    c_dir = _direction(claim)
    s_dir = _direction(best)
    top2_dir = [_direction(t) for t in top2]
    c_nums = _numbers(claim)
    s_nums = set().union(*(_numbers(t) for t in top2)) if top2 else set()
    shared = len(c_nums & s_nums) / len(c_nums) if c_nums else 0.0
    return [
        float(c_neg), float(s_neg), float(c_neg != s_neg),
        float(sum(c_neg != bool(_NEG.search(t)) for t in top2)) / max(1, len(top2)),
        float(bool(_NULL.search(best))), float(sum(bool(_NULL.search(t)) for t in top2)) / max(1, len(top2)),
        float(c_dir), float(s_dir), float(c_dir * s_dir), float(sum(c_dir * d for d in top2_dir)),
        float(c_dir * s_dir < 0), float(bool(c_nums)), shared, float(bool(c_nums) and bool(s_nums) and not shared),
        float(bool(_COMPARATIVE.search(claim))), float(bool(_COMPARATIVE.search(best))),
        _logit(ranked[0].score) if ranked else -10.0,
        ranked[0].features[SENT_SIM] if ranked else 0.0, ranked[0].features[0] if ranked else 0.0,
        float(bool(_NULL.search(claim))),
        *_paper_cues(claim, ranked, c_dir, c_neg, c_nums),
    ]


def _paper_cues(claim: str, ranked: Sequence[Candidate], c_dir: int, c_neg: bool, c_nums: set[str]) -> list[float]:
    paper = " ".join(c.text for c in ranked)
    words = {w.lower() for w in re.findall(r"[A-Za-z][\w-]*", paper)}
    claim_words = [w.lower() for w in re.findall(r"[A-Za-z][\w-]*", claim) if len(w) > 3]
    missing = sum(w not in words for w in claim_words) / len(claim_words) if claim_words else 0.0
    cues = _cue_words(claim)
    top3 = " ".join(c.text for c in ranked[:3])
    p_dir = _direction(top3)
    top2 = " ".join(c.text for c in ranked[:2])
    top2_words = {w.lower() for w in re.findall(r"[A-Za-z][\w-]*", top2)}
    sent_cues = _cue_words(top2)
    return [missing, float(bool(cues) and any(c not in paper.lower() for c in cues)), float(c_dir * p_dir < 0),
            float(bool(c_nums) and not (c_nums & _numbers(paper))), float(c_neg and not _NEG.search(top3)),
            float(bool(_NULL.search(top3))), _antonym_swap(set(claim_words), top2_words),
            float(bool(cues) and any(c not in top2.lower() for c in cues)),
            float(bool(sent_cues) and any(c not in claim.lower() for c in sent_cues))]


def claim_candidates(claim: str, sources: Sequence[Source], idf: Callable[[list[str]], dict[str, float]],
                     chunk_sims: dict[str, float] | None, sentence_sims: dict[tuple[str, int, int], float] | None,
                     max_papers: int) -> tuple[QuestionView | None, list[Candidate]]:
    """The claim's view and the unscored sentences of its first ``max_papers`` retrieved papers."""
    view = make_view(claim, idf)
    if view is None or not sources:
        return view, []
    view.claim = True  # whatever its punctuation, the input is a statement to check
    return view, candidates(view, sources, chunk_sims, max_papers, sentence_sims)


def rationale_rows(claim: str, cands: Sequence[Candidate]) -> list[list[float]]:
    """RATIONALE_FEATURES of each candidate sentence."""
    claim_dirs = set(content_tokens(" ".join(m.group(0) for rx in (_UP, _DOWN) for m in rx.finditer(claim))))
    claim_nums = _numbers(claim)
    last: dict[int, int] = {}
    for c in cands:
        last[c.source_index] = max(last.get(c.source_index, 0), c.start)
    rows = []
    for c in cands:
        t = c.text
        dirs = " ".join(m.group(0) for rx in (_UP, _DOWN) for m in rx.finditer(t))
        sim, cov = c.features[SENT_SIM], c.features[0]
        rows.append([*c.features, float(bool(dirs)), float(bool(_NEG.search(t))), float(bool(_NULL.search(t))),
                     float(bool(_CONCLUDES.search(t))), float(bool(claim_dirs & set(content_tokens(dirs)))),
                     float(bool(claim_nums & _numbers(t))), float(c.start == last[c.source_index]), sim * sim,
                     cov * sim])
    return rows


def score_claim(claim: str, view: QuestionView | None, cands: Sequence[Candidate], sources: Sequence[Source],
                sentence: LogReg, rows: Sequence[Sequence[float]] | None = None) -> ClaimEvidence:
    """Each paper's sentences scored by the rationale model ``sentence`` (on copies: the fitting script
    scores the same candidates with each fold's model; ``rows``: their RATIONALE_FEATURES if known),
    ranked, and its label features."""
    if view is None or not cands:
        return ClaimEvidence(view, [], 0.0)
    rows = rows if rows is not None else rationale_rows(claim, cands)
    cands = [replace(c, score=sentence.prob(x)) for c, x in zip(cands, rows, strict=True)]
    paper_rows = paper_features(view, cands, sources)
    by_paper: dict[int, list[Candidate]] = {}
    for c in cands:
        by_paper.setdefault(c.source_index, []).append(c)
    best_sims = {i: max(c.features[SENT_SIM] for c in cs) for i, cs in by_paper.items()}
    sim_order = sorted(best_sims, key=lambda i: (-best_sims[i], i))
    best_all = max(c.score for c in cands)
    papers = []
    for i, cs in sorted(by_paper.items()):
        ranked = sorted(cs, key=lambda c: (-c.score, c.start))
        sims = sorted((c.features[SENT_SIM] for c in cs), reverse=True)
        ev = [*paper_rows[i], best_sims[i], max(c.features[0] for c in cs),
              1.0 / (1 + sim_order.index(i)), sum(sims[:2]) / min(2, len(sims))]
        papers.append(PaperEvidence(i, ranked, ev, stance_features(claim, ranked)))
    return ClaimEvidence(view, papers, best_all)


def claim_evidence(claim: str, sources: Sequence[Source], idf: Callable[[list[str]], dict[str, float]],
                   chunk_sims: dict[str, float] | None, sentence_sims: dict[tuple[str, int, int], float] | None,
                   max_papers: int, sentence: LogReg) -> ClaimEvidence:
    """The claim's retrieved papers, each with its sentences scored and its label features."""
    view, cands = claim_candidates(claim, sources, idf, chunk_sims, sentence_sims, max_papers)
    return score_claim(claim, view, cands, sources, sentence)


@dataclass
class PaperLabel:
    source_index: int
    label: str
    """SUPPORT, CONTRADICT or NOT_ENOUGH_EVIDENCE."""
    confidence: float
    p_evidence: float
    p_contradict: float
    rationale: list[Candidate]
    """Up to three sentences, best first: the rationale (or, for a paper without evidence, its closest)."""


def rationale(ranked: Sequence[Candidate], ratio: float, n: int = 3) -> list[Candidate]:
    """The best sentence, then the next ones scoring at least ``ratio`` of it (at most ``n``)."""
    if not ranked:
        return []
    return [ranked[0], *[c for c in ranked[1:n] if c.score >= ratio * ranked[0].score]]


def label_papers(model: VerifyModel, evidence: ClaimEvidence, decisions: VerifyDecisions | None = None,
                 probs: Sequence[tuple[float, float]] | None = None) -> list[PaperLabel]:
    """Every considered paper labelled, most likely evidence first. ``probs`` (evidence, contradict)
    skips the models (cross-validation passes out-of-fold ones)."""
    d = decisions or model.decisions
    out = []
    for j, p in enumerate(evidence.papers):
        pe, pc = probs[j] if probs is not None else (model.evidence.prob(p.evidence_x),
                                                     model.contradict.prob(p.stance_x))
        out.append(PaperLabel(p.source_index, NEI, 0.0, pe, pc, rationale(p.ranked, d.rationale_ratio)))
    out.sort(key=lambda x: (-x.p_evidence, x.source_index))
    kept = 0
    for x in out:
        if x.p_evidence >= d.evidence_threshold and kept < d.max_verdict_papers:
            kept += 1
            x.label = CONTRADICT if x.p_contradict >= d.contradict_threshold else SUPPORT
            x.confidence = round(x.p_evidence * (x.p_contradict if x.label == CONTRADICT else 1 - x.p_contradict), 4)
        else:
            x.confidence = round(1 - x.p_evidence, 4)
    return out
