"""Per-model profiles (issue 24): which profile a model gets, how much evidence it reads, near misses
refused on both paths, the copy check and copy rule for figures, the harness's gold-number metric,
and `assistant eval calibrate-llm` fitting and choosing a profile against a real llama.cpp server.

Protocol cases that a real model cannot be made to produce on demand (a paraphrase dropping a figure)
use the scripted endpoint; calibration itself runs the real SmolLM2 on a few sample questions.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from assistant.answering.calibration import (
    DEFAULT_PROFILE,
    Evidence,
    Profile,
    evidence_budget,
    find_profile,
    shipped_profiles,
    slug,
)
from assistant.answering.near_miss import asked_for, unstated
from assistant.api import Assistant
from assistant.errors import AssistantError
from assistant.evaluation.metrics import content_recall, gold_numbers
from assistant.records import REFUSAL
from tests.scripted_chat import ScriptedChat

# -- near misses ---------------------------------------------------------------------------------
CONVERSATIONS_Q = "How many user-LLM conversations were mined to build WildFeedback?"
INSTRUCTIONS_Q = "How many multimodal instructions are in UniMM-Chat?"


@pytest.mark.parametrize(("question", "words"), [
    ("How many annotators labelled the MM-RLHF preference pairs?", ["annotators"]),
    ("How many distinct manga characters does the MangaZero dataset contain?", ["characters"]),
    ("Up to how many cities did Pointer Networks solve the travelling salesman problem for?", ["cities"]),
    ("What batch size and learning rate did LOGO train with?", ["batch", "learning rate"]),
    ("Which GPU type were X2I's 160 GPU hours spent on?", ["tpu"]),
    ("How long did it take to train the reward model?", ["hour"]),
    ("Under which licence is the dataset released?", ["license"]),
])
def test_what_a_question_asks_for(question: str, words: list[str]) -> None:
    assert [t.words[0] for t in asked_for(question)] == words


@pytest.mark.parametrize("question", [
    "How many times slower is decoding with DeAL than with ordinary sampling?",  # a multiple, not a noun
    "How much of the 5-shot MMLU gap does LoLCATs close?",
    "How much cheaper computationally is the method than SOTA?",
    "Which paper aligns hidden states with a reference model?",
])
def test_questions_it_cannot_read_are_never_near_misses(question: str) -> None:
    assert asked_for(question) == []
    assert unstated(question, ["Nothing relevant here."]) == []


def test_a_count_needs_its_noun_and_a_number_in_one_sentence() -> None:
    q = "How many annotators labelled the preference pairs?"
    assert unstated(q, ["We collect 120k human-annotated preference pairs.", "Ten annotators were hired."])
    assert not unstated(q, ["Ten annotators labelled 12 pairs each."])
    assert not unstated(q, ["The pairs were labelled by 12 annotators."])
    # a looser stem is not the asked-for word ("annotated" is not "annotators")
    assert unstated(q, ["12 experts annotated the pairs."])


def test_extractive_path_refuses_a_near_miss_and_still_answers_a_count(sample_assistant: Assistant) -> None:
    ans = sample_assistant.ask(CONVERSATIONS_Q)
    assert ans.refused and ans.text == REFUSAL
    assert "asked-for conversations" in ans.checks["refusal_reason"]
    counted = sample_assistant.ask(INSTRUCTIONS_Q)
    assert not counted.refused and "1.1M" in counted.text


# -- which profile, how much evidence -------------------------------------------------------------
def test_the_default_profile_ships_and_names_its_model() -> None:
    names = [slug(p.model) for p in shipped_profiles()]
    assert DEFAULT_PROFILE in names
    for spelling in ("qwen2.5-coder-1.5b-instruct", "Qwen2.5-Coder-1.5B-Instruct",
                     "/models/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"):
        p = find_profile(spelling)
        assert p.matched and slug(p.model) == DEFAULT_PROFILE, spelling
    other = find_profile("gpt-4o-mini")
    assert not other.matched and slug(other.model) == DEFAULT_PROFILE


def test_a_users_own_profile_wins_and_bad_ones_are_one_line(tmp_path: Path) -> None:
    mine = Profile("my-model", Evidence(2, 1, 400), None, 0.5, "all")
    mine.write(tmp_path / "profiles" / "my-model.json")
    got = find_profile("My-Model", "", tmp_path)
    assert got.matched and got.evidence == Evidence(2, 1, 400) and got.copy_numbers == "all"
    assert find_profile("x", "none").decision is None
    with pytest.raises(AssistantError, match="no model profile at"):
        find_profile("x", str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "x", "evidence": {"papers": 3}}')
    with pytest.raises(AssistantError, match=r"bad\.json: not a model profile") as exc:
        find_profile("x", str(bad))
    assert "\n" not in str(exc.value)
    bad.write_text('{"model": "x", "evidence": {"papers": 3, "sentences": 2, "chars": 9}, "copy_numbers": "x"}')
    with pytest.raises(AssistantError, match="copy_numbers must be"):
        find_profile("x", str(bad))


def test_evidence_budget_scales_with_the_context_window() -> None:
    calibrated = find_profile(DEFAULT_PROFILE)
    stranger = find_profile("a-large-hosted-model")
    assert evidence_budget(calibrated, 128_000, cap_chars=16_000) == calibrated.evidence
    big = evidence_budget(stranger, 128_000, cap_chars=16_000)
    assert big.chars == 16_000 and big.papers >= 5 and big.sentences >= 3
    assert evidence_budget(stranger, None, cap_chars=16_000) == calibrated.evidence
    small = evidence_budget(stranger, 512, cap_chars=16_000)
    assert small.chars <= 512 * 4 // 2
    assert evidence_budget(calibrated, 128_000, cap_chars=16_000, papers=5, chars=900) == Evidence(
        5, calibrated.evidence.sentences, 900)


# -- the openai path: near miss, copy check, copy rule ---------------------------------------------
@pytest.fixture()
def scripted(llm_assistant: Any, tmp_path: Path) -> Any:
    """``llm_assistant`` with a profile that lets the evidence check decide and copies figures as told."""
    def make(replies: list[str], copy: str = "quantity") -> tuple[Assistant, ScriptedChat]:
        path = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*.json')))}.json"
        Profile("m", Evidence(3, 2, 700), None, 0.5, copy).write(path)  # type: ignore[arg-type]
        return llm_assistant(replies, llm_profile=str(path))

    return make


def test_llm_path_refuses_a_near_miss_without_asking_the_model(scripted: object) -> None:
    a, server = scripted([])  # type: ignore[operator]
    ans = a.ask(CONVERSATIONS_Q)
    assert ans.refused and server.requests == []
    assert ans.checks["decision"] == "refused: near miss"


KINETICS_Q = "What top-1 accuracy on Kinetics-400 does the implicit learnable alignment video model get?"


def _evidence(server: ScriptedChat) -> dict[int, list[str]]:
    user = server.requests[-1]["messages"][1]["content"]
    out: dict[int, list[str]] = {}
    for block in user.split("\n\n"):
        m = re.search(r"Paper \[(\d+)\]:", block)
        if m:
            out[int(m.group(1))] = [line[2:] for line in block.splitlines() if line.startswith("- ")]
    return out


def test_a_paraphrase_that_drops_the_figure_is_replaced_by_its_evidence_sentence(scripted: object) -> None:
    probe, server = scripted(["{}"])  # type: ignore[operator]
    probe.ask(KINETICS_Q)
    n, sentence = next((n, s) for n, sents in _evidence(server).items() for s in sents if "88.7" in s)
    paraphrase = "The implicit learnable alignment model reaches a strong top-1 accuracy on Kinetics-400."
    reply = json.dumps({"answerable": True, "sentences": [{"text": paraphrase, "sources": [n]}]})
    for copy, copied in (("quantity", True), ("off", False)):
        a, _ = scripted([reply], copy)  # type: ignore[operator]
        ans = a.ask(KINETICS_Q)
        assert not ans.refused
        assert ("88.7" in ans.text) is copied, (copy, ans.text)
        if copied:
            assert ans.checks["copied_figures"][0]["quote"] == sentence
            assert any(c.quote and "88.7" in c.quote for c in ans.citations)


def test_a_number_not_in_the_shown_evidence_is_not_shown(scripted: object) -> None:
    """The copy check: "85.1" is in ZIP-FIT's abstract but not among the sentences the model was shown."""
    q = "How much faster than DSIR is the gzip-based data selection?"
    probe, server = scripted(["{}"])  # type: ignore[operator]
    probe.ask(q)
    evidence = _evidence(server)
    src = probe.search(q, k=5)
    for n, sents in evidence.items():  # noqa: B007 - n is the paper found
        paper = next(s.paper for s in src if sents[0] in s.paper.abstract)
        unseen = [x for x in re.findall(r"\d+\.\d+", paper.abstract) if x not in " ".join(sents)]
        if unseen:
            break
    else:
        raise AssertionError("every number of the evidence papers was shown")
    claim = f"{sents[0].rstrip('.')}, and {unseen[0]}."
    a, _ = scripted([json.dumps({"answerable": True, "sentences": [{"text": claim, "sources": [n]}]})], "off")
    ans = a.ask(q)
    assert unseen[0] not in ans.text
    assert any(unseen[0] in d["reason"] for d in ans.checks["dropped_sentences"])


