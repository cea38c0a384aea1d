"""`assistant serve` as a real process on loopback: every endpoint, streaming, multi-turn,
the token check, bad input, concurrent requests and 503 over capacity."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.api import Assistant
from assistant.display import markdown_text, markdown_unescape
from assistant.records import REFUSAL
from assistant.server.openai_compat import answer_markdown as markdown_text_keeping_markers
from assistant.server.openai_compat import arxiv_url, history_from_messages, split_references
from tests.conftest import cli_env
from tests.server_process import ServerProcess

pytestmark = pytest.mark.slow

ARRA = "What does ARRA align LLM hidden states with?"
QUESTIONS = [ARRA,
             "Which papers remove the need for a reference model in preference optimization?",
             "What is the capital of France?",
             "Which benchmark evaluates cultural alignment in the MENA region?",
             "What does token-level DPO change?",
             "How is multimodal RLHF data collected?",
             "What is Transfer Q Star?",
             "Which paper aligns LLMs for time series forecasting?"]
NEW_PAPER = {"id": "2502.99999", "title": "Zebra Finch Song Alignment for Preference Optimisation",
             "abstract": "We introduce ZEBRA-PO, a method that aligns language models with zebra finch song "
                         "preferences. ZEBRA-PO trains with a birdsong contrastive loss on 12,000 recorded songs. "
                         "It outperforms DPO on our birdsong benchmark.",
             "authors": ["A. Finch"], "date": "2025-02-20"}
NDJSON = {"Content-Type": "application/x-ndjson"}
NEW_BIB = """@article{owl2024,
  title = {Owl Hoot Reward Models},
  abstract = {We train OWLRM, a reward model for owl hoots. OWLRM scores hoots with a night-time margin loss.},
  year = {2024},
  eprint = {2405.88888}
}
"""


@pytest.fixture(scope="module")
def server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    srv = ServerProcess(sample_home, embed_cache, log, "--max-concurrent", "2", "--queue", "16",
                        env={"ASSISTANT_SERVE__MAX_BODY_BYTES": "262144"})
    yield srv
    srv.stop()


def writable_copy(sample_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each writing server gets its own copy: two processes never share an embedded Chroma."""
    dst = tmp_path_factory.mktemp("serve-home") / "home"
    shutil.copytree(sample_home, dst)
    return dst


def sse_events(raw: bytes) -> list[Any]:
    out: list[Any] = []
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: "):]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


