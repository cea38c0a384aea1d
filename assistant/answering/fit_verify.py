"""Refit the claim-verification label model: ``python -m assistant.answering.fit_verify [--check]``.

Data: SciFact TRAIN claims only (``claims.jsonl`` split train), each asked over the 5,183 SciFact
abstracts exactly as ``Assistant.verify`` asks (same retrieval, exact dense search as the answer
models' fitting script, same cached home). Per retrieved paper (first 5): ``evidence`` = the paper is
one of the claim's evidence abstracts; ``contradict`` (evidence papers only) = its gold label is
CONTRADICT. The claim sentence scorer that ranks the rationale sentences is the shipped answer model's
(also fitted on SciFact train claims).

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
from ..evaluation.scifact_metrics import (
    MAX_ABSTRACT_SENTS,
    GoldAbstract,
    gold_from_claims,
    scifact_metrics,
    sentence_indices,
    sentence_spans,
)
from .fit import CACHE, REPO, Asker, _home, _settings, compare_model_text, fit_logreg
from .stance import (
    EVIDENCE_FEATURES,
    NEI,
    STANCE_FEATURES,
    VERIFY_MODEL_FILE,
    ClaimEvidence,
    VerifyDecisions,
    VerifyModel,
    claim_evidence,
    label_papers,
    rationale,
)

OUT = Path(__file__).resolve().parent / "models" / VERIFY_MODEL_FILE
SCIFACT = REPO.parent / "shared" / "scifact"
FOLDS = 4
L2_GRID = (0.1, 1.0, 10.0)
EVIDENCE_THRESHOLDS = tuple(round(0.2 + 0.05 * i, 2) for i in range(16))
CONTRADICT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
RATIOS = (1.01, 0.9, 0.7, 0.5, 0.3, 0.0)
"""Fewest sentences first: on a tie the more precise rationale wins."""
MAX_VERDICT_PAPERS = (1, 2, 3)
MAX_PAPERS = VerifyDecisions().max_papers


@dataclass
class ClaimCase:
    """One train claim's labelled evidence."""

    claim_id: str
    evidence: ClaimEvidence
    doc_ids: list[str]
    """Paper id of each ``evidence.papers`` entry."""
    spans: list[list[tuple[int, int] | None]]
    """SciFact sentence spans of each paper's abstract (to score our sentences by SciFact's indices)."""


def predictions(cases: Sequence[ClaimCase], model: VerifyModel, decisions: VerifyDecisions,
                probs: dict[str, list[tuple[float, float]]] | None = None) -> dict[str, dict[str, dict[str, Any]]]:
    """SciFact-format predictions of ``cases`` (NEI papers left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases:
        labels = label_papers(model, case.evidence, decisions, probs[case.claim_id] if probs else None)
        pos = {p.source_index: j for j, p in enumerate(case.evidence.papers)}
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
        raise SystemExit(f"error: SciFact not found in {scifact} (--scifact DIR)")
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
    cases = []
    for c in claims:
        res = asker.memo.get(c["claim"])
        if res is None:
            res = asker.memo[c["claim"]] = asker.retriever.retrieve(c["claim"])
        ev = claim_evidence(c["claim"], res.sources, asker.idf, res.chunk_sims, res.sentence_sims, MAX_PAPERS)
        ids = [res.sources[p.source_index].paper.paper_id for p in ev.papers]
        spans = [sentence_spans(res.sources[p.source_index].paper.abstract, docs[pid]["sentences"])
                 for p, pid in zip(ev.papers, ids, strict=True)]
        cases.append(ClaimCase(str(c["id"]), ev, ids, spans))
    if retrieval_cache:
        retrieval_cache.write_bytes(pickle.dumps(asker.memo))
    log(f"{len(cases)} SciFact train claims retrieved and scored ({time.perf_counter() - t:.0f} s)")
    return cases, gold_from_claims(claims)


def training_rows(cases: Sequence[ClaimCase], gold: dict[str, dict[str, GoldAbstract]]) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(evidence x, y, claim index) and (stance x, y, claim index) over every considered paper."""
    ex, ey, eg, sx, sy, sg = [], [], [], [], [], []
    for k, case in enumerate(cases):
        g = gold[case.claim_id]
        for p, pid in zip(case.evidence.papers, case.doc_ids, strict=True):
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
        for j, (p, pid) in enumerate(zip(case.evidence.papers, case.doc_ids, strict=True)):
            ok: dict[float, bool] = {}
            for r in RATIOS:
                sents: list[int] = []
                for c in rationale(p.ranked, r):
                    sents.extend(i for i in sentence_indices(c.start, c.end, case.spans[j]) if i not in sents)
                ok[r] = pid in g and any(s <= set(sents[:MAX_ABSTRACT_SENTS]) for s in g[pid].rationales)
            rows.append((pid in g, g[pid].label if pid in g else "", ok))
        out.append(rows)
    return out


