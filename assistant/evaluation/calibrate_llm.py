"""``assistant eval calibrate-llm``: fit a model's profile on one question split, choose on another.

The model answers every question of both splits once (replies are kept in a replay file beside the
profile, so a re-run or another variant never asks it twice). On the fit split a logistic model
learns how to combine the evidence check's answerability with the model's own verdict
(``answering.calibration.DECISION_FEATURES``); on the validation split the regularisation and
the threshold are chosen (balanced refusal accuracy: answerable questions answered, unanswerable
ones refused), then the copy rule for figures (the one stating most reference numbers while
citation precision stays at or above 0.95). The validation figures of the chosen profile are written
into it. Nothing is chosen on the split it was fitted on, and no held-out split is read.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..answering.calibration import DECISION_FEATURES, Evidence, Profile, Signals, find_profile, slug
from ..answering.fitted import LogReg
from ..errors import InputError
from .questions import Question, load_questions

L2_GRID = (0.3, 1.0, 3.0, 10.0)
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(2, 19))
COPY_RULES = ("quantity", "off", "all")
"""In order of preference when they tie on validation: figures copied where the question asks for one first."""
MIN_PRECISION = 0.95


class ReplayClient:
    """A chat client whose replies are stored by request (model, messages, format, length) in a
    JSON-lines file and read back from it: calibration variants re-read the model's answers."""

    def __init__(self, client: Any, path: Path) -> None:
        self.client = client
        self.path = path
        self.store: dict[str, dict[str, Any]] = {}
        self.asked = 0
        self.replayed = 0
        self.last_usage: dict[str, Any] | None = None
        self.last_finish_reason: str | None = None
        if path.exists():
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                try:
                    rec = json.loads(line)
                    self.store[rec["key"]] = rec
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise InputError(f"{path}:{n}: not a stored reply; delete the file to ask the model again") \
                        from None

    @property
    def model_name(self) -> str:
        return str(getattr(self.client, "model_name", ""))

    def context_tokens(self) -> int | None:
        return self.client.context_tokens() if hasattr(self.client, "context_tokens") else None

    def complete(self, messages: list[dict[str, Any]], *, stream: bool = False,
                 on_token: Callable[[str], None] | None = None, max_tokens: int | None = None,
                 json_mode: bool = False, response_format: dict[str, Any] | None = None) -> str:
        key = hashlib.sha256(json.dumps([self.model_name, messages, max_tokens, json_mode, response_format],
                                        sort_keys=True).encode()).hexdigest()
        rec = self.store.get(key)
        if rec is None:
            text = self.client.complete(messages, stream=stream, on_token=on_token, max_tokens=max_tokens,
                                        json_mode=json_mode, response_format=response_format)
            rec = {"key": key, "text": text, "usage": getattr(self.client, "last_usage", None),
                   "finish": getattr(self.client, "last_finish_reason", None)}
            self.store[key] = rec
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            self.asked += 1
        else:
            self.replayed += 1
            if on_token is not None and rec["text"]:
                on_token(rec["text"])
        self.last_usage = rec.get("usage")
        self.last_finish_reason = rec.get("finish")
        return str(rec["text"])


@dataclass
class Calibration:
    profile: Profile
    path: Path
    validation: dict[str, Any]
    """Summary of the chosen profile on the validation split (the eval harness's, offline judge)."""
    choices: list[dict[str, Any]] = field(default_factory=list)
    """Every variant tried on validation with its figures (what the choice was made from)."""
    asked: int = 0
    replayed: int = 0


def refusal_balance(ps: Sequence[float | None], labels: Sequence[bool], threshold: float) -> float:
    """Mean of (answerable answered) and (unanswerable refused); p None = refused before the model."""
    ans = [p is not None and p >= threshold for p, a in zip(ps, labels, strict=True) if a]
    una = [p is None or p < threshold for p, a in zip(ps, labels, strict=True) if not a]
    parts = [sum(ans) / len(ans)] if ans else []
    parts += [sum(una) / len(una)] if una else []
    return sum(parts) / len(parts) if parts else 0.0


def fit_decision(rows: Sequence[tuple[Signals, bool]], l2: float) -> LogReg:
    """The combination fitted on (signals, question is answerable) rows, the classes weighted equally."""
    import numpy as np

    from ..answering.fit import fit_logreg

    x = np.array([s.vector() for s, _ in rows], dtype=float)
    y = np.array([1.0 if a else 0.0 for _, a in rows])
    pos, neg = max(1.0, float(y.sum())), max(1.0, float(len(y) - y.sum()))
    w = np.where(y > 0, len(y) / (2 * pos), len(y) / (2 * neg))
    return fit_logreg(x, y, w, l2, DECISION_FEATURES)


def _signals(row: dict[str, Any]) -> Signals | None:
    """The decision signals the openai backend wrote into an answer's checks (None: refused before
    the model was asked, a near miss)."""
    checks = row.get("llm_checks") or {}
    sig = checks.get("signals")
    return Signals.from_dict(sig) if sig else None


