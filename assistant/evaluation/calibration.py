"""Calibrating the offline judge against human support labels, and measuring any judge's agreement.

The labels file (evals/calibration/support_labels.jsonl) holds rows
{"id", "sentence", "passages": [str], "label": "supported" | "unsupported", "why"}.
The offline threshold is the one that maximises accuracy on that file (ties:
higher Cohen's kappa, then the middle of the tied range); agreement is reported
as accuracy and Cohen's kappa, plus leave-one-out accuracy, which estimates how
well a threshold chosen this way does on labels it was not chosen on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .files import jsonl_records
from .judging import Judge, Passage
from .metrics import AnswerSentence, cohen_kappa
from .offline_judge import OfflineJudge, SupportResult
from .schemas import LabelRecord, validate

DEFAULT_LABELS = Path(__file__).resolve().parents[2] / "evals" / "calibration" / "support_labels.jsonl"
LABELS = ("supported", "unsupported")


@dataclass
class LabelRow:
    id: str
    sentence: str
    passages: list[str]
    supported: bool
    why: str = ""


@dataclass
class Agreement:
    n: int
    accuracy: float
    kappa: float
    confusion: dict[str, int]
    """tp/fp/tn/fn with 'supported' as the positive class."""
    undecided: int = 0
    """Rows the judge could not decide (judge errors), left out of n."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Calibration:
    mode: str
    """lexical (no embedder) or semantic (with embedder)."""
    threshold: float
    chosen: Agreement
    """Agreement at the threshold chosen on this file."""
    leave_one_out_accuracy: float
    current_threshold: float
    current: Agreement
    """Agreement at the threshold the judge ships with."""
    disagreements: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labels(path: str | Path = DEFAULT_LABELS) -> list[LabelRow]:
    rows: list[LabelRow] = []
    for n, where, d in jsonl_records(Path(path), "calibration labels"):
        rec = validate(LabelRecord, d, where, LabelRecord.MESSAGES)
        rows.append(LabelRow(str(rec.id if rec.id is not None else n), rec.sentence, list(rec.passages),
                             rec.label == "supported", rec.why))
    if not rows:
        raise InputError(f"{path}: no labelled rows")
    return rows


def agreement(truth: Sequence[bool], pred: Sequence[bool | None]) -> Agreement:
    """Accuracy and Cohen's kappa of a judge's verdicts against labels (undecided verdicts left out)."""
    pairs = [(t, p) for t, p in zip(truth, pred, strict=True) if p is not None]
    if not pairs:
        return Agreement(0, 0.0, 0.0, {"tp": 0, "fp": 0, "tn": 0, "fn": 0}, len(truth))
    t = [a for a, _ in pairs]
    p = [bool(b) for _, b in pairs]
    conf = {"tp": sum(a and b for a, b in zip(t, p, strict=True)),
            "fp": sum(b and not a for a, b in zip(t, p, strict=True)),
            "tn": sum(not a and not b for a, b in zip(t, p, strict=True)),
            "fn": sum(a and not b for a, b in zip(t, p, strict=True))}
    acc = (conf["tp"] + conf["tn"]) / len(pairs)
    return Agreement(len(pairs), acc, cohen_kappa(t, p), conf, len(truth) - len(pairs))


def _predict(results: Sequence[SupportResult], threshold: float) -> list[bool]:
    return [r.score >= threshold and not r.missing for r in results]


def choose_threshold(results: Sequence[SupportResult], truth: Sequence[bool]) -> float:
    """The accuracy-maximising threshold (midpoints between neighbouring scores); ties broken by kappa,
    then by taking the middle of the best candidates."""
    scores = sorted({round(r.score, 6) for r in results})
    candidates = [scores[0] - 1e-3] + [(a + b) / 2 for a, b in zip(scores, scores[1:], strict=False)] \
        + [scores[-1] + 1e-3]
    best: list[float] = []
    best_key = (-1.0, -2.0)
    for c in candidates:
        ag = agreement(truth, _predict(results, c))
        key = (round(ag.accuracy, 9), round(ag.kappa, 9))
        if key > best_key:
            best_key, best = key, [c]
        elif key == best_key:
            best.append(c)
    return round(best[len(best) // 2], 4)


def calibrate(rows: Sequence[LabelRow], embedder: Any = None, *, threshold: float | None = None) -> Calibration:
    """Score every labelled sentence with the offline judge, choose the threshold, report agreement."""
    kinds = {r.supported for r in rows}
    if len(rows) < 4 or len(kinds) < 2:
        # Leave-one-out needs a threshold from the others: one row gave an IndexError.
        raise InputError(f"calibration needs supported and unsupported labels, at least 4 rows in all "
                         f"(got {len(rows)}, {'both kinds' if len(kinds) == 2 else 'one kind'})")
    judge = OfflineJudge(embedder=embedder, threshold=threshold)
    results = [judge.score(r.sentence, r.passages) for r in rows]
    truth = [r.supported for r in rows]
    chosen = choose_threshold(results, truth)
    loo_hits = 0
    for i in range(len(rows)):
        rest = [x for j, x in enumerate(results) if j != i]
        t = choose_threshold(rest, [x for j, x in enumerate(truth) if j != i])
        loo_hits += _predict([results[i]], t)[0] == truth[i]
    current = _predict(results, judge.threshold)
    disagreements = [{"id": r.id, "label": "supported" if r.supported else "unsupported",
                      "judge": res.rationale(judge.threshold), "sentence": r.sentence}
                     for r, res, p in zip(rows, results, current, strict=True) if p != r.supported]
    return Calibration(mode="semantic" if embedder is not None else "lexical", threshold=chosen,
                       chosen=agreement(truth, _predict(results, chosen)),
                       leave_one_out_accuracy=loo_hits / len(rows), current_threshold=judge.threshold,
                       current=agreement(truth, current), disagreements=disagreements)


def judge_verdicts(rows: Sequence[LabelRow], judge: Judge,
                   on_verdict: Callable[[LabelRow, bool | None], None] | None = None) -> list[bool | None]:
    """Any judge's (offline or llm) verdict on each labelled sentence, through its answer path: the
    sentence cites all of its passages. ``on_verdict`` sees each as it comes (a slow LLM judge's
    partial results survive an interrupted run)."""
    verdicts: list[bool | None] = []
    for r in rows:
        markers = list(range(1, len(r.passages) + 1))
        sentence = AnswerSentence(r.sentence, r.sentence, markers)
        passages = {m: Passage(m, f"p{m}", "", text) for m, text in zip(markers, r.passages, strict=True)}
        judged = judge.judge("", [sentence], passages)
        verdicts.append(judged.sentences[0].supported if judged.sentences else None)
        if on_verdict is not None:
            on_verdict(r, verdicts[-1])
    return verdicts


def judge_agreement(rows: Sequence[LabelRow], judge: Judge) -> Agreement:
    """Agreement of any judge with the labels (see judge_verdicts)."""
    return agreement([r.supported for r in rows], judge_verdicts(rows, judge))
