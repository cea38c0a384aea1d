"""Bad input a probing user tried, each met by one line that names the file, line, field or option, never
a traceback and never a setting that quietly switches a check off. The real CLI in a subprocess where the
output is the point; the real readers, settings and gate otherwise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import AssistantError, InputError
from assistant.evaluation import EvalReport, Gate, check_gate, load_gate, parse_thresholds
from assistant.readers import read_paths
from assistant.settings import Settings
from assistant.verification import read_claims
from tests.conftest import cli_env


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True,
                          env=cli_env(home, **env), timeout=600)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# -- the eval gate and settings never accept a value that turns their check off ------------------------
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_a_gate_threshold_must_be_a_finite_number(value: str, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a finite number"):
        parse_thresholds([f"hit_at_k={value}"])
    path = tmp_path / "gate.toml"
    path.write_text(f"[min]\nhit_at_k = {value.lower()}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gate.toml: \[min\] hit_at_k = .*not a finite number"):
        load_gate(path)
    # ... and a metric that came out as nan fails its threshold instead of passing it.
    gate = Gate(parse_thresholds(["hit_at_k=0.5"]), parse_thresholds(["failed=0"]))
    assert check_gate({"hit_at_k": float("nan"), "failed": float("nan")}, gate) == [
        "hit_at_k is not a number in this run (min 0.5)", "failed is not a number in this run (max 0)"]


@pytest.mark.parametrize(("var", "value", "reason"), [
    ("ASSISTANT_SENTENCE_WEIGHT", "inf", "finite number"),
    ("ASSISTANT_RETRIEVAL__DENSE_WEIGHT", "-inf", "finite number"),
    ("ASSISTANT_INDEX__CHROMA_TIMEOUT", "inf", "finite number"),
    ("ASSISTANT_EXTRACTIVE__MIN_COVERAGE", "2", "less than or equal to 1"),
    ("ASSISTANT_EXTRACTIVE__MIN_COVERAGE", "nan", "finite number"),
    ("ASSISTANT_EXTRACTIVE__W_DENSE", "-0.5", "greater than or equal to 0"),
])
def test_settings_refuse_infinite_and_out_of_range_numbers(var: str, value: str, reason: str,
                                                           tmp_path: Path) -> None:
    with pytest.raises(AssistantError, match=f"{var}: .*{reason}"):
        Settings.load(env={"ASSISTANT_CONFIG": "", var: value}, home=tmp_path)
    config = tmp_path / "c.toml"
    config.write_text("[retrieval]\ndense_weight = inf\n", encoding="utf-8")
    with pytest.raises(AssistantError, match="dense_weight.*finite number"):
        Settings.load(env={"ASSISTANT_CONFIG": str(config)}, home=tmp_path)


# -- model files and eval reports of the wrong shape ----------------------------------------------------
@pytest.mark.parametrize("content", ["[]", "5", '"x"', '{"weights": 5}', "null"])
def test_a_model_file_that_is_not_one_is_one_line(content: str, tmp_path: Path) -> None:
    from assistant.answering.fitted import load_model

    path = tmp_path / "model.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AssistantError, match=f"{path}: not an extractive model file .*re-run"):
        load_model(path)


@pytest.mark.parametrize(("report", "reason"), [
    ({"summary": 5, "rows": 7}, "'summary' must be an object with 'questions'"),
    ({"summary": {"hit_at_k": 1.0}, "rows": []}, "'summary' must be an object with 'questions'"),
    ({"summary": {"questions": 1}, "rows": 7}, "'rows' must be a list"),
    ({"summary": {"questions": 1}, "rows": [{}]}, "rows[0] lacks 'qid'"),
    ({"summary": {"questions": 1}, "rows": [5]}, "rows[0] lacks 'qid'"),
])
def test_an_eval_report_of_the_wrong_shape_is_named(report: dict, reason: str, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    with pytest.raises(InputError) as err:
        EvalReport.load(path)
    assert reason in str(err.value) and str(path) in str(err.value), err.value


# -- readers: what used to be misread -------------------------------------------------------------------
def test_an_indented_json_object_is_one_document(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"papers": [{"id": "w1", "title": "Wrapped one", "abstract": "First."},
                                              {"id": "w2", "title": "Wrapped two", "abstract": "Second."}]},
                                  indent=2), encoding="utf-8")
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"id": "s1", "title": "Single", "abstract": "One record."}, indent=2),
                      encoding="utf-8")
    lines = tmp_path / "lines.json"  # JSON lines under a .json name still read line by line
    lines.write_text('{bad\n{"id": "l2", "title": "L2", "abstract": "B."}\n', encoding="utf-8")
    res = read_paths([wrapped, single, lines])
    assert sorted(p.paper_id for p in res.papers) == ["l2", "s1", "w1", "w2"]
    assert [str(p) for p in res.problems] == [f"{lines}:line 1: malformed JSON (Expecting property name "
                                              "enclosed in double quotes); skipped"]


def test_numeric_ids_and_arxiv_ids_are_read_as_meant(tmp_path: Path) -> None:
    src = tmp_path / "n.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"title": "Float arXiv", "abstract": "A.", "arxiv_id": 2401.10200},
        {"title": "Leading zero", "abstract": "B.", "arxiv_id": 2401.01020},
        {"title": "From 2007", "abstract": "D.", "arxiv_id": 704.0001},
        {"id": 1.5, "title": "Fractional id", "abstract": "C."}]) + "\n", encoding="utf-8")
    res = read_paths([src])
    assert [p.arxiv_id for p in res.papers] == ["2401.10200", "2401.01020", "0704.0001"]
    assert [str(p) for p in res.problems] == [f"{src}:line 4: field 'id' is a fractional number, expected text "
                                              "or a whole number; skipped"]


def test_csv_rows_a_strict_parser_would_refuse_are_still_read(tmp_path: Path) -> None:
    src = tmp_path / "loose.csv"
    src.write_text('title,abstract\n"T1","A1" \n"T2" ,"A2"\n"The "best" model",x\n'
                   '"Multi","line\nabstract ""quoted"" here."\nC5,5" display\n', encoding="utf-8")
    res = read_paths([src])
    assert [(p.title, p.abstract) for p in res.papers] == [
        ("T1", "A1"), ("T2", "A2"), ('The best" model"', "x"), ("Multi", 'line abstract "quoted" here.'),
        ("C5", '5" display')]
    assert not res.problems and not res.incomplete


def test_a_one_line_wrapper_object_is_one_document(tmp_path: Path) -> None:
    src = tmp_path / "compact.json"
    src.write_text(json.dumps({"papers": [{"id": "c1", "title": "C one", "abstract": "A."},
                                          {"id": "c2", "title": "C two", "abstract": "B."}]}), encoding="utf-8")
    res = read_paths([src])
    assert [p.paper_id for p in res.papers] == ["c1", "c2"] and not res.problems


def test_a_claims_file_with_a_bom_or_a_bad_byte(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffARRA aligns models.\n# note\nSecond claim.\n".encode())
    assert read_claims(bom) == ["ARRA aligns models.", "Second claim."]
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"First claim.\n\nThird \xff line.\n")
    with pytest.raises(InputError, match=rf"^{bad}:3: not UTF-8 text"):
        read_claims(bad)


# -- the CLI: one line, never a traceback, never a forged second line ------------------------------------
def test_cli_bad_options_and_outputs_are_one_line(sample_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert "order 'bogus'" in one_error_line(run(sample_home, "papers", "list", "--order", "bogus"))
    assert "the query is empty" in one_error_line(run(sample_home, "papers", "search", "  "))
    line = one_error_line(run(sample_home, "ask", "--since", "2025", "--until", "2020", "What is DPO?"))
    assert "--since 2025 is after --until 2020" in line
    # A newline in what the user typed is shown as \n, not as a line of its own.
    line = one_error_line(run(sample_home, "papers", "show", "nope\nerror: all good"))
    assert "nope\\nerror: all good" in line
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"qid": "a", "question": "What is DPO?"}) + "\n", encoding="utf-8")
    a_file = tmp_path / "taken"
    a_file.write_text("x", encoding="utf-8")
    line = one_error_line(run(home, "eval", "run", str(questions), "--out", str(a_file), "--no-progress"))
    assert f"--out {a_file}: is a file" in line
    line = one_error_line(run(home, "eval", "run", str(questions), "--junit", str(tmp_path), "--no-progress"))
    assert f"--junit {tmp_path}: is a folder" in line
    (tmp_path / "out" / "report.md").mkdir(parents=True)
    line = one_error_line(run(home, "eval", "run", str(questions), "--out", str(tmp_path / "out"), "--no-progress"))
    assert "report.md in it is a folder" in line
    assert not (home / "index").exists()  # refused before anything was built or asked
    # A report that passes the loader but not the renderer: one line too.
    report = tmp_path / "r.json"
    row = {"qid": "q1", "question": "Q?", "type": "lookup", "answerable": True, "refused": False, "failed": True,
           "fail_reasons": [], "scores": {}, "latency_ms": 1}
    report.write_text(json.dumps({"summary": {"questions": 1}, "rows": [row]}), encoding="utf-8")
    line = one_error_line(run(home, "eval", "report", str(report)))
    assert f"{report}: not an eval report this version can read" in line, line


def test_a_failed_write_names_the_file_and_what_was_replaced(tmp_path: Path) -> None:
    from assistant.evaluation.files import write_all_atomic

    (tmp_path / "b.md").mkdir()
    with pytest.raises(InputError) as err:
        write_all_atomic([(tmp_path / "a.json", "{}"), (tmp_path / "b.md", "x")])
    assert str(err.value).startswith(f"{tmp_path / 'b.md'}: cannot write") and "a.json already replaced" in str(
        err.value), err.value
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_bibtex_date_names_both_of_its_fields(tmp_path: Path) -> None:
    src = tmp_path / "m.bib"
    src.write_text("@article{k1, title={T}, abstract={A.}, year={2023}, month={13}}\n", encoding="utf-8")
    (warning,) = read_paths([src]).warnings
    assert "value '2023' with month '13' is not a possible date" in str(warning), warning


def test_an_unusable_cache_folder_is_not_called_a_full_disk(tmp_path: Path) -> None:
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "p1", "title": "T", "abstract": "A."}) + "\n", encoding="utf-8")
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    cache = blocker / "cache"
    line = one_error_line(run(tmp_path / "home", "ingest", str(src), ASSISTANT_CACHE_DIR=str(cache)))
    assert "no space left" not in line and f"{cache}: cannot write" in line, line


def test_calibrate_verify_and_the_api_refuse_what_they_cannot_use(sample_home: Path, tmp_path: Path) -> None:
    """`eval calibrate` on a one-row labels file was an IndexError traceback and `--judge bogus` ran the
    offline judge; `verify --file --backend openai` without a server printed a first verdict, then failed
    (and one claim without evidence reported labels from a model never asked); Assistant("x") was an
    AttributeError."""
    from assistant.api import Assistant

    labels = tmp_path / "l.jsonl"
    labels.write_text(json.dumps({"sentence": "a", "passages": ["b"], "label": "supported"}) + "\n", encoding="utf-8")
    line = one_error_line(run(tmp_path, "eval", "calibrate", "--labels", str(labels), "--no-embed"))
    assert "calibration needs supported and unsupported labels, at least 4 rows in all (got 1, one kind)" in line
    assert "--judge 'bogus' is not a judge" in one_error_line(run(tmp_path, "eval", "calibrate", "--judge", "bogus"))
    questions = Path(__file__).parents[1] / "evals" / "questions" / "dev.jsonl"
    line = one_error_line(run(tmp_path, "eval", "run", str(questions), "--backend", "bogus", "--no-progress"))
    assert line.startswith("error: --backend 'bogus' is not an answer backend (one of extractive"), line
    claims = tmp_path / "c.txt"
    claims.write_text("x\nDPO needs a reference model.\n", encoding="utf-8")
    for args in (("--file", str(claims), "--json"), ("x",)):
        proc = run(sample_home, "verify", *args, "--backend", "openai")
        assert "the openai backend needs OPENAI_API_KEY" in one_error_line(proc) and proc.stdout == "", proc.stdout
    for bad in ("x", {"llm": {}}):
        with pytest.raises(AssistantError, match="settings: expected a Settings"):
            Assistant(bad)  # type: ignore[arg-type]


# -- found by a probe of every command and API call (2026-12-07) -----------------------------------------
def test_an_empty_path_is_refused_before_anything_is_read(copied_sample_home: Path, embed_cache: Path,
                                                          tmp_path: Path) -> None:
    """`ingest --prune "$UNSET"` read the current folder (as a path, '' is '.') and pruned every paper not in it."""
    from assistant.api import Assistant
    from tests.conftest import make_settings

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "other.jsonl").write_text(json.dumps({"title": "Other", "abstract": "Other text."}) + "\n",
                                     encoding="utf-8")
    a = Assistant(make_settings(copied_sample_home, embed_cache))
    before = {p.paper_id for p in a.papers()}
    for flags in (["--prune"], ["--rebuild"], []):
        proc = subprocess.run([sys.executable, "-m", "assistant", "ingest", *flags, ""], capture_output=True,
                              text=True, env=cli_env(copied_sample_home, embed_cache), cwd=cwd, timeout=600)
        assert "an empty path ('') names no file or folder" in one_error_line(proc)
    with pytest.raises(InputError, match="an empty path"):
        a.ingest([str(cwd / "other.jsonl"), ""], prune=True)
    assert {p.paper_id for p in a.papers()} == before


def test_usage_errors_are_one_line_naming_the_command(tmp_path: Path) -> None:
    """click's own usage errors were a five-line box without 'error:' (every other error is one line)."""
    cases = [(("ask", "-k", "x", "q"), "Invalid value for '-k'", "ask"),
             (("ask",), "Missing argument 'question'", "ask"),
             (("--bogus",), "No such option: --bogus", ""),
             (("collections", "create", "-x"), "No such option: -x", "collections create"),
             (("ingest", "--batch", "0", "x.jsonl"), "Invalid value for '--batch'", "ingest"),
             (("ingest", "--batch", "99999999999999999999", "x.jsonl"), "Invalid value for '--batch'", "ingest")]
    for args, needle, command in cases:
        proc = run(tmp_path / "home", *args)
        line = one_error_line(proc)
        assert proc.returncode == 2 and needle in line, line
        assert line.endswith(f"(see {' '.join(['python -m assistant', command]).strip()} --help)"), line
    proc = run(tmp_path / "home", "papers")  # a command group alone still shows its help
    assert "list" in proc.stderr + proc.stdout and "error:" not in proc.stderr


