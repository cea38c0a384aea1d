"""Hostile question files and unusable outputs for `eval run/report/compare/make-questions`: one line naming the
file, line or option, refused before the index is built or a question asked, never a traceback, never a report
that forges a line or a JUnit file a CI server cannot parse, and never a user's file overwritten with nothing.
The real CLI in a subprocess where the printed output is the point; the real loaders and renderers otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.cli.eval_cmd import eval_app
from assistant.errors import InputError
from assistant.evaluation import EvalReport, check_outputs, load_questions, render_junit, render_markdown, run_eval
from assistant.evaluation.questions import Question
from assistant.evaluation.results import summarise
from assistant.evaluation.scoring import error_row
from tests.conftest import cli_env
from tests.scripted_chat import ScriptedChat

TDPO = "Token-level Direct Preference Optimization"
LOOKUP = {"qid": "tdpo", "type": "lookup", "question": "Which paper proposes token-level direct preference "
          "optimization?", "gold_titles": [TDPO], "answer": "TDPO.", "evidence": []}


def run(home: Path, *args: str, cache: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", "eval", *args], capture_output=True, text=True,
                          env=cli_env(home, cache, **env), timeout=600)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def write_jsonl(path: Path, *rows: dict[str, Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # (ASCII: "\ud800" as escape)
    return path


def report_of(*rows: dict[str, Any]) -> EvalReport:
    return EvalReport(summary=summarise(list(rows)), rows=list(rows),
                      meta={"judge": {"name": "offline", "model": None, "threshold": 0.5}, "duration_s": 1.0})


# -- a lone surrogate or a newline in a qid -------------------------------------------------------------
def test_a_surrogate_or_newline_qid_is_printed_as_one_line_by_run_report_and_compare(
        sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """`eval run` (without --json) wrote report.json and report.md, then died with UnicodeEncodeError printing
    the worst-questions table; `eval report DIR` and `eval compare` died the same way. A qid holding a newline
    printed a line of its own ("error: forged") in the table, the gold warning and report.md."""
    questions = write_jsonl(tmp_path / "q.jsonl",
                            dict(LOOKUP, qid="q\ud800", gold_titles=["No such paper"]),
                            dict(LOOKUP, qid="a\nerror: forged |", gold_titles=["No such paper either"]))
    proc = run(sample_home, "run", str(questions), "--out", str(tmp_path / "r"), "--no-progress", "--no-embed",
               cache=embed_cache)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "q\ufffd" in proc.stdout and "Worst questions (of 2 failing)" in proc.stdout
    assert "a\\nerror: forged |" in proc.stdout and "a\\nerror: forged" in proc.stderr  # the table; the warning
    for text in (proc.stdout, proc.stderr):
        assert not [line for line in text.splitlines() if line.lstrip("│ ").startswith("error: forged")], text
    report = run(sample_home, "report", str(tmp_path / "r"), cache=embed_cache)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr[-3000:]
    assert "| q\ufffd | lookup | FAIL |" in report.stdout and "### q\ufffd (lookup)" in report.stdout
    assert not [line for line in report.stdout.splitlines() if line.startswith("error: forged")], report.stdout
    # compare: the same qid passing in A and failing in B is listed as regressed.
    rows = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))["rows"]
    passing = [dict(r, failed=False, fail_reasons=[]) for r in rows]
    (tmp_path / "a.json").write_text(json.dumps(report_of(*passing).to_dict()), encoding="utf-8")
    cmp = run(sample_home, "compare", str(tmp_path / "a.json"), str(tmp_path / "r"), cache=embed_cache)
    assert cmp.returncode == 0 and "Traceback" not in cmp.stderr, cmp.stderr[-3000:]
    assert "2 regressed" in cmp.stdout and "q\ufffd" in cmp.stdout and "a\\nerror: forged |" in cmp.stdout


def test_markdown_cells_keep_a_newline_or_pipe_in_their_row() -> None:
    """A qid "a\\nerror: forged |" ended its table row and started a forged line in report.md; a newline in a
    question or a type (a hand-edited report.json) did the same in the failing-questions section."""
    q = Question("a\nerror: forged |", "lookup", "Which paper?\n- all checks passed", [TDPO], "TDPO.", [])
    row = error_row(q, "backend down\nerror: forged", 5.0)
    row["type"] = "lookup\n| x |"
    md = render_markdown(report_of(row))
    assert not [line for line in md.splitlines() if line.startswith(("error: forged", "- all checks", "| x |"))], md
    (table_row,) = [line for line in md.splitlines() if line.startswith("| a\\")]
    assert table_row.startswith("| a\\\\nerror: forged \\| | lookup\\\\n\\| x \\| | FAIL |"), table_row
    assert "### a\\\\nerror: forged \\| (lookup\\\\n\\| x \\|)" in md
    assert "**Q:** Which paper? - all checks passed" in md


# -- JUnit XML a CI server can parse ---------------------------------------------------------------------
def test_junit_is_well_formed_xml_whatever_the_text_holds() -> None:
    """Control characters (\\x01, \\x00) in a question, id, answer or error were written as they are, and
    XML 1.0 cannot hold them even as references: the CI server rejected the whole file."""
    q = Question("q\x02\ud800", "lookup", "What is\x01 DPO\x00? *PO", [TDPO], "TDPO.", [])
    row = error_row(q, "server said \x1b[31m no", 5.0)
    row["answer"] = "An answer\x0b with a vertical tab"
    row["judge_errors"] = ["judge\x07 failed"]
    xml = render_junit(report_of(row))
    root = ET.fromstring(xml)  # expat: raised "not well-formed (invalid token)"
    case = root.find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == "q\\x02\ufffd: What is\\x01 DPO\\x00? *PO"  # shown, and no Markdown escapes
    error = case.find("error")
    assert error is not None and error.get("message") == "server said \\x1b[31m no"
    assert "question: What is\\x01 DPO\\x00? *PO" in (error.text or "") and "\\x0b" in (error.text or "")
    assert "judge\\x07 failed" in (case.findtext("system-out") or "")


# -- make-questions: a backend error is an error, and the user's file is kept ----------------------------
def test_make_questions_says_a_server_cannot_be_reached_and_keeps_the_file(sample_home: Path, embed_cache: Path,
                                                                          tmp_path: Path) -> None:
    """With no server, every paper was "skipped (invalid draft)", the command exited 0 and truncated --out to
    0 bytes. Now the backend's own one line, and --out untouched; so too when no draft passes the checks."""
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps(LOOKUP) + "\n", encoding="utf-8")
    before = mine.read_bytes()
    proc = run(sample_home, "make-questions", "--n", "2", "--out", str(mine), cache=embed_cache,
               OPENAI_BASE_URL="http://127.0.0.1:9/v1", ASSISTANT_LLM__MAX_RETRIES="0")
    assert "cannot reach the OpenAI-compatible server at http://127.0.0.1:9/v1" in one_error_line(proc)
    assert mine.read_bytes() == before
    server = ScriptedChat(["{}"] * 4)  # a reply, but never a valid draft (and its retry neither)
    try:
        proc = run(sample_home, "make-questions", "--n", "2", "--out", str(mine), cache=embed_cache,
                   OPENAI_BASE_URL=server.url, ASSISTANT_LLM__MAX_RETRIES="0")
    finally:
        server.close()
    lines = proc.stderr.splitlines()  # (after a progress line per paper)
    assert proc.returncode == 1 and lines[:2] == ["1/2 skipped (invalid draft)", "2/2 skipped (invalid draft)"]
    assert lines[2:] == [f"error: none of the 2 drafts passed the checks; nothing written to {mine}"], lines
    assert mine.read_bytes() == before and len(server.requests) == 4
    assert "--n must be at least 1, got 0" in one_error_line(run(sample_home, "make-questions", "--n", "0",
                                                                 "--out", str(mine), cache=embed_cache))
    assert f"--out {tmp_path}: is a folder" in one_error_line(run(sample_home, "make-questions", "--out",
                                                                  str(tmp_path), cache=embed_cache))


