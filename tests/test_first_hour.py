"""The first hour, as a newcomer meets it (issue 28): one progress display on the first `ask`, the
LlamaIndex components on a fresh home behave like `ask`, and the errors of the getting-started page
name the next command to run. Every test runs the real CLI or the real Python API in a fresh home."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import AssistantError

from .conftest import REPO, cli_env, make_settings

QUESTION = "Which paper proposes token-level direct preference optimization?"
TDPO = "Token-level Direct Preference Optimization"


def run_cli(env: dict[str, str], *args: str, pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(env)
    env["PYTHONPATH"] = pythonpath or str(REPO)
    return subprocess.run([sys.executable, "-m", "assistant", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=600)


@pytest.mark.slow
def test_first_ask_without_a_terminal_prints_one_progress_display(sample_home: Path, embed_cache: Path,
                                                                   tmp_path: Path) -> None:
    """Without a terminal the plain line is the display; the rich bars used to be printed after it too."""
    home = tmp_path / "home"
    r = run_cli(cli_env(home, embed_cache), "ask", QUESTION)
    assert r.returncode == 0, r.stderr
    assert "building it from the bundled sample" in r.stderr
    assert r.stderr.count("Embedding papers") == 1, r.stderr
    assert "Embedding papers: 247/247" in r.stderr
    assert "━" not in r.stderr and "Reading sources" not in r.stderr, r.stderr  # no bars drawn at the end
    assert TDPO in " ".join(r.stdout.split())


@pytest.mark.slow
def test_first_ask_in_a_terminal_draws_only_the_bars(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = cli_env(tmp_path / "home", embed_cache, PYTHONPATH=str(REPO))
    child = pexpect.spawn(sys.executable, ["-m", "assistant", "ask", QUESTION], env=env, cwd=str(REPO),
                          encoding="utf-8", timeout=600, dimensions=(40, 160), use_poll=True)
    child.expect(pexpect.EOF)
    child.close()
    out = child.before
    assert child.exitstatus == 0, out
    assert "Embedding papers" in out and "━" in out
    assert "Embedding papers: " not in out  # the plain line is only for logs


@pytest.mark.slow
def test_retriever_on_a_fresh_home_builds_the_sample_like_ask(fresh_home: Path, embed_cache: Path,
                                                              sample_home: Path) -> None:
    from assistant.api import Assistant

    a = Assistant(make_settings(fresh_home, embed_cache))
    try:
        nodes = a.as_retriever(k=3).retrieve(QUESTION)  # returned [] before
        assert nodes and nodes[0].node.metadata["title"] == TDPO
        assert len(a.papers()) == 247
    finally:
        a.index.close()


@pytest.mark.slow
def test_query_engine_on_a_fresh_home_answers_like_ask(fresh_home: Path, embed_cache: Path,
                                                       sample_home: Path) -> None:
    from assistant.api import Assistant

    a = Assistant(make_settings(fresh_home, embed_cache))
    try:
        r = a.as_query_engine(k=3).query(QUESTION)
        assert not r.metadata["refused"] and r.source_nodes
        assert r.source_nodes[0].node.metadata["title"] == TDPO
    finally:
        a.index.close()


def test_retriever_on_an_empty_written_home_says_so_in_one_line(fresh_home: Path, embed_cache: Path) -> None:
    """A home an ingest has written to (its lock file exists) never gets the sample: the retriever, like
    `ask`, says so and names `assistant ingest` instead of returning no nodes."""
    from assistant.api import Assistant

    a = Assistant(make_settings(fresh_home, embed_cache))
    try:
        a.index.dir.mkdir(parents=True)
        a.index.lock_path.touch()
        with pytest.raises(AssistantError) as err:
            a.as_retriever(k=3).retrieve(QUESTION)
        assert "no papers are indexed" in str(err.value) and "assistant ingest SOURCES" in str(err.value)
        assert "\n" not in str(err.value)
    finally:
        a.index.close()


def test_papers_and_search_on_an_empty_home_name_the_next_command(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    for args in (["papers", "list"], ["papers", "search", "DPO"]):
        r = run_cli(env, *args)
        assert r.returncode == 0, r.stderr
        assert "no papers are indexed" in r.stderr, (args, r.stderr)
        assert "assistant ask QUESTION" in r.stderr and "assistant ingest SOURCES" in r.stderr
    assert not (tmp_path / "home" / "index" / "chroma").exists()  # they still build nothing


def test_missing_file_names_the_next_command(tmp_path: Path) -> None:
    r = run_cli(cli_env(tmp_path / "home"), "ingest", "no-such-papers.jsonl")
    assert r.returncode == 1
    text = " ".join(r.stderr.split())
    assert "no-such-papers.jsonl: no such file or folder" in text and "assistant ingest PATH" in text


def test_openai_backend_without_a_server_names_the_fix_before_building_anything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    r = run_cli(cli_env(home, ASSISTANT_LLM="openai"), "ask", QUESTION)
    assert r.returncode == 1
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the openai backend needs"), r.stderr
    assert "export OPENAI_BASE_URL=" in lines[0] and "unset ASSISTANT_LLM" in lines[0]
    assert not (home / "index").exists()  # it used to build the whole sample index first, then fail


def test_serve_without_the_serve_extra_names_the_install_command(tmp_path: Path) -> None:
    # FastAPI is installed here; a package of that name that cannot be imported stands in for its absence.
    blocked = tmp_path / "blocked" / "fastapi"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'fastapi'\", name='fastapi')\n", encoding="utf-8")
    r = run_cli(cli_env(tmp_path / "home"), "serve", "--port", "1",
                pythonpath=f"{blocked.parent}:{REPO}")
    assert r.returncode == 1
    assert "serving needs the serve extra (fastapi is missing)" in r.stderr
    assert "pip install -e '.[serve]'" in r.stderr and "assistant serve" in r.stderr


def test_eval_outside_a_clone_says_where_the_question_sets_are(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "assistant", "eval", "run", "evals/questions/dev.jsonl"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 1
    text = " ".join(r.stderr.split())
    assert f"question file not found (relative to {tmp_path})" in text and "evals/ in a clone" in text
    assert not (tmp_path / "home" / "index").exists()  # nothing built before the file was found missing


def test_papers_in_an_empty_named_collection_names_the_ingest_command(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    r = run_cli(env, "collections", "create", "rlhf")
    assert r.returncode == 0, r.stderr
    r = run_cli(env, "papers", "list", "-c", "rlhf")
    assert r.returncode == 0, r.stderr
    assert "collection 'rlhf' has no papers yet" in r.stderr and "assistant ingest -c rlhf SOURCES" in r.stderr
