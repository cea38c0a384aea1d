"""SciFact's official metrics (``evaluation/scifact_metrics.py``) against the official evaluator.

The expected figures were produced once by github.com/allenai/scifact's own
``verisci/evaluate/pipeline.py`` (commit 68b98a5) on the dev claims, for the oracle predictions its
pipeline makes and for the deterministic corruption of them below (flipped labels, leading wrong
sentences that push evidence past the first three, dropped and reordered sentences, extra papers,
labels on claims without evidence). Their code is not part of this project."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistant.evaluation.scifact_metrics import GoldAbstract, gold_from_claims, scifact_metrics
from tests.conftest import SCIFACT

DEV = SCIFACT / "original" / "claims_dev.jsonl"


def oracle(claims: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The official oracle pipeline's merged predictions (cited docs, gold sentences, gold label; NEI dropped)."""
    out = {}
    for c in claims:
        ev = {}
        for doc in sorted(str(d) for d in c["cited_doc_ids"]):
            sets = c["evidence"].get(doc)
            if sets:
                ev[doc] = {"sentences": [s for es in sets for s in es["sentences"]], "label": sets[0]["label"]}
        out[str(c["id"])] = ev
    return out


def perturbed(claims: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    base = oracle(claims)
    out = {}
    for c in claims:
        i, ev = c["id"], {}
        for doc, e in base[str(i)].items():
            s, lab = list(e["sentences"]), e["label"]
            if i % 5 == 0:
                lab = "CONTRADICT" if lab == "SUPPORT" else "SUPPORT"
            if i % 5 == 1:
                s = [90, 91, 92] + s
            if i % 5 == 2 and len(s) > 1:
                s = s[1:]
            if i % 3 == 0:
                s = s[::-1] + [95]
            ev[doc] = {"sentences": s, "label": lab}
        if i % 7 == 3:
            ev[str(c["cited_doc_ids"][0]) + "0"] = {"sentences": [0, 1], "label": "SUPPORT"}
        if i % 4 == 2 and not c["evidence"]:
            ev[str(c["cited_doc_ids"][0])] = {"sentences": [0], "label": "CONTRADICT"}
        out[str(i)] = ev
    return out


# verisci/evaluate/pipeline.py --gold claims_dev.jsonl on perturbed(...) (oracle(...) scored 1.0 everywhere).
OFFICIAL_PERTURBED = {
    "sentence_selection": (0.5371517027863777, 0.9480874316939891, 0.6857707509881423),
    "sentence_label": (0.4473684210526316, 0.7896174863387978, 0.5711462450592886),
    "abstract_label_only": (0.625, 0.8133971291866029, 0.7068607068607069),
    "abstract_rationalized": (0.5294117647058824, 0.6889952153110048, 0.5987525987525988),
}


@pytest.mark.skipif(not DEV.exists(), reason="../shared/scifact not present")
def test_matches_the_official_evaluator_on_dev() -> None:
    claims = [json.loads(line) for line in DEV.read_text(encoding="utf-8").splitlines()]
    gold = gold_from_claims(claims)
    for metric in scifact_metrics(gold, oracle(claims)).values():
        assert metric == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    got = scifact_metrics(gold, perturbed(claims))
    for key, (p, r, f) in OFFICIAL_PERTURBED.items():
        assert got[key] == pytest.approx({"precision": p, "recall": r, "f1": f}, abs=1e-12), key
    # The derived claims.jsonl (labels + rationales per doc) gives the same gold.
    derived = [json.loads(x) for x in (SCIFACT / "claims.jsonl").read_text(encoding="utf-8").splitlines()]
    assert gold_from_claims([c for c in derived if c["split"] == "dev"]) == gold


def test_the_documented_example() -> None:
    """doc/evaluation.md's worked example: abstract P = R = F1 = 1/2, sentence P 1/5, R 1/4, F1 2/9."""
    gold = {"52": {"11": GoldAbstract("SUPPORT", (frozenset({0, 1}), frozenset({11}))),
                   "15": GoldAbstract("SUPPORT", (frozenset({4}),))}}
    pred = {"52": {"11": {"sentences": [1, 11, 13], "label": "SUPPORT"},
                   "16": {"sentences": [18, 20], "label": "CONTRADICT"}}}
    m = scifact_metrics(gold, pred)
    assert m["abstract_rationalized"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert m["sentence_selection"] == pytest.approx({"precision": 1 / 5, "recall": 1 / 4, "f1": 2 / 9})
    # Only the first three sentences count at abstract level; all count at sentence level.
    late = {"52": {"11": {"sentences": [1, 2, 3, 11], "label": "SUPPORT"}}}
    m = scifact_metrics(gold, late)
    assert m["abstract_rationalized"]["precision"] == 0.0
    assert m["abstract_label_only"]["precision"] == 1.0
    assert m["sentence_selection"]["precision"] == 0.25
    # A wrong label keeps selection credit and loses the label credit; NEI entries are not predictions.
    wrong = {"52": {"11": {"sentences": [11], "label": "CONTRADICT"}, "15": {"sentences": [4],
                                                                        "label": "NOT_ENOUGH_INFO"}}}
    m = scifact_metrics(gold, wrong)
    assert m["sentence_selection"]["precision"] == 1.0 and m["sentence_label"]["precision"] == 0.0