def test_a_backend_error_after_some_drafts_keeps_them(tmp_path: Path) -> None:
    """Review: propagating every BackendError threw away the drafts already made (one over-long abstract or a
    timeout at paper 40 lost 39); after the first draft, an error ends the run with what was made, said."""
    from assistant.evaluation.drafts import draft_questions
    from assistant.llm import ChatClient
    from assistant.records import Paper
    from assistant.settings import Settings

    text = "TDPO improves win rate by 12% over DPO on Anthropic HH. We release code."
    ok = {"type": "detail", "question": "By how much does TDPO beat DPO?", "answer": "12% win rate.",
          "quote": "TDPO improves win rate by 12% over DPO on Anthropic HH."}
    server = ScriptedChat([json.dumps(ok)] * 3)
    stops: list[str] = []
    try:
        client = ChatClient(Settings(home=tmp_path, llm="openai", openai_base_url=server.url, max_retries=0))
        drafts = draft_questions([Paper(f"p{i}", f"T{i}", text) for i in range(3)], client, n=3,
                                 on_draft=lambda i, d: server.close() if i == 1 else None, on_stop=stops.append)
    finally:
        server.close()
    assert len(drafts) == 1 and len(stops) == 1 and stops[0].startswith("stopped after 1 draft(s) at paper 2 of 3")