# -- answers -----------------------------------------------------------------------------------
def test_ask_returns_the_answer_contract(server: ServerProcess, sample_assistant: Assistant) -> None:
    status, body = server.json("POST", "/v1/ask", {"question": ARRA, "k": 8})
    assert status == 200
    assert set(body) == {"question", "answer", "refused", "citations", "sources", "backend", "timings_ms", "checks"}
    expected = sample_assistant.ask(ARRA, k=8)
    assert body["answer"] == expected.text and not body["refused"]
    assert len(body["sources"]) == 8
    assert "[1]" in body["answer"] and "visual" in body["answer"].lower()
    cite = body["citations"][0]
    status, paper = server.json("GET", "/v1/papers/" + cite["paper_id"])
    assert status == 200 and cite["quote"] in paper["abstract"]
    # `curl -d` sends a form content type: the JSON body is still read.
    status, _, raw = server.request("POST", "/v1/ask", json.dumps({"question": ARRA}).encode(),
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and json.loads(raw)["answer"] == expected.text


def test_ask_refusal_and_date_filter(server: ServerProcess) -> None:
    status, body = server.json("POST", "/v1/ask", {"question": "What is the capital of France?"})
    assert status == 200 and body["refused"] and body["answer"] == REFUSAL and body["citations"] == []
    status, body = server.json("POST", "/v1/ask", {"question": ARRA, "since": "2030"})
    assert status == 200 and body["sources"] == [] and body["refused"]


def test_papers_search_health_models(server: ServerProcess) -> None:
    status, health = server.json("GET", "/healthz")
    assert status == 200 and health["papers"] == 247 and health["token_required"] is False
    status, page = server.json("GET", "/v1/papers?limit=5&offset=10&order=date")
    assert status == 200 and page["total"] == 247 and len(page["papers"]) == 5
    status, first = server.json("GET", "/v1/papers?limit=15&order=date")
    assert [p["paper_id"] for p in first["papers"][10:]] == [p["paper_id"] for p in page["papers"]]
    status, found = server.json("GET", "/v1/search?q=reference-free%20preference%20optimization&k=3&since=2024")
    assert status == 200 and [r["rank"] for r in found["results"]] == [1, 2, 3]
    assert all(r["date"] is None or r["date"] >= "2024" for r in found["results"])
    status, models = server.json("GET", "/v1/models")
    assert status == 200 and models["data"][0]["id"] == "paper-assistant"
    status, _, html = server.request("GET", "/")
    assert status == 200 and b"<title>paper-assistant</title>" in html
    for asset in ("/static/app.js", "/static/style.css"):
        assert server.request("GET", asset)[0] == 200


# -- OpenAI-compatible chat ---------------------------------------------------------------------
def test_chat_completions_stream_carries_markers_references_and_citations(server: ServerProcess) -> None:
    req = {"model": "paper-assistant", "messages": [{"role": "system", "content": "Be brief."},
                                                    {"role": "user", "content": ARRA}], "stream": True}
    status, headers, raw = server.request("POST", "/v1/chat/completions", req)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) > 3  # really streamed in pieces
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    answer = final["paper_assistant"]
    # content is Markdown: the papers' text in it escaped ("display.py"), the answer's markers kept.
    assert text.startswith(markdown_text_keeping_markers(answer["answer"])) and "\n\nReferences:\n[1] " in text
    assert markdown_unescape(text).startswith(answer["answer"])
    assert [c["marker"] for c in final["citations"]] == [c["marker"] for c in answer["citations"]]
    assert final["citations"][0]["quote"] and markdown_text(final["citations"][0]["title"]) in text
    # Same answer without streaming, in the usual OpenAI shape.
    status, body = server.json("POST", "/v1/chat/completions", {**req, "stream": False})
    assert status == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == text
    assert body["citations"] == final["citations"]


def test_chat_front_end_extras_are_accepted_and_usage_is_reported(server: ServerProcess) -> None:
    req = {"model": "whatever-the-ui-calls-it", "stream": True, "stream_options": {"include_usage": True},
           "tools": [], "tool_choice": "none", "temperature": 0.7, "max_tokens": 50, "user": "u1", "seed": 3,
           "messages": [{"role": "user", "content": [{"type": "text", "text": ARRA}]}]}
    status, _, raw = server.request("POST", "/v1/chat/completions", req)
    assert status == 200, raw
    events = sse_events(raw)
    usage = events[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert "[1]" in events[-3]["paper_assistant"]["answer"] and events[-1] == "[DONE]"


def test_openai_client_talks_to_the_server(server: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["paper-assistant"]
    stream = client.chat.completions.create(model="paper-assistant", stream=True, temperature=0.2,
                                            messages=[{"role": "user", "content": ARRA}])
    text = "".join((ch.choices[0].delta.content or "") for ch in stream if ch.choices)
    assert "[1]" in text and "References:" in text
    done = client.chat.completions.create(model="paper-assistant", messages=[{"role": "user", "content": ARRA}])
    assert done.choices[0].message.content == text


def test_multi_turn_follow_up_is_condensed(server: ServerProcess, sample_assistant: Assistant) -> None:
    status, first = server.json("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": ARRA}]})
    assert status == 200
    content = first["choices"][0]["message"]["content"]
    messages = [{"role": "user", "content": ARRA}, {"role": "assistant", "content": content},
                {"role": "user", "content": "what loss does it use?"}]
    status, second = server.json("POST", "/v1/chat/completions", {"messages": messages})
    assert status == 200
    cited_title = first["citations"][0]["title"]
    assert second["paper_assistant"]["question"] == "what loss does it use?"
    assert cited_title in second["paper_assistant"]["checks"]["standalone_question"]
    assert second["paper_assistant"]["sources"][0]["paper_id"] == first["citations"][0]["paper_id"]
    # The in-process chat session gives the same follow-up answer.
    with sample_assistant.chat() as s:
        s.ask(ARRA)
        assert s.ask("what loss does it use?").text == second["paper_assistant"]["answer"]
    # Without the earlier turns the follow-up is not about that paper.
    status, alone = server.json("POST", "/v1/chat/completions",
                                {"messages": [{"role": "user", "content": "what loss does it use?"}]})
    assert status == 200 and "standalone_question" not in alone["paper_assistant"]["checks"]


