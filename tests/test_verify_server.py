"""Claim verification over HTTP (POST /v1/verify on the real `assistant serve` process), in the web
chat (real Chromium via selenium) and in the terminal chat (/verify through a pseudo-terminal)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env
from tests.server_process import ServerProcess
from tests.test_server_browser import CHROMEDRIVER, CHROMIUM, MISSING, _visible, _wait, artifacts, browser  # noqa: F401
from tests.test_verify import OFF_TOPIC, SUPPORTED


@pytest.fixture(scope="module")
def server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(sample_home, embed_cache, tmp_path_factory.mktemp("serve-verify") / "serve.log")
    yield srv
    srv.stop()


def test_post_verify(server: ServerProcess) -> None:
    status, body = server.json("POST", "/v1/verify", {"claim": SUPPORTED, "k": 8})
    assert status == 200, body
    assert body["claim"] == SUPPORTED and body["verdict"] == "SUPPORT"
    assert "Autoregressive Representation Alignment" in body["papers"][0]["title"]
    assert body["papers"][0]["quotes"]
    status, body = server.json("POST", "/v1/verify", {"claim": OFF_TOPIC})
    assert status == 200 and body["verdict"] == "NOT_ENOUGH_EVIDENCE" and body["closest"]
    status, body = server.json("POST", "/v1/verify", {"claim": SUPPORTED, "until": "1990"})
    assert status == 200 and body["papers"] == [] and body["closest"] == []
    for bad in ({"claim": "  "}, {"claim": SUPPORTED, "since": "2024-13"}, {"question": SUPPORTED},
                {"claim": SUPPORTED, "backend": "nope"}):
        status, body = server.json("POST", "/v1/verify", bad)
        assert status in (400, 422), (bad, body)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)
def test_web_chat_verdict_view(browser: Any, server: ServerProcess, artifacts: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, expected = server.json("POST", "/v1/verify", {"claim": SUPPORTED})
    browser.get(server.url + "/")
    box = _visible(browser, "#question")
    box.send_keys(SUPPORTED)
    browser.find_element(By.ID, "verify").click()
    turn = _visible(browser, "li.turn.verdicts")
    assert turn.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "supports"
    papers = turn.find_elements(By.CSS_SELECTOR, ".verdict-paper")
    assert len(papers) == len(expected["papers"])
    first = papers[0]
    assert first.find_element(By.CSS_SELECTOR, ".paper-title").text == expected["papers"][0]["title"]
    quotes = [q.text for q in first.find_elements(By.CSS_SELECTOR, "blockquote.quote")]
    assert quotes == [q["text"] for q in expected["papers"][0]["quotes"]]
    first.find_element(By.CSS_SELECTOR, ".paper-title").click()
    mark = _visible(browser, "#cite-abstract mark#cite-quote")
    assert mark.text == quotes[0]
    browser.save_screenshot(str(artifacts / "verify-supported.png"))
    # Typed as /verify CLAIM with Enter: nothing bears on it, the closest papers are listed as such.
    box.send_keys("/verify " + OFF_TOPIC)
    box.send_keys(Keys.ENTER)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "li.turn.verdicts")) == 2
          and "streaming" not in d.find_elements(By.CSS_SELECTOR, "li.turn.verdicts")[-1].get_attribute("class"))
    second = browser.find_elements(By.CSS_SELECTOR, "li.turn.verdicts")[-1]
    assert second.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "not enough evidence"
    assert "closest papers" in second.text.lower()
    assert all(c.text == "Closest" for c in second.find_elements(By.CSS_SELECTOR, ".chip"))
    browser.save_screenshot(str(artifacts / "verify-closest.png"))


def test_chat_slash_verify(sample_home: Path, embed_cache: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    env = cli_env(sample_home, embed_cache, TERM="xterm", PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "assistant", "chat"], env=env, encoding="utf-8", timeout=180,
                          dimensions=(60, 220), use_poll=True)
    child.expect("you>")
    child.sendline("/help")
    child.expect("/verify CLAIM")
    child.sendline("/verify " + SUPPORTED)
    child.expect("Verdict:")
    child.expect("support")  # (bold: terminal codes sit between the two)
    child.expect("Autoregressive Representation")
    child.sendline("/verify")
    child.expect("usage: /verify CLAIM")
    child.sendline("/quit")
    child.expect("bye")
    child.expect(pexpect.EOF)