# -- every input error before the index is built or a question asked --------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--judge", "bogus"], "--judge 'bogus' is not a judge (one of offline, llm)"),
    (["--types", "lookup,bogus"], "--types: unknown question type(s) bogus"),
    (["--limit", "-1"], "--limit must be zero or more, got -1"),
    (["--concurrency", "0"], "--concurrency must be at least 1, got 0"),
    (["--out", "{afile}/sub"], "--out {afile}/sub: {afile} is a file, not a folder"),
    (["--junit", "{afile}/j.xml"], "--junit {afile}/j.xml: {afile} is a file, not a folder"),
    (["--html", "{afile}/deeper/r.html"], "--html {afile}/deeper/r.html: {afile} is a file, not a folder"),
    (["--html", "x" * 300 + ".html"], "cannot be written (File name too long)"),
], ids=["judge", "types", "limit", "concurrency", "out-under-a-file", "junit-under-a-file", "html-under-a-file",
        "name-too-long"])
def test_eval_run_refuses_bad_options_before_building_the_index(args: list[str], message: str,
                                                                  tmp_path: Path) -> None:
    """On a fresh home `eval run --judge bogus` first built the whole sample index; `--out afile/sub` failed
    only after every question was answered, and `--junit afile/j.xml` said "File exists"."""
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    questions = write_jsonl(tmp_path / "q.jsonl", LOOKUP)
    home = tmp_path / "home"
    args = [a.format(afile=afile) for a in args]
    res = CliRunner().invoke(eval_app, ["run", str(questions), "--no-progress", "--no-embed", *args],
                             env=cli_env(home, tmp_path / "cache"))
    assert isinstance(res.exception, InputError), res.output
    assert message.format(afile=afile) in str(res.exception)
    assert not home.exists() and not (tmp_path / "cache").exists()  # nothing built, nothing downloaded


def test_run_eval_refuses_an_unusable_output_before_asking(sample_assistant: Any, tmp_path: Path) -> None:
    """The Python API too: an out_dir under a file was found when writing, after every answer (as
    "<out_dir>/report.json: cannot write (File exists)"); now by check_outputs, before the first question."""
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    question = Question("q", "lookup", LOOKUP["question"], [TDPO], "TDPO.", [])
    with pytest.raises(InputError) as exc:
        run_eval([question], sample_assistant, out_dir=afile / "sub", junit=tmp_path / "j.xml", progress=False)
    assert str(exc.value).startswith(f"out_dir {afile}/sub: {afile} is a file, not a folder"), exc.value
    assert not (tmp_path / "j.xml").exists()


def test_check_outputs_names_a_path_the_system_refuses() -> None:
    """A name longer than the file system allows was an OSError traceback from ``is_dir``."""
    with pytest.raises(InputError, match="--html x+\\.html: cannot be written \\(File name too long\\)"):
        check_outputs(None, [("--html", Path("x" * 300 + ".html"))])
    with pytest.raises(InputError, match="--out y+: cannot be written"):
        check_outputs(Path("y" * 300))


# -- a question of only invisible characters -------------------------------------------------------------
@pytest.mark.parametrize(("row", "message"), [
    (dict(LOOKUP, question="\u200b"), "fields 'qid' and 'question' must not be empty"),
    (dict(LOOKUP, question="\u200b\u200c\ufeff \x01"), "fields 'qid' and 'question' must not be empty"),
    (dict(LOOKUP, qid="\u200d"), "fields 'qid' and 'question' must not be empty"),
    (dict(LOOKUP, gold_titles=[TDPO, "\u2060"]), "field 'gold_titles' must be a list of non-empty strings"),
], ids=["zero-width-space", "format-and-control", "zero-width-qid", "invisible-gold-title"])
def test_a_question_of_only_invisible_characters_is_refused_at_its_line(row: dict[str, Any], message: str,
                                                                       tmp_path: Path) -> None:
    """"\\u200b" passed the loader's .strip() and became an error row at run time ("the question is empty"),
    counted as the system's failure; the Assistant's own test is ``text.blank``."""
    path = write_jsonl(tmp_path / "q.jsonl", LOOKUP | {"qid": "ok"}, row)
    with pytest.raises(InputError) as exc:
        load_questions(path)
    assert str(exc.value).startswith(f"{path}:2: {message}"), exc.value


# -- a failed --html write says what it left -------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (a folder no file can be created in)")
def test_a_failed_html_write_replaces_no_report(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """report.json and report.md were written, then the HTML page failed with "...; nothing was replaced".
    Now the page is in the reports' batch: the message is true, and the previous reports stay whole."""
    questions = write_jsonl(tmp_path / "q.jsonl", LOOKUP)
    out = tmp_path / "run"
    env = cli_env(sample_home, embed_cache)
    res = CliRunner().invoke(eval_app, ["run", str(questions), "--out", str(out), "--no-progress", "--no-embed"],
                             env=env)
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    page = Path("/proc/eval-report.html")  # passes every check; creating a file there fails
    res = CliRunner().invoke(eval_app, ["run", str(questions), "--out", str(out), "--no-progress", "--no-embed",
                                        "--html", str(page)], env=env)
    assert isinstance(res.exception, InputError), res.output
    assert str(res.exception).startswith(f"{page}: cannot write") and "nothing was replaced" in str(res.exception)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
