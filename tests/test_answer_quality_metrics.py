"""The measuring stick of benchmarks/answer_quality.py, checked on hand-made cases.

Numbers and quotes are where a lenient or buggy metric would flatter the answerer, so each case
has a pair that must score differently.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("answer_quality", REPO / "benchmarks" / "answer_quality.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


aq = _load()

ABSTRACT = ("Linearizing LLMs often degrades quality. We propose LoLCATs, a two-step method. "
            "LoLCATs closes the gap to Llama 3.1 70B and 405B by 77.8% and 78.1% on 5-shot MMLU. "
            "It first trains linear attentions to mimic softmax attentions, then adjusts with low-rank adapters. "
            "We evaluate it on many benchmarks and on models from 1B to 405B parameters. "
            "Code is released.")


@pytest.mark.parametrize(("text", "expected"), [
    ("with merely 1317 off-the-shelf judgment data", {"1317"}),
    ("only 1,317 judgments", {"1317"}),
    ("an average gain of 5.0%", {"5"}),
    ("a Pearson correlation of 0.90", {"0.9"}),
    ("a relative improvement of 78.2\\% in the Alpaca Eval", {"78.2"}),
    ("up to 17.7x fewer parameter updates", {"17.7"}),
    ("reduce CC3M from 2.82M to 0.67M", {"2.82", "0.67"}),
    ("12,000 questions and 6 languages", {"12000", "6"}),
    ("The gain is 5.", {"5"}),
    ("Llama2 and v1.5 and A800", set()),
    ("+22.4 on T2V", {"22.4"}),
])
def test_numbers_are_canonical(text: str, expected: set[str]) -> None:
    assert aq.numbers_in(text) == expected


def test_gold_numbers_are_the_answer_numbers_the_evidence_states() -> None:
    answer = "From 158k to 14k samples, about 9 times smaller (roughly 11%)."
    evidence = ["reducing the total training sample size from 158k to 14k (9times smaller)"]
    gold = aq.gold_numbers(answer, evidence)
    assert gold == {"158", "14", "9"}  # 11 is the writer's arithmetic, not in the abstract
    assert aq.number_recall(gold, "It went from 158k to 14k samples.") == pytest.approx(2 / 3)
    assert aq.number_recall(gold, "It shrank the set from 158,000 to 14,000.") == 0.0
    assert aq.number_recall(gold, "from 158k to 14k, 9 times smaller") == 1.0
    assert aq.number_recall(set(), "anything") is None


def test_quote_matching_against_the_answering_sentence() -> None:
    s1, s2, s3 = aq.split_sentences(ABSTRACT)[:3]
    assert s2.startswith("We propose") and s3.startswith("LoLCATs closes")
    evidence = [s3]
    assert aq.quote_matches(s3, evidence, ABSTRACT)
    assert not aq.quote_matches(s2, evidence, ABSTRACT)  # the paper's other sentence is not the answer
    assert not aq.quote_matches(s1, evidence, ABSTRACT)
    clause = "closes the gap to Llama 3.1 70B and 405B by 77.8% and 78.1%"
    assert aq.quote_matches(clause, evidence, ABSTRACT)  # a trimmed quote of the right sentence counts
    two = s2 + " " + s3
    assert aq.quote_matches(two, evidence, ABSTRACT)  # the answer plus a neighbour
    assert aq.quote_matches(s3 + " " + aq.split_sentences(ABSTRACT)[3], evidence, ABSTRACT)
    long_two = s1 + " " + s2
    assert not aq.quote_matches(long_two, evidence, ABSTRACT)
    assert not aq.quote_matches(ABSTRACT, evidence, ABSTRACT)  # the whole abstract is not "the sentence"
    assert not aq.quote_matches("77.8% and 78.1%", evidence, ABSTRACT)  # nor is a fragment of it
    # a gold quote that is only a clause stands for its whole sentence
    assert aq.quote_matches(s3, ["by 77.8% and 78.1% on 5-shot MMLU"], ABSTRACT)
    assert not aq.quote_matches(s2, ["by 77.8% and 78.1% on 5-shot MMLU"], ABSTRACT)
    # not a substring (e.g. whitespace or case changed): normalised text decides
    assert aq.quote_matches(s3.upper().replace(" ", "  "), evidence, ABSTRACT)
    assert not aq.quote_matches("LoLCATs is great.", evidence, ABSTRACT)


def test_ranking_and_citation_precision() -> None:
    assert aq.hit_at(["x", "g"], {"g"}, 1) == 0.0 and aq.hit_at(["x", "g"], {"g"}, 5) == 1.0
    assert aq.reciprocal_rank(["x", "y", "g"], {"g"}) == pytest.approx(1 / 3)
    assert aq.reciprocal_rank(["x"], {"g"}) == 0.0
    assert aq.ndcg_at(["x", "g"], {"g"}) == pytest.approx(1 / math.log2(3))
    assert aq.ndcg_at(["g", "h"], {"g", "h"}) == pytest.approx(1.0)
    assert aq.ndcg_at(["h", "x", "g"], {"g", "h"}) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    assert aq.citation_precision(["a", "b", "a"], ["a"]) == 0.5
    assert aq.citation_precision([], ["a"]) is None


def test_content_recall() -> None:
    ref = "LoLCATs closes 77.8% of the gap on MMLU."
    assert aq.content_words(ref) == {"lolcat", "close", "77.8", "gap", "mmlu"}
    assert aq.content_recall(ref, "The LoLCATs paper reports a smaller gap on MMLU.") == pytest.approx(3 / 5)
    assert aq.content_recall("the of and", "x") is None


def test_score_sample_counts_refusals_citations_and_quotes() -> None:
    Item, Reply = aq.Item, aq.Reply
    ab = {"p": ABSTRACT, "q": "Other paper. It says 12 things."}
    s3 = aq.split_sentences(ABSTRACT)[2]
    items = [
        Item("1", "detail", "How much of the gap does LoLCATs close?", ["p"], {"p": [s3]},
             "77.8% and 78.1% of the gap."),
        Item("2", "detail", "Same, asked again?", ["p"], {"p": [s3]}, "77.8% and 78.1% of the gap."),
        Item("3", "unanswerable", "GPU count?", [], {}, "The indexed papers do not answer this.", "near_miss"),
        Item("4", "unanswerable", "Learning rate?", [], {}, "The indexed papers do not answer this.", "absent_study"),
    ]
    replies = [
        Reply(["p", "q"], [("p", s3), ("q", "Other paper.")], s3 + " [1] Other paper. [2]", False, 10.0),
        Reply(["q", "p"], [], "The indexed papers do not answer this.", True, 30.0),
        Reply(["q"], [], "The indexed papers do not answer this.", True, 20.0),
        Reply(["q"], [("q", "It says 12 things.")], "It says 12 things. [1]", False, 40.0),
    ]
    out = aq.score_sample(items, replies, ab)
    assert out["answerable"] == 2 and out["unanswerable"] == 2
    assert out["false_refusal_rate"] == 0.5
    assert out["unanswerable_refused"] == 0.5
    assert out["unanswerable_refused_by_kind"] == {"absent_study": {"n": 1, "refused": 0.0},
                                                   "near_miss": {"n": 1, "refused": 1.0}}
    assert out["citation_precision"] == 0.5  # only the answered question counts: p gold, q not
    assert out["citation_recall"] == 1.0 and out["multi_citation_recall"] is None  # p, its only gold, is cited
    two_gold = [Item("5", "multi", "Which papers?", ["p", "q"], {"p": [s3], "q": ["Other paper."]}, "both"),
                Item("6", "multi", "Which others?", ["p", "q"], {"p": [s3], "q": ["Other paper."]}, "both")]
    half = [Reply(["p"], [("p", s3)], s3 + " [1]", False, 1.0), Reply(["q"], [], "refused", True, 1.0)]
    got = aq.score_sample(two_gold, half, ab)
    assert got["citation_recall"] == 0.5 and got["multi_citation_recall"] == 0.5  # the refusal does not count
    assert out["quote_is_answering_sentence"] == 1.0 and out["quote_pairs"] == 1
    assert out["gold_numbers_in_answer"] == pytest.approx(0.5)  # 1.0 and 0.0 (refused, no numbers)
    assert out["hit@5"] == 1.0 and out["mrr"] == pytest.approx(0.75)
    assert out["p50_ms"] in (20.0, 30.0)
    wrong_quote = [Reply(["p"], [("p", aq.split_sentences(ABSTRACT)[1])], "x [1]", False, 1.0)] + replies[1:]
    assert aq.score_sample(items, wrong_quote, ab)["quote_is_answering_sentence"] == 0.0


def test_naive_baseline_ranks_quotes_and_never_refuses() -> None:
    docs = {"a": "Cooking pasta. Boil water for ten minutes.",
            "b": "LoLCATs linearizes LLMs. " + ABSTRACT,
            "c": "Attention transfer narrows the gap for linear attention. Unrelated sentence here."}
    bm25 = aq.PlainBM25(docs)
    assert bm25.search("How does LoLCATs linearize LLMs?", 3)[0] == "b"
    r = aq.naive_reply(bm25, docs, "By how much does LoLCATs close the gap on MMLU?")
    assert not r.refused and len(r.citations) == 2 and r.ranked[0] == "b"
    pid, quote = r.citations[0]
    assert quote in docs[pid] and quote.startswith("LoLCATs closes the gap")
    assert "[1]" in r.text and "[2]" in r.text


def test_score_scifact_rationale_measures() -> None:
    corpus = {"d1": {"abstract": "A is true. B causes C. D is unrelated.",
                     "sentences": ["A is true.", "B causes C.", "D is unrelated."]},
              "d2": {"abstract": "E. F.", "sentences": ["E.", "F."]}}
    claims = [{"cited_ids": ["d1"], "rationales": {"d1": [[1]]}},
              {"cited_ids": ["d2"], "rationales": {"d2": [[0]]}},
              {"cited_ids": ["d1"], "rationales": {}}]
    replies = [aq.Reply(["d1"], [("d1", "B causes C."), ("d1", "D is unrelated.")], "t", False, 1.0),
               aq.Reply(["x", "d2"], [("d2", "F.")], "t", False, 1.0),
               aq.Reply(["x"], [], "The indexed papers do not answer this.", True, 1.0)]
    out = aq.score_scifact(claims, replies, corpus)
    assert out["rationale_precision"] == pytest.approx(1 / 3)  # 1 of 3 quotes of rationale papers
    assert out["rationale_recall"] == 0.5 and out["quote_is_rationale"] == 0.5
    assert out["refused_share"] == pytest.approx(1 / 3)
    assert out["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 0) / 3)


def test_absent_study_outcomes_are_counted_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    """Refusal reasons carry figures and names; the absent-study report counts their kinds."""
    def reply(reason: str | None) -> aq.Reply:
        return aq.Reply([], [], "t", reason is not None, 1.0, {"refusal_reason": reason})

    kinds = [aq._reason_kind(reply(r)) for r in (
        None, "answerability 0.11 < 0.20 (best sentence 0.45)", "answerability 0.07 < 0.30 (best sentence 0.53)",
        "no indexed paper mentions rad53")]
    assert kinds == ["answered", "answerability", "answerability", "no indexed paper"]
    res = {"mode": "scifact-dev", "absent": {"claims": 4, "chosen": 63, "held_out_papers": 9, "assistant": {
        "refused": 0.75, "outcomes": {"answered": 1, "answerability": 2, "no indexed paper": 1}}},
        "assistant": {"claims": 300, "rationale_pairs": 209, "absent_refused": 0.75},
        "naive": {"absent_refused": 0.0}}
    aq.print_table(res)
    out = capsys.readouterr().out
    assert "absent studies: 4 of the 63 chosen dev claims asked again over the corpus without the 9 papers" in out
    assert "absent-study claims refused (papers held out)" in out and "0.750" in out
    assert "absent-study claims (assistant): answerability 2, answered 1, no indexed paper 1" in out


def test_end_to_end_on_a_small_real_index(tmp_path: Path) -> None:
    """The real pipeline on five sample papers: cached home, both systems, the measures in the report."""
    records = aq.sample_minus_holdout(aq.holdout_titles())
    want = ["LoLCATs: On Low-Rank Linearizing of Large Language Models",
            "Zoology: Measuring and Improving Recall in Efficient Language Models",
            "Pointer Networks", "Matryoshka Representation Learning", "Lexinvariant Language Models"]
    small = [r for r in records if r["title"] in want]
    assert len(small) == 5
    lol = next(r for r in small if r["title"].startswith("LoLCATs"))
    quote = next(s for s in aq.split_sentences(lol["abstract"]) if "77.8%" in s)
    rows = [{"qid": "a", "type": "detail", "question": "How much of the MMLU gap to Llama 3.1 405B does LoLCATs close?",
             "gold_titles": [lol["title"]], "answer": "78.1% for 405B.",
             "evidence": [{"title": lol["title"], "quote": quote}]},
            {"qid": "b", "type": "unanswerable", "question": "What is the best recipe for sourdough bread?",
             "gold_titles": [], "answer": "The indexed papers do not answer this.", "evidence": []}]
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cache = tmp_path / "cache"
    res = aq.run_sample(qfile, 0, cache, records=small)
    homes = [p for p in cache.iterdir() if p.name.startswith("sample-")]
    assert len(homes) == 1 and (homes[0] / "READY").exists()
    a, n = res["assistant"], res["naive"]
    assert a["answerable"] == 1 and a["unanswerable"] == 1
    assert n["false_refusal_rate"] == 0.0 and n["unanswerable_refused"] == 0.0  # the baseline never refuses
    assert a["hit@5"] == 1.0 and n["hit@5"] == 1.0
    assert a["unanswerable_refused"] == 1.0  # off-topic: the assistant refuses
    assert res["per_question"][0]["gold"] == [lol["id"]]
    # a second run reuses the cached home; different records get a different one
    aq.run_sample(qfile, 0, cache, records=small)
    assert len([p for p in cache.iterdir() if p.name.startswith("sample-")]) == 1
    assert aq.prepared_home("sample", small[:4], cache) != homes[0]


def test_a_bad_question_line_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"qid": "a", "question": "q?"}\n{oops\n')
    assert aq.run(["--questions", str(bad), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}:2: not valid JSON") and "\n" not in err
    assert not (tmp_path / "cache").exists()  # failed before indexing anything
