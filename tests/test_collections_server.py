"""Collections on the real `assistant serve` process: /v1/models lists one model per collection,
/v1/ask and /v1/chat/completions answer from the one named (by `collection` or by the model), the
papers endpoints take it too, and the web chat's picker switches collection in a real browser."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess
from tests.test_collections import EXPECTED, QUESTION, old_home
from tests.test_server import NEW_PAPER
from tests.test_server_browser import CHROMEDRIVER, CHROMIUM, MISSING, _ask, _visible, _wait, browser  # noqa: F401

pytestmark = pytest.mark.slow
ZEBRA = "What loss does ZEBRA-PO train with?"
ZEBRA_ID = "2502.99999"


@pytest.fixture(scope="module")
def server(embed_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The home built before collections (default: 12 papers, older: 3) plus a collection `zoo`
    with one paper, ingested through the API."""
    d = tmp_path_factory.mktemp("coll-serve")
    home = old_home(d)
    srv = ServerProcess(home, embed_cache, d / "serve.log", "--allow-ingest")
    status, _, raw = srv.request("POST", "/v1/ingest?format=jsonl&collection=zoo", json.dumps(NEW_PAPER).encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
    assert status == 200, raw
    yield srv
    srv.stop()


def cited(body: dict[str, Any]) -> list[str]:
    return [c["paper_id"] for c in body["citations"]]


def test_models_list_one_model_per_collection(server: ServerProcess) -> None:
    status, body = server.json("GET", "/v1/models")
    assert status == 200
    assert [(m["id"], m["collection"]) for m in body["data"]] == [
        ("paper-assistant", "default"), ("paper-assistant:older", "older"), ("paper-assistant:zoo", "zoo")]


def test_ask_answers_from_the_named_collection(server: ServerProcess) -> None:
    status, zoo = server.json("POST", "/v1/ask", {"question": ZEBRA, "collection": "zoo"})
    assert status == 200 and cited(zoo) == [ZEBRA_ID], zoo
    status, default = server.json("POST", "/v1/ask", {"question": ZEBRA})
    assert status == 200 and ZEBRA_ID not in cited(default)
    assert {s["paper_id"] for s in default["sources"]} <= set(EXPECTED["papers"]["default"])
    # The default collection answers as the home did before collections.
    status, body = server.json("POST", "/v1/ask", {"question": QUESTION, "collection": "default"})
    assert status == 200 and body["answer"] == EXPECTED["answer"] and cited(body) == EXPECTED["citations"]
    status, older = server.json("POST", "/v1/ask", {"question": QUESTION, "collection": "older"})
    assert status == 200 and set(cited(older)) <= set(EXPECTED["papers"]["older"]) and older["citations"]


def test_verify_checks_the_claim_in_the_named_collection(server: ServerProcess) -> None:
    claim = "ZEBRA-PO trains with a birdsong contrastive loss."
    status, zoo = server.json("POST", "/v1/verify", {"claim": claim, "collection": "zoo"})
    assert status == 200, zoo
    # A verdict or the closest papers: either way only the named collection's one paper is read.
    assert {p["paper_id"] for p in zoo["papers"] + zoo["closest"]} == {ZEBRA_ID}, zoo
    status, default = server.json("POST", "/v1/verify", {"claim": claim})
    assert status == 200 and ZEBRA_ID not in {p["paper_id"] for p in default["papers"] + default["closest"]}
    status, err = server.json("POST", "/v1/verify", {"claim": claim, "collection": "nope"})
    assert status == 404, err


def test_chat_completions_select_the_collection_by_model(server: ServerProcess) -> None:
    msgs = [{"role": "user", "content": ZEBRA}]
    status, body = server.json("POST", "/v1/chat/completions", {"model": "paper-assistant:zoo", "messages": msgs})
    assert status == 200 and body["model"] == "paper-assistant:zoo" and cited(body) == [ZEBRA_ID]
    status, body = server.json("POST", "/v1/chat/completions", {"model": "paper-assistant", "messages": msgs})
    assert status == 200 and body["model"] == "paper-assistant" and ZEBRA_ID not in cited(body)
    # The `collection` field works as well, and streaming names the model too.
    status, _, raw = server.request("POST", "/v1/chat/completions",
                                    {"messages": msgs, "collection": "zoo", "stream": True})
    events = [json.loads(line[6:]) for line in raw.decode().splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert status == 200 and {e["model"] for e in events} == {"paper-assistant:zoo"}
    assert [c["paper_id"] for c in events[-1]["citations"]] == [ZEBRA_ID]


def test_openai_client_sees_collections_as_models(server: ServerProcess) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["paper-assistant", "paper-assistant:older",
                                                    "paper-assistant:zoo"]
    reply = client.chat.completions.create(model="paper-assistant:zoo", messages=[{"role": "user", "content": ZEBRA}])
    assert "ZEBRA-PO" in (reply.choices[0].message.content or "") and reply.model == "paper-assistant:zoo"


def test_papers_endpoints_take_the_collection(server: ServerProcess) -> None:
    status, body = server.json("GET", "/v1/papers?collection=older")
    assert status == 200 and [p["paper_id"] for p in body["papers"]] == EXPECTED["papers"]["older"]
    status, body = server.json("GET", f"/v1/papers/{ZEBRA_ID}?collection=zoo")
    assert status == 200 and body["title"] == NEW_PAPER["title"]
    assert server.json("GET", f"/v1/papers/{ZEBRA_ID}")[0] == 404  # not in the default collection
    status, body = server.json("GET", "/v1/search?q=zebra%20finch&k=3&collection=zoo")
    assert status == 200 and [r["paper_id"] for r in body["results"]] == [ZEBRA_ID]


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    ("/v1/ask", {"question": ZEBRA, "collection": "nope"}, 404, "no collection 'nope'"),
    ("/v1/ask", {"question": ZEBRA, "collection": "Bad Name"}, 422, "collection: 'Bad Name' is not a valid"),
    ("/v1/chat/completions", {"model": "paper-assistant:nope", "messages": [{"role": "user", "content": "q?"}]},
     404, "no collection 'nope'"),
    ("/v1/chat/completions", {"model": "paper-assistant:zoo", "collection": "older",
                              "messages": [{"role": "user", "content": "q?"}]}, 422, "different collections"),
])
def test_unknown_or_bad_collections_get_a_one_line_4xx(server: ServerProcess, path: str, body: dict[str, Any],
                                                       status: int, words: str) -> None:
    got, reply = server.json("POST", path, body)
    assert got == status and words in reply["error"]["message"], reply
    assert "\n" not in reply["error"]["message"]
    assert server.json("GET", "/v1/papers?collection=nope")[0] == 404


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)
def test_web_chat_collection_picker(browser: Any, server: ServerProcess) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(server.url + "/")
    _visible(browser, "#question")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#collection option")) == 3)
    picker = Select(browser.find_element(By.ID, "collection"))
    assert [o.text for o in picker.options] == ["default", "older", "zoo"]
    assert picker.first_selected_option.text == "default"
    # The default collection does not have the zebra paper.
    turn = _ask(browser, ZEBRA)
    assert "ZEBRA-PO" not in turn.find_element(By.CSS_SELECTOR, ".text").text
    # Pick `zoo`: a new conversation, answered from zoo's paper, whose panel loads from zoo.
    picker.select_by_visible_text("zoo")
    _wait(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, "#log li.turn"))
    turn = _ask(browser, ZEBRA)
    assert "ZEBRA-PO" in turn.find_element(By.CSS_SELECTOR, ".text").text
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _visible(browser, "#cite-quote")
    assert browser.find_element(By.ID, "cite-title").text == NEW_PAPER["title"]
    # A follow-up stays in zoo.
    turn = _ask(browser, "what does it outperform?")
    assert "error" not in turn.get_attribute("class")
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _wait(browser, lambda d: d.find_element(By.ID, "cite-title").text == NEW_PAPER["title"])
    # Back to default: the old home's answer.
    picker.select_by_visible_text("default")
    turn = _ask(browser, QUESTION)
    assert turn.find_element(By.CSS_SELECTOR, ".text").text == EXPECTED["answer"]
