"""References out through the API, the CLI (`ask --cite`, `papers export`, chat `/export`) and the
server (`GET /v1/papers/{id}?format=bibtex`, `GET /v1/references`), on the real sample index."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import AssistantError
from assistant.readers import bibtex as bib_reader
from tests.conftest import cli_env
from tests.server_process import ServerProcess
from tests.test_server import NEW_PAPER

QUESTION = "Which papers remove the need for a reference model in preference optimization?"


def test_api_export_and_references(sample_assistant: Any, tmp_path: Path) -> None:
    a = sample_assistant
    ans = a.ask(QUESTION)
    cited = ans.cited_papers
    assert len(cited) >= 2
    text = a.references(ans, "bibtex")
    path = tmp_path / "cited.bib"
    path.write_text(text, encoding="utf-8")
    back = bib_reader.read(path)
    assert not back.problems
    by_title = {p.title: p for p in back.papers}
    for pid in cited:
        paper = a.get_paper(pid)
        assert by_title[paper.title].abstract == paper.abstract  # the full record, read back unchanged
    assert a.export(cited, "bibtex") == text  # the same papers give the same keys
    items = json.loads(a.references(ans, "csl-json"))
    assert [i["title"] for i in items] == [a.get_paper(p).title for p in cited]
    with pytest.raises(AssistantError, match="no paper with id 'nope'"):
        a.export(["nope"], "bibtex")
    with pytest.raises(AssistantError, match="unknown reference format"):
        a.export(cited, "docx")
    assert a.export(None, "bibtex").count("\n@") + 1 == a.status()["papers"]


def test_chat_session_export_writes_what_the_conversation_cited(sample_assistant: Any, tmp_path: Path) -> None:
    with sample_assistant.chat() as chat:
        first = chat.ask(QUESTION)
        second = chat.ask("What does ARRA align LLM hidden states with?")
        n = chat.export(tmp_path / "refs.ris")
        cited = list(dict.fromkeys(first.cited_papers + second.cited_papers))
        assert n == len(cited)
        ris = (tmp_path / "refs.ris").read_text(encoding="utf-8")
        assert ris.count("TY  - ") == n and ris.count("ER  -") == n
        with pytest.raises(AssistantError, match="cannot write the references"):
            chat.export(tmp_path / "missing-dir" / "refs.bib")
        with pytest.raises(AssistantError, match="cannot write the references .File name too long"):
            chat.export(tmp_path / ("a" * 300 + ".bib"))  # the temp file's cleanup raised a second error


def test_chat_export_before_anything_is_cited_keeps_the_file(sample_assistant: Any, tmp_path: Path) -> None:
    """/export with nothing cited wrote an empty file over the user's own .bib."""
    mine = tmp_path / "refs.bib"
    mine.write_text("@article{mine, title={My precious}}\n", encoding="utf-8")
    with sample_assistant.chat() as chat:
        with pytest.raises(AssistantError, match="nothing written, no paper has been cited"):
            chat.export(mine)
        chat.ask("How long does a capybara sleep?")  # refused: cites nothing
        with pytest.raises(AssistantError, match="nothing written"):
            chat.export(mine)
        chat.ask(QUESTION)
        # Something cited now: still not written over the user's file (it replaced it silently) ...
        with pytest.raises(AssistantError, match=r"refs.bib: already exists; nothing written - give another name"):
            chat.export(mine)
        assert mine.read_text(encoding="utf-8") == "@article{mine, title={My precious}}\n"
        # ... but a file this conversation wrote is brought up to date, and overwrite=True says so.
        n = chat.export(tmp_path / "ours.bib")
        chat.ask("What does ARRA align LLM hidden states with?")
        assert chat.export(tmp_path / "ours.bib") >= n
        assert chat.export(mine, overwrite=True) >= n and "@misc{" in mine.read_text(encoding="utf-8")
        for bad, needle in ((tmp_path, "not a file name"), (".", "'.': not a file name"), ("", "not a file name"),
                            ("/", "not a file name"), (5, "the file to write is a int, not a path")):
            with pytest.raises(AssistantError, match=needle):  # ValueError / TypeError tracebacks, in chat too
                chat.export(bad)  # type: ignore[arg-type]


def test_one_item_where_a_list_is_expected(sample_assistant: Any) -> None:
    """A single id or answer is one item (``export("id")`` asked for papers 'i' and 'd'); anything else is
    one clear line, not a TypeError from inside."""
    a = sample_assistant
    pid = a.papers()[0].paper_id
    assert a.export(pid) == a.export([pid])
    ans = a.ask(QUESTION)
    assert a.references(ans) == a.references([ans])
    for call, needle in ((lambda: a.references(None), "answer: expected an Answer or a list of them, got NoneType"),
                         (lambda: a.references("x"), "answer: each item must be an Answer, got str"),
                         (lambda: a.export(5), "paper_ids: expected text or a list of them, got int"),
                         (lambda: a.references(ans, "docx"), "unknown reference format 'docx'")):
        with pytest.raises(AssistantError, match=needle):
            call()


