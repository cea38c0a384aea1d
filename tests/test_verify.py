"""Claim verification (`assistant verify`, ``Assistant.verify``, /verify in chat, POST /v1/verify) on the
real sample index with the shipped label model; the LLM path's quote check against a scripted server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.answering.stance import (
    EVIDENCE_FEATURES,
    RATIONALE_FEATURES,
    STANCE_FEATURES,
    load_verify_model,
    rationale_rows,
    shipped_verify_model,
    stance_features,
)
from assistant.api import Assistant
from assistant.errors import AssistantError, InputError
from assistant.verification import read_claims, verify_with_llm
from tests.conftest import cli_env
from tests.scripted_chat import ScriptedChat

SUPPORTED = "ARRA aligns LLM hidden states with visual representations from external visual foundation models."
OFF_TOPIC = "Daily aspirin reduces the risk of a first stroke in elderly women."
PAPER_KEYS = {"paper_id", "title", "date", "rank", "verdict", "confidence", "quotes"}


def _exact(a: Assistant, paper: dict) -> None:
    abstract = a.get_paper(paper["paper_id"]).abstract
    assert 1 <= len(paper["quotes"]) <= 3
    for q in paper["quotes"]:
        assert abstract[q["start"]:q["end"]] == q["text"]


def test_supported_claim_is_supported_with_exact_quotes(sample_assistant: Assistant) -> None:
    v = sample_assistant.verify(SUPPORTED)
    d = v.to_dict()
    assert set(d) == {"claim", "verdict", "papers", "closest", "backend", "timings_ms", "checks"}
    assert d["verdict"] == "SUPPORT", d
    assert d["closest"] == []
    top = d["papers"][0]
    assert set(top) == PAPER_KEYS
    assert "Autoregressive Representation Alignment" in top["title"]
    assert top["verdict"] == "SUPPORT" and 0 < top["confidence"] <= 1
    _exact(sample_assistant, top)
    assert any("hidden states" in q["text"] for q in top["quotes"])
    assert json.loads(json.dumps(d)) == d


def test_off_topic_claim_is_not_enough_evidence_with_the_closest_papers(sample_assistant: Assistant) -> None:
    d = sample_assistant.verify(OFF_TOPIC).to_dict()
    assert d["verdict"] == "NOT_ENOUGH_EVIDENCE", d
    assert d["papers"] == []
    assert 1 <= len(d["closest"]) <= 3
    for p in d["closest"]:
        assert p["verdict"] == "NOT_ENOUGH_EVIDENCE" and set(p) == PAPER_KEYS
        _exact(sample_assistant, p)


def test_date_filters_and_bad_input(sample_assistant: Assistant) -> None:
    d = sample_assistant.verify(SUPPORTED, until="1990").to_dict()
    assert d["verdict"] == "NOT_ENOUGH_EVIDENCE" and d["papers"] == [] and d["closest"] == []
    with pytest.raises(AssistantError, match="claim is empty"):
        sample_assistant.verify("   ")
    with pytest.raises(AssistantError, match="not a real date"):
        sample_assistant.verify(SUPPORTED, since="2024-13")
    import datetime

    by_date = sample_assistant.verify(SUPPORTED, since=datetime.date(1990, 1, 1)).to_dict()
    assert by_date == sample_assistant.verify(SUPPORTED, since="1990-01-01").to_dict() | {
        "timings_ms": by_date["timings_ms"]}


def test_verify_many_reads_any_iterable_once(sample_assistant: Assistant) -> None:
    """A generator (or an open file) was spent by the up-front check: no verdict at all."""
    listed = [v.to_dict()["verdict"] for v in sample_assistant.verify_many([SUPPORTED, "Cakes rise in ovens."])]
    streamed = [v.to_dict()["verdict"] for v in sample_assistant.verify_many(c for c in [SUPPORTED,
                                                                                        "Cakes rise in ovens."])]
    assert streamed == listed and len(listed) == 2
    assert [v.claim for v in sample_assistant.verify_many(SUPPORTED)] == [SUPPORTED]


def test_stance_cues() -> None:
    from assistant.answering.features import Candidate

    def cand(text: str) -> Candidate:
        return Candidate(0, 0, len(text), text, frozenset(), [0.5] * 27, score=0.9)

    names = list(STANCE_FEATURES)
    x = stance_features("Vitamin D increases bone density.", [cand("Vitamin D did not increase bone density.")])
    assert x[names.index("neg_xor")] == 1.0 and x[names.index("null_result")] == 1.0
    x = stance_features("Statins increase LDL by 40%.", [cand("Statins reduced LDL by 30% in adults.")])
    assert x[names.index("dir_conflict")] == 1.0 and x[names.index("num_conflict")] == 1.0
    x = stance_features("Statins reduce LDL.", [cand("Statins lowered LDL in adults.")])
    assert x[names.index("dir_agree")] == 1.0 and x[names.index("neg_xor")] == 0.0


def test_rationale_features_mark_a_stated_finding() -> None:
    from assistant.answering.features import Candidate

    texts = ["We recruited 40 adults.", "CONCLUSIONS Statins reduced LDL by 30% in adults."]
    cands = [Candidate(0, 0 if i == 0 else 30, 20 if i == 0 else 80, t, frozenset(), [0.5] * 27) for i, t in
             enumerate(texts)]
    rows = rationale_rows("Statins reduce LDL by 30%.", cands)
    names = list(RATIONALE_FEATURES)
    assert len(rows[0]) == len(names) and rows[0][:27] == [0.5] * 27
    for name in ("dir_word", "concludes", "claim_dir_shared", "claim_num_shared", "last"):
        assert (rows[0][names.index(name)], rows[1][names.index(name)]) == (0.0, 1.0), name


def test_model_files_load_through_one_helper_with_one_line_errors(tmp_path: Path) -> None:
    good = tmp_path / "verify.json"
    good.write_text(json.dumps(shipped_verify_model().to_dict()), encoding="utf-8")
    assert load_verify_model(good) == shipped_verify_model()
    bad, old = tmp_path / "bad.json", tmp_path / "old.json"
    bad.write_text("{}", encoding="utf-8")
    d = shipped_verify_model().to_dict()
    d["sentence"]["features"] = d["sentence"]["features"][:27]  # a file from before the rationale features
    old.write_text(json.dumps(d), encoding="utf-8")
    for path, msg in ((bad, "not a verify model file"), (tmp_path / "none.json", "cannot read the verify model"),
                      (old, "do not match the code's")):
        with pytest.raises(AssistantError, match=msg) as err:
            load_verify_model(path)
        assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_shipped_model_loads_and_names_its_features() -> None:
    m = shipped_verify_model()
    assert m.sentence.features == RATIONALE_FEATURES
    assert m.evidence.features == EVIDENCE_FEATURES and m.contradict.features == STANCE_FEATURES
    assert m.meta["scifact_train_claims"] == 809 and "cross_validation" in m.meta
    assert 0 < m.decisions.evidence_threshold < 1


def test_llm_path_keeps_only_the_papers_own_sentences(sample_assistant: Assistant) -> None:
    """The model's verdict on paper 1 cites a sentence of paper 2 and one of its own: only its own is
    kept; paper 2's SUPPORT cites only paper 1's sentence, so it becomes not enough evidence."""
    from assistant.verification import verify_offline

    a = sample_assistant
    res = a.retriever.retrieve(SUPPORTED)
    ev, labels = verify_offline(SUPPORTED, res.sources, a.index.lexical().idf, res.chunk_sims, res.sentence_sims,
                                shipped_verify_model())
    reply = {"papers": [{"paper": 1, "verdict": "SUPPORT", "sentences": ["2.1", "1.2"]},
                        {"paper": 2, "verdict": "SUPPORT", "sentences": ["1.1"]},
                        {"paper": 7, "verdict": "CONTRADICT", "sentences": ["7.1"]}]}
    server = ScriptedChat([json.dumps(reply)])
    try:
        from assistant.llm import ChatClient

        client = ChatClient(a.settings.with_(llm={"base_url": server.url, "max_retries": 0}))
        out, checks = verify_with_llm(client, SUPPORTED, res.sources, ev, labels, papers="candidates")
    finally:
        server.close()
    sent = server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    assert SUPPORTED in sent["messages"][1]["content"]
    first = next(x for x in out if x.source_index == labels[0].source_index)
    assert first.label == "SUPPORT" and len(first.rationale) == 1
    abstract = res.sources[first.source_index].paper.abstract
    assert abstract[first.rationale[0].start:first.rationale[0].end] == first.rationale[0].text
    second = next(x for x in out if x.source_index == labels[1].source_index)
    assert second.label == "NOT_ENOUGH_EVIDENCE"
    assert any("not one of paper 1's" in d for d in checks["dropped"])
    assert any("paper 7" in d for d in checks["dropped"])


def test_llm_path_labels_only_the_papers_the_offline_model_keeps(sample_assistant: Assistant) -> None:
    """``papers="kept"`` (the default): the model is shown only the paper the offline model keeps and may
    turn its SUPPORT into CONTRADICT; a claim the offline model abstains on costs no request at all."""
    from assistant.llm import ChatClient
    from assistant.verification import verify_offline

    a = sample_assistant
    model = shipped_verify_model()
    res = a.retriever.retrieve(SUPPORTED)
    ev, labels = verify_offline(SUPPORTED, res.sources, a.index.lexical().idf, res.chunk_sims, res.sentence_sims,
                                model)
    kept = [x for x in labels if x.label != "NOT_ENOUGH_EVIDENCE"]
    assert len(kept) == 1 and len(labels) > 1
    server = ScriptedChat([json.dumps({"papers": [{"paper": 1, "verdict": "CONTRADICT", "sentences": ["1.1"]}]})])
    try:
        client = ChatClient(a.settings.with_(llm={"base_url": server.url, "max_retries": 0}))
        out, checks = verify_with_llm(client, SUPPORTED, res.sources, ev, labels)
        off = a.retriever.retrieve(OFF_TOPIC)
        ev2, labels2 = verify_offline(OFF_TOPIC, off.sources, a.index.lexical().idf, off.chunk_sims,
                                      off.sentence_sims, model)
        assert labels2 and all(x.label == "NOT_ENOUGH_EVIDENCE" for x in labels2)
        out2, checks2 = verify_with_llm(client, OFF_TOPIC, off.sources, ev2, labels2)
    finally:
        server.close()
    assert len(server.requests) == 1  # the off-topic claim sent nothing
    user = server.requests[0]["messages"][1]["content"]
    assert user.count("<paper id=") == 1 and res.sources[kept[0].source_index].paper.title[:30] in user
    assert checks["llm_papers"] == 1 and checks2 == {"llm_papers": 0}
    assert [x.label for x in out].count("CONTRADICT") == 1 and out[0].source_index == kept[0].source_index
    assert {x.source_index for x in out} == {x.source_index for x in labels}  # the others stay listed, unlabelled
    assert all(x.label == "NOT_ENOUGH_EVIDENCE" for x in out[1:])
    assert [(x.source_index, x.label) for x in out2] == [(x.source_index, x.label) for x in labels2]


def test_claims_file_errors_name_the_file(tmp_path: Path) -> None:
    f = tmp_path / "claims.txt"
    f.write_text("# mine\n\nA claim.\n  Another claim.  \n", encoding="utf-8")
    assert read_claims(f) == ["A claim.", "Another claim."]
    f.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(InputError, match="claims.txt: no claims"):
        read_claims(f)
    with pytest.raises(InputError, match="cannot read"):
        read_claims(tmp_path / "missing.txt")


def test_cli_verify_json_file_and_errors(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    env = cli_env(sample_home, embed_cache)
    run = lambda *args: subprocess.run([sys.executable, "-m", "assistant", "verify", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=600)
    r = run(SUPPORTED, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["verdict"] == "SUPPORT" and d["papers"][0]["quotes"]
    r = run(OFF_TOPIC)
    assert r.returncode == 0, r.stderr
    assert "not enough evidence" in r.stdout and "closest" in r.stdout
    claims = tmp_path / "claims.txt"
    claims.write_text(f"{SUPPORTED}\n# skipped\n{OFF_TOPIC}\n", encoding="utf-8")
    r = run("--file", str(claims), "--json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["verdict"] for x in lines] == ["SUPPORT", "NOT_ENOUGH_EVIDENCE"]
    assert "verified 2 claim(s)" in r.stderr
    r = run("--file", str(tmp_path / "nope.txt"))
    assert r.returncode != 0 and "nope.txt: cannot read the claims file" in r.stderr
    assert "Traceback" not in r.stderr


def test_llm_verdict_replies_of_the_wrong_shape(sample_assistant: Assistant) -> None:
    """A number for `sentences` raised TypeError (/v1/verify answered 500); `"paper": true` read as paper 1;
    of two verdicts on one paper the last won without a word; text after the JSON object ("... and also
    {...}") made the whole reply unreadable."""
    from assistant.llm import ChatClient
    from assistant.verification import parse_llm_verdicts, verify_offline

    assert parse_llm_verdicts('Sure! {"papers": [{"paper": 1, "verdict": "SUPPORT"}]} and also {"x": 1}') == [
        {"paper": 1, "verdict": "SUPPORT"}]
    a = sample_assistant
    res = a.retriever.retrieve(SUPPORTED)
    ev, labels = verify_offline(SUPPORTED, res.sources, a.index.lexical().idf, res.chunk_sims, res.sentence_sims,
                                shipped_verify_model())
    replies = [{"papers": [{"paper": 1, "verdict": "SUPPORT", "sentences": 3}]},
               {"papers": [{"paper": True, "verdict": "SUPPORT", "sentences": ["1.1"]}]},
               {"papers": [{"paper": 1, "verdict": "SUPPORT", "sentences": ["1.1"]},
                           {"paper": 1, "verdict": "CONTRADICT", "sentences": ["1.2"]}]}]
    server = ScriptedChat([json.dumps(r) for r in replies])
    try:
        client = ChatClient(a.settings.with_(llm={"base_url": server.url, "max_retries": 0}))
        outs = [verify_with_llm(client, SUPPORTED, res.sources, ev, labels, papers="candidates") for _ in replies]
    finally:
        server.close()
    first = [next(x for x in out if x.source_index == labels[0].source_index) for out, _ in outs]
    assert first[0].label == "NOT_ENOUGH_EVIDENCE" and "without a sentence of its own" in outs[0][1]["dropped"][0]
    assert first[1].label == "NOT_ENOUGH_EVIDENCE" and "paper True" in outs[1][1]["dropped"][0]
    assert first[2].label == "SUPPORT"
    assert outs[2][1]["dropped"] == ["paper 1: a second verdict (CONTRADICT) ignored; the first one stands"]
