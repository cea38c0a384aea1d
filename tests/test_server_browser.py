"""The web chat in a real browser (Debian's chromium + chromedriver via selenium) against the
real `assistant serve` process: ask, watch the streamed answer, open a marker's quote, a refusal,
date filters, a follow-up, phone width, and the token page. Screenshots go to $ASSISTANT_ARTIFACTS
(or the test's temp dir)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess
from tests.test_server import ARRA, NEW_PAPER, QUESTIONS

REF_FREE = QUESTIONS[1]  # two papers cited: the README screenshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
MISSING = "no chromium/chromedriver installed (apt-get install chromium chromium-driver)"
# CI installs chromium and sets this, so there the test can never be skipped silently.
if (CHROMIUM is None or CHROMEDRIVER is None) and os.environ.get("ASSISTANT_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"ASSISTANT_REQUIRE_BROWSER=1 but {MISSING}")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason=MISSING)]
WAIT = 120
TOKEN = "browser-tökén-ü"  # not ASCII: the page must send its UTF-8 bytes


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("ASSISTANT_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def web_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[ServerProcess]:
    """Sample corpus plus one paper with an arXiv id, ingested through the API."""
    d = tmp_path_factory.mktemp("web")
    home = d / "home"
    shutil.copytree(sample_home, home)
    srv = ServerProcess(home, embed_cache, d / "serve.log", "--allow-ingest")
    status, _, raw = srv.request("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode(),
                                 headers={"Content-Type": "application/x-ndjson"})
    assert status == 200, raw
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def token_web_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("web-token")
    (d / "token").write_text(TOKEN + "\n", encoding="utf-8")
    # (token=None: urllib would send the token's latin-1 bytes; the page sends UTF-8, as the server expects.)
    srv = ServerProcess(sample_home, embed_cache, d / "serve.log", "--token-file", str(d / "token"), token=None)
    yield srv
    srv.stop()


@pytest.fixture()
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--no-first-run", "--no-default-browser-check",
                 "--metrics-recording-only", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                 # Nothing but loopback resolves: the page must work air-gapped.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 f"--user-data-dir={profile}", "--window-size=1280,900"):
        opts.add_argument(flag)
    # Explicit driver path: selenium's own driver manager (which would download) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _wait(driver: Any, cond: Any, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(cond)


def _visible(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    return _wait(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, css)))


def _ask(driver: Any, question: str) -> Any:
    """Type the question, press Enter, wait for the answer to finish streaming; returns the answer turn."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    before = len(driver.find_elements(By.CSS_SELECTOR, "li.turn.assistant"))
    box = driver.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)

    def done(d: Any) -> Any:
        turns = d.find_elements(By.CSS_SELECTOR, "li.turn.assistant")
        if len(turns) > before and "streaming" not in turns[-1].get_attribute("class"):
            return turns[-1]
        return False

    return _wait(driver, done)


