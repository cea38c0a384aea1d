"""How well the claim answerability model tells claims to refuse from claims with evidence.

    python benchmarks/claim_signals.py [--embedding-match] [--token-alignment] [--llm-judge N] [--json OUT]

Cross-validated on SciFact TRAIN only (SciFact dev is never read): the train claims over the whole
corpus and the train absent studies over their own index, asked exactly as the fitting script asks
them (``assistant.answering.fit``, same cached homes), in the fitting script's folds
(``fit.claim_folds``), with the shipped model's claim regularisation. Each fold's claims are scored
by claim models fitted on the other folds. Printed:

  * the AUC of the answerability probability, claims with evidence against claims without evidence
    (their cited paper is indexed but holds no evidence) and against absent studies (their papers are
    not indexed);
  * the refusals of each kind at the threshold that refuses 10% of the claims with evidence (issue 14's
    false-refusal bar), i.e. what the other bar (>= 0.80) is up against. Meeting both takes an AUC of
    about 0.93 (two equal-variance normals: z(0.90) + z(0.80) = 2.12 standard deviations apart).

Trials, each fitted beside the shipped features in the same folds, to see whether a signal the
shipped features lack separates the kinds better:

``--embedding-match``: a claim-sentence match learned from the pooled embeddings (a logistic
regression over claim*sentence and |claim-sentence|, trained on the rationale labels of the other
folds; its best score over a claim's candidate sentences).

``--token-alignment``: late interaction over the shipped MiniLM's token vectors (``TokenAligner``):
how well each content word of the claim is matched by a word of one of its 5 best sentences.

``--llm-judge N``: the LLM of the llm settings (any OpenAI-compatible server: OPENAI_BASE_URL,
ASSISTANT_LLM_MODEL) is shown a claim and the 3 sentences its fold's claim scorer ranks first
(``prompts/judge_claim_evidence.txt``) and asked whether they support or contradict it; its score is
P(yes) / (P(yes) + P(no)) from the first token's log-probabilities. A seeded sample of N claims with
evidence, N/2 without and N/2 absent studies (seconds a claim on a CPU), with the shipped model's
out-of-fold scores on the same sample beside it.
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
    from assistant.index.embeddings import get_embedder

    texts = sorted({e.view.question for e in exs} | {c.text for e in exs for c in e.cands})
    emb = get_embedder(_fit()._settings(cache / "embed-only", cache))
    return dict(zip(texts, np.asarray(emb.embed(texts), dtype=float), strict=True))


def _fit() -> Any:
    from assistant.answering import fit

    return fit


def _pair_features(vec: dict[str, np.ndarray], ex: Any) -> np.ndarray:
    u = vec[ex.view.question]
    return np.array([np.concatenate([u * vec[c.text], np.abs(u - vec[c.text])]) for c in ex.cands])


def _probs(lr: Any, x: np.ndarray) -> np.ndarray:
    """``LogReg.prob`` for many rows at once (the match has 768 features). A scale rounded to 0 in the
    stored model (a feature with almost no spread) divides by 1 instead."""
    scale = np.asarray(lr.scale)
    z = lr.intercept + ((x - np.asarray(lr.mean)) / np.where(scale == 0, 1.0, scale)) @ np.asarray(lr.coef)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


class TokenAligner:
    """Late interaction over MiniLM's token vectors (the shipped embedder, before pooling): how well
    each content token of the claim is matched by some token of an evidence sentence, the signal a
    ColBERT-style reader would add to the pooled vectors' single cosine."""

    FEATURES = ("align_mean", "align_q10", "align_min", "align_back")
    TOP = 5
    """Candidate sentences looked at (best first by the claim sentence scorer)."""

    def __init__(self, embedder: Any) -> None:
        self.inner = getattr(embedder, "inner", embedder)
        """The ONNX encoder (under the embedding cache, which holds pooled vectors only)."""
        self.memo: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def tokens(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each text's unit token vectors (no [CLS]/[SEP]/padding) and which of them are content."""
        from assistant.text import content_tokens

        need = [t for t in dict.fromkeys(texts) if t not in self.memo]
        for i in range(0, len(need), 32):
            batch = need[i:i + 32]
            encs = self.inner.tokenizer.encode_batch(batch)
            ids = np.asarray([e.ids for e in encs], np.int64)
            mask = np.asarray([e.attention_mask for e in encs], np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inner._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.inner.session.run(None, feed)[0]
            for j, (text, enc) in enumerate(zip(batch, encs, strict=True)):
                keep = [(k, tok.startswith("##") or bool(content_tokens(text[a:b])))
                        for k, (tok, (a, b)) in enumerate(zip(enc.tokens, enc.offsets, strict=True))
                        if enc.attention_mask[k] and tok not in ("[CLS]", "[SEP]", "[PAD]")]
                v = hidden[j, [k for k, _ in keep]] if keep else np.zeros((0, hidden.shape[-1]), np.float32)
                v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
                self.memo[text] = (v, np.array([c for _, c in keep], bool))
        return [self.memo[t] for t in texts]

    def features(self, claim: str, sentences: list[str]) -> list[float]:
        """Alignment of the claim with its best-aligned sentence: the mean, 10% quantile and minimum
        over the claim's content tokens of their best cosine in the sentence, and the mean of the
        sentence tokens' best cosine in the claim."""
        (cv, content), = self.tokens([claim])
        best = [0.0] * len(self.FEATURES)
        if not sentences or not content.any():
            return best
        for sv, _ in self.tokens(sentences):
            if not len(sv):
                continue
            fwd = (cv[content] @ sv.T).max(axis=1)
            back = (sv @ cv[content].T).max(axis=1)
            f = [float(fwd.mean()), float(np.quantile(fwd, 0.1)), float(fwd.min()), float(back.mean())]
            if f[0] > best[0]:
                best = f
        return best


def _rows(exs: list[Any], cs: Any, extra: Any = None) -> list[tuple[Any, list[float] | None]]:
    """Each example's answerability features under claim sentence scorer ``cs`` (followed by
    ``extra(example)``'s, with the candidates scored); None where a rule refuses before the model is asked."""
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
                if extra is not None:
                    feats.extend(extra(e))
        got.append((e, feats))
    return got


def _weights(y: np.ndarray) -> np.ndarray:
    return np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum()))


