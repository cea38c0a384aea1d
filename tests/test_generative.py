"""The openai backend's answering step: evidence-first prompts, structured replies, checked sentences,
and the refusal decision made with the model's help.

Pure functions run on the real sample corpus; the end-to-end cases talk HTTP to a scripted
OpenAI-compatible endpoint, because a real model will not refuse, misnumber or invent a figure on
demand (tests/test_llm_path.py runs the same path against the real local model).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.answering.generative import (
    _JsonTextStreamer,
    build_messages,
    evidence_from_candidates,
    format_evidence,
    parse_plain,
    parse_structured,
    select_evidence,
    support,
)
from assistant.api import Assistant
from assistant.records import REFUSAL
from tests.scripted_chat import ScriptedChat
from tests.test_answering import validate_answer_schema

ARRA_Q = "What does ARRA align LLM hidden states with?"


def _arra_sentence(a: Assistant, server: ScriptedChat) -> tuple[int, str, int]:
    """(the number the prompt gives the ARRA paper, its abstract sentence saying what it aligns with,
    the paper's 1-based rank in the sources = the marker a shown answer uses), read from the prompt
    a probe question sent: prompt numbers follow the evidence, not the retrieval rank."""
    a.ask(ARRA_Q)
    user = server.requests[-1]["messages"][1]["content"]
    sources = a.search(ARRA_Q, k=5)
    for rank, s in enumerate(sources, 1):
        if "ARRA" in s.paper.abstract:
            sent = next(x for x in s.paper.abstract.split(". ") if "align" in x and "ARRA" in x)
            (number,) = [int(n) for n, title in re.findall(r"Paper \[(\d+)\]: (.*)", user) if title == s.paper.title]
            return number, sent.rstrip(".") + ".", rank
    raise AssertionError("ARRA not retrieved")


# -- evidence ------------------------------------------------------------------------------------
def test_evidence_is_best_sentences_per_paper_not_whole_abstracts(sample_assistant: Assistant) -> None:
    sources = sample_assistant.search(ARRA_Q, k=5)
    idf = sample_assistant.index.lexical().idf
    evidence = select_evidence(ARRA_Q, sources, idf, max_papers=5, per_paper=2, budget_chars=1600)
    assert [e.number for e in evidence] == [1, 2, 3, 4, 5]
    for ev in evidence:
        assert 1 <= len(ev.sentences) <= 2
        positions = [ev.source.paper.abstract.index(s) for s in ev.sentences]  # exact substrings
        assert positions == sorted(positions)
    top = next(e for e in evidence if "ARRA" in e.source.paper.abstract)
    assert any("ARRA" in s or "align" in s for s in top.sentences)
    block = format_evidence(evidence)
    assert block.startswith(f"Paper [1]: {sources[0].paper.title}")
    if sources[0].paper.date:
        assert f"({sources[0].paper.date})" in block.splitlines()[0]
    whole = sum(len(s.paper.abstract) for s in sources)
    assert len(block) < whole / 2


def test_evidence_is_the_fitted_scorers_best_sentences_within_a_budget(sample_assistant: Assistant) -> None:
    from assistant.answering.features import question_view
    from assistant.answering.fitted import compose, score, shipped_model

    q = "How much does the RLAIF-V 7B model reduce object hallucination?"
    res = sample_assistant.retriever.retrieve(q)
    idf = sample_assistant.index.lexical().idf
    model = shipped_model()
    view = question_view(q, idf)
    cands = score(model, view, res.sources, res.chunk_sims, res.sentence_sims)
    picked = compose(model, view, res.sources, cands).picked
    assert picked and "82.9" in picked[0].text  # the quantity question's answer states the number
    evidence = evidence_from_candidates(res.sources, cands, picked, max_papers=2, per_paper=2, budget_chars=500)
    assert [e.number for e in evidence] == list(range(1, len(evidence) + 1)) and 1 <= len(evidence) <= 2
    assert picked[0].text in evidence[0].sentences  # the extractive answer's sentence leads, as paper [1]
    sents = [x for e in evidence for x in e.sentences]
    assert sum(map(len, sents)) <= 500 and all(1 <= len(e.sentences) <= 2 for e in evidence)
    for e in evidence:  # exact sentences in abstract order; the marker is the paper's retrieval rank
        assert res.sources[e.marker - 1] is e.source
        positions = [e.source.paper.abstract.index(x) for x in e.sentences]
        assert positions == sorted(positions)
    best = max(cands, key=lambda c: c.score)
    assert best.text in sents
    # A budget smaller than the best sentence still gives the model that one sentence.
    (only,) = evidence_from_candidates(res.sources, cands, picked, max_papers=3, per_paper=2, budget_chars=10)
    assert only.sentences == [picked[0].text]


def test_instructions_are_one_static_prefix_and_the_question_comes_last(sample_assistant: Assistant) -> None:
    """A server caching prompts (llama.cpp cache_prompt) reads the instructions once: they must not
    change with the question, and nothing fixed may follow the evidence."""
    idf = sample_assistant.index.lexical().idf
    questions = [ARRA_Q, "Which sourdough bread recipe uses the longest fermentation time?"]
    for structured in (True, False):
        msgs = [build_messages(q, select_evidence(q, sample_assistant.search(q, k=3), idf), structured=structured)
                for q in questions]
        assert msgs[0][0] == msgs[1][0] and msgs[0][0]["role"] == "system"
        for q, (_, user) in zip(questions, msgs, strict=True):
            assert user["content"].startswith("<<<SOURCES\nPaper [1]: ")
            assert user["content"].endswith(f"SOURCES>>>\n\nQUESTION: {q}")
    assert '"answerable": false' in build_messages(ARRA_Q, [], structured=True)[0]["content"]
    assert REFUSAL in build_messages(ARRA_Q, [], structured=False)[0]["content"]


# -- parsing -------------------------------------------------------------------------------------
def test_structured_reply_with_fence_and_inline_markers() -> None:
    raw = '```json\n{"answerable": true, "sentences": [{"text": "X is 3% [2].", "sources": [1]}]}\n```'
    m = parse_structured(raw)
    assert m.structured and m.answerable is True and m.parse_error is None
    assert m.sentences == [("X is 3%.", [1, 2])]
    refused = parse_structured('{"answerable": false, "sentences": []}')
    assert refused.answerable is False and refused.sentences == []


def test_two_sentences_in_one_item_both_cite_its_sources() -> None:
    """The 1.5B model wrote 'X proposes ... drop. It considers ...' as one item: the checker would have
    shown the first sentence uncited."""
    m = parse_structured('{"answerable": true, "sentences": [{"text": "AIM merges visual tokens. It also '
                         'prunes them inside the LLM [3].", "sources": [1]}]}')
    assert m.sentences == [("AIM merges visual tokens.", [1]), ("It also prunes them inside the LLM.", [1, 3])]


def test_reply_cut_by_max_tokens_keeps_its_complete_sentences() -> None:
    raw = ('{"answerable": true, "sentences": [{"text": "RLAIF-V 7B reduces object hallucination by 82.9% [2].", '
           '"sources": [1]}, {"text": "It reduces overall hallucination by 42.1", "sour')
    m = parse_structured(raw)
    assert m.structured and m.answerable is True and m.raw == raw
    assert m.sentences == [("RLAIF-V 7B reduces object hallucination by 82.9%.", [1, 2])]
    assert m.parse_error == "JSON cut short; kept its 1 complete sentence(s)"
    # Not the schema's start: plain-text parsing, as before.
    assert parse_structured('{"foo": [1, 2').parse_error.startswith("not valid JSON")


def test_unparsable_structured_reply_falls_back_to_plain_text() -> None:
    m = parse_structured("ARRA aligns hidden states with a reference [1]. It is fast. [2]")
    assert not m.structured and m.parse_error and "plain text" in m.parse_error
    assert m.sentences == [("ARRA aligns hidden states with a reference.", [1]), ("It is fast.", [2])]
    assert parse_plain(REFUSAL).answerable is False
    assert parse_plain("").answerable is False


def test_support_needs_coverage_and_every_number() -> None:
    passage = "TDPO improves win rate by 12% over DPO on Anthropic HH. It needs no reward model."
    assert support("TDPO improves the win rate by 12% over DPO.", [passage], None, 0.5).supported
    wrong = support("TDPO improves the win rate by 15% over DPO.", [passage], None, 0.5)
    assert not wrong.supported and wrong.missing_numbers == ["15%"]
    assert not support("Quantum chromodynamics explains hadron masses.", [passage], None, 0.5).supported
    named = support("KTO improves win rate by 12% over DPO on Anthropic HH.", [passage], None, 0.5)
    assert not named.supported and named.missing_names == ["KTO"]


def test_support_keeps_copied_figures_and_drops_a_foreign_name(sample_assistant: Assistant) -> None:
    """The judge's number and name rules (one text layer): a sentence copying its source's figures is
    kept however the source writes them (LaTeX "82.9\\%"), one naming a method the source does not
    name is dropped -- the 1.5B model put "Magpie" on another paper's hardware figures."""
    (src,) = [s for s in sample_assistant.search("RLAIF-V object hallucination 34B labeler", k=3)
              if "82.9" in s.paper.abstract]
    passage = f"{src.paper.title}. {src.paper.abstract}"
    assert "82.9\\%" in src.paper.abstract
    idf = sample_assistant.index.lexical().idf
    kept = support("Using a 34B model as labeler, the RLAIF-V 7B model reduces object hallucination by 82.9% "
                   "and overall hallucination by 42.1%.", [passage], idf, 0.5)
    assert kept.supported and kept.missing_numbers == [] and kept.missing_names == []
    wrong = support("The RLAIF-V 7B model reduces object hallucination by 82.9% and overall hallucination by 52.1%.",
                    [passage], idf, 0.5)
    assert not wrong.supported and wrong.missing_numbers == ["52.1%"]
    foreign = support("Using a 34B model as labeler, Magpie reduces object hallucination by 82.9%.", [passage],
                      idf, 0.5)
    assert not foreign.supported and foreign.missing_names == ["Magpie"]


P3O_TITLE = "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment"


def test_support_needs_the_negation_contrast_or_absolute_where_the_source_says_it(
        sample_assistant: Assistant) -> None:
    """A qualifier must be in the sentence(s) restated, not just anywhere in the abstract: the P3O
    abstract says "PPO is not invariant" elsewhere, which does not license "while PPO does not" here
    (a sentence the 1.5B model wrote and the old check showed as cited fact)."""
    (src,) = [s for s in sample_assistant.search("Pairwise Proximal Policy Optimization P3O", k=3)
              if s.paper.title == P3O_TITLE]
    passage = f"{src.paper.title}. {src.paper.abstract}"
    assert " not " in src.paper.abstract  # the negation exists, but in another sentence

    def check(sentence: str) -> tuple[bool, list[str]]:
        v = support(sentence, [passage], sample_assistant.index.lexical().idf, 0.5)
        return v.supported, v.unstated

    assert check("P3O operates directly on comparative rewards, while PPO does not.") == \
        (False, ["negation 'not'"])
    assert check("P3O operates directly on comparative rewards.") == (True, [])
    assert check("PPO is not invariant to equivalent reward functions containing identical preference "
                 "information.") == (True, [])
    assert check("Unlike prior methods, P3O operates directly on comparative rewards.") == \
        (False, ["contrast 'Unlike'"])
    assert check("P3O always outperforms PPO in the KL-Reward trade-off.") == (False, ["absolute 'always'"])
    assert check("P3O outperforms PPO in the KL-Reward trade-off.") == (True, [])
    # The offline judge applies the same rule (one text layer) to negations and absolutes.
    from assistant.evaluation.offline_judge import OfflineJudge

    judged = OfflineJudge().score("P3O operates directly on comparative rewards, while PPO does not.", [passage])
    assert not judged.supported and "negation 'not'" in judged.missing


def test_paper_numbers_become_titles(sample_assistant: Assistant) -> None:
    from assistant.answering.generative import _name_papers

    sources = sample_assistant.search(ARRA_Q, k=3)
    evidence = select_evidence(ARRA_Q, sources, None, max_papers=3)
    (body, nums), = parse_structured('{"answerable": true, "sentences": [{"text": "Paper [2] aligns X.", '
                                     '"sources": [2]}]}').sentences
    named, refs = _name_papers(body, evidence)
    assert named == f'"{sources[1].paper.title}" aligns X.' and refs == [2] and nums == [2]


def test_a_title_with_a_question_mark_does_not_split_the_sentence_naming_it(sample_assistant: Assistant) -> None:
    """'Paper [2] proposes R-TSVM' became '"Mix Data or Merge Models? Balancing ..." proposes R-TSVM', which
    the checker read as two sentences, the first uncited (validation slice, 1.5B model)."""
    from assistant.answering.generative import PaperEvidence, _name_papers
    from assistant.text import answer_sentence_spans

    (src,) = [s for s in sample_assistant.search("Mix Data or Merge Models? helpfulness honesty harmlessness", k=5)
              if s.paper.title.startswith("Mix Data or Merge Models? ")]
    named, refs = _name_papers("Paper 1 proposes R-TSVM, a reweighting-enhanced merging method.",
                               [PaperEvidence(1, src, [])])
    assert named == '"Mix Data or Merge Models?" proposes R-TSVM, a reweighting-enhanced merging method.'
    assert refs == [1]
    text, spans = answer_sentence_spans(named + " [1]")
    assert len(spans) == 1


def test_stream_shows_sentence_text_not_json() -> None:
    shown: list[str] = []
    stream = _JsonTextStreamer(shown.append)
    raw = '{"answerable": true, "sentences": [{"text": "A \\"quoted\\" fact", "sources": [1]}, ' \
          '{"text": "Second.", "sources": [2]}]}'
    for i in range(0, len(raw), 3):  # deltas that cut keys and escapes in half
        stream(raw[i:i + 3])
    assert "".join(shown) == 'A "quoted" fact Second.'


# -- the whole step, against an HTTP endpoint ----------------------------------------------------
def test_supported_sentence_kept_invented_figure_dropped(llm_assistant: Callable[..., Any]) -> None:
    n, sent, _ = _arra_sentence(*llm_assistant(["{}"]))
    reply = {"answerable": True, "sentences": [{"text": sent, "sources": [n]},
                                                {"text": "ARRA improves accuracy by 97.5% on every benchmark.",
                                                 "sources": [n]}]}
    a, server = llm_assistant([json.dumps(reply)])
    ans = a.ask(ARRA_Q)
    validate_answer_schema(ans.to_dict())
    sent_req = server.requests[0]
    assert sent_req["response_format"]["type"] == "json_schema"
    prompt = "\n".join(m["content"] for m in sent_req["messages"])
    assert "Paper [1]:" in prompt and ARRA_Q in prompt
    assert not ans.refused and "97.5" not in ans.text
    (dropped,) = ans.checks["dropped_sentences"]
    assert "97.5" in dropped["sentence"] and "numbers not in the cited abstracts: 97.5%" in dropped["reason"]
    assert ans.checks["usage"] == {"prompt_tokens": 321, "completion_tokens": 12}
    for c in ans.citations:  # every shown citation carries an exact quote of its abstract
        assert c.quote and c.quote in a.get_paper(c.paper_id).abstract
    assert ans.checks["uncited_sentences"] == []


def test_misnumbered_citation_is_recited_to_the_paper_that_says_it(llm_assistant: Callable[..., Any]) -> None:
    n, sent, _ = _arra_sentence(*llm_assistant(["{}"]))
    wrong = 1 if n != 1 else 2
    a, _ = llm_assistant([json.dumps({"answerable": True, "sentences": [{"text": sent, "sources": [wrong]}]})])
    ans = a.ask(ARRA_Q)
    assert not ans.refused and ans.checks["recited_sentences"][0]["now"] == [n]
    assert "ARRA" in ans.citations[0].quote


def _profile(tmp: Path, **weights: float) -> str:
    """A model profile whose decision weighs only the named signals (p = sigmoid(bias + sum w * x)):
    what calibration would fit for a model that is always right when it refuses (model_no < 0) or
    when it answers with supported sentences (kept > 0)."""
    from assistant.answering.calibration import DECISION_FEATURES, Evidence, Profile
    from assistant.answering.fitted import LogReg

    coef = tuple(float(weights.get(f, 0.0)) for f in DECISION_FEATURES)
    lr = LogReg(DECISION_FEATURES, (0.0,) * len(coef), (1.0,) * len(coef), coef, float(weights.get("bias", 0.0)))
    path = tmp / "profile.json"
    Profile("m", Evidence(3, 2, 700), lr, 0.5, "quantity").write(path)
    return str(path)


def test_model_refusal_weighs_as_its_profile_says(llm_assistant: Callable[..., Any], tmp_path: Path) -> None:
    refusal = json.dumps({"answerable": False, "sentences": []})
    a, _ = llm_assistant([refusal], llm_profile="none")  # the evidence check alone decides
    ans = a.ask(ARRA_Q)
    assert ans.checks["model_answerable"] is False and ans.checks["evidence_answers"] is True
    assert "refused but the evidence check finds an answer" in ans.checks["disagreement"]
    assert not ans.refused and ans.checks["decision"].startswith("extractive")
    assert all(c.quote and c.quote in a.get_paper(c.paper_id).abstract for c in ans.citations)

    b, _ = llm_assistant([refusal], llm_profile=_profile(tmp_path, model_no=-8.0, bias=4.0))
    kept = b.ask(ARRA_Q)
    assert kept.refused and kept.text == REFUSAL and kept.checks["disagreement"]
    assert kept.checks["decision_p"] < 0.5 and kept.checks["signals"]["model_answerable"] is False


def test_model_answer_without_evidence_needs_a_profile_that_trusts_it(llm_assistant: Callable[..., Any],
                                                                      tmp_path: Path) -> None:
    q = "Which sourdough bread recipe uses the longest fermentation time?"
    probe, _ = llm_assistant([])
    top = probe.search(q, k=5)[0].paper
    first = top.abstract.split(". ")[0].rstrip(".") + "."
    reply = json.dumps({"answerable": True, "sentences": [{"text": first, "sources": [1]}]})
    a, _ = llm_assistant([reply], llm_profile="none")
    ans = a.ask(q)
    assert ans.checks["evidence_answers"] is False
    assert ans.refused and "the model answered but the evidence check refuses" in ans.checks["disagreement"]
    b, _ = llm_assistant([reply], llm_profile=_profile(tmp_path, kept=8.0, bias=-2.0))
    shown = b.ask(q)
    assert not shown.refused and shown.checks["disagreement"] and shown.checks["decision"] == "answered by the model"


def test_server_without_json_schema_gets_plain_text(llm_assistant: Callable[..., Any]) -> None:
    n, sent, _ = _arra_sentence(*llm_assistant(["{}"]))
    a, server = llm_assistant([f"{sent[:-1]} [{n}]."], reject_schema=True)
    ans = a.ask(ARRA_Q)
    assert len(server.requests) == 2 and "response_format" not in server.requests[1]
    assert "rejected response_format" in ans.checks["structured_fallback"]
    assert ans.checks["structured"] is False and not ans.refused and "ARRA" in ans.text


def test_replies_of_the_wrong_shape_are_read_not_a_traceback() -> None:
    """`"sources": 1` and `"sentences": 3` raised TypeError through ask, chat and the server (500); a
    quoted boolean was ignored; a marker of 5,000 digits raised ValueError (int() digit limit)."""
    assert parse_structured('{"answerable": true, "sentences": 3}').sentences == []
    m = parse_structured('{"answerable": true, "sentences": [{"text": "X is 3%.", "sources": 1}]}')
    assert m.sentences == [("X is 3%.", [])]
    assert parse_structured('{"answerable": "false", "sentences": []}').answerable is False
    assert parse_structured('{"answerable": "True", "sentences": []}').answerable is True
    assert parse_structured('{"answerable": "maybe", "sentences": []}').answerable is None
    huge = "9" * 5000
    m = parse_structured('{"answerable": true, "sentences": [{"text": "X is 3% [' + huge + '].", "sources": [1]}]}')
    assert m.sentences == [("X is 3%.", [1, 10**9])]  # a number no list of papers reaches: unknown
    assert parse_plain(f"X is 3% [{huge}].").sentences == [("X is 3%.", [10**9])]


def test_an_answer_with_a_huge_marker_is_checked_like_any_unknown_marker(sample_assistant: Assistant) -> None:
    server = ScriptedChat(['{"answerable": true, "sentences": [{"text": "ARRA aligns LLM hidden states with '
                           'visual representations [' + "7" * 5000 + '].", "sources": [1]}]}'])
    try:
        a = Assistant(sample_assistant.settings.with_(llm={"base_url": server.url, "max_retries": 0}))
        ans = a.ask(ARRA_Q, backend="openai")
    finally:
        server.close()
    assert "7777777" not in ans.text and all(c.marker < 100 for c in ans.citations)
