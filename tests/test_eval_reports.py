"""Scoring rows, the failure rule, summaries, report files, JUnit, gate and compare,
on hand-made questions and Answer dicts whose right scores are known."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import InputError
from assistant.evaluation import (
    EvalReport,
    Gate,
    check_gate,
    compare_reports,
    load_gate,
    parse_thresholds,
    render_junit,
    render_markdown,
    write_report,
)
from assistant.evaluation.offline_judge import OfflineJudge
from assistant.evaluation.questions import Question
from assistant.evaluation.results import summarise
from assistant.evaluation.scoring import error_row, score_answer
from assistant.records import REFUSAL

TDPO = "Token-level Direct Preference Optimization"
CXR = "Chest Radiograph Report Generation"
PASSAGES = {
    "p-tdpo": f"{TDPO}. TDPO aligns LLMs at the token level. TDPO improves win rate by 12% over DPO on Anthropic HH.",
    "p-cxr": f"{CXR}. Our benchmark contains 3,000 annotated chest images from two hospitals.",
}


def q(qid: str, typ: str = "lookup", gold: list[str] | None = None, answer: str = "TDPO aligns at token level.",
      question: str = "Which paper aligns LLMs at the token level?") -> Question:
    gold = [TDPO] if gold is None else gold
    return Question(qid, typ, question, gold, answer if gold else REFUSAL, [])


def ans(text: str, cites: list[tuple[int, str, str]], *, refused: bool = False,
        sources: list[tuple[str, str]] | None = None, total_ms: float = 100.0) -> dict[str, Any]:
    sources = sources if sources is not None else [("p-cxr", CXR), ("p-tdpo", TDPO)]
    return {"question": "?", "answer": text, "refused": refused,
            "citations": [{"marker": m, "paper_id": pid, "title": t, "quote": None} for m, pid, t in cites],
            "sources": [{"rank": i, "paper_id": pid, "title": t, "score": 1.0 / i} for i, (pid, t) in
                        enumerate(sources, 1)],
            "backend": {"llm": "extractive"}, "timings_ms": {"total": total_ms}, "checks": {}}


@pytest.fixture(scope="module")
def judge() -> OfflineJudge:
    return OfflineJudge()


def rows_for(judge: OfflineJudge) -> list[dict[str, Any]]:
    good = ans("TDPO aligns LLMs at the token level [1].", [(1, "p-tdpo", TDPO)], total_ms=100)
    refused = ans(REFUSAL, [], refused=True, total_ms=200)
    answered = ans("The benchmark contains 3,000 annotated chest images [1].", [(1, "p-cxr", CXR)], total_ms=300)
    refused_ok = ans(REFUSAL, [], refused=True, sources=[], total_ms=400)
    messy = ans("TDPO improves win rate by 12% over DPO on Anthropic HH [1, 2]. It is the best method [3].",
                [(1, "p-tdpo", TDPO), (2, "p-cxr", CXR)], total_ms=500)
    return [
        score_answer(q("good"), good, PASSAGES, judge),
        score_answer(q("refused", "detail"), refused, PASSAGES, judge),
        score_answer(q("answered", "unanswerable", gold=[]), answered, PASSAGES, judge),
        score_answer(q("refused-ok", "unanswerable", gold=[]), refused_ok, PASSAGES, judge),
        score_answer(q("messy"), messy, PASSAGES, judge),
    ]


def test_scores_of_hand_made_answers(judge: OfflineJudge) -> None:
    good, refused, answered, refused_ok, messy = rows_for(judge)
    s = good["scores"]
    assert (s["hit_at_1"], s["hit_at_k"], s["mrr"], s["recall_at_k"]) == (0.0, 1.0, 0.5, 1.0)
    assert s["citation_validity"] == s["citation_precision"] == s["citation_recall"] == 1.0
    assert s["sentence_support"] == s["faithfulness"] == 1.0
    # answer {tdpo, aligns, llms, at, token, level} vs reference without "llms": P = 5/6, R = 1.
    assert s["correctness_f1"] == pytest.approx(10 / 11)
    assert not good["failed"] and good["fail_reasons"] == []

    assert refused["refused"] and refused["failed"]
    assert refused["fail_reasons"] == ["refused an answerable question"]
    assert refused["scores"]["correctness_f1"] == 0.0 and refused["scores"]["citation_recall"] == 0.0
    assert refused["scores"]["sentence_support"] is None

    assert answered["fail_reasons"] == ["did not refuse an unanswerable question"]
    assert answered["scores"]["hit_at_k"] is None and answered["scores"]["citation_recall"] is None
    assert answered["scores"]["sentence_support"] == 1.0  # supported, just not wanted

    assert not refused_ok["failed"]

    m = messy["scores"]
    assert m["citation_validity"] == pytest.approx(2 / 3)  # [1], [2] resolve; [3] does not
    assert m["citation_precision"] == 0.5  # the gold paper counts; the CXR paper supports nothing
    assert m["sentence_support"] == 0.5 and m["faithfulness"] == 0.5
    assert messy["fail_reasons"] == ["1 of 2 sentence(s) not supported by their citations",
                                     "citation markers that resolve to no citation"]
    assert messy["sentences"][0]["per_citation"] == {"1": True, "2": False}
    assert "unknown marker" in messy["sentences"][1]["rationale"]


def test_citation_precision_counts_a_supporting_non_gold_paper(judge: OfflineJudge) -> None:
    a = ans("The benchmark contains 3,000 annotated chest images [1]. TDPO aligns LLMs at the token level [2].",
            [(1, "p-cxr", CXR), (2, "p-tdpo", TDPO)])
    row = score_answer(q("x"), a, PASSAGES, judge)
    assert row["scores"]["citation_precision"] == 1.0  # CXR is not gold but supports its sentence
    # A cited paper whose text is unavailable supports nothing.
    row = score_answer(q("x"), a, {"p-tdpo": PASSAGES["p-tdpo"]}, judge)
    assert row["scores"]["citation_precision"] == 0.5


def test_summary_rates_and_latency(judge: OfflineJudge) -> None:
    rows = rows_for(judge) + [error_row(q("boom"), "the server at http://x failed", 50.0)]
    s = summarise(rows)
    assert s["questions"] == 6 and s["failed"] == 4 and s["errors"] == 1
    assert s["refusal_accuracy"] == 0.5  # answered wrongly, refused-ok right
    assert s["false_refusal_rate"] == pytest.approx(1 / 3)  # good, refused, messy (the errored one left out)
    assert s["latency_p50_ms"] == 250.0 and s["latency_p95_ms"] == pytest.approx(475.0)
    assert s["hit_at_k"] == 1.0 and s["citation_recall"] == pytest.approx(2 / 3)
    assert s["by_type"]["unanswerable"]["questions"] == 2 and s["by_type"]["unanswerable"]["failed"] == 1
    assert s["by_type"]["lookup"]["refusal_accuracy"] is None


def make_report(judge: OfflineJudge) -> EvalReport:
    rows = rows_for(judge)
    return EvalReport(summary=summarise(rows), rows=rows,
                      meta={"judge": {"name": "offline", "model": None, "threshold": 0.5}, "duration_s": 1.5,
                            "git": {"commit": "abc", "dirty": False}, "corpus_fingerprint": "f1"})


def test_markdown_lists_worst_questions_first(judge: OfflineJudge) -> None:
    md = render_markdown(make_report(judge))
    table = md.split("## Questions, worst first")[1].split("## Failing questions")[0]
    order = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "qid" not in line]
    assert order[0] == "messy"  # two failure reasons
    assert set(order[:3]) == {"messy", "refused", "answered"} and set(order[3:]) == {"good", "refused-ok"}
    assert "| unanswerable | 2 | 1 |" in md
    # Paper and model text is escaped for Markdown (the report is pasted where it is rendered).
    assert "### refused (detail)" in md and "unsupported: “It is the best method \\[3\\].”" in md


def test_junit_has_a_case_per_question_and_fails_the_right_ones(judge: OfflineJudge, tmp_path: Path) -> None:
    report = make_report(judge)
    report.rows.append(error_row(q("boom"), "backend down", 10.0))
    root = ET.fromstring(render_junit(report))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "6"
    assert suite.get("failures") == "3" and suite.get("errors") == "1"
    cases = {c.get("name", "").split(":")[0]: c for c in suite.iter("testcase")}
    assert cases["refused"].find("failure").get("message") == "refused an answerable question"  # type: ignore[union-attr]
    assert cases["boom"].find("error") is not None
    assert cases["good"].find("failure") is None and cases["good"].get("classname") == "eval.lookup"
    paths = write_report(report, tmp_path / "run", junit=tmp_path / "j" / "junit.xml")
    assert [p.name for p in paths] == ["report.json", "report.md", "junit.xml"]
    loaded = EvalReport.load(tmp_path / "run")
    assert loaded.rows == json.loads(json.dumps(report.rows)) and loaded.meta["corpus_fingerprint"] == "f1"


def test_gate_thresholds_from_cli_and_toml(tmp_path: Path) -> None:
    assert parse_thresholds(["hit_at_k=0.8", "mrr = 0.5"]) == {"hit_at_k": 0.8, "mrr": 0.5}
    for bad, msg in [("hit_at_k", "expected metric=value"), ("hits=1", "unknown metric 'hits'"),
                     ("mrr=high", "'high' is not a number")]:
        with pytest.raises(InputError, match=msg):
            parse_thresholds([bad])
    path = tmp_path / "gate.toml"
    path.write_text("[min]\nhit_at_k = 0.9\nrefusal_accuracy = 1\n[max]\nlatency_p95_ms = 300\n")
    gate = load_gate(path)
    assert gate.min == {"hit_at_k": 0.9, "refusal_accuracy": 1.0} and gate.max == {"latency_p95_ms": 300.0}
    summary = {"hit_at_k": 0.95, "refusal_accuracy": None, "latency_p95_ms": 480.0}
    assert check_gate(summary, gate) == ["refusal_accuracy: not measured in this run (min 1)",
                                         "latency_p95_ms = 480 > max 300"]
    merged = gate.merged(Gate({"hit_at_k": 0.99}))
    assert "hit_at_k = 0.95 < min 0.99" in check_gate(summary, merged)
    assert check_gate({"hit_at_k": 1.0}, Gate({"hit_at_k": 1.0})) == []
    path.write_text("[min]\nhitk = 0.9\n")
    with pytest.raises(InputError, match="unknown metric 'hitk'"):
        load_gate(path)
    path.write_text("[minimum]\n")
    with pytest.raises(InputError, match="unknown section"):
        load_gate(path)
    path.write_text('[min]\nmrr = "high"\n')
    with pytest.raises(InputError, match="expected a number"):
        load_gate(path)
    for text, message in [("[max]\nfailed = true\n", " [max]: failed: expected a number, got True"),
                          ("min = 3\n", " [min]: must be a table of metric = value"),
                          ("[min]\n[extra]\n[more]\n", ": unknown section(s) ['extra', 'more']")]:
        path.write_text(text)
        with pytest.raises(InputError) as exc:
            load_gate(path)
        assert str(exc.value).startswith(f"{path}{message}"), str(exc.value)


def test_project_gate_file_loads() -> None:
    gate = load_gate(Path(__file__).resolve().parents[1] / "evals" / "gate.toml")
    assert isinstance(gate, Gate)


def test_compare_reports_metric_deltas_and_question_changes(judge: OfflineJudge, tmp_path: Path) -> None:
    a = make_report(judge)
    rows = rows_for(judge)
    # B: the refused question is now answered well, the good one now cites the wrong paper.
    rows[1] = score_answer(q("refused", "detail"), ans("TDPO aligns LLMs at the token level [1].",
                                                       [(1, "p-tdpo", TDPO)]), PASSAGES, judge)
    rows[0] = score_answer(q("good"), ans("TDPO aligns LLMs at the token level [1].", [(1, "p-cxr", CXR)]),
                           PASSAGES, judge)
    rows = [r for r in rows if r["qid"] != "refused-ok"]
    rows.append(score_answer(q("new"), ans(REFUSAL, [], refused=True), PASSAGES, judge))
    b = EvalReport(summary=summarise(rows), rows=rows, meta={"judge": {"name": "offline"},
                                                             "corpus_fingerprint": "f2"})
    write_report(a, tmp_path / "a")
    cmp = compare_reports(tmp_path / "a", b)
    changes = {x["qid"]: x["change"] for x in cmp.questions}
    assert changes == {"good": "regressed", "refused": "improved", "answered": "unchanged", "messy": "unchanged",
                       "refused-ok": "removed", "new": "added"}
    regressed = cmp.by_change("regressed")[0]
    assert regressed["deltas"]["sentence_support"] == -1.0 and regressed["b_reasons"]
    metrics = {m["metric"]: m for m in cmp.metrics}
    assert metrics["false_refusal_rate"]["a"] == pytest.approx(1 / 3)
    assert metrics["false_refusal_rate"]["b"] == pytest.approx(1 / 4)
    assert metrics["false_refusal_rate"]["better"] is True  # lower is better
    assert metrics["citation_precision"]["better"] is False
    assert cmp.meta["shared_questions"] == 4
    assert any("different corpora" in w for w in cmp.meta["warnings"])
    assert not any("share no question" in w for w in cmp.meta["warnings"])
    only_new = EvalReport(summary=summarise(rows[-1:]), rows=rows[-1:], meta=b.meta)
    apart = compare_reports(tmp_path / "a", only_new)
    assert apart.meta["shared_questions"] == 0
    assert any("the reports share no question" in w for w in apart.meta["warnings"])
