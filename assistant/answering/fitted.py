"""The fitted extractive answerer: sentence choice and answer-or-refuse by small fitted models.

Three logistic regressions, fitted by ``python -m assistant.answering.fit`` and shipped as
``answering/models/extractive.json``: one scores each abstract sentence as the answer to the
question (features in ``features.py``), one decides from the scored evidence whether the
question is answered at all, and one whether a retrieved paper answers it by itself (which
papers a "which papers ..." list names). The answer's shape follows the question: a quantity
question gets the sentence stating the number, "which papers ..." one sentence per qualifying
paper, a comparison one per named paper, a detail about a named method only that method's
paper. Every refusal says why (``Draft.reason`` -> ``Answer.checks['refusal_reason']``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import AssistantError
from ..records import REFUSAL, Source
from .base import AnswerContext, Draft
from .citations import cited_sentence
from .features import (
    INTRODUCES,
    PAPER_FEATURES,
    QUESTION_FEATURES,
    SENTENCE_FEATURES,
    Candidate,
    QuestionView,
    candidates,
    paper_features,
    question_features,
)
from .features import question_view as make_view
from .near_miss import describe, near_miss

if TYPE_CHECKING:
    from types import ModuleType

    from ..settings import Settings

MODEL_FILE = "extractive.json"
REFIT = "python -m assistant.answering.fit"
"""The command that rebuilds ``MODEL_FILE`` (named in errors about a bad model file)."""
MAX_ANSWER_PAPERS = 5


@dataclass(frozen=True)
class LogReg:
    """A standardised logistic regression: p = sigmoid(b + sum(w * (x - mean) / scale))."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def prob(self, x: Sequence[float]) -> float:
        z = self.intercept + sum(w * (v - m) / s for w, v, m, s in zip(self.coef, x, self.mean, self.scale,
                                                                         strict=True))
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "coef": list(self.coef), "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict[str, Any], expected: tuple[str, ...], refit: str) -> LogReg:
        """``refit``: the command that rebuilds the file this model is read from (named in the error)."""
        if tuple(d["features"]) != expected:
            raise AssistantError(f"fitted model features {d['features']} do not match the code's {list(expected)}; "
                                 f"re-run {refit}")
        return cls(tuple(d["features"]), tuple(map(float, d["mean"])), tuple(map(float, d["scale"])),
                   tuple(map(float, d["coef"])), float(d["intercept"]))


@dataclass(frozen=True)
class Decisions:
    """The thresholds chosen on the validation split (stored beside the weights)."""

    answer_threshold: float = 0.5
    """Refuse a question when the answerability model's probability is below this."""
    claim_threshold: float = 0.5
    """The same for a statement to check (a claim, not a question): its own threshold, because claims
    and questions are calibrated differently (chosen on held-out SciFact train claims)."""
    paper_threshold: float = 0.5
    """A further paper joins a "which papers" answer when the paper model gives it at least this."""
    second_ratio: float = 0.9
    """A second sentence of the answering paper is added when it scores this share of the best."""
    quantity_ratio: float = 0.3
    """A quantity question prefers a sentence with the number next to the asked-for words if it scores
    this share of the best."""
    max_papers: int = 5
    """Papers whose sentences are candidates."""


