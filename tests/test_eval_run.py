"""run_eval and `eval run/compare/calibrate` against the real Assistant on the bundled sample index."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.cli.eval_cmd import eval_app
from assistant.evaluation import EvalReport, load_questions, run_eval, write_questions
from assistant.evaluation.calibration import DEFAULT_LABELS
from assistant.evaluation.questions import Question
from assistant.llm import ChatClient
from assistant.settings import Settings
from tests.scripted_chat import ScriptedChat

QUESTIONS = [
    Question("tdpo", "lookup", "Which paper proposes token-level direct preference optimization?",
             ["Token-level Direct Preference Optimization"], "TDPO optimizes policy at the token level.", []),
    Question("dpo-ppo", "compare", "How do papers compare DPO and PPO for alignment?",
             ["Token-level Direct Preference Optimization",
              "Pairwise Proximal Policy Optimization: Harnessing Relative Feedback for LLM Alignment"],
             "TDPO improves over DPO and PPO-based RLHF.", []),
    Question("mercury", "unanswerable", "What is the boiling point of mercury?", [],
             "The indexed papers do not answer this.", []),
]


def without_latency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("latency_ms", "timings_ms")} for r in rows]


def test_run_eval_on_the_sample_index(sample_assistant: Any, tmp_path: Path) -> None:
    report = run_eval(QUESTIONS, sample_assistant, out_dir=tmp_path / "run", junit=tmp_path / "junit.xml",
                      corpus_fingerprint="fp-123", progress=False)
    assert [r["qid"] for r in report.rows] == ["tdpo", "dpo-ppo", "mercury"]
    tdpo, _, mercury = report.rows
    assert tdpo["scores"]["hit_at_k"] == 1.0 and not tdpo["refused"] and tdpo["citations"]
    assert tdpo["latency_ms"] == tdpo["timings_ms"]["total"] > 0
    assert mercury["refused"] and not mercury["failed"]
    assert report.summary["questions"] == 3 and report.summary["refusal_accuracy"] == 1.0
    meta = report.meta
    assert meta["corpus_fingerprint"] == "fp-123" and meta["judge"]["name"] == "offline"
    assert meta["settings"]["llm"]["api_key"] == "" and meta["settings"]["retrieval"]["top_k"] == meta["k"]
    assert meta["backend"]["llm"] == "extractive"
    commit = meta["git"]["commit"]
    assert commit is None or len(commit) == 40
    loaded = EvalReport.load(tmp_path / "run" / "report.json")
    assert loaded.summary["questions"] == 3
    assert ET.parse(tmp_path / "junit.xml").getroot().find("testsuite").get("tests") == "3"  # type: ignore[union-attr]
    # The same questions in a thread pool give the same rows, in question order.
    pooled = run_eval(QUESTIONS, sample_assistant, concurrency=3, progress=False)
    assert without_latency(pooled.rows) == without_latency(report.rows)
    only = run_eval(QUESTIONS, sample_assistant, types=["unanswerable", "compare"], limit=1, progress=False)
    assert [r["qid"] for r in only.rows] == ["dpo-ppo"] and only.meta["questions_total"] == 3
    assert report.meta["warnings"] == []


def test_a_gold_paper_the_index_does_not_hold_is_named(sample_assistant: Any, cli_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """A typo in a gold title (or a question set for another collection) scored as the system's retrieval
    miss, without a word."""
    typo = Question("typo", "lookup", "Which paper proposes token-level direct preference optimization?",
                    ["Token-level Direct Preference Optimisation (typo)"], "TDPO.", [])
    by_id = Question("by-id", "lookup", "Which paper proposes token-level direct preference optimization?",
                     ["Token-level Direct Preference Optimization"], "TDPO.", [], extra={"gold_ids": ["no-such-id"]})
    report = run_eval([QUESTIONS[0], typo, by_id], sample_assistant, progress=False)
    assert report.meta["warnings"] == [
        "typo: no indexed paper is titled 'Token-level Direct Preference Optimisation (typo)'; the question "
        "scores it as missed",
        "by-id: gold paper id 'no-such-id' is not in the index; the question scores it as missed"]
    qfile = tmp_path / "q.jsonl"
    write_questions([typo], qfile)
    res = CliRunner().invoke(eval_app, ["run", str(qfile), "--out", str(tmp_path / "a"), "--no-progress"],
                             env=cli_env)
    assert res.exit_code == 0, res.output
    assert "warning: typo: no indexed paper is titled" in res.output


def test_secrets_never_reach_the_report(sample_assistant: Any, tmp_path: Path) -> None:
    sample_assistant.settings = sample_assistant.settings.with_(openai_api_key="sk-very-secret")
    report = run_eval(QUESTIONS[:1], sample_assistant, out_dir=tmp_path, progress=False)
    assert "sk-very-secret" not in (tmp_path / "report.json").read_text()
    assert report.meta["settings"]["llm"]["api_key"] == "***"


def test_llm_judge_errors_are_counted_not_raised(sample_assistant: Any, tmp_path: Path) -> None:
    server = ScriptedChat(["garbage"] * 50)
    try:
        client = ChatClient(Settings(home=tmp_path, llm="openai", openai_base_url=server.url, max_retries=0,
                                     llm_model="judge-x"))
        report = run_eval(QUESTIONS[:2], sample_assistant, judge="llm", chat_client=client, progress=False)
    finally:
        server.close()
    s = report.summary
    n_sentences = sum(len(r["sentences"]) for r in report.rows)
    assert n_sentences > 0
    assert s["judge_errors"] == 2 + n_sentences  # one claims step per answer + one verification per sentence
    assert s["sentence_support"] is None and s["faithfulness"] is None
    assert report.meta["judge"] == {"name": "llm", "model": "judge-x", "threshold": None}
    assert all("unsupported" not in " ".join(r["fail_reasons"]) for r in report.rows)


@pytest.fixture()
def cli_env(sample_home: Path, embed_cache: Path) -> dict[str, str]:
    return {"ASSISTANT_HOME": str(sample_home), "ASSISTANT_CACHE_DIR": str(embed_cache), "ASSISTANT_CONFIG": "",
            "COLUMNS": "200", "NO_COLOR": "1"}


def test_cli_run_gate_and_compare(cli_env: dict[str, str], tmp_path: Path) -> None:
    qfile = tmp_path / "q.jsonl"
    write_questions(QUESTIONS, qfile)
    runner = CliRunner()
    gate = tmp_path / "gate.toml"
    gate.write_text("[min]\nhit_at_k = 0.5\nrefusal_accuracy = 1.0\n[max]\nfalse_refusal_rate = 0.5\n")
    res = runner.invoke(eval_app, ["run", str(qfile), "--out", str(tmp_path / "a"), "--gate", str(gate),
                                   "--junit", str(tmp_path / "a.xml"), "--no-progress"], env=cli_env)
    assert res.exit_code == 0, res.output
    assert "gate passed (3 thresholds)" in res.output and "By question type" in res.output
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["meta"]["questions_file"] == str(qfile) and len(report["meta"]["corpus_fingerprint"]) == 16
    assert (tmp_path / "a.xml").exists() and (tmp_path / "a" / "report.md").exists()

    res = runner.invoke(eval_app, ["run", str(qfile), "--out", str(tmp_path / "b"), "--gate", str(gate),
                                   "--min", "hit_at_k=1.01", "--max", "latency_p95_ms=0", "--no-embed",
                                   "--types", "lookup,unanswerable", "--no-progress"], env=cli_env)
    assert res.exit_code == 1
    assert "gate failed" in res.output and "hit_at_k = 1 < min 1.01" in res.output
    assert "latency_p95_ms = " in res.output and "> max 0" in res.output
    assert json.loads((tmp_path / "b" / "report.json").read_text())["summary"]["questions"] == 2

    res = runner.invoke(eval_app, ["compare", str(tmp_path / "a"), str(tmp_path / "b")], env=cli_env)
    assert res.exit_code == 0, res.output
    assert "2 shared questions" in res.output and "removed" in res.output

    res = runner.invoke(eval_app, ["run", str(qfile), "-k", "0"], env=cli_env)
    assert res.exit_code == 1 and str(res.exception) == "-k/--top-k must be at least 1, got 0"
    res = runner.invoke(eval_app, ["run", str(qfile), "--min", "nonsense=1"], env=cli_env)
    assert res.exit_code == 1 and "unknown metric 'nonsense'" in str(res.exception)
    loaded = load_questions(qfile)
    assert [q.qid for q in loaded] == ["tdpo", "dpo-ppo", "mercury"]


@pytest.mark.skipif(not DEFAULT_LABELS.exists(), reason="calibration labels not written yet")
def test_cli_calibrate_reports_agreement(cli_env: dict[str, str]) -> None:
    res = CliRunner().invoke(eval_app, ["calibrate", "--no-embed", "--json"], env=cli_env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["lexical"]["current"]["n"] == len(DEFAULT_LABELS.read_text().splitlines())
    # The lexical-only figures of docs/evaluation.md (tests/test_eval_calibration.py holds the Python API to them too).
    assert out["lexical"]["current"]["accuracy"] == pytest.approx(0.865, abs=0.005)
    assert out["lexical"]["current"]["kappa"] == pytest.approx(0.728, abs=0.005)


def test_a_lone_surrogate_question_is_reported_and_every_report_replaced_whole(sample_assistant: Any,
                                                                              tmp_path: Path) -> None:
    """A question holding a lone surrogate (``"\\ud800"`` in the question file) ends as an error row,
    and every report is written: JSON keeps it as its escape, the text formats as U+FFFD. Before,
    writing raised UnicodeEncodeError and left the previous report.json truncated to 0 bytes."""
    out, junit, html = tmp_path / "run", tmp_path / "junit.xml", tmp_path / "report.html"
    run_eval(QUESTIONS[:1], sample_assistant, out_dir=out, junit=junit, html=html, progress=False)
    odd = Question("odd", "lookup", "Which paper proposes token-level \ud800 direct preference optimization?",
                   ["Token-level Direct Preference Optimization"], "TDPO.", [])
    report = run_eval([odd], sample_assistant, out_dir=out, junit=junit, html=html, progress=False)
    assert [r["qid"] for r in report.rows] == ["odd"]
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["question"] for r in data["rows"]] == [odd.question]  # the escape reads back the same
    assert "\\ud800" in (out / "report.json").read_text(encoding="utf-8")
    assert "token-level \ufffd direct" in (out / "report.md").read_text(encoding="utf-8")
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "1"  # type: ignore[union-attr]
    assert "token-level \ufffd direct" in html.read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]  # no temporary file left


def test_a_failed_write_leaves_the_previous_reports_whole(sample_assistant: Any, tmp_path: Path) -> None:
    from assistant.evaluation import write_report
    from assistant.evaluation.files import write_all_atomic

    out = tmp_path / "run"
    first = run_eval(QUESTIONS[:1], sample_assistant, out_dir=out, junit=tmp_path / "j.xml", progress=False)
    before = {p: p.read_bytes() for p in (out / "report.json", out / "report.md", tmp_path / "j.xml")}
    # A report that fails while rendering (here: a row missing its scores) writes nothing, not
    # report.json alone.
    broken = EvalReport(summary=first.summary, rows=[{k: v for k, v in r.items() if k != "scores"}
                                                     for r in first.rows], meta=first.meta)
    with pytest.raises(KeyError):
        write_report(broken, out, junit=tmp_path / "j.xml")
    # A failure after the first file is staged (a text UTF-8 cannot encode stands in for a full disk)
    # replaces none of them.
    with pytest.raises(UnicodeEncodeError):
        write_all_atomic([(out / "report.json", "{}"), (out / "report.md", "\ud800")])
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "report.md"]
