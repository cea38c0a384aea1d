"""Refit the claim-verification label model: ``python -m assistant.answering.fit_verify [--check]``.

Data: SciFact TRAIN claims only (``claims.jsonl`` split train), each asked over the 5,183 SciFact
abstracts exactly as ``Assistant.verify`` asks (same retrieval, exact dense search as the answer
models' fitting script, same cached home). Per retrieved paper (first 5): ``evidence`` = the paper is
one of the claim's evidence abstracts; ``contradict`` (evidence papers only) = its gold label is
CONTRADICT; per sentence of those papers, ``sentence`` (the rationale scorer) = it covers a sentence of a
gold evidence set. The label models' features come from the rationale scorer's out-of-fold scores (fitted
on the other folds' claims), as they will on claims it never saw.

Model selection is 4-fold cross-validation over the train claims: L2 strength of each model, the
evidence and contradict thresholds, the rationale ratio and the papers kept per claim, by SciFact's
abstract-level Label+Rationale F1 of the out-of-fold predictions (``evaluation/scifact_metrics.py``).
SciFact dev is never read here. Output is rounded and written with sorted keys, so a refit writes the
shipped file byte for byte (``--check`` verifies it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..evaluation.scifact import default_dir
from ..evaluation.scifact_metrics import (
    MAX_ABSTRACT_SENTS,
    GoldAbstract,
    gold_from_claims,
    scifact_metrics,
    sentence_indices,
    sentence_spans,
)
from ..records import Source
from .features import Candidate, QuestionView
from .fit import CACHE, REPO, Asker, _home, _settings, compare_model_text, fit_logreg
from .fitted import LogReg
from .stance import (
    EVIDENCE_FEATURES,
    NEI,
    RATIONALE_FEATURES,
    STANCE_FEATURES,
    VERIFY_MODEL_FILE,
    ClaimEvidence,
    VerifyDecisions,
    VerifyModel,
    claim_candidates,
    label_papers,
    rationale,
    rationale_rows,
    score_claim,
)

OUT = Path(__file__).resolve().parent / "models" / VERIFY_MODEL_FILE
SCIFACT = default_dir(REPO)
FOLDS = 4
L2_GRID = (0.1, 1.0, 10.0)
CONTRADICT_L2_GRID = (1.0, 10.0, 100.0)
"""The contradict model has few rows (the evidence papers) for its many cues: stronger penalties."""
EVIDENCE_THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))
CONTRADICT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RATIOS = (1.01, 0.9, 0.7, 0.5, 0.3, 0.0)
"""Fewest sentences first: on a tie the more precise rationale wins."""
MAX_VERDICT_PAPERS = (1, 2, 3)
SENTENCE_L2_GRID = (1.0, 10.0, 30.0)
MAX_PAPERS = VerifyDecisions().max_papers


@dataclass
class ClaimCase:
    """One train claim's labelled evidence."""

    claim_id: str
    claim: str
    view: QuestionView | None
    cands: list[Candidate]
    """The unscored sentences of the considered papers."""
    in_rationale: list[float]
    """Per candidate: 1 when it covers a sentence of a gold evidence set of its paper."""
    rationale_x: list[list[float]]
    """Per candidate: its RATIONALE_FEATURES."""
    sources: list[Source]
    doc_ids: list[str]
    """Paper id of each considered paper (``evidence.papers`` order: by retrieval rank)."""
    spans: list[list[tuple[int, int] | None]]
    """SciFact sentence spans of each paper's abstract (to score our sentences by SciFact's indices)."""
    evidence: ClaimEvidence | None = None
    """Scored by a rationale model (out of fold while choosing)."""