def _embedding_match(train: list[Any], vec: dict[str, np.ndarray]) -> Any:
    """This fold's learned match: its best probability over a claim's candidate sentences."""
    fit = _fit()
    with_ev = [e for e in train if e.cands and e.answerable]
    x = np.concatenate([_pair_features(vec, e) for e in with_ev])
    y = np.concatenate([np.asarray(e.labels, float) for e in with_ev])
    match = fit.fit_logreg(x, y, _weights(y), 10.0, [f"m{i}" for i in range(x.shape[1])])
    return lambda e: [float(_probs(match, _pair_features(vec, e)).max())]


def _top_sentences(e: Any, n: int) -> list[Any]:
    return sorted(e.cands, key=lambda c: -c.score)[:n]


def cross_validated(claims: list[Any], absent: list[Any], l2_sent: float, l2_ans: float,
                    vec: dict[str, np.ndarray] | None = None, aligner: TokenAligner | None = None,
                    ) -> dict[str, dict[str, float]]:
    """qid -> out-of-fold answerability probability: shipped features ("shipped"); with ``vec``, the
    shipped features plus the learned embedding match ("with_match"); with ``aligner``, plus the
    token alignment ("with_alignment")."""
    from assistant.answering.features import QUESTION_FEATURES

    fit = _fit()
    pool = [*claims, *absent]
    folds = fit.claim_folds(claims, absent)
    out: dict[str, dict[str, float]] = {"shipped": {}, "with_match": {}, "with_alignment": {}}
    for k in range(fit.CLAIM_FOLDS):
        train = [e for e in pool if folds[e.qid] != k]
        test = [e for e in pool if folds[e.qid] == k]
        cs, ca = fit.fit_claim_models(train, l2_sent, l2_ans)
        for e, f in _rows(test, cs):
            out["shipped"][e.qid] = ca.prob(f) if f is not None else 0.0
        trials: list[tuple[str, Any, list[str]]] = []
        if vec is not None:
            trials.append(("with_match", _embedding_match(train, vec), ["embedding_match"]))
        if aligner is not None:
            trials.append(("with_alignment", lambda e: aligner.features(
                e.view.question, [c.text for c in _top_sentences(e, aligner.TOP)]), list(aligner.FEATURES)))
        for name, extra, names in trials:
            rows = [(e, f) for e, f in _rows(train, cs, extra) if f is not None]
            x = np.array([f for _, f in rows], float)
            y = np.array([float(e.answerable) for e, _ in rows])
            plus = fit.fit_logreg(x, y, _weights(y), l2_ans, [*QUESTION_FEATURES, *names])
            for e, f in _rows(test, cs, extra):
                out[name][e.qid] = plus.prob(f) if f is not None else 0.0
    return {k: v for k, v in out.items() if v}