def fast_rationalized_f1(cases: Sequence[ClaimCase], hits: list[list[tuple[bool, str, dict[float, bool]]]],
                         probs: dict[str, list[tuple[float, float]]], relevant: int, d: VerifyDecisions) -> float:
    """Abstract Label+Rationale F1 of ``label_papers`` with ``d`` (the same decisions, counted directly)."""
    retrieved = correct = 0
    for case, rows in zip(cases, hits, strict=True):
        pr = probs[case.claim_id]
        order = sorted(range(len(pr)), key=lambda j: (-pr[j][0], case.evidence.papers[j].source_index))
        kept = [j for j in order if pr[j][0] >= d.evidence_threshold][: d.max_verdict_papers]
        retrieved += len(kept)
        for j in kept:
            is_gold, label, ok = rows[j]
            pred = "CONTRADICT" if pr[j][1] >= d.contradict_threshold else "SUPPORT"
            correct += is_gold and pred == label and ok[d.rationale_ratio]
    p = correct / retrieved if retrieved else 0.0
    r = correct / relevant if relevant else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


def choose(cases: list[ClaimCase], gold: dict[str, dict[str, GoldAbstract]], log: Any) -> tuple[VerifyModel, dict]:
    """Cross-validated choice of regularisation and decisions, then the models refitted on all train claims."""
    rows = training_rows(cases, gold)
    hits = rationale_hits(cases, gold)
    relevant = sum(len(g) for g in gold.values())
    eg, sg = rows[2], rows[5]
    fold = np.arange(len(cases)) % FOLDS
    best: tuple[float, float, float, VerifyDecisions, dict[str, Any]] | None = None
    for l2_e, l2_s in itertools.product(L2_GRID, L2_GRID):
        probs: dict[str, list[tuple[float, float]]] = {}
        for k in range(FOLDS):
            ev, st = fit_pair(rows, fold[eg] != k, fold[sg] != k, l2_e, l2_s)
            for case in (c for i, c in enumerate(cases) if fold[i] == k):
                probs[case.claim_id] = [(ev.prob(p.evidence_x), st.prob(p.stance_x)) for p in case.evidence.papers]
        trial = VerifyModel(ev, st, VerifyDecisions())
        for te, tc, ratio, mp in itertools.product(EVIDENCE_THRESHOLDS, CONTRADICT_THRESHOLDS, RATIOS,
                                                   MAX_VERDICT_PAPERS):
            d = VerifyDecisions(te, tc, ratio, mp, MAX_PAPERS)
            f1 = fast_rationalized_f1(cases, hits, probs, relevant, d)
            if best is None or f1 > best[0] + 1e-12:
                # The official counting on the same predictions (it must agree with the fast count).
                m = scifact_metrics(gold, predictions(cases, trial, d, probs))
                assert abs(m["abstract_rationalized"]["f1"] - f1) < 1e-9, (m, f1)
                best = (f1, l2_e, l2_s, d, m)
        log(f"l2 {l2_e}/{l2_s}: best so far {best[0]:.4f} (l2 {best[1]}/{best[2]}, {best[3]})")
    assert best is not None
    f1, l2_e, l2_s, d, m = best
    ev, st = fit_pair(rows, np.ones(len(eg), bool), np.ones(len(sg), bool), l2_e, l2_s)
    info = {"scifact_train_claims": len(cases), "folds": FOLDS, "l2_evidence": l2_e, "l2_contradict": l2_s,
            "evidence_rows": int(len(rows[1])), "evidence_positives": int(rows[1].sum()),
            "contradict_rows": int(len(rows[4])), "contradict_positives": int(rows[4].sum()),
            "cross_validation": {k: {kk: round(vv, 4) for kk, vv in v.items()} for k, v in m.items()}}
    return VerifyModel(ev, st, d, info), info


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
