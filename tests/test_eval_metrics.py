"""Metric primitives on hand-made cases whose right score is known."""

from __future__ import annotations

import math

import pytest

from assistant.evaluation.metrics import (
    GoldMatcher,
    answer_sentences,
    citation_recall,
    citation_validity,
    cohen_kappa,
    mean,
    percentile,
    retrieval_scores,
    token_f1,
)
from assistant.text import marker_numbers


def src(rank: int, title: str, paper_id: str = "") -> dict[str, object]:
    return {"rank": rank, "title": title, "paper_id": paper_id or f"id-{rank}"}


def test_gold_matching_by_normalised_title() -> None:
    m = GoldMatcher(["Token-level Direct Preference Optimization"])
    assert m.match("x", "token level direct preference optimization!") == 0
    assert m.match("x", "Tokén-Level  Direct Preference Optimization") == 0
    assert m.match("x", "Direct Preference Optimization") is None


def test_gold_matching_prefers_ids_when_the_question_has_them() -> None:
    # SciFact has two different papers titled "Summary": only the id tells them apart.
    m = GoldMatcher(["Summary", "Other"], gold_ids=["111", "222"])
    assert m.match("111", "Summary") == 0
    assert m.match("999", "Summary") is None
    assert m.match("222", "anything") == 1
    # A source without a paper_id falls back to its title.
    assert m.match("", "Summary") == 0


def test_retrieval_scores_known_values() -> None:
    m = GoldMatcher(["A", "B"])
    sources = [src(1, "X"), src(2, "B"), src(3, "Y"), src(4, "A")]
    s = retrieval_scores(sources, m)
    assert s == {"hit_at_1": 0.0, "hit_at_k": 1.0, "mrr": 0.5, "recall_at_k": 1.0}
    s3 = retrieval_scores(sources, m, k=3)
    assert s3 == {"hit_at_1": 0.0, "hit_at_k": 1.0, "mrr": 0.5, "recall_at_k": 0.5}
    # Order comes from rank, not list position; a gold paper listed twice counts once.
    s = retrieval_scores([src(2, "A"), src(1, "A")], m)
    assert s == {"hit_at_1": 1.0, "hit_at_k": 1.0, "mrr": 1.0, "recall_at_k": 0.5}
    assert retrieval_scores([src(1, "X")], m) == {"hit_at_1": 0.0, "hit_at_k": 0.0, "mrr": 0.0, "recall_at_k": 0.0}
    assert retrieval_scores([src(1, "X")], GoldMatcher([]))["mrr"] is None


def test_marker_parsing_and_citation_validity() -> None:
    text = "Alpha holds [1]. Beta holds [2, 3]. Gamma [4;1]."
    assert marker_numbers(text) == [1, 2, 3, 4, 1]
    assert citation_validity(text, [1, 2, 3]) == pytest.approx(4 / 5)
    assert citation_validity(text, [1, 2, 3, 4]) == 1.0
    assert citation_validity("No markers here.", [1]) is None


def test_answer_sentences_keep_trailing_markers_with_their_sentence() -> None:
    sents = answer_sentences("DPO is simple [1]. It needs no reward model. [2] PPO is older [1, 2].")
    assert [s.markers for s in sents] == [[1], [2], [1, 2]]
    assert sents[1].bare == "It needs no reward model."
    assert sents[2].bare == "PPO is older."
    assert answer_sentences("[1].") == []


def test_citation_recall() -> None:
    m = GoldMatcher(["A", "B", "C", "D"])
    cited = [{"paper_id": "1", "title": "A"}, {"paper_id": "2", "title": "x"}, {"paper_id": "3", "title": "C"},
             {"paper_id": "4", "title": "a"}]
    assert citation_recall(cited, m) == 0.5
    assert citation_recall([], m) == 0.0
    assert citation_recall(cited, GoldMatcher([])) is None


def test_token_f1_known_values() -> None:
    assert token_f1("The cat sat", "the cat sat") == 1.0
    # pred {cat, sat, mat}, ref {cat, sat}: P = 2/3, R = 1, F1 = 0.8; markers and articles ignored.
    assert token_f1("A cat sat on mat [1].", "the cat sat on") == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert token_f1("cat sat mat", "cat sat") == pytest.approx(0.8)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("", "cat") == 0.0


def test_percentile_interpolates_like_numpy() -> None:
    vals = [10.0, 20.0, 30.0, 40.0, 100.0]
    assert percentile(vals, 50) == 30.0
    assert percentile(vals, 95) == pytest.approx(88.0)  # 40 + 0.8 * 60
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) is None
    import numpy as np

    assert percentile(vals, 95) == pytest.approx(float(np.percentile(vals, 95)))


def test_cohen_kappa_known_values() -> None:
    # Textbook example: 50 items, a = 20 yes/yes, b = 5, c = 10, d = 15 -> p_o = 0.7, p_e = 0.5, kappa = 0.4.
    truth = [True] * 20 + [True] * 5 + [False] * 10 + [False] * 15
    pred = [True] * 20 + [False] * 5 + [True] * 10 + [False] * 15
    assert cohen_kappa(truth, pred) == pytest.approx(0.4)
    assert cohen_kappa([True, False], [True, False]) == 1.0
    assert cohen_kappa([True, False, True, False], [False, True, False, True]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cohen_kappa([True], [True, False])


def test_mean_skips_undefined() -> None:
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None
    assert not math.isnan(mean([0.0]) or 0.0)