@pytest.mark.slow
def test_cli_ask_cite_papers_export_and_chat_export(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    env = cli_env(sample_home, embed_cache)
    r = subprocess.run([sys.executable, "-m", "assistant", "ask", QUESTION, "--cite", "bibtex"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    answer_part, _, refs = r.stdout.partition("references (bibtex)")
    assert "[1]" in answer_part and refs.count("@misc{") >= 2

    r = subprocess.run([sys.executable, "-m", "assistant", "ask", QUESTION, "--cite", "csl-json", "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["references"]["format"] == "csl-json"
    items = json.loads(out["references"]["text"])
    assert [i["title"] for i in items] == list(dict.fromkeys(c["title"] for c in out["citations"]))

    bad = subprocess.run([sys.executable, "-m", "assistant", "ask", QUESTION, "--cite", "word"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "'word' is not a reference format" in bad.stderr

    ids = [c["paper_id"] for c in out["citations"]][:2]
    r = subprocess.run([sys.executable, "-m", "assistant", "papers", "export", "--format", "bibtex", *ids],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("@misc{") == len(set(ids))
    target = tmp_path / "all.md"
    r = subprocess.run([sys.executable, "-m", "assistant", "papers", "export", "-f", "markdown", "-o", str(target)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(target.read_text(encoding="utf-8").splitlines()) == 247
    ris = tmp_path / "two.ris"  # the format from the suffix, as chat's /export (BibTeX went into .ris files)
    r = subprocess.run([sys.executable, "-m", "assistant", "papers", "export", *ids, "-o", str(ris)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "wrote ris references" in r.stderr, r.stderr
    assert ris.read_text(encoding="utf-8").count("TY  - ") == len(set(ids))

    bib = tmp_path / "chat.bib"
    r = subprocess.run([sys.executable, "-m", "assistant", "chat"],
                       input=f"{QUESTION}\n/export .\n/export {bib}\n/quit\n",
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "'.': not a file name" in r.stdout and "reference(s) to" in r.stdout  # `/export .` ended the session
    back = bib_reader.read(bib)
    assert not back.problems and len(back.papers) >= 2


@pytest.fixture(scope="module")
def ref_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("refs")
    home = d / "home"
    shutil.copytree(sample_home, home)
    srv = ServerProcess(home, embed_cache, d / "serve.log", "--allow-ingest")
    status, _, raw = srv.request("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
    assert status == 200, raw
    yield srv
    srv.stop()


@pytest.mark.slow
def test_server_paper_as_bibtex_and_references(ref_server: ServerProcess) -> None:
    status, headers, body = ref_server.request("GET", "/v1/papers/2502.99999?format=bibtex")
    assert status == 200, body
    assert headers["content-type"].startswith("application/x-bibtex")
    text = body.decode()
    assert text.startswith("@misc{finch2025zebra,") and "eprint        = {2502.99999}" in text
    assert "archivePrefix = {arXiv}" in text
    status, _, body = ref_server.request("GET", "/v1/papers/2502.99999")
    assert status == 200 and json.loads(body)["paper_id"] == "2502.99999"  # JSON as before without format
    status, _, body = ref_server.request("GET", "/v1/papers/2502.99999?format=docx")
    assert status == 422 and "not a reference format" in body.decode()
    status, _, body = ref_server.request("GET", "/v1/papers/nope?format=bibtex")
    assert status == 404
    status, _, body = ref_server.request("GET", "/v1/references?ids=" + "x" * 600)
    message = json.loads(body)["error"]["message"]  # the CLI's hint, and the whole 600-character id, were in it
    assert status == 404 and "GET /v1/papers lists them" in message and "assistant papers" not in message
    assert len(message) < 300
    _, found = ref_server.json("POST", "/v1/ask", {"question": QUESTION})
    ids = list(dict.fromkeys(c["paper_id"] for c in found["citations"]))
    query = "&".join(f"ids={i}" for i in ids)
    status, headers, body = ref_server.request("GET", f"/v1/references?format=ris&{query}")
    assert status == 200 and body.decode().count("ER  -") == len(ids)
    status, _, body = ref_server.request("GET", "/v1/references?format=bibtex")
    assert status == 422


@pytest.mark.slow
def test_web_chat_copy_bibtex(ref_server: ServerProcess) -> None:
    """The Copy BibTeX control puts exactly the server's BibTeX of the cited papers on the clipboard
    (real Chromium via selenium, clipboard permission granted to the page's origin)."""
    from tests import test_server_browser as tsb

    if tsb.CHROMIUM is None or tsb.CHROMEDRIVER is None:
        pytest.skip(tsb.MISSING)
    from selenium.webdriver.common.by import By

    browser_cm = tsb.browser.__wrapped__()  # the browser fixture's generator (same flags, air-gapped)
    browser = next(browser_cm)
    try:
        browser.execute_cdp_cmd("Browser.grantPermissions", {
            "origin": ref_server.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
        browser.get(ref_server.url + "/")
        tsb._visible(browser, "#question")
        turn = tsb._ask(browser, QUESTION)
        markers = turn.find_elements(By.CSS_SELECTOR, ".cites .marker")
        assert len(markers) >= 2
        turn.find_element(By.CSS_SELECTOR, "button.copy-bibtex").click()
        note = tsb._wait(browser, lambda d: turn.find_element(By.CSS_SELECTOR, ".copy-note").text or False)
        _, answer = ref_server.json("POST", "/v1/ask", {"question": QUESTION})
        ids = list(dict.fromkeys(c["paper_id"] for c in answer["citations"]))
        assert note == f"Copied {len(ids)} BibTeX entries"
        copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0], "
                                              "e => arguments[0]('ERROR ' + e))")
        query = "&".join(f"ids={i}" for i in ids)
        _, _, expected = ref_server.request("GET", f"/v1/references?format=bibtex&{query}")
        assert copied == expected.decode()
        assert copied.count("@misc{") == len(ids)
    finally:
        browser_cm.close()