@dataclass(frozen=True)
class FittedModel:
    sentence: LogReg
    answerable: LogReg
    paper: LogReg
    decisions: Decisions
    meta: dict[str, Any]
    claim_sentence: LogReg | None = None
    """Sentence scorer for statements to check (claims), fitted on SciFact train claims alone; None: ``sentence``."""
    claim_answerable: LogReg | None = None
    """Answerability for claims, fitted on SciFact train claims alone; None: ``answerable``."""

    def sentence_for(self, view: QuestionView) -> LogReg:
        return self.claim_sentence if view.claim and self.claim_sentence is not None else self.sentence

    def answerable_for(self, view: QuestionView) -> LogReg:
        return self.claim_answerable if view.claim and self.claim_answerable is not None else self.answerable

    def to_dict(self) -> dict[str, Any]:
        d = {"sentence": self.sentence.to_dict(), "answerable": self.answerable.to_dict(),
             "paper": self.paper.to_dict(), "decisions": asdict(self.decisions),
             "meta": json.loads(json.dumps(self.meta))}
        if self.claim_sentence is not None and self.claim_answerable is not None:
            d["claims"] = {"sentence": self.claim_sentence.to_dict(), "answerable": self.claim_answerable.to_dict()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FittedModel:
        if "sentence" in d and "paper" not in d:
            raise AssistantError(f"fitted model has no paper model (written by an older version); re-run {REFIT}")
        claims = d.get("claims")
        return cls(LogReg.from_dict(d["sentence"], SENTENCE_FEATURES, REFIT),
                   LogReg.from_dict(d["answerable"], QUESTION_FEATURES, REFIT),
                   LogReg.from_dict(d["paper"], PAPER_FEATURES, REFIT), Decisions(**d["decisions"]), d.get("meta", {}),
                   LogReg.from_dict(claims["sentence"], SENTENCE_FEATURES, REFIT) if claims else None,
                   LogReg.from_dict(claims["answerable"], QUESTION_FEATURES, REFIT) if claims else None)


M = TypeVar("M")


def shipped_file(name: str, parse: Callable[[dict[str, Any]], M]) -> M:
    """A model file shipped in the package (``answering/models/<name>``), parsed by ``parse``."""
    text = resources.files("assistant.answering.models").joinpath(name).read_text(encoding="utf-8")
    return parse(json.loads(text))


def model_file(path: Path, parse: Callable[[dict[str, Any]], M], kind: str, refit: str) -> M:
    """A model file written by a fitting script, parsed by ``parse``; a bad one is a one-line error
    naming it (``kind``: which model, ``refit``: the command that rebuilds it, for the message)."""
    article = "an" if kind[:1] in "aeiou" else "a"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise TypeError(f"the file holds a JSON {type(data).__name__}, not an object")
        return parse(data)
    except OSError as exc:
        raise AssistantError(f"{path}: cannot read the {kind} model file ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise AssistantError(f"{path}: not {article} {kind} model file ({type(exc).__name__}: {exc}); "
                             f"re-run {refit}") from None
    except AssistantError as exc:
        raise AssistantError(f"{path}: {exc}") from None


@lru_cache(maxsize=1)
def shipped_model() -> FittedModel:
    """The weights shipped in the package (read once per process)."""
    return shipped_file(MODEL_FILE, FittedModel.from_dict)


def load_model(path: Path) -> FittedModel:
    """A model file written by the fitting script; a bad one is a one-line error naming it."""
    return model_file(path, FittedModel.from_dict, "extractive", REFIT)


def configured_model(settings: Settings) -> FittedModel:
    """The model ``extractive.model_file`` names, else the shipped one (the offline backend and the LLM
    path's evidence scoring read the same)."""
    path = settings.extractive.model_file
    return load_model(Path(path).expanduser()) if path else shipped_model()


@dataclass
class Composed:
    text: str
    refused: bool
    reason: str
    picked: list[Candidate]
    checks: dict[str, Any]


def refusal(reason: str, **checks: Any) -> Composed:
    return Composed(REFUSAL, True, reason, [], {"answer_shape": "refused", **checks})


def score(model: FittedModel, view: QuestionView, sources: Sequence[Source], chunk_sims: dict[str, float] | None,
          sentence_sims: dict[tuple[str, int, int], float] | None = None) -> list[Candidate]:
    """Candidates of the first papers with their fitted answer probabilities."""
    cands = candidates(view, sources, chunk_sims, model.decisions.max_papers, sentence_sims)
    lr = model.sentence_for(view)
    for c in cands:
        c.score = lr.prob(c.features)
    return cands


def named_pool(view: QuestionView, cands: list[Candidate]) -> list[Candidate] | None:
    """A detail about a named method comes only from the papers naming the most of the question's
    rare names; None (refuse) when a name is in no indexed paper at all.

    When the names are indexed but no retrieved paper has them, every candidate stays and the
    answerability model decides (its ``rare_share_missing`` feature): a hard refusal here refused
    31 of 501 answerable SciFact train claims (abbreviations the abstract spells out, a name like
    "interleukin" the index holds rarely) against 8 of 299 claims without evidence.
    Lists and comparisons keep every candidate: they name several papers on purpose."""
    if not view.rare or view.multi or view.compare:
        return cands
    if view.unknown:
        return None
    counts = [sum(t in toks or t in view.titles[i] for t in view.rare) for i, toks in enumerate(view.paper_tokens)]
    most = max(counts, default=0)
    if most == 0:
        return cands
    return [c for c in cands if counts[c.source_index] == most]


def defining_sentences(view: QuestionView, ranked: list[Candidate]) -> list[Candidate]:
    """For "what is X": sentences (best first) that introduce something ("we propose", "called",
    "is a": ``INTRODUCES``) and carry every content word of the question, i.e. X itself.

    The labelled questions hold no definitional ones, so the fitted models never saw one (its
    sentence feature ``q_what_is_x_defines`` is always 0 there and its answerability is low for
    one-word questions): such a sentence is the answer by construction, whatever the model says."""
    terms = set(view.tokens)
    return [c for c in ranked if terms <= c.tokens and INTRODUCES.search(c.text)] if terms else []


def compose(model: FittedModel, view: QuestionView | None, sources: Sequence[Source],
            cands: list[Candidate], decisions: Decisions | None = None) -> Composed:
    """Refuse (with the reason) or pick the sentences the question's shape asks for."""
    d = decisions or model.decisions
    if not sources:
        return refusal("nothing retrieved")
    if view is None:
        return refusal("the question has no content words")
    if not cands:
        return refusal("the retrieved papers have no sentences")
    pool = named_pool(view, cands)
    if pool is None:
        return refusal(f"no indexed paper mentions {', '.join(view.unknown)}")
    named = ", ".join(view.rare) if pool is not cands else ""
    if not view.claim and (missing := near_miss(view.question, sources)):
        return refusal(describe(missing), near_miss=True)
    qf = question_features(view, pool, sources)
    p_answer = model.answerable_for(view).prob(qf)
    checks: dict[str, Any] = {"answerability": round(p_answer, 4)}
    threshold = d.claim_threshold if view.claim else d.answer_threshold
    if view.claim:
        checks["checked_as"] = "claim"
    ranked = sorted(pool, key=lambda c: (-c.score, c.source_index, c.start))
    best = ranked[0]
    defining = defining_sentences(view, ranked) if view.what_is else []
    if defining and p_answer < threshold:
        checks["defined_in_abstract"] = True
    elif p_answer < threshold:
        why = (f"answerability {p_answer:.2f} < {threshold:.2f} "
               f"(best sentence {best.score:.2f}")
        if view.quantity and not any(c.number_near for c in ranked[:10]):
            why += ", no candidate states a number next to the asked-for words"
        return refusal(why + ")", **checks)
    picked: list[Candidate]
    if view.compare and view.rare:
        shape = "comparison"
        picked = [best]
        for t in view.rare:
            if len(picked) >= MAX_ANSWER_PAPERS:
                break
            used = {c.source_index for c in picked}
            if any(t in view.titles[c.source_index] or t in c.tokens for c in picked):
                continue
            extra = next((c for c in ranked if c.source_index not in used
                          and (t in c.tokens or t in view.titles[c.source_index])), None)
            if extra is not None:
                picked.append(extra)
    elif view.multi or view.compare:
        shape = "multi"
        # The best sentence's paper, then every paper the paper model says answers it, most likely first.
        p_paper = [model.paper.prob(row) for row in paper_features(view, pool, sources)]
        checks["paper_probabilities"] = [round(p, 4) for p in p_paper]
        order = [best.source_index, *sorted((i for i in range(len(p_paper)) if i != best.source_index
                                             and p_paper[i] >= d.paper_threshold), key=lambda i: (-p_paper[i], i))]
        top: dict[int, Candidate] = {}
        for c in ranked:
            top.setdefault(c.source_index, c)
        picked = [top[i] for i in order if i in top][:MAX_ANSWER_PAPERS]
    elif view.quantity:
        shape = "quantity"
        stated = [c for c in ranked if c.number_near and c.score >= d.quantity_ratio * best.score]
        picked = [stated[0] if stated else best]
    elif defining:
        shape = "definition"
        picked = [defining[0]]
    else:
        shape = "definition" if view.what_is else "single"
        picked = [best]
        second = next((c for c in ranked[1:] if c.source_index == best.source_index), None)
        if second is not None and second.score >= d.second_ratio * best.score:
            picked.append(second)
    checks["answer_shape"] = shape
    if named:
        checks["named"] = named
    # Papers in order of first pick, each paper's best sentence first: the citation checker quotes
    # a paper by the first sentence that cites it, and that should be the answering one.
    order = list(dict.fromkeys(p.source_index for p in picked))
    picked.sort(key=lambda p: (order.index(p.source_index), -p.score, p.start))
    # The abstract's own "[5]" stays text, never a citation of source 5.
    text = " ".join(cited_sentence(p.text, p.source_index + 1) for p in picked)
    return Composed(text, False, "", picked, checks)


def answer(question: str, sources: Sequence[Source], idf: Callable[[list[str]], dict[str, float]],
           chunk_sims: dict[str, float] | None = None, model: FittedModel | None = None,
           sentence_sims: dict[tuple[str, int, int], float] | None = None) -> Composed:
    m = model or shipped_model()
    view = make_view(question, idf)
    cands = score(m, view, sources, chunk_sims, sentence_sims) if view is not None and sources else []
    return compose(m, view, sources, cands)


class FittedAnswerer:
    """Offline and deterministic: quotes abstract sentences chosen by the fitted models."""

    name = "extractive"
    streams = False

    def __init__(self, settings: Settings) -> None:
        self.model = configured_model(settings)

    def label(self) -> str:
        return self.name

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft:
        res = answer(question, sources, context.idf, context.chunk_sims, self.model, context.sentence_sims)
        return Draft(res.text, res.reason, res.checks)

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        return None


def register_backends(registry: ModuleType) -> None:
    registry.answerers.register("extractive", FittedAnswerer,
                                description="offline (default): sentences chosen and refusals decided by fitted models")