def test_ask_stream_click_marker_see_quote(browser: Any, web_server: ServerProcess, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _, expected = web_server.json("POST", "/v1/ask", {"question": REF_FREE})
    assert len(expected["citations"]) >= 2
    browser.get(web_server.url + "/")
    _visible(browser, "#question")
    assert "248 papers" in browser.find_element(By.ID, "status").text
    turn = _ask(browser, REF_FREE)
    assert "error" not in turn.get_attribute("class") and "refusal" not in turn.get_attribute("class")
    text = turn.find_element(By.CSS_SELECTOR, ".text").text
    assert text == expected["answer"]
    markers = turn.find_elements(By.CSS_SELECTOR, ".text .marker")
    assert [m.text for m in markers] == [f"[{c['marker']}]" for c in expected["citations"]]
    markers[0].click()
    quote = _visible(browser, "#cite-abstract mark#cite-quote")
    cite = expected["citations"][0]
    assert quote.text == cite["quote"]
    assert browser.find_element(By.ID, "cite-title").text == cite["title"]
    assert cite["quote"] in browser.find_element(By.ID, "cite-abstract").text
    assert markers[0].get_attribute("aria-pressed") == "true"
    # Keyboard: the panel has focus; Escape closes it and gives focus back to the marker.
    assert browser.switch_to.active_element == browser.find_element(By.ID, "cite-title")
    browser.save_screenshot(str(artifacts / "web-chat-answer.png"))
    browser.switch_to.active_element.send_keys(Keys.ESCAPE)
    _wait(browser, lambda d: not d.find_element(By.ID, "cite-panel").is_displayed())
    assert browser.switch_to.active_element == markers[0]
    # The sources list is there and opens a paper too.
    sources = turn.find_element(By.CSS_SELECTOR, "details.sources")
    sources.find_element(By.TAG_NAME, "summary").click()
    assert len(sources.find_elements(By.CSS_SELECTOR, "li button")) == len(expected["sources"])

    # A paper with an arXiv id: the id links to arXiv.
    turn = _ask(browser, "What loss does ZEBRA-PO train with?")
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _visible(browser, "#cite-quote")
    link = browser.find_element(By.CSS_SELECTOR, "#cite-id a")
    assert link.get_attribute("href") == "https://arxiv.org/abs/2502.99999" and link.text == "arXiv:2502.99999"
    assert browser.find_element(By.ID, "cite-date").text == "2025-02-20"

    # Everything the page loaded came from the server itself (no CDN, works air-gapped).
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(web_server.url + "/") for u in loaded), loaded

    # A follow-up in the same conversation is answered about the same paper.
    turn = _ask(browser, "what does it outperform?")
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _visible(browser, "#cite-quote")
    assert browser.find_element(By.ID, "cite-title").text == NEW_PAPER["title"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#log li.turn")) == 6


def test_refusal_is_shown_as_a_refusal_and_date_filters_apply(browser: Any, web_server: ServerProcess,
                                                              artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(web_server.url + "/")
    _visible(browser, "#question")
    turn = _ask(browser, "What is the capital of France?")
    cls = turn.get_attribute("class")
    assert "refusal" in cls and "error" not in cls
    assert turn.find_element(By.CSS_SELECTOR, ".badge").text.lower() == "no answer in the indexed papers"
    assert "do not answer this" in turn.find_element(By.CSS_SELECTOR, ".text").text
    # With a date filter that excludes every paper, the answerable question is refused too.
    browser.find_element(By.ID, "since").send_keys("2030")
    turn = _ask(browser, ARRA)
    assert "refusal" in turn.get_attribute("class")
    browser.find_element(By.ID, "since").clear()
    browser.find_element(By.ID, "until").send_keys("June")
    turn = _ask(browser, ARRA)
    assert "error" in turn.get_attribute("class") and "date filter 'June'" in turn.text
    # Verifying a claim sends the same filters (and shows the same error).
    turn = _ask(browser, "/verify " + ARRA)
    assert "error" in turn.get_attribute("class") and "date filter 'June'" in turn.text
    # New conversation clears the history.
    browser.find_element(By.ID, "reset").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#log li") == []


def test_readable_at_phone_width(browser: Any, web_server: ServerProcess, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.set_window_size(390, 844)
    browser.get(web_server.url + "/")
    _visible(browser, "#question")
    turn = _ask(browser, ARRA)
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _visible(browser, "#cite-quote")
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    panel = browser.find_element(By.ID, "cite-panel").rect
    assert panel["width"] <= width
    browser.save_screenshot(str(artifacts / "web-chat-phone.png"))


def test_token_page_when_the_server_needs_a_token(browser: Any, token_web_server: ServerProcess,
                                                 artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(token_web_server.url + "/")
    _visible(browser, "#token-view")
    assert not browser.find_element(By.ID, "chat-view").is_displayed()
    box = browser.find_element(By.ID, "token-input")
    box.send_keys("wrong-token\n")
    _wait(browser, lambda d: "not accepted" in d.find_element(By.ID, "token-error").text)
    browser.save_screenshot(str(artifacts / "web-chat-token.png"))
    browser.find_element(By.ID, "token-input").send_keys(TOKEN + "\n")
    _visible(browser, "#question")
    turn = _ask(browser, ARRA)
    assert turn.find_elements(By.CSS_SELECTOR, ".text .marker")
    # A token refused mid-conversation (here: replaced in the page) sends asking and verifying alike back to
    # the token page, without leaving a half-drawn turn; the token entered again carries on.
    for typed in (ARRA, "/verify " + ARRA):
        turns = len(browser.find_elements(By.CSS_SELECTOR, "li.turn.assistant"))
        browser.execute_script("state.token = 'revoked-token';")
        box = browser.find_element(By.ID, "question")
        box.send_keys(typed + "\n")
        _visible(browser, "#token-view")
        assert "enter it again" in browser.find_element(By.ID, "token-error").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "li.turn.assistant")) == turns, typed
        browser.find_element(By.ID, "token-input").send_keys(TOKEN + "\n")
        _visible(browser, "#question")
    turn = _ask(browser, "/verify " + ARRA)
    assert turn.find_elements(By.CSS_SELECTOR, ".verdict-paper")


# -- issue 23: another origin cannot write; no script links -------------------------------------------
EVIL_PAGE = """<!doctype html><html><head><title>evil</title></head><body>
<form id="form" method="POST" action="TARGET/v1/ingest?format=jsonl" enctype="text/plain">
<input type="hidden" name='{"id": "csrf-form", "title": "Cross Site Form Paper", "abstract": "A page on another site \
plants this paper. It must never be stored.", "x": "' value='"}'></form>
<script>
const T = "TARGET/v1/ingest?format=jsonl";
const rec = (id) => JSON.stringify({id: id, title: "Cross Site " + id, abstract: "A page on another site plants " +
  id + ". It must never be stored."});
Promise.allSettled([
  fetch(T, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: rec("csrf-text")}),
  fetch(T, {method: "POST", mode: "no-cors", body: new Blob([rec("csrf-blob")])}),
  fetch(T + "&source=x", {method: "POST", mode: "no-cors", body: new URLSearchParams({a: rec("csrf-form-url")})}),
  fetch(T, {method: "POST", headers: {"Content-Type": "application/x-ndjson"}, body: rec("csrf-json")}),
]).then((r) => { document.title = "fetched:" + r.map((x) => x.status).join(","); });
</script></body></html>"""


@pytest.fixture()
def evil_origin(web_server: ServerProcess) -> Iterator[str]:
    """A second loopback server on another port: the page of "another site" (same host, other origin)."""
    import http.server
    import threading

    page = EVIL_PAGE.replace("TARGET", web_server.url).encode()

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_page_on_another_origin_cannot_write(browser: Any, web_server: ServerProcess, evil_origin: str) -> None:
    from selenium.webdriver.common.by import By

    ids = ["csrf-form", "csrf-text", "csrf-blob", "csrf-form-url", "csrf-json"]
    browser.get(evil_origin + "/")
    _wait(browser, lambda d: d.title.startswith("fetched:"))
    # The form POST navigates to the server's answer: the refusal, from the server itself.
    browser.find_element(By.ID, "form").submit()
    _wait(browser, lambda d: d.current_url.startswith(web_server.url))
    assert "cross-origin request refused" in browser.find_element(By.TAG_NAME, "body").text
    for pid in ids:
        assert web_server.request("GET", f"/v1/papers/{pid}")[0] == 404, pid
    status, listing = web_server.json("GET", "/v1/papers?limit=1000")
    assert not [p for p in listing["papers"] if p["paper_id"].startswith("csrf-")]
    assert "Traceback" not in web_server.log()


def test_a_script_url_is_never_a_link(browser: Any, web_server: ServerProcess) -> None:
    from selenium.webdriver.common.by import By

    planted = {"id": "kestrel-1", "title": "Kestrel Hover Policies for Reward Modelling",
               "abstract": "We present KESTREL-RM, a reward model trained on kestrel hover videos. KESTREL-RM "
                           "scores hovers with a wind-shear margin loss.",
               "url": "javascript:document.title='pwned'//arxiv.org/abs/"}
    status, _, raw = web_server.request("POST", "/v1/ingest?format=jsonl", json.dumps(planted).encode(),
                                        headers={"Content-Type": "application/x-ndjson"})
    assert status == 200, raw
    browser.get(web_server.url + "/")
    _visible(browser, "#question")
    turn = _ask(browser, "What loss does KESTREL-RM score hovers with?")
    turn.find_element(By.CSS_SELECTOR, ".text .marker").click()
    _visible(browser, "#cite-abstract")
    assert browser.find_element(By.ID, "cite-title").text == planted["title"]
    hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]'), (a) => a.href)")
    assert not [h for h in hrefs if not h.lower().startswith(("http:", "https:"))], hrefs
    assert browser.find_element(By.ID, "cite-id").text == "kestrel-1"  # the id, as plain text
    assert browser.title != "pwned"