def calibrate(assistant: Any, fit: str | Path | Sequence[Question], validation: str | Path | Sequence[Question], *,
              out: Path | None = None, evidence: Evidence | None = None,
              progress: Callable[[str], None] | None = None) -> Calibration:
    """Fit and choose a profile for ``assistant.settings.llm.model`` (the openai backend).

    ``evidence`` sets the budget the model is calibrated with (default: the profile it would use
    today). Writes the profile to ``out`` (default ``<home>/profiles/<model>.json``, which ``ask``
    then loads) and the replies to ``<out>.replies.jsonl``."""
    from ..api import Assistant
    from .runner import run_eval

    settings = assistant.settings
    model = settings.llm.model
    fit_q = load_questions(fit) if isinstance(fit, (str, Path)) else list(fit)
    val_q = load_questions(validation) if isinstance(validation, (str, Path)) else list(validation)
    for name, qs in (("fit", fit_q), ("validation", val_q)):
        if not any(q.answerable for q in qs) or all(q.answerable for q in qs):
            raise InputError(f"the {name} questions need both answerable and unanswerable ones to calibrate refusals")
    out = out or settings.home / "profiles" / f"{slug(model)}.json"
    base = find_profile(model, "", settings.home)
    ev = evidence or base.evidence
    if not base.matched or evidence is not None:
        base = replace(base, evidence=ev)
    client = ReplayClient(assistant.answerer("openai").client, out.with_name(out.stem + ".replies.jsonl"))
    say = progress or (lambda _msg: None)
    tmpdir = Path(tempfile.mkdtemp(prefix="calibrate-llm-"))

    def run(profile: Profile, questions: Sequence[Question], label: str) -> Any:
        path = tmpdir / "profile.json"
        profile.write(path)
        a = Assistant(settings=settings.with_(llm="openai", llm_profile=str(path)))
        a.auto_sample = False
        a.answerer("openai").client = client
        recorder = _Recorder(a)
        say(f"{label}: {len(questions)} questions")
        report = run_eval(list(questions), recorder, judge="offline", progress=False)
        for r in report.rows:
            r["llm_checks"] = recorder.checks.get(r["question"], {})
        return report

    collect = Profile(model, ev, None, 0.5, "off", base.aliases, {}, matched=True)
    fit_rows = run(collect, fit_q, "fit split (the model answers)").rows
    val_rows = run(collect, val_q, "validation split (the model answers)").rows
    train = [(s, bool(r["answerable"])) for r in fit_rows if (s := _signals(r)) is not None]
    if len({a for _, a in train}) < 2:
        raise InputError("the fit split left too few questions for the model to decide on (near misses aside)")
    labels = [bool(r["answerable"]) for r in val_rows]
    sig_val = [_signals(r) for r in val_rows]
    choices: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for l2 in L2_GRID:
        lr = fit_decision(train, l2)
        ps = [lr.prob(s.vector()) if s is not None else None for s in sig_val]
        for t in THRESHOLDS:
            bal = round(refusal_balance(ps, labels, t), 4)
            choices.append({"l2": l2, "threshold": t, "validation_refusal_balance": bal})
            # Ties: the middle regularisation, then the threshold nearest 0.5 (the least extreme).
            key = (bal, -abs(l2 - 1.0), -abs(t - 0.5))
            if best is None or key > best["key"]:
                best = {"key": key, "l2": l2, "threshold": t, "model": lr}
    assert best is not None
    chosen_lr, chosen_t = best["model"], best["threshold"]
    summaries: dict[str, dict[str, Any]] = {}
    for rule in COPY_RULES:
        prof = Profile(model, ev, chosen_lr, chosen_t, rule, base.aliases, {}, matched=True)
        summaries[rule] = run(prof, val_q, f"validation, copy rule {rule}").summary
        choices.append({"copy_numbers": rule, **{k: summaries[rule].get(k) for k in (
            "gold_numbers", "content_recall", "correctness_f1", "citation_precision", "false_refusal_rate",
            "refusal_accuracy")}})

    def merit(rule: str) -> tuple[bool, float]:
        s = summaries[rule]
        precise = (s.get("citation_precision") or 0.0) >= MIN_PRECISION
        return precise, (s.get("gold_numbers") or 0.0) + (s.get("content_recall") or 0.0)

    rule = max(COPY_RULES, key=merit)
    meta = {"fit": _describe(fit, fit_q), "validation": _describe(validation, val_q),
            "chosen_on": "validation", "decision_l2": best["l2"],
            "validation_summary": {k: summaries[rule].get(k) for k in (
                "false_refusal_rate", "refusal_accuracy", "gold_numbers", "content_recall", "correctness_f1",
                "citation_precision", "latency_p50_ms")}}
    profile = Profile(model, ev, chosen_lr, chosen_t, rule, base.aliases if base.matched else (), meta,
                      matched=True)
    profile.write(out)
    return Calibration(profile, out, summaries[rule], choices, client.asked, client.replayed)


def _describe(src: Any, qs: Sequence[Question]) -> dict[str, Any]:
    text = "\n".join(q.qid for q in qs)
    name = Path(src).name if isinstance(src, (str, Path)) else "(questions)"
    return {"file": name, "questions": len(qs), "qids_sha256": hashlib.sha256(text.encode()).hexdigest()[:16]}


class _Recorder:
    """The eval runner's view of an Assistant that also keeps each answer's checks by question."""

    def __init__(self, assistant: Any) -> None:
        self.a = assistant
        self.settings = assistant.settings
        self.checks: dict[str, dict[str, Any]] = {}

    def get_paper(self, paper_id: str) -> Any:
        return self.a.get_paper(paper_id)

    def ask(self, question: str) -> Any:
        ans = self.a.ask(question)
        self.checks[question] = dict(ans.checks or {})
        return ans