def predictions(cases: Sequence[ClaimCase], model: VerifyModel, decisions: VerifyDecisions,
                probs: dict[str, list[tuple[float, float]]] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """SciFact-format predictions of ``cases`` (NEI papers left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases:
        labels = label_papers(model, _ev(case), decisions, probs[case.claim_id] if probs else None)
        pos = {p.source_index: j for j, p in enumerate(_ev(case).papers)}
        ev: dict[str, dict[str, Any]] = {}
        for lab in labels:
            if lab.label == NEI:
                continue
            j = pos[lab.source_index]
            sents: list[int] = []
            for c in lab.rationale:
                sents.extend(i for i in sentence_indices(c.start, c.end, case.spans[j]) if i not in sents)
            ev[case.doc_ids[j]] = {"label": lab.label, "sentences": sents}
        out[case.claim_id] = ev
    return out


def load_cases(scifact: Path, cache: Path, retrieval_cache: Path | None, log: Any, limit: int = 0,
               slice_others: int | None = None) -> tuple[list[ClaimCase], dict[str, dict[str, GoldAbstract]]]:
    """The train claims (the first ``limit`` when given) asked over the whole corpus, or, with
    ``slice_others``, over only the documents they cite plus that many seeded distractors (quick runs)."""
    corpus_path, claims_path = scifact / "corpus.jsonl", scifact / "claims.jsonl"
    if not corpus_path.is_file() or not claims_path.is_file():
        missing = claims_path if corpus_path.is_file() else corpus_path
        raise SystemExit(f"error: SciFact not found: no {missing} (pass --scifact DIR)")
    docs = {str(d["id"]): d for d in map(json.loads, corpus_path.read_text(encoding="utf-8").splitlines())}
    claims = [c for c in map(json.loads, claims_path.read_text(encoding="utf-8").splitlines())
              if c.get("split") == "train"]
    if limit:
        claims = claims[:limit]
    if slice_others is None:
        home = _home("scifact", corpus_path.read_bytes(), corpus_path, cache)
    else:
        wanted = {str(i) for c in claims for i in [*(c.get("cited_ids") or []), *(c.get("rationales") or {})]}
        rest = sorted(set(docs) - wanted, key=lambda x: (len(x), x))
        wanted |= set(random.Random(13).sample(rest, min(slice_others, len(rest))))
        data = "".join(json.dumps(d, ensure_ascii=False) + "\n" for i, d in docs.items() if i in wanted).encode()
        home = _home("scifact-slice", data, None, cache)
    asker = Asker(_settings(home, cache))
    if retrieval_cache and retrieval_cache.is_file():
        asker.memo.update(pickle.loads(retrieval_cache.read_bytes()))
    t = time.perf_counter()
    gold = gold_from_claims(claims)
    cases = []
    for c in claims:
        res = asker.memo.get(c["claim"])
        if res is None:
            res = asker.memo[c["claim"]] = asker.retriever.retrieve(c["claim"])
        view, cands = claim_candidates(c["claim"], res.sources, asker.idf, res.chunk_sims, res.sentence_sims,
                                       MAX_PAPERS)
        order = sorted({x.source_index for x in cands})
        ids = [res.sources[i].paper.paper_id for i in order]
        spans = [sentence_spans(res.sources[i].paper.abstract, docs[pid]["sentences"])
                 for i, pid in zip(order, ids, strict=True)]
        g = gold[str(c["id"])]
        labels = []
        for x in cands:
            j = order.index(x.source_index)
            wanted = set().union(*g[ids[j]].rationales) if ids[j] in g else set()
            labels.append(float(bool(wanted & set(sentence_indices(x.start, x.end, spans[j])))))
        cases.append(ClaimCase(str(c["id"]), c["claim"], view, cands, labels, rationale_rows(c["claim"], cands),
                               list(res.sources), ids, spans))
    if retrieval_cache:
        retrieval_cache.write_bytes(pickle.dumps(asker.memo))
    log(f"{len(cases)} SciFact train claims retrieved ({time.perf_counter() - t:.0f} s)")
    return cases, gold


def fit_sentence(cases: Sequence[ClaimCase], l2: float) -> LogReg:
    """The rationale scorer over every considered sentence of ``cases`` (classes balanced)."""
    x = np.array([row for case in cases for row in case.rationale_x], float)
    y = np.array([v for case in cases for v in case.in_rationale])
    return fit_logreg(x, y, _balanced(y), l2, RATIONALE_FEATURES)


def score_cases(cases: Sequence[ClaimCase], l2: float, folds: int | None = FOLDS) -> LogReg:
    """Score every case's sentences with a rationale model fitted on the other folds' claims (``folds``
    None: on all of them); returns the model fitted on all."""
    full = fit_sentence(cases, l2)
    for k in range(folds or 1):
        model = full if folds is None else fit_sentence([c for i, c in enumerate(cases) if i % folds != k], l2)
        for i, case in enumerate(cases):
            if folds is None or i % folds == k:
                case.evidence = score_claim(case.claim, case.view, case.cands, case.sources, model, case.rationale_x)
    return full


def training_rows(cases: Sequence[ClaimCase], gold: dict[str, dict[str, GoldAbstract]]) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(evidence x, y, claim index) and (stance x, y, claim index) over every considered paper."""
    ex, ey, eg, sx, sy, sg = [], [], [], [], [], []
    for k, case in enumerate(cases):
        g = gold[case.claim_id]
        for p, pid in zip(_ev(case).papers, case.doc_ids, strict=True):
            ex.append(p.evidence_x)
            ey.append(float(pid in g))
            eg.append(k)
            if pid in g:
                sx.append(p.stance_x)
                sy.append(float(g[pid].label == "CONTRADICT"))
                sg.append(k)
    return (np.array(ex, float), np.array(ey), np.array(eg), np.array(sx, float), np.array(sy), np.array(sg))


def _balanced(y: np.ndarray) -> np.ndarray:
    w = np.zeros(len(y))
    for label in (0, 1):
        m = y == label
        if m.any():
            w[m] = 1.0 / (2 * m.sum())
    return w


def fit_pair(rows: tuple[np.ndarray, ...], keep_e: np.ndarray, keep_s: np.ndarray, l2_e: float,
             l2_s: float) -> tuple[Any, Any]:
    ex, ey, _, sx, sy, _ = rows
    ev = fit_logreg(ex[keep_e], ey[keep_e], _balanced(ey[keep_e]), l2_e, EVIDENCE_FEATURES)
    st = fit_logreg(sx[keep_s], sy[keep_s], _balanced(sy[keep_s]), l2_s, STANCE_FEATURES)
    return ev, st


def rationale_hits(cases: Sequence[ClaimCase], gold: dict[str, dict[str, GoldAbstract]]) -> list[list[tuple[
        bool, str, dict[float, bool]]]]:
    """Per case and paper: (is an evidence paper, its gold label, ratio -> its rationale's first three
    sentences hold a gold evidence set). What the abstract Label+Rationale count needs, computed once."""
    out = []
    for case in cases:
        g = gold[case.claim_id]
        rows = []
        for j, (p, pid) in enumerate(zip(_ev(case).papers, case.doc_ids, strict=True)):
            ok: dict[float, bool] = {}
            for r in RATIOS:
                sents: list[int] = []
                for c in rationale(p.ranked, r):
                    sents.extend(i for i in sentence_indices(c.start, c.end, case.spans[j]) if i not in sents)
                ok[r] = pid in g and any(s <= set(sents[:MAX_ABSTRACT_SENTS]) for s in g[pid].rationales)
            rows.append((pid in g, g[pid].label if pid in g else "", ok))
        out.append(rows)
    return out


@dataclass
class DecisionTable:
    """Per claim, its first ``max(MAX_VERDICT_PAPERS)`` papers by evidence probability (padded with -1),
    with what the abstract Label+Rationale count needs: so every decision is a few array operations."""

    p_evidence: np.ndarray
    p_contradict: np.ndarray
    gold_support: np.ndarray
    gold_contradict: np.ndarray
    hit: dict[float, np.ndarray]
    """Rationale ratio -> the paper's rationale holds a gold evidence set."""
    relevant: int


def decision_table(cases: Sequence[ClaimCase], hits: list[list[tuple[bool, str, dict[float, bool]]]],
                   probs: dict[str, list[tuple[float, float]]], relevant: int) -> DecisionTable:
    k = max(MAX_VERDICT_PAPERS)
    shape = (len(cases), k)
    pe, pc = np.full(shape, -1.0), np.zeros(shape)
    gs, gc = np.zeros(shape, bool), np.zeros(shape, bool)
    hit = {r: np.zeros(shape, bool) for r in RATIOS}
    for i, (case, rows) in enumerate(zip(cases, hits, strict=True)):
        pr = probs[case.claim_id]
        order = sorted(range(len(pr)), key=lambda j: (-pr[j][0], _ev(case).papers[j].source_index))[:k]
        for n, j in enumerate(order):
            is_gold, label, ok = rows[j]
            pe[i, n], pc[i, n] = pr[j]
            gs[i, n], gc[i, n] = is_gold and label == "SUPPORT", is_gold and label == "CONTRADICT"
            for r in RATIOS:
                hit[r][i, n] = ok[r]
    return DecisionTable(pe, pc, gs, gc, hit, relevant)


def fast_rationalized_f1(t: DecisionTable, d: VerifyDecisions) -> float:
    """Abstract Label+Rationale F1 of ``label_papers`` with ``d`` (the same decisions, counted directly)."""
    kept = t.p_evidence >= d.evidence_threshold
    kept[:, d.max_verdict_papers:] = False
    contradict = t.p_contradict >= d.contradict_threshold
    right = np.where(contradict, t.gold_contradict, t.gold_support) & t.hit[d.rationale_ratio] & kept
    retrieved, correct = int(kept.sum()), int(right.sum())
    p = correct / retrieved if retrieved else 0.0
    r = correct / t.relevant if t.relevant else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def choose(cases: list[ClaimCase], gold: dict[str, dict[str, GoldAbstract]], log: Any) -> tuple[VerifyModel, dict]:
    """Cross-validated choice of regularisation and decisions, then the models refitted on all train claims.

    The rationale scorer's out-of-fold scores feed the label models' features (as they will on claims it
    never saw); the label models' folds are the same claims'."""
    relevant = sum(len(g) for g in gold.values())
    fold = np.arange(len(cases)) % FOLDS
    best: tuple[float, float, float, float, VerifyDecisions, dict[str, Any]] | None = None
    for l2_r in SENTENCE_L2_GRID:
        sentence = score_cases(cases, l2_r)
        rows = training_rows(cases, gold)
        hits = rationale_hits(cases, gold)
        eg, sg = rows[2], rows[5]
        for l2_e, l2_s in itertools.product(L2_GRID, CONTRADICT_L2_GRID):
            probs: dict[str, list[tuple[float, float]]] = {}
            for k in range(FOLDS):
                ev, st = fit_pair(rows, fold[eg] != k, fold[sg] != k, l2_e, l2_s)
                for case in (c for i, c in enumerate(cases) if fold[i] == k):
                    probs[case.claim_id] = [(ev.prob(p.evidence_x), st.prob(p.stance_x))
                                            for p in _ev(case).papers]
            trial = VerifyModel(sentence, ev, st, VerifyDecisions())
            table = decision_table(cases, hits, probs, relevant)
            for te, tc, ratio, mp in itertools.product(EVIDENCE_THRESHOLDS, CONTRADICT_THRESHOLDS, RATIOS,
                                                       MAX_VERDICT_PAPERS):
                d = VerifyDecisions(te, tc, ratio, mp, MAX_PAPERS)
                f1 = fast_rationalized_f1(table, d)
                if best is None or f1 > best[0] + 1e-12:
                    # The official counting on the same predictions (it must agree with the fast count).
                    m = scifact_metrics(gold, predictions(cases, trial, d, probs))
                    assert abs(m["abstract_rationalized"]["f1"] - f1) < 1e-9, (m, f1)
                    best = (f1, l2_r, l2_e, l2_s, d, m)
            log(f"l2 {l2_r}/{l2_e}/{l2_s}: best so far {best[0]:.4f} (l2 {best[1]}/{best[2]}/{best[3]}, {best[4]})")
    assert best is not None
    f1, l2_r, l2_e, l2_s, d, m = best
    score_cases(cases, l2_r)
    rows = training_rows(cases, gold)
    sentence = fit_sentence(cases, l2_r)
    ev, st = fit_pair(rows, np.ones(len(rows[2]), bool), np.ones(len(rows[5]), bool), l2_e, l2_s)
    info = {"scifact_train_claims": len(cases), "folds": FOLDS, "l2_sentence": l2_r, "l2_evidence": l2_e,
            "l2_contradict": l2_s, "sentence_rows": sum(len(c.cands) for c in cases),
            "sentence_positives": int(sum(sum(c.in_rationale) for c in cases)),
            "evidence_rows": int(len(rows[1])), "evidence_positives": int(rows[1].sum()),
            "contradict_rows": int(len(rows[4])), "contradict_positives": int(rows[4].sum()),
            "cross_validation": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in m.items()}}
    return VerifyModel(sentence, ev, st, d, info), info