def test_references_round_trip() -> None:
    text = "A sentence [1]. Another (with parentheses) [2].\n\nReferences:\n" \
           "[1] Title (with) parentheses (2501.00001, 2025-01-02)\n[2] Plain Title (t-abc123)"
    body, cites = split_references(text)
    assert body == "A sentence [1]. Another (with parentheses) [2]."
    assert [(c.marker, c.title, c.paper_id) for c in cites] == [
        (1, "Title (with) parentheses", "2501.00001"), (2, "Plain Title", "t-abc123")]
    pairs = history_from_messages([{"role": "user", "text": "q1"}, {"role": "assistant", "text": REFUSAL},
                                   {"role": "user", "text": "q2"}])
    assert len(pairs) == 1 and pairs[0][1].refused
    assert arxiv_url("2401.01234v2") == "https://arxiv.org/abs/2401.01234v2"
    assert arxiv_url("hep-th/9901001") == "https://arxiv.org/abs/hep-th/9901001"
    assert arxiv_url("t-abc123") is None and arxiv_url("x", "arXiv:2401.01234") == "https://arxiv.org/abs/2401.01234"


# -- bad input ------------------------------------------------------------------------------------
BAD = [
    ("POST", "/v1/ask", b'{"question": "x",', {}, 400, "not valid JSON"),
    ("POST", "/v1/ask", b"", {}, 400, "body is empty"),
    ("POST", "/v1/ask", b"\xff\xfe", {}, 400, "UTF-8"),
    ("POST", "/v1/ask", {"question": "x", "top": 3}, {}, 422, "unknown field 'top'"),
    ("POST", "/v1/ask", {"question": "   "}, {}, 422, "question is empty"),
    ("POST", "/v1/ask", {"k": 3}, {}, 422, "question: required"),
    ("POST", "/v1/ask", b'["a list"]', {}, 422, "expected a JSON object"),
    ("POST", "/v1/ask", {"question": "x", "k": 0}, {}, 422, "k:"),
    ("POST", "/v1/ask", {"question": "x", "until": "June"}, {}, 422, "until: date filter 'June'"),
    ("POST", "/v1/ask", {"question": "x", "backend": "gpt"}, {}, 422, "backend: unknown answer backend 'gpt'"),
    ("POST", "/v1/ask", {"question": "x" * 300_000}, {}, 413, "too large"),
    ("POST", "/v1/ask?verbose=1", {"question": "x"}, {}, 422, "unknown query parameter 'verbose'"),
    ("POST", "/v1/chat/completions", {"messages": []}, {}, 422, "messages:"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                                                                                       "content": "a"}]},
     {}, 422, "last message must be a user message"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": " "}]}, {}, 422, "non-empty"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}], "n": 2}, {}, 422, "n:"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}], "temprature": 0}, {}, 422,
     "unknown field 'temprature'"),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "wizard", "content": "q"}]}, {}, 422, "role"),
    ("GET", "/v1/search?q=%20", None, {}, 422, "query is empty"),
    ("GET", "/v1/search?q=x&k=1000", None, {}, 422, "k:"),
    ("GET", "/v1/search", None, {}, 422, "q: required"),
    ("GET", "/v1/papers?order=random", None, {}, 422, "order:"),
    ("GET", "/v1/papers/no-such-paper", None, {}, 404, "no paper with id 'no-such-paper'"),
    ("GET", "/v1/nothing", None, {}, 404, "no such endpoint"),
    ("GET", "/v1/ask", None, {}, 405, "method not allowed"),
    ("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode(), NDJSON, 403, "ingest is off"),
]


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "reason"), BAD,
                         ids=[f"{b[0]} {b[1][:24]} {b[4]} {b[5][:20]}" for b in BAD])