# -- the harness's figures ----------------------------------------------------------------------------
def test_gold_number_and_content_recall() -> None:
    ref = "ILA reaches 88.7% top-1 on Kinetics-400."
    assert gold_numbers("ILA reaches 88.7% top-1 on Kinetics-400 [1].", ref) == 1.0
    assert gold_numbers("ILA reaches 88.7% top-1.", ref) == pytest.approx(2 / 3)
    assert gold_numbers("ILA is strong.", "88.7% and 400") == 0.0
    assert gold_numbers("anything", "no figures here") is None
    assert content_recall("moment probing uses moments", "Moment Probing builds a classifier on moments") == 0.5


def test_eval_rows_carry_gold_numbers(sample_assistant: Assistant, tmp_path: Path) -> None:
    from assistant.evaluation.runner import run_eval

    fit = Path(__file__).resolve().parents[1] / "evals" / "questions" / "fit.jsonl"
    line = next(x for x in fit.read_text().splitlines() if json.loads(x)["question"] == INSTRUCTIONS_Q)
    rows = tmp_path / "q.jsonl"
    rows.write_text(line + "\n")
    report = run_eval(rows, sample_assistant, progress=False)
    assert report.rows[0]["scores"]["gold_numbers"] == 1.0
    assert report.summary["gold_numbers"] == 1.0 and report.summary["content_recall"] is not None
