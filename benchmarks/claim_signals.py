"""How well the claim answerability model tells claims to refuse from claims with evidence.

    python benchmarks/claim_signals.py [--embedding-match] [--json OUT]

Cross-validated on SciFact TRAIN only (SciFact dev is never read): the train claims over the whole
corpus and the train absent studies over their own index, asked exactly as the fitting script asks
them (``assistant.answering.fit``, same cached homes), in the fitting script's folds
(``fit.claim_folds``), with the shipped model's claim regularisation. Each fold's claims are scored
by claim models fitted on the other folds. Printed:

  * the AUC of the answerability probability, claims with evidence against claims without evidence
    (their cited paper is indexed but holds no evidence) and against absent studies (their papers are
    not indexed);
  * the refusals of each kind at the threshold that refuses 10% of the claims with evidence (issue 14's
    false-refusal bar), i.e. what the other bar (>= 0.80) is up against.

``--embedding-match`` adds one answerability feature: a claim-sentence match learned from the
embeddings (a logistic regression over claim*sentence and |claim-sentence|, trained on the rationale
labels of the other folds; its best score over a claim's candidate sentences), fitted beside the
shipped features, to see whether it separates the kinds better.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    p, n = np.asarray(pos, float), np.asarray(neg, float)
    greater = (p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()
    return float(greater / (len(p) * len(n)))


def at_false_refusals(pos: list[float], negs: dict[str, list[float]], rate: float = 0.10) -> dict[str, float]:
    """Refused share of each negative kind at the threshold that refuses ``rate`` of the positives."""
    thr = float(np.quantile(np.asarray(pos, float), rate))
    out = {"threshold": thr, "false_refusals": float(np.mean(np.asarray(pos) < thr))}
    out.update({k: float(np.mean(np.asarray(v) < thr)) for k, v in negs.items()})
    return out


def _vectors(exs: list[Any], cache: Path) -> dict[str, np.ndarray]:
    from assistant.answering import fit
    from assistant.index.embeddings import get_embedder

    texts = sorted({e.view.question for e in exs} | {c.text for e in exs for c in e.cands})
    emb = get_embedder(fit._settings(cache / "embed-only", cache))
    return dict(zip(texts, np.asarray(emb.embed(texts), dtype=float), strict=True))


def _pair_features(vec: dict[str, np.ndarray], ex: Any) -> np.ndarray:
    u = vec[ex.view.question]
    return np.array([np.concatenate([u * vec[c.text], np.abs(u - vec[c.text])]) for c in ex.cands])


def _probs(lr: Any, x: np.ndarray) -> np.ndarray:
    """``LogReg.prob`` for many rows at once (the match has 768 features). A scale rounded to 0 in the
    stored model (a feature with almost no spread) divides by 1 instead."""
    scale = np.asarray(lr.scale)
    z = lr.intercept + ((x - np.asarray(lr.mean)) / np.where(scale == 0, 1.0, scale)) @ np.asarray(lr.coef)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def _rows(exs: list[Any], cs: Any, match: Any, vec: dict[str, np.ndarray] | None,
          ) -> list[tuple[Any, list[float] | None]]:
    """Each example's answerability features under claim sentence scorer ``cs`` (plus the embedding
    match with ``match``); None where a rule refuses before the model is asked."""
    from assistant.answering.features import question_features
    from assistant.answering.fitted import named_pool

    got = []
    for e in exs:
        feats = None
        if e.view is not None and e.cands:
            for c in e.cands:
                c.score = cs.prob(c.features)
            chosen = named_pool(e.view, e.cands)
            if chosen is not None:
                feats = list(question_features(e.view, chosen, e.sources))
                if match is not None and vec is not None:
                    feats.append(float(_probs(match, _pair_features(vec, e)).max()))
        got.append((e, feats))
    return got


def cross_validated(claims: list[Any], absent: list[Any], l2_sent: float, l2_ans: float,
                    vec: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """qid -> out-of-fold answerability probability, shipped features ("shipped") and, with ``vec``,
    the shipped features plus the learned embedding match ("with_match")."""
    from assistant.answering import fit
    from assistant.answering.features import QUESTION_FEATURES

    pool = [*claims, *absent]
    folds = fit.claim_folds(claims, absent)
    out: dict[str, dict[str, float]] = {"shipped": {}, "with_match": {}}
    for k in range(fit.CLAIM_FOLDS):
        train = [e for e in pool if folds[e.qid] != k]
        test = [e for e in pool if folds[e.qid] == k]
        cs, ca = fit.fit_claim_models(train, l2_sent, l2_ans)
        match = None
        if vec is not None:
            with_ev = [e for e in train if e.cands and e.answerable]
            x = np.concatenate([_pair_features(vec, e) for e in with_ev])
            y = np.concatenate([np.asarray(e.labels, float) for e in with_ev])
            w = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum()))
            match = fit.fit_logreg(x, y, w, 10.0, [f"m{i}" for i in range(x.shape[1])])

        test_rows = _rows(test, cs, match, vec)
        for e, f in test_rows:
            out["shipped"][e.qid] = ca.prob(f[:len(QUESTION_FEATURES)]) if f is not None else 0.0
        if match is not None:
            train_rows = [(e, f) for e, f in _rows(train, cs, match, vec) if f is not None]
            x = np.array([f for _, f in train_rows], float)
            y = np.array([float(e.answerable) for e, _ in train_rows])
            w = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum()))
            plus = fit.fit_logreg(x, y, w, l2_ans, [*QUESTION_FEATURES, "embedding_match"])
            for e, f in test_rows:
                out["with_match"][e.qid] = plus.prob(f) if f is not None else 0.0
    return {k: v for k, v in out.items() if v}


def report(claims: list[Any], absent: list[Any], probs: dict[str, float]) -> dict[str, Any]:
    pos = [probs[e.qid] for e in claims if e.answerable]
    negs = {"no_evidence_refused": [probs[e.qid] for e in claims if not e.answerable],
            "absent_refused": [probs[e.qid] for e in absent]}
    return {"claims_with_evidence": len(pos), "claims_without_evidence": len(negs["no_evidence_refused"]),
            "absent_studies": len(negs["absent_refused"]),
            "auc_vs_no_evidence": auc(pos, negs["no_evidence_refused"]),
            "auc_vs_absent": auc(pos, negs["absent_refused"]),
            "at_false_refusals_0.10": at_false_refusals(pos, negs)}


def main(argv: list[str] | None = None) -> int:
    from assistant.answering import fit
    from assistant.answering.fitted import shipped_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedding-match", action="store_true", help="also try the learned embedding match")
    ap.add_argument("--scifact-train", type=int, default=800, metavar="N", help="train claims (as the fit)")
    ap.add_argument("--cache", type=Path, default=fit.CACHE, help="where indexed homes are cached")
    ap.add_argument("--json", type=Path, default=None, metavar="OUT")
    args = ap.parse_args(argv)
    sci = fit.scifact_examples(args.cache, args.scifact_train)
    claims = fit.claim_examples(sci)
    absent = fit.claim_examples(fit.absent_examples(args.cache, {e.qid for e in sci}))
    meta = shipped_model().meta
    l2s, l2a = float(meta["claims_l2_sentence"]), float(meta["claims_l2_answerable"])
    vec = _vectors([*claims, *absent], args.cache) if args.embedding_match else None
    res = {name: report(claims, absent, probs)
           for name, probs in cross_validated(claims, absent, l2s, l2a, vec).items()}
    print(f"SciFact train, {fit.CLAIM_FOLDS}-fold cross-validation, claim L2 {l2s}/{l2a}")
    for name, r in res.items():
        a = r["at_false_refusals_0.10"]
        print(f"{name:11} AUC vs no evidence {r['auc_vs_no_evidence']:.3f} ({r['claims_without_evidence']}), "
              f"vs absent {r['auc_vs_absent']:.3f} ({r['absent_studies']}); at false refusals "
              f"{a['false_refusals']:.3f}: no evidence refused {a['no_evidence_refused']:.3f}, "
              f"absent refused {a['absent_refused']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