def _ev(case: ClaimCase) -> ClaimEvidence:
    assert case.evidence is not None, "score_cases first"
    return case.evidence


def model_text(model: VerifyModel) -> str:
    return json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the model file goes (default: {OUT})")
    ap.add_argument("--scifact", type=Path, default=SCIFACT, help=f"SciFact directory (default: {SCIFACT})")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where indexed homes are cached")
    ap.add_argument("--retrieval-cache", type=Path, default=None, metavar="FILE",
                    help="keep retrieval results in FILE (pickle) so a refit after a feature change skips retrieval")
    ap.add_argument("--limit", type=int, default=0, help="first N train claims only (quick runs)")
    ap.add_argument("--slice", type=int, default=None, metavar="OTHERS",
                    help="index only the documents the claims cite plus OTHERS distractors (quick runs)")
    ap.add_argument("--check", action="store_true",
                    help="refit in memory and compare with --out instead of writing; exit 1 when they differ")
    args = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    t = time.perf_counter()
    try:
        cases, gold = load_cases(args.scifact, args.cache, args.retrieval_cache, log, args.limit, args.slice)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    model, info = choose(cases, gold, log)
    text = model_text(model)
    if args.check:
        diff = compare_model_text(text, args.out)
        print(f"{args.out}: {diff or 'reproduced byte for byte'} ({time.perf_counter() - t:.0f} s)")
        return 1 if diff else 0
    args.out.write_text(text, encoding="utf-8")
    log(f"wrote {args.out}: cross-validated {json.dumps(info['cross_validation'])}, "
        f"decisions {asdict(model.decisions)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
