"""Question-set loading: validation errors name file and line; unknown fields survive a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.evaluation import load_questions, write_questions
from assistant.evaluation.questions import select

REPO = Path(__file__).resolve().parents[1]
GOOD = {"qid": "q1", "type": "lookup", "question": "Which paper does X?", "gold_titles": ["Paper X"],
        "answer": "Paper X does.", "evidence": [{"title": "Paper X", "quote": "We do X."}]}


def write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_loads_and_keeps_unknown_fields(tmp_path: Path) -> None:
    row = dict(GOOD, gold_ids=["42"], reviewer="ana", draft=True)
    unanswerable = {"qid": "q2", "type": "unanswerable", "question": "Cake?", "gold_titles": [], "answer": "",
                    "evidence": []}
    qs = load_questions(write(tmp_path, row, "", unanswerable))
    assert [q.qid for q in qs] == ["q1", "q2"]
    assert qs[0].extra == {"gold_ids": ["42"], "reviewer": "ana", "draft": True}
    assert qs[0].gold_ids == ["42"] and qs[1].gold_ids is None
    assert qs[0].answerable and not qs[1].answerable
    out = tmp_path / "out.jsonl"
    write_questions(qs, out)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [row, unanswerable]


@pytest.mark.parametrize(("row", "message"), [
    ({k: v for k, v in GOOD.items() if k != "answer"}, "missing required field 'answer'"),
    ({k: v for k, v in GOOD.items() if k not in ("answer", "evidence")},
     "missing required fields 'answer', 'evidence'"),
    (dict(GOOD, type="trivia"), "type 'trivia' is not one of"),
    (dict(GOOD, gold_titles="Paper X"), "'gold_titles' must be a list"),
    (dict(GOOD, evidence=[{"title": "Paper X"}]), "'evidence' must be a list"),
    (dict(GOOD, type="unanswerable"), "must have empty 'gold_titles'"),
    (dict(GOOD, gold_titles=[], evidence=[]), "needs at least one gold title"),
    (dict(GOOD, gold_ids=["1", "2"]), "'gold_ids' must be a list of ids aligned"),
    (dict(GOOD, qid=3), "field 'qid' must be a string"),
    ([1, 2], "expected a JSON object"),
])
def test_invalid_rows_name_file_and_line(tmp_path: Path, row: object, message: str) -> None:
    path = write(tmp_path, GOOD, row)
    with pytest.raises(InputError) as exc:
        load_questions(path)
    assert str(exc.value).startswith(f"{path}:2: ")
    assert message in str(exc.value)


def test_bad_json_duplicates_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD, "{not json")
    with pytest.raises(InputError, match=r"q\.jsonl:2: not valid JSON"):
        load_questions(path)
    path = write(tmp_path, GOOD, GOOD)
    with pytest.raises(InputError, match=r"q\.jsonl:2: duplicate qid 'q1' \(first on line 1\)"):
        load_questions(path)
    with pytest.raises(InputError, match="question file not found"):
        load_questions(tmp_path / "nope.jsonl")
    with pytest.raises(InputError, match="no questions"):
        load_questions(write(tmp_path, ""))


def test_select_by_type_and_limit(tmp_path: Path) -> None:
    rows = [dict(GOOD, qid=f"q{i}", type=t) for i, t in enumerate(["lookup", "detail", "lookup", "multi"])]
    qs = load_questions(write(tmp_path, *rows))
    assert [q.qid for q in select(qs, types=["lookup"])] == ["q0", "q2"]
    assert [q.qid for q in select(qs, types=["lookup", "multi"], limit=2)] == ["q0", "q2"]
    assert [q.qid for q in select(qs, limit=1)] == ["q0"]
    with pytest.raises(InputError, match="unknown question type"):
        select(qs, types=["nope"])


@pytest.mark.parametrize(
    "name", ["dev.jsonl", "heldout.jsonl", "heldout-2.jsonl", "heldout-3.jsonl", "heldout-4.jsonl"]
)
def test_project_question_sets_load(name: str) -> None:
    path = REPO / "evals" / "questions" / name
    if not path.exists():
        pytest.skip(f"{path} not written yet")
    qs = load_questions(path)
    assert len(qs) >= 10
    assert any(not q.answerable for q in qs) and any(q.answerable for q in qs)


@pytest.mark.parametrize(("row", "message"), [
    (dict(GOOD, gold_titles=["Paper X", "  "]), "field 'gold_titles' must be a list of non-empty strings"),
    (dict(GOOD, gold_ids=[1.5]), "'gold_ids' must be a list of ids (strings or integers)"),
    (dict(GOOD, evidence=[{"title": "Paper X", "quote": 7}]), "field 'evidence' must be a list of"),
    (dict(GOOD, question="  "), "fields 'qid' and 'question' must not be empty"),
    (dict(GOOD, answer=None), "field 'answer' must be a string, got NoneType"),
])
def test_schema_errors_are_one_line(tmp_path: Path, row: dict, message: str) -> None:
    """The pydantic model's errors come out as the same one-line file:line messages, never pydantic's
    multi-line report."""
    path = write(tmp_path, row)
    with pytest.raises(InputError) as exc:
        load_questions(path)
    text = str(exc.value)
    assert text == f"{path}:1: {message}" or text.startswith(f"{path}:1: {message}")
    assert "\n" not in text and "pydantic" not in text


@pytest.mark.parametrize(("line", "message"), [
    ('{"qid": "deep", "extra": ' + "[" * 50_000 + "]" * 50_000 + "}", "JSON nested too deeply to read"),
    ('{"qid": "big", "type": "lookup", "k": ' + "7" * 5000 + "}", "integer string conversion"),
], ids=["nested-50000-deep", "5000-digit-int"])
def test_hostile_json_lines_are_one_line_errors(tmp_path: Path, line: str, message: str) -> None:
    """`eval run` on a line nested 50,000 deep, or holding a 5000-digit number: one line naming
    file:line (the parser's RecursionError / int-conversion ValueError were tracebacks)."""
    import subprocess
    import sys

    from tests.conftest import cli_env

    path = write(tmp_path, GOOD, line)
    with pytest.raises(InputError) as exc:
        load_questions(path)
    assert str(exc.value).startswith(f"{path}:2: ") and message in str(exc.value)
    run = subprocess.run([sys.executable, "-m", "assistant", "eval", "run", str(path), "--out", str(tmp_path / "o"),
                          "--no-progress"], env=cli_env(tmp_path / "home"), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 1
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}:2: "), run.stderr
    assert message in lines[0] and not (tmp_path / "o").exists()


def test_a_bom_and_crlf_are_read_like_any_editor_writes_them(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM and CRLF line ends; ingest reads such files, so does the harness."""
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps(GOOD) + "\r\n" + json.dumps(dict(GOOD, qid="q2")) + "\r\n").encode())
    assert [q.qid for q in load_questions(path)] == ["q1", "q2"]