def test_export_never_replaces_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """`papers export -o pipe` (or a link, or as root /dev/null) renamed a file over it: the pipe's reader got
    nothing, the link became a file, and the device was gone. A NUL or a stray byte in the name was a
    traceback that ended a chat session."""
    import os

    from assistant.errors import AssistantError
    from assistant.export import write_file

    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(AssistantError, match="not a regular file"):
        write_file(pipe, "x")
    assert pipe.is_fifo()
    real, link = tmp_path / "real.bib", tmp_path / "link.bib"
    real.write_text("old", encoding="utf-8")
    link.symlink_to(real.name)
    assert write_file(link, "new") == real
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    with pytest.raises(AssistantError, match="already exists"):
        write_file(link, "newer", overwrite=False)
    if os.geteuid() == 0:  # a link planted by another user (in /tmp, say) is not followed
        os.lchown(link, 65534, 65534)
        with pytest.raises(AssistantError, match="a link another user owns"):
            write_file(link, "planted")
        assert real.read_text(encoding="utf-8") == "new"
    for name, needle in (("a\x00b.bib", "cannot hold a NUL"), ("x\ud800.bib", "lone surrogate")):
        with pytest.raises(AssistantError, match=needle):
            write_file(tmp_path / name, "x")


def test_ids_and_api_arguments_of_the_wrong_kind_are_the_projects_errors(sample_home: Path, embed_cache: Path,
                                                                         tmp_path: Path) -> None:
    from assistant.api import Assistant
    from tests.conftest import make_settings

    a = Assistant(make_settings(sample_home, embed_cache))
    for call in (lambda: a.get_paper("DPO\udcff"), lambda: a.export(["DPO\udcff"]), lambda: a.get_paper(["x"]),
                 lambda: a.add(search=5), lambda: a.ingest([str(tmp_path)], batch_papers="x"),
                 lambda: a.ingest([str(tmp_path)], batch_papers=0), lambda: Settings.load(config_file=5)):
        with pytest.raises(AssistantError) as err:
            call()  # type: ignore[no-untyped-call]
        assert "\n" not in str(err.value)
    line = one_error_line(run(sample_home, "papers", "show", "DPO\udcff"))
    assert "not valid UTF-8 text" in line
    line = one_error_line(run(sample_home, "papers", "show", "x" * 100_000))
    assert len(line) < 400