def test_bad_input_gets_a_one_line_4xx(server: ServerProcess, method: str, path: str, body: Any,
                                       headers: dict[str, str], status: int, reason: str) -> None:
    got, _, raw = server.request(method, path, body, headers=headers)
    err = json.loads(raw)["error"]
    assert got == status and err["code"] == status, raw
    assert reason in err["message"] and "\n" not in err["message"]


def test_ingest_off_is_refused_to_a_client_that_sends_its_whole_upload_first(server: ServerProcess) -> None:
    """With ingest off an upload was read and held (up to 50 MB) only to be refused; refusing before the body
    then reached urllib (which sends the body whole before reading) as a connection reset: the body is now
    read and dropped, and the 403 arrives."""
    import urllib.error
    import urllib.request

    body = (json.dumps(NEW_PAPER) + "\n").encode() * 20_000  # ~8 MB, over max_body_bytes
    req = urllib.request.Request(f"http://127.0.0.1:{server.port}/v1/ingest?format=jsonl", data=body,
                                 headers={"Content-Type": "application/x-ndjson"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=120)
    assert err.value.code == 403 and b"ingest is off" in err.value.read()


def test_body_too_large_without_content_length(server: ServerProcess) -> None:
    """A chunked upload is counted as it arrives, not trusted."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.putrequest("POST", "/v1/ask")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Content-Type", "application/json")
    conn.endheaders()
    part = b'{"question": "' + b"y" * 100_000
    try:
        for _ in range(4):
            conn.send(b"%x\r\n%s\r\n" % (len(part), part))
        conn.send(b"0\r\n\r\n")
    except OSError:
        pass  # the server may close early; the status line is still there
    resp = conn.getresponse()
    assert resp.status == 413 and b"too large" in resp.read()
    conn.close()


# -- concurrency --------------------------------------------------------------------------------
def _burst(server: ServerProcess, bodies: list[dict[str, Any]], path: str = "/v1/ask"
           ) -> list[tuple[int, dict[str, str], bytes]]:
    results: list[Any] = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def one(i: int) -> None:
        barrier.wait()
        results[i] = server.request("POST", path, bodies[i], timeout=300)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_requests_are_all_answered_without_cross_talk(server: ServerProcess) -> None:
    sequential = {q: server.json("POST", "/v1/ask", {"question": q})[1]["answer"] for q in QUESTIONS}
    results = _burst(server, [{"question": q} for q in QUESTIONS])
    for q, (status, _, raw) in zip(QUESTIONS, results, strict=True):
        assert status == 200, raw
        assert json.loads(raw)["answer"] == sequential[q]
    # Streams at the same time as well.
    streams = _burst(server, [{"messages": [{"role": "user", "content": q}], "stream": True} for q in QUESTIONS[:4]],
                     "/v1/chat/completions")
    for q, (status, _, raw) in zip(QUESTIONS[:4], streams, strict=True):
        assert status == 200 and sse_events(raw)[-2]["paper_assistant"]["answer"] == sequential[q]


@pytest.fixture(scope="module")
def small_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServerProcess]:
    """One answer at a time, nobody waiting; ingest allowed on loopback without a token."""
    log = tmp_path_factory.mktemp("serve-small") / "serve.log"
    srv = ServerProcess(writable_copy(sample_home, tmp_path_factory), embed_cache, log, "--max-concurrent", "1",
                        "--queue", "0", "--allow-ingest")
    yield srv
    srv.stop()


def test_over_capacity_answers_503_with_retry_after(small_server: ServerProcess) -> None:
    seen: dict[int, int] = {}
    for _ in range(6):  # bursts of 12 at once against one slot: some must be turned away
        for status, headers, raw in _burst(small_server, [{"question": q} for q in QUESTIONS * 2][:12]):
            seen[status] = seen.get(status, 0) + 1
            if status == 503:
                assert int(headers["retry-after"]) >= 1
                assert "server busy" in json.loads(raw)["error"]["message"]
            else:
                assert status == 200 and json.loads(raw)["answer"], raw
        if seen.get(503):
            break
    assert set(seen) == {200, 503}, seen  # every request got an answer or a 503: none lost, none queued forever
    status, health = small_server.json("GET", "/healthz")
    assert health["answers"]["rejected"] >= seen[503] and health["answers"]["running"] == 0
    assert small_server.json("POST", "/v1/ask", {"question": ARRA})[0] == 200


def test_ingest_jsonl_and_bibtex_with_allow_ingest(small_server: ServerProcess) -> None:
    status, rep = small_server.json("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode() + b"\n{bad\n",
                                    headers=NDJSON)
    assert status == 200 and rep["new"] == 1 and rep["papers_total"] == 248, rep
    assert any("body" in p and "line 2" in p for p in rep["problems"]), rep["problems"]
    status, paper = small_server.json("GET", "/v1/papers/2502.99999")
    assert status == 200 and paper["url"] == "https://arxiv.org/abs/2502.99999"
    status, ans = small_server.json("POST", "/v1/ask", {"question": "What loss does ZEBRA-PO train with?"})
    assert status == 200 and ans["citations"][0]["paper_id"] == "2502.99999", ans
    status, rep = small_server.json("POST", "/v1/ingest", NEW_BIB.encode(),
                                    headers={"Content-Type": "application/x-bibtex"})
    assert status == 200 and rep["new"] == 1 and rep["papers_total"] == 249, rep
    status, again = small_server.json("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode(),
                                      headers=NDJSON)
    assert status == 200 and again["new"] == 0 and again["unchanged"] == 1
    status, err = small_server.json("POST", "/v1/ingest?format=jsonl", b"{not json\n", headers=NDJSON)
    assert status == 422 and "nothing could be read" in err["error"]["message"]
    status, err = small_server.json("POST", "/v1/ingest", b"x", headers={"Content-Type": "text/plain"})
    assert status == 415


# -- the token ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def token_server(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ServerProcess]:
    d = tmp_path_factory.mktemp("serve-token")
    (d / "token").write_text("s3cret-token\n")
    srv = ServerProcess(writable_copy(sample_home, tmp_path_factory), embed_cache, d / "serve.log",
                        "--token-file", str(d / "token"),
                        token="s3cret-token")
    yield srv
    srv.stop()


def test_token_is_required_on_every_data_request(token_server: ServerProcess) -> None:
    for method, path, body in [("GET", "/healthz", None), ("GET", "/v1/papers", None), ("GET", "/v1/models", None),
                               ("GET", "/v1/search?q=dpo", None), ("POST", "/v1/ask", {"question": ARRA}),
                               ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": ARRA}]}),
                               ("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode())]:
        for token in (None, "wrong", "s3cret-token-but-longer"):
            status, headers, raw = token_server.request(method, path, body, token=token, headers=NDJSON)
            assert status == 401 and headers["www-authenticate"] == "Bearer", (path, token)
            assert "bearer token" in json.loads(raw)["error"]["message"]
    status, body = token_server.json("POST", "/v1/ask", {"question": ARRA})
    assert status == 200 and "[1]" in body["answer"]
    status, health = token_server.json("GET", "/healthz")
    assert health["token_required"] is True and health["ingest"] is True
    # The web page itself (no data in it) loads without the token, so it can ask for one.
    assert token_server.request("GET", "/", token=None)[0] == 200
    assert token_server.request("GET", "/static/app.js", token=None)[0] == 200
    status, rep = token_server.json("POST", "/v1/ingest?format=jsonl", json.dumps(NEW_PAPER).encode(), headers=NDJSON)
    assert status == 200 and rep["papers_total"] >= 248


def test_exposed_address_needs_a_token_file(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "home")
    run = subprocess.run([sys.executable, "-m", "assistant", "serve", "--host", "0.0.0.0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "refusing to listen on 0.0.0.0 without --token-file" in run.stderr
    assert "Traceback" not in run.stderr
    (tmp_path / "empty").write_text("\n")
    run = subprocess.run([sys.executable, "-m", "assistant", "serve", "--token-file", str(tmp_path / "empty")],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "must hold one token" in run.stderr and "Traceback" not in run.stderr


# -- a slow answer does not hold up the others -----------------------------------------------------
@pytest.fixture()
def frozen_llm() -> Iterator[int]:
    """A real loopback socket that accepts connections and never answers: an LLM server that hangs."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


def test_a_hanging_answer_does_not_block_other_requests(sample_home: Path, embed_cache: Path, tmp_path: Path,
                                                        frozen_llm: int) -> None:
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{frozen_llm}/v1", "OPENAI_API_KEY": "unused",
           "ASSISTANT_REQUEST_TIMEOUT": "20", "ASSISTANT_MAX_RETRIES": "0", "ASSISTANT_SERVE__QUEUE_TIMEOUT": "2"}
    srv = ServerProcess(sample_home, embed_cache, tmp_path / "serve.log", "--max-concurrent", "2", env=env)
    try:
        slow: dict[int, Any] = {}

        def ask_slow(n: int) -> None:
            slow[n] = srv.json("POST", "/v1/ask", {"question": ARRA, "backend": "openai"})

        def running() -> int:
            return int(srv.json("GET", "/healthz")[1]["answers"]["running"])

        def wait_running(n: int) -> None:
            deadline = time.monotonic() + 30
            while running() != n:
                assert time.monotonic() < deadline, f"never {n} answers running"
                time.sleep(0.1)

        first = threading.Thread(target=ask_slow, args=(1,))
        first.start()
        wait_running(1)
        # While the openai answer waits on the frozen server, the other slot and the event loop serve others.
        for q in QUESTIONS[:4]:
            status, body = srv.json("POST", "/v1/ask", {"question": q})
            assert status == 200 and body["backend"]["llm"] == "extractive"
        assert first.is_alive() and not slow  # the slow one is still waiting
        # Both slots hung: a new question waits its queue timeout (2 s here), then gets a 503, not a hang.
        second = threading.Thread(target=ask_slow, args=(2,))
        second.start()
        wait_running(2)
        status, headers, raw = srv.request("POST", "/v1/ask", {"question": ARRA})
        assert status == 503 and int(headers["retry-after"]) >= 1
        assert "no answer slot free within 2 s" in json.loads(raw)["error"]["message"]
        assert srv.json("GET", "/healthz")[0] == 200 and first.is_alive()
        for t in (first, second):
            t.join(timeout=120)
        for n in (1, 2):
            status, body = slow[n]
            assert status == 502 and "\n" not in body["error"]["message"], body
    finally:
        srv.stop()


def test_serve_help_imports_no_web_framework() -> None:
    """`assistant serve --help` (and `assistant --help`) stay instant: FastAPI/uvicorn load only to serve."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom assistant.cli import app\n"
            "r = CliRunner().invoke(app, ['serve', '--help'])\nassert r.exit_code == 0, r.output\n"
            "assert '--token-file' in r.output and '--allow-ingest' in r.output, r.output\n"
            "print(','.join(m for m in ('fastapi', 'uvicorn', 'starlette', 'chromadb') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**cli_env(Path("/nonexistent")), "COLUMNS": "200"})
    assert out.stdout.strip() == ""