def judge_sample(claims: list[Any], absent: list[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` claims with evidence, ``n // 2`` without and ``n // 2`` absent studies, drawn at random
    (seeded) from those with candidate sentences: the LLM judge costs seconds a claim."""
    import random

    rng = random.Random(seed)
    kinds = [([e for e in claims if e.answerable and e.cands], n),
             ([e for e in claims if not e.answerable and e.cands], n // 2),
             ([e for e in absent if e.cands], n // 2)]
    return [e for pool, k in kinds for e in rng.sample(pool, min(k, len(pool)))]


def judge_prompt(claim: str, evidence: list[tuple[str, str]]) -> list[dict[str, str]]:
    """The judge's messages (``prompts/judge_claim_evidence.txt``): evidence is (paper title, sentence)."""
    from assistant.answering.prompts import render

    ev = "\n".join(f'<evidence id="{i}">{title}: {text}</evidence>'
                   for i, (title, text) in enumerate(evidence, 1))
    return [{"role": "user", "content": render("judge_claim_evidence", evidence=ev, claim=claim)}]


def yes_probability(logprobs: dict[str, float]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from first-token log-probabilities; None when neither is among them
    (a model that opens with "The" or "<think>"): counted apart, scored 0.5."""
    yes, no = (float(np.exp(logprobs[w])) if w in logprobs else 0.0 for w in ("yes", "no"))
    return yes / (yes + no) if yes + no > 0 else None


def llm_judged(claims: list[Any], absent: list[Any], sample: list[Any], l2_sent: float, l2_ans: float,
               client: Any, top: int = 3) -> tuple[dict[str, float], list[float], int]:
    """qid -> the judge's P(yes) for each sampled claim, shown the ``top`` sentences its fold's claim
    sentence scorer ranks first (out of fold, as at run time); the seconds each verdict took; and how
    many replies were neither yes nor no (scored 0.5)."""
    import time

    fit = _fit()
    pool = [*claims, *absent]
    folds = fit.claim_folds(claims, absent)
    probs: dict[str, float] = {}
    seconds: list[float] = []
    undecided = 0
    for k in range(fit.CLAIM_FOLDS):
        test = [e for e in sample if folds[e.qid] == k]
        if not test:
            continue
        cs, _ = fit.fit_claim_models([e for e in pool if folds[e.qid] != k], l2_sent, l2_ans)
        for e in test:
            for c in e.cands:
                c.score = cs.prob(c.features)
            evidence = [(e.sources[c.source_index].paper.title, c.text) for c in _top_sentences(e, top)]
            t = time.perf_counter()
            p = yes_probability(client.first_token_logprobs(judge_prompt(e.view.question, evidence)))
            seconds.append(time.perf_counter() - t)
            undecided += p is None
            probs[e.qid] = 0.5 if p is None else p
            print(f"judged {len(probs)}/{len(sample)}", file=sys.stderr, flush=True)
    return probs, seconds, undecided


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return float(np.log(p / (1 - p)))


def combined(claims: list[Any], absent: list[Any], sample: list[Any], shipped: dict[str, float],
             judged: dict[str, float]) -> dict[str, float]:
    """qid -> out-of-fold probability of a logistic regression over the logits of the shipped model
    and the judge, fitted on the sampled claims of the other folds: what the two together separate."""
    fit = _fit()
    folds = fit.claim_folds(claims, absent)
    x = {e.qid: [_logit(shipped[e.qid]), _logit(judged[e.qid])] for e in sample}
    out: dict[str, float] = {}
    for k in range(fit.CLAIM_FOLDS):
        train = [e for e in sample if folds[e.qid] != k]
        y = np.array([float(e.answerable) for e in train])
        lr = fit.fit_logreg(np.array([x[e.qid] for e in train]), y, _weights(y), 1.0, ["shipped", "judge"])
        out.update({e.qid: lr.prob(x[e.qid]) for e in sample if folds[e.qid] == k})
    return out


def report(claims: list[Any], absent: list[Any], probs: dict[str, float]) -> dict[str, Any]:
    """The separation measures over the claims ``probs`` scores (all of them, or the judge's sample)."""
    pos = [probs[e.qid] for e in claims if e.answerable and e.qid in probs]
    negs = {"no_evidence_refused": [probs[e.qid] for e in claims if not e.answerable and e.qid in probs],
            "absent_refused": [probs[e.qid] for e in absent if e.qid in probs]}
    return {"claims_with_evidence": len(pos), "claims_without_evidence": len(negs["no_evidence_refused"]),
            "absent_studies": len(negs["absent_refused"]),
            "auc_vs_no_evidence": auc(pos, negs["no_evidence_refused"]),
            "auc_vs_absent": auc(pos, negs["absent_refused"]),
            "at_false_refusals_0.10": at_false_refusals(pos, negs)}


def main(argv: list[str] | None = None) -> int:
    from assistant.answering import fit
    from assistant.answering.fitted import shipped_model
    from assistant.errors import AssistantError

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--embedding-match", action="store_true", help="also try the learned embedding match")
    ap.add_argument("--token-alignment", action="store_true", help="also try MiniLM token-level alignment")
    ap.add_argument("--llm-judge", type=int, default=0, metavar="N",
                    help="also ask the LLM of the llm settings (OPENAI_BASE_URL, ASSISTANT_LLM_MODEL) to judge "
                         "N claims with evidence, N/2 without and N/2 absent studies")
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
    aligner = None
    if args.token_alignment:
        from assistant.index.embeddings import get_embedder

        aligner = TokenAligner(get_embedder(fit._settings(args.cache / "embed-only", args.cache)))
    oof = cross_validated(claims, absent, l2s, l2a, vec, aligner)
    res = {name: report(claims, absent, probs) for name, probs in oof.items()}
    if args.llm_judge:
        from assistant.llm import ChatClient
        from assistant.settings import Settings

        settings = Settings.load()
        sample = judge_sample(claims, absent, args.llm_judge)
        try:
            with ChatClient(settings) as client:
                judged, seconds, undecided = llm_judged(claims, absent, sample, l2s, l2a, client)
        except AssistantError as exc:
            print(f"claim_signals: {exc}", file=sys.stderr)
            return 2
        same = {e.qid: oof["shipped"][e.qid] for e in sample}
        res[f"llm_judge ({settings.llm.model})"] = {**report(claims, absent, judged),
                                                     "seconds_p50": float(np.median(seconds)),
                                                     "neither_yes_nor_no": undecided}
        res["shipped, same sample"] = report(claims, absent, same)
        res["shipped + llm_judge"] = report(claims, absent, combined(claims, absent, sample, same, judged))
        scores = {"shipped": same, "llm_judge": judged}
    print(f"SciFact train, {fit.CLAIM_FOLDS}-fold cross-validation, claim L2 {l2s}/{l2a}")
    for name, r in res.items():
        a = r["at_false_refusals_0.10"]
        print(f"{name:11} AUC vs no evidence {r['auc_vs_no_evidence']:.3f} ({r['claims_without_evidence']}), "
              f"vs absent {r['auc_vs_absent']:.3f} ({r['absent_studies']}); at false refusals "
              f"{a['false_refusals']:.3f}: no evidence refused {a['no_evidence_refused']:.3f}, "
              f"absent refused {a['absent_refused']:.3f}"
              + (f"; {r['seconds_p50']:.1f} s a claim (p50), {r['neither_yes_nor_no']} replies neither yes nor no"
                 if "seconds_p50" in r else ""))
    if args.json:
        args.json.write_text(json.dumps({**res, "scores": scores} if args.llm_judge else res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
