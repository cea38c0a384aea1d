"""Answers shaped by the question (issue 14 item 3), on questions written for this test over the
bundled sample (none from the evaluation sets): the default fitted extractive backend, real index."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.answering.features import question_view
from assistant.answering.fitted import MAX_ANSWER_PAPERS, answer, shipped_model
from assistant.api import Assistant
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def asst(sample_home: Path, embed_cache: Path) -> Iterator[Assistant]:
    a = Assistant(make_settings(sample_home, embed_cache))
    a.auto_sample = False
    yield a
    a.index.close()


def _ask(a: Assistant, q: str):  # type: ignore[no-untyped-def]
    ans = a.ask(q, backend="extractive")
    if ans.refused:
        # every refusal says why
        assert ans.checks.get("refusal_reason"), ans.checks
        assert ans.checks["answer_shape"] == "refused"
    return ans


def _title(a: Assistant, paper_id: str) -> str:
    return a.index.catalogue.get_many([paper_id])[paper_id].title


def test_quantity_question_gets_the_sentence_stating_the_quantity(asst: Assistant) -> None:
    """The shape is tested with the answer-or-refuse decision held open (threshold 0), so a borderline
    answerability score does not hide which sentence would be quoted; the shipped decision is checked
    end to end on the first question only. (v3 refuses the LoLCATs one at answerability 0.298 < 0.30:
    a false refusal, counted in benchmarks/answer_quality.py's figures, not hidden here.)"""
    m = shipped_model()
    opened = dataclasses.replace(m, decisions=dataclasses.replace(m.decisions, answer_threshold=0.0))
    for i, (q, number, title) in enumerate((
        ("How many instructions did Magpie generate by prompting Llama-3-Instruct?", "4 million", "Magpie"),
        ("What fraction of past methods' training tokens does LoLCATs need?", "0.4%", "LoLCATs"),
    )):
        if i == 0:
            ans = _ask(asst, q)
            assert not ans.refused, (q, ans.checks)
            assert ans.checks["answer_shape"] == "quantity"
            assert number in ans.text, (q, ans.text)
            assert _title(asst, ans.citations[0].paper_id).startswith(title)
        r = asst.retriever.retrieve(q)
        res = answer(q, r.sources, asst.index.lexical().idf, r.chunk_sims, opened, r.sentence_sims)
        assert res.checks["answer_shape"] == "quantity", (q, res.checks)
        assert number in res.text, (q, res.text)
        assert not res.refused and res.picked, (q, res.checks)
        assert _title(asst, r.sources[res.picked[0].source_index].paper.paper_id).startswith(title), (q, res.text)


def test_which_papers_gets_one_sentence_per_qualifying_paper_best_first(asst: Assistant) -> None:
    q = "Which papers propose linear attention methods?"
    ans = _ask(asst, q)
    assert not ans.refused, ans.checks
    assert ans.checks["answer_shape"] == "multi"
    papers = [c.paper_id for c in ans.citations]
    assert 2 <= len(set(papers)) <= MAX_ANSWER_PAPERS
    assert len(papers) == len(set(papers)), "one sentence per paper"
    # best first: the paper of the best sentence, then the others by the paper model's probability,
    # every one of them at or above the chosen paper threshold
    r = asst.retriever.retrieve(q)
    m = shipped_model()
    res = answer(q, r.sources, asst.index.lexical().idf, r.chunk_sims, m, r.sentence_sims)
    assert res.picked[0].score == max(c.score for c in res.picked)
    probs = [res.checks["paper_probabilities"][p.source_index] for p in res.picked[1:]]
    assert probs == sorted(probs, reverse=True) and all(p >= m.decisions.paper_threshold for p in probs)
    left_out = set(range(len(res.checks["paper_probabilities"]))) - {p.source_index for p in res.picked}
    assert all(res.checks["paper_probabilities"][i] < m.decisions.paper_threshold for i in left_out)
    assert [r.sources[p.source_index].paper.paper_id for p in res.picked] == papers


def test_which_papers_cites_only_qualifying_papers(asst: Assistant) -> None:
    """v3 added CAB (an attention benchmark) here by its sentence score alone; the paper model keeps it out."""
    ans = _ask(asst, "Which papers propose linear attention methods?")
    papers = [c.paper_id for c in ans.citations]
    linear = {p.paper_id for p in asst.index.catalogue.get_many(papers).values() if "linear" in p.abstract.lower()}
    assert papers and set(papers) <= linear, "every cited paper is about linear attention"


def test_comparison_gets_one_sentence_per_named_paper(asst: Assistant) -> None:
    ans = _ask(asst, "How does LoLCATs compare with Lightning Attention-2?")
    assert not ans.refused, ans.checks
    assert ans.checks["answer_shape"] == "comparison"
    titles = [_title(asst, c.paper_id) for c in ans.citations]
    assert len(titles) == 2 and len(set(titles)) == 2
    assert any(t.startswith("LoLCATs") for t in titles) and any(t.startswith("Lightning Attention-2") for t in titles)


def test_what_is_gets_the_defining_sentence(asst: Assistant) -> None:
    ans = _ask(asst, "What is Magpie?")
    assert not ans.refused, ans.checks
    assert ans.checks["answer_shape"] == "definition"
    assert "self-synthesis method for generating large-scale alignment data named Magpie" in ans.text
    for q, defining in (("What is LoLCATs?", "We thus propose Low-rank Linear Conversion via Attention Transfer"),
                        ("What is DeAL?", "DeAL")):
        ans = _ask(asst, q)
        assert not ans.refused, (q, ans.checks)
        assert ans.checks["answer_shape"] == "definition" and defining in ans.text, (q, ans.text)


def test_a_detail_about_a_named_method_comes_from_its_paper_or_is_refused(asst: Assistant) -> None:
    ans = _ask(asst, "Which base model did Magpie fine-tune to compare instruction datasets?")
    assert not ans.refused, ans.checks
    assert {_title(asst, c.paper_id) for c in ans.citations} == {_title(asst, ans.citations[0].paper_id)}
    assert _title(asst, ans.citations[0].paper_id).startswith("Magpie") and "Llama-3-8B-Base" in ans.text
    # the detail is not in Magpie's abstract: refused, not answered from a neighbour
    ans = _ask(asst, "What learning rate did Magpie use to fine-tune Llama-3-8B-Base?")
    assert ans.refused or {_title(asst, c.paper_id)[:6] for c in ans.citations} == {"Magpie"}, ans.text
    # a method no indexed paper names: refused, and the reason names it
    ans = _ask(asst, "What batch size did QuarkFormer use for pretraining?")
    assert ans.refused and "quarkform" in ans.checks["refusal_reason"].lower()


def test_every_refusal_carries_its_reason(asst: Assistant) -> None:
    for q in ("What is the boiling point of the sauce in a carbonara recipe?", "the of and",
              "What batch size did QuarkFormer use for pretraining?"):
        ans = _ask(asst, q)
        assert ans.refused, (q, ans.text)
    assert question_view("the of and", lambda t: {}) is None
