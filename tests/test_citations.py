"""The citation checker that every backend's output goes through."""

from __future__ import annotations

from assistant.answering.citations import best_quote, check_answer, is_refusal
from assistant.records import REFUSAL, Paper, Source

A1 = ("Alignment is crucial for LLMs. We introduce PoFT, a preference-oriented supervised fine-tuning approach. "
      "PoFT achieves stable improvements over SFT baselines across datasets.")
A2 = ("Existing MLLMs perceive visual information through input tokens. We propose VLoRA, which converts visual "
      "features into perceptual weights merged with the LLM's weights. This reduces the input sequence length.")


def _sources() -> list[Source]:
    return [Source(1, Paper("p1", "PoFT paper", A1), 0.9), Source(2, Paper("p2", "VLoRA paper", A2), 0.8)]


def test_unknown_markers_removed_and_counted() -> None:
    text = "PoFT favours the target model [1][7]. VLoRA merges perceptual weights into the LLM [2] [12]."
    checked = check_answer(text, _sources())
    assert checked.checks["unknown_markers"] == 2
    assert "[7]" not in checked.text and "[12]" not in checked.text
    assert [c.paper_id for c in checked.citations] == ["p1", "p2"]
    assert [c.marker for c in checked.citations] == [1, 2]


def test_markers_renumbered_in_order_of_first_use() -> None:
    checked = check_answer("VLoRA uses weights [2]. PoFT is a fine-tuning approach [1].", _sources())
    assert checked.text == "VLoRA uses weights [1]. PoFT is a fine-tuning approach [2]."
    assert [(c.marker, c.paper_id) for c in checked.citations] == [(1, "p2"), (2, "p1")]


def test_quotes_are_exact_substrings_that_support_the_sentence() -> None:
    checked = check_answer("VLoRA turns visual features into perceptual weights [2]. It shortens inputs [2].",
                           _sources())
    quote = checked.citations[0].quote
    assert quote is not None and quote in A2
    assert "perceptual weights" in quote
    per_sentence = checked.checks["sentences"]
    assert per_sentence[1]["quotes"]["1"] == "This reduces the input sequence length."


def test_uncited_sentence_is_flagged() -> None:
    checked = check_answer("PoFT improves SFT [1]. This is widely believed to matter.", _sources())
    assert checked.checks["uncited_sentences"] == ["This is widely believed to matter."]
    assert not checked.refused


def test_markers_after_the_period_belong_to_the_sentence_before() -> None:
    checked = check_answer("PoFT improves SFT. [1] VLoRA merges weights. [2]", _sources())
    assert checked.text == "PoFT improves SFT [1]. VLoRA merges weights [2]."
    assert checked.checks["uncited_sentences"] == []


def test_refusal_variants_and_all_invalid_citations() -> None:
    assert is_refusal(REFUSAL) and is_refusal(f'"{REFUSAL}"') and is_refusal(REFUSAL + " [1]")
    assert not is_refusal("The indexed papers do not answer this, but PoFT does [1].")
    assert check_answer(REFUSAL, _sources()).refused
    only_bad = check_answer("[9]", _sources())
    assert only_bad.refused and only_bad.text == REFUSAL


def test_best_quote_prefers_verbatim_sentence() -> None:
    assert best_quote("PoFT achieves stable improvements over SFT baselines across datasets. [1]", A1) == (
        "PoFT achieves stable improvements over SFT baselines across datasets.")


# -- an abstract's own reference markers are text, never citations (issue 12 item 5) -----------------
QUOKKA = ("We present Quokka alignment. Quokka alignment outperforms DPO [5] on two benchmarks. "
          "Prior work [2, 3] needs a reward model.")


def test_reference_markers_in_abstracts_are_neutralised_in_place() -> None:
    from assistant.answering.citations import neutralise_reference_markers

    out = neutralise_reference_markers(QUOKKA)
    assert "outperforms DPO (5) on" in out and "Prior work (2, 3) needs" in out
    # Same length, so sentence and chunk offsets into the stored abstract stay valid.
    assert len(out) == len(QUOKKA)
    assert neutralise_reference_markers(out) == out
    # What is left cannot be read as a citation by the checker.
    checked = check_answer(out.split(". ")[1] + ".", [Source(i, Paper(f"p{i}", f"T{i}", A1), 0.5)
                                                      for i in range(1, 7)])
    assert checked.citations == [] and checked.checks["unknown_markers"] == 0


def test_quote_is_the_stored_sentence_when_the_answer_quotes_a_neutralised_one() -> None:
    from assistant.answering.citations import neutralise_reference_markers

    sources = [Source(1, Paper("q", "Quokka", QUOKKA), 0.9)] + [
        Source(i, Paper(f"p{i}", f"T{i}", A2), 0.5) for i in range(2, 7)]
    sentence = neutralise_reference_markers("Quokka alignment outperforms DPO [5] on two benchmarks.")
    checked = check_answer(sentence[:-1] + " [1].", sources)
    assert [c.paper_id for c in checked.citations] == ["q"]
    assert checked.citations[0].quote == "Quokka alignment outperforms DPO [5] on two benchmarks."
    assert checked.citations[0].quote in QUOKKA


def test_citation_of_a_paper_that_does_not_say_it_is_flagged_not_hidden() -> None:
    # An in-range marker is not "verified" just because it resolves: a sentence the cited
    # abstract does not support is listed, even though unknown_markers stays 0.
    sources = _sources()
    checked = check_answer("Quokka alignment outperforms DPO on two benchmarks [1]. "
                           "PoFT achieves stable improvements over SFT baselines [1]. "
                           "VLoRA converts visual features into perceptual weights [2].", sources)
    assert checked.checks["unknown_markers"] == 0
    assert checked.checks["unsupported_citations"] == [
        {"sentence": "Quokka alignment outperforms DPO on two benchmarks [1].", "marker": 1}]
    # Each cited paper is checked on its own: a citation riding along on another's support is listed
    # (support used to be pooled, each paper needing only 1/n of the sentence).
    # [2] shares 4 of the 10 words: enough under the old 1/n split, not on its own.
    sentence = "PoFT achieves stable improvements over SFT baselines and reduces the input sequence length [1] [2]."
    riding = check_answer(sentence, sources)
    assert riding.checks["unsupported_citations"] == [{"sentence": sentence, "marker": 2}]
