"""benchmarks/claim_signals.py: the separation measures it prints."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("claim_signals", REPO / "benchmarks" / "claim_signals.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["claim_signals"] = mod
    spec.loader.exec_module(mod)
    return mod


cs = _load()


def test_auc_counts_pairs_and_ties() -> None:
    assert cs.auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert cs.auc([0.1], [0.9]) == 0.0
    assert cs.auc([0.5, 0.9], [0.5, 0.1]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_refusals_at_the_false_refusal_bar() -> None:
    pos = [i / 100 for i in range(1, 101)]  # 0.01 .. 1.00: the 10% quantile is ~0.109
    got = cs.at_false_refusals(pos, {"absent_refused": [0.05, 0.5], "no_evidence_refused": [0.0, 0.1, 0.2, 0.9]})
    assert got["false_refusals"] == pytest.approx(0.10)
    assert got["absent_refused"] == 0.5 and got["no_evidence_refused"] == 0.5
    assert 0.10 < got["threshold"] < 0.11