def test_a_claims_file_splits_at_line_breaks_only(tmp_path: Path) -> None:
    """A form feed (or \\x1c, NEL, U+2028) inside a claim made two claims; a line of zero-width characters
    was 'the claim is empty' naming no line."""
    f = tmp_path / "claims.txt"
    f.write_text("claim one\fstill one\x85and\u2028more\n\u200b\n\x01\n# comment\r\nclaim two\r\n", encoding="utf-8")
    assert read_claims(f) == ["claim one still one and more", "claim two"]


def test_serve_on_a_port_in_use_is_one_line_and_says_no_serving(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run(tmp_path / "home", "serve", "--port", str(port))
    assert f"--port {port}: cannot listen there" in one_error_line(proc) and "serving" not in proc.stderr


def test_an_empty_path_setting_is_named_not_taken_for_the_current_folder(tmp_path: Path) -> None:
    """`token_file = ""` was read as '.' (".: cannot read the token file (Is a directory)") and `home = ""`
    was pydantic's "input is not a valid path for <class 'pathlib.Path'>"."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('home = ""\n', encoding="utf-8")
    with pytest.raises(AssistantError, match=r"home: an empty path \(''\) names no folder"):
        Settings.load(config_file=cfg, env={})
    cfg.write_text('[serve]\ntoken_file = ""\n', encoding="utf-8")
    with pytest.raises(AssistantError, match=r"\[serve\] token_file: an empty path \(''\) names no file"):
        Settings.load(config_file=cfg, env={})
    assert "--token-file: an empty path ('') names no file" in one_error_line(
        run(tmp_path / "home", "serve", "--token-file", ""))
