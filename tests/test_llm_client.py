"""ChatClient against a real llama.cpp server (SmolLM2-135M) and tiny scripted HTTP servers.

The scripted servers are real sockets on loopback that answer with fixed status codes
and bodies, for what llama.cpp will not do on demand (503, 429, 401, slow replies).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import BackendError
from assistant.llm import DUMMY_KEY, OPENAI_DEFAULT_URL, ChatClient
from assistant.settings import Settings
from tests.llm_server import ServerHandle, free_port, require_llama_server, start_llama_server

HI = [{"role": "user", "content": "Say hello."}]
#: Generous per-read timeout for the real server: a busy 2-core CI box can stall it for a while.
LLAMA_TIMEOUT = 120.0


def settings_for(base_url: str, **kw: Any) -> Settings:
    """Settings built directly, so neither the user's env nor config file leaks in."""
    values: dict[str, Any] = {"llm": "openai", "openai_base_url": base_url, "llm_model": "smollm2",
                              "request_timeout": 30.0, "max_retries": 2}
    values.update(kw)
    return Settings(**values)


# -- scripted HTTP server -------------------------------------------------------------------
Reply = Callable[[BaseHTTPRequestHandler], None]


class ScriptedServer:
    """Answers request i with replies[i] (the last reply repeats) and records every request."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append({"path": self.path,
                                           # HTTP header names are case-insensitive; openai 3.x sends
                                           # them in lower case, 2.x capitalised.
                                           "headers": {k.lower(): v for k, v in self.headers.items()},
                                           "json": json.loads(body) if body else None})
                outer.replies[min(n, len(outer.replies) - 1)](self)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(*replies: Reply) -> ScriptedServer:
        servers.append(ScriptedServer(list(replies)))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def status(code: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Reply:
    def reply(h: BaseHTTPRequestHandler) -> None:
        data = json.dumps(body or {"error": {"message": f"status {code}"}}).encode()
        h.send_response(code)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return reply


def chat_json(text: str) -> Reply:
    return status(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "smollm2",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}]})


def _event(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    data = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "smollm2",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


def sse(pieces: list[str], *, abort: bool = False, finish: str | None = "stop", hang: float = 0.0,
        drop_after_finish: bool = False) -> Reply:
    """A chunked event stream; ``abort`` drops the connection after the pieces, mid-body; ``hang``
    waits that long after the finish_reason event before ending; ``drop_after_finish`` drops the
    connection there instead."""
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

        def chunk(data: bytes) -> None:
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()

        for piece in pieces:
            chunk(_event(piece))
        if abort:
            h.close_connection = True
            return
        if hang or drop_after_finish:
            chunk(_event(None, finish))
            if drop_after_finish:
                h.close_connection = True
                return
            time.sleep(hang)
            try:
                chunk(b"data: [DONE]\n\n")
                h.wfile.write(b"0\r\n\r\n")
            except OSError:  # the client has gone
                h.close_connection = True
            return
        chunk(_event(None, finish) + b"data: [DONE]\n\n")
        h.wfile.write(b"0\r\n\r\n")
    return reply


def slow(seconds: float) -> Reply:
    def reply(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        try:
            chat_json("too late")(h)
        except OSError:  # the client gave up long ago
            h.close_connection = True
    return reply


# -- behaviour without any LLM ----------------------------------------------------------------
def test_retries_503_then_answers(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(status(503), status(503), chat_json("hello there"))
    client = ChatClient(settings_for(server.base_url, max_retries=3), backoff=0.05)
    assert client.complete(HI) == "hello there"
    assert len(server.requests) == 3
    assert all(r["path"] == "/v1/chat/completions" for r in server.requests)
    assert server.requests[0]["json"]["model"] == "smollm2"
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {DUMMY_KEY}"


def test_streaming_retries_failures_before_the_first_token(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(status(502), status(429, headers={"Retry-After": "0"}), sse(["Hel", "lo", "!"]))
    tokens: list[str] = []
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    assert client.complete(HI, stream=True, on_token=tokens.append) == "Hello!"
    assert tokens == ["Hel", "lo", "!"]
    assert len(server.requests) == 3 and server.requests[-1]["json"]["stream"] is True
    assert client.last_finish_reason == "stop"


def test_gives_up_after_max_retries(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(status(429, {"error": {"message": "Rate limit reached for requests"}}))
    client = ChatClient(settings_for(server.base_url, max_retries=1), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI)
    assert len(server.requests) == 2
    msg = str(err.value)
    assert "rate limiting" in msg and "(429) after 2 attempts" in msg and "Rate limit reached" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("code", "expected"), [
    (400, "rejected the request (HTTP 400): status 400"),
    (401, "rejected the API key (401); check OPENAI_API_KEY"),
    (403, "refused access (403)"),
    (404, "model 'smollm2' not found on"),
])
def test_no_retry_on_client_errors(scripted: Callable[..., ScriptedServer], code: int, expected: str) -> None:
    key = "sk-test-secret-123"
    # Real servers echo (part of) the key in some error messages; it must never reach the user.
    server = scripted(status(code, {"error": {"message": f"status {code} for key {key}"}}))
    client = ChatClient(settings_for(server.base_url, openai_api_key=key), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI, stream=code % 2 == 0)
    assert len(server.requests) == 1
    assert server.requests[0]["headers"]["authorization"] == f"Bearer {key}"
    msg = str(err.value)
    assert expected in msg and server.base_url in msg
    assert key not in msg and "\n" not in msg


def test_stream_dropped_after_text_is_not_retried(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(sse(["Once", " upon"], abort=True), sse(["never sent"]))
    tokens: list[str] = []
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI, stream=True, on_token=tokens.append)
    assert tokens == ["Once", " upon"]
    assert len(server.requests) == 1
    assert f"the stream from {server.base_url} broke after 9 characters" in str(err.value)


def test_stream_without_finish_reason_counts_as_broken(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(sse(["Partial"], finish=None))
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    with pytest.raises(BackendError, match="broke after 7 characters: it ended before"):
        client.complete(HI, stream=True, on_token=lambda t: None)


@pytest.mark.parametrize("ending", ["hang", "drop"])
def test_a_stream_that_finished_keeps_its_answer_when_its_end_never_comes(
        scripted: Callable[..., ScriptedServer], ending: str) -> None:
    """The finish_reason event arrived (the answer is whole), then the server neither sent [DONE]
    nor closed, or dropped the connection: that was reported as a broken stream and the answer lost
    (after the whole 30 s timeout)."""
    server = scripted(sse(["Whole", " answer."], hang=60.0 if ending == "hang" else 0.0,
                          drop_after_finish=ending == "drop"))
    client = ChatClient(settings_for(server.base_url, request_timeout=30.0), backoff=0.05)
    shown: list[str] = []
    t0 = time.monotonic()
    assert client.complete(HI, stream=True, on_token=shown.append) == "Whole answer."
    assert time.monotonic() - t0 < 15.0  # (a hang guard: the answer is kept as soon as it is whole)
    assert shown == ["Whole", " answer."] and client.last_finish_reason == "stop"
    assert len(server.requests) == 1


def test_a_stream_request_answered_in_one_json_reply_is_read(scripted: Callable[..., ScriptedServer]) -> None:
    """A server or proxy that ignores stream=true answers with one chat.completion document: that read as
    a stream that "ended before the server reported a finish reason"."""
    server = scripted(chat_json("All at once."))
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    shown: list[str] = []
    assert client.complete(HI, stream=True, on_token=shown.append) == "All at once."
    assert shown == ["All at once."] and client.last_finish_reason == "stop"
    server = scripted(status(200, {"error": {"message": "model is loading"}}))
    with pytest.raises(BackendError, match=r"sent an error: model is loading$"):
        ChatClient(settings_for(server.base_url, max_retries=0), backoff=0.05).complete(
            HI, stream=True, on_token=shown.append)


def test_timeout_is_reported_and_not_retried(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(slow(3.0))
    client = ChatClient(settings_for(server.base_url, request_timeout=0.3), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI)
    assert str(err.value) == f"the server at {server.base_url} timed out after 0.3s"
    assert len(server.requests) == 1


def test_unreachable_server() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = ChatClient(settings_for(url, max_retries=1, request_timeout=5.0), backoff=0.05)
    for call in (lambda: client.complete(HI), lambda: client.complete(HI, stream=True),
                 client.list_models):
        with pytest.raises(BackendError) as err:
            call()
        assert str(err.value) == (f"cannot reach the OpenAI-compatible server at {url} (connection refused) "
                                  "after 2 attempts; check OPENAI_BASE_URL")


def test_list_models_and_missing_endpoint(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(status(200, {"object": "list", "data": [{"id": "a", "object": "model", "created": 0,
                                                                 "owned_by": "me"}]}), status(404))
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    assert client.list_models() == ["a"]
    with pytest.raises(BackendError, match=r"has no /models endpoint \(404\); check OPENAI_BASE_URL"):
        client.list_models()


def test_openai_default_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackendError) as err:
        ChatClient(settings_for("", openai_api_key=""))
    assert str(err.value).startswith(
        "the openai backend needs OPENAI_API_KEY (or set OPENAI_BASE_URL to a local server)")
    assert "export OPENAI_BASE_URL=" in str(err.value)  # the next command to run
    # The openai package would read these itself; Settings must stay the only source.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    client = ChatClient(settings_for("", openai_api_key="sk-from-settings"))
    assert client.base_url == OPENAI_DEFAULT_URL and client.model_name == "smollm2"
    inner = client._openai()
    assert str(inner.base_url).rstrip("/") == OPENAI_DEFAULT_URL and inner.api_key == "sk-from-settings"


def test_first_token_logprobs_merges_spellings_of_a_token(scripted: Callable[..., ScriptedServer]) -> None:
    tops = [{"token": " Yes", "logprob": -0.4}, {"token": "yes", "logprob": -2.0}, {"token": "No", "logprob": -1.5},
            {"token": " ", "logprob": -3.0}, {"token": 7, "logprob": -1.0}, {"token": "Maybe"}]
    server = scripted(status(200, {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "finish_reason": "length",
                                                "message": {"role": "assistant", "content": "Yes"},
                                                "logprobs": {"content": [{"token": " Yes", "logprob": -0.4,
                                                                          "top_logprobs": tops}]}}]}))
    got = ChatClient(settings_for(server.base_url)).first_token_logprobs([{"role": "user", "content": "?"}], top=6)
    assert got == {"yes": -0.4, "no": -1.5}  # the likelier spelling; blank, non-string and unscored dropped
    assert server.requests[0]["json"]["top_logprobs"] == 6


def test_first_token_logprobs_without_logprobs_falls_back_to_the_reply(
        scripted: Callable[..., ScriptedServer]) -> None:
    """A server that ignores ``logprobs`` (not every OpenAI-compatible one sends them) still gives a
    verdict: its reply's first word, certain; a reply without choices is a one-line error."""
    server = scripted(chat_json("No. The evidence is about mice."), status(200, {"id": "c", "choices": []}))
    client = ChatClient(settings_for(server.base_url, temperature=0.7))
    assert client.first_token_logprobs([{"role": "user", "content": "?"}]) == {"no": 0.0}
    sent = server.requests[0]["json"]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 10 and sent["max_tokens"] == 1
    assert sent["temperature"] == 0.0
    with pytest.raises(BackendError, match="without any choices"):
        client.first_token_logprobs([{"role": "user", "content": "?"}])


def test_a_reply_of_the_wrong_shape_shows_what_came(scripted: Callable[..., ScriptedServer]) -> None:
    """``"choices": ["abc"]`` read "unexpected shape: '{}'", hiding what the server sent."""
    server = scripted(status(200, {"choices": ["abc"]}))
    with pytest.raises(BackendError, match=r"unexpected shape: '\"abc\"'$"):
        ChatClient(settings_for(server.base_url, max_retries=0)).complete(HI)


def test_json_mode_and_max_tokens_are_sent(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(chat_json('{"a": 1}'))
    client = ChatClient(settings_for(server.base_url, temperature=0.2))
    assert json.loads(client.complete(HI, json_mode=True, max_tokens=5)) == {"a": 1}
    sent = server.requests[0]["json"]
    assert sent["response_format"] == {"type": "json_object"} and sent["max_tokens"] == 5
    assert sent["temperature"] == 0.2 and sent["messages"] == HI


def raw_body(body: bytes, content_type: str = "application/json") -> Reply:
    """HTTP 200 with whatever body: a proxy's HTML page, a truncated JSON reply."""
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
    return reply


def trickle(*, stream: bool, every: float = 0.25, lasting: float = 30.0, newline: bool = True) -> Reply:
    """Headers at once, then a byte (or an SSE ": ping" comment; without ``newline`` one byte of a line
    that never ends) every ``every`` seconds: no single read ever waits long, so a per-read timeout
    never fires."""
    def reply(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if stream:
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", "100000")
        h.end_headers()
        end = time.monotonic() + lasting
        try:
            while time.monotonic() < end:
                h.wfile.write((b"8\r\n: ping\n\n\r\n" if newline else b"1\r\na\r\n") if stream else b" ")
                h.wfile.flush()
                time.sleep(every)
        except OSError:  # the client gave up: what we want
            pass
        h.close_connection = True
    return reply


# -- bad bodies and slow servers (issue 12 items 8 and 9) ----------------------------------------
@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway</body></html>", b'{"id": "c1", "choi',
                                  b"[1, 2, 3]"])
def test_reply_that_is_not_json_is_one_line(scripted: Callable[..., ScriptedServer], body: bytes) -> None:
    server = scripted(raw_body(body))
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI)
    msg = str(err.value)
    assert msg.startswith(f"the server at {server.base_url} sent a reply that is not ")
    assert "\n" not in msg
    # A garbled reply is not a transient failure: asking again would only waste time.
    assert len(server.requests) == 1


@pytest.mark.parametrize("body", [b"<html><body>Bad Gateway</body></html>", b"data: {not json\n\n"])
def test_stream_that_is_not_json_is_one_line(scripted: Callable[..., ScriptedServer], body: bytes) -> None:
    server = scripted(raw_body(body, "text/event-stream"))
    client = ChatClient(settings_for(server.base_url), backoff=0.05)
    with pytest.raises(BackendError) as err:
        client.complete(HI, stream=True, on_token=lambda t: None)
    msg = str(err.value)
    assert server.base_url in msg and "\n" not in msg


@pytest.mark.parametrize("stream", [False, True])
def test_request_timeout_caps_the_whole_request(scripted: Callable[..., ScriptedServer], stream: bool) -> None:
    # Issue 12 item 9: a byte every 0.25 s kept a request with a 1 s timeout open for as
    # long as the server liked (30 s here); the timeout is a deadline for the whole request.
    server = scripted(trickle(stream=stream, lasting=30.0))
    client = ChatClient(settings_for(server.base_url, request_timeout=1.0, max_retries=2), backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as err:
        client.complete(HI, stream=stream, on_token=(lambda t: None) if stream else None)
    assert time.monotonic() - t0 < 15.0  # half of the trickle: it did not wait for the server
    assert str(err.value) == f"the server at {server.base_url} timed out after 1s"
    assert len(server.requests) == 1


def test_a_stream_line_that_never_ends_is_cut_at_the_deadline(scripted: Callable[..., ScriptedServer]) -> None:
    """A byte every 0.25 s and never a newline: the deadline was checked once per complete line, so a
    5 s timeout ran for as long as the server liked."""
    server = scripted(trickle(stream=True, lasting=30.0, newline=False))
    client = ChatClient(settings_for(server.base_url, request_timeout=1.0, max_retries=2), backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(BackendError) as err:
        client.complete(HI, stream=True, on_token=lambda t: None)
    assert time.monotonic() - t0 < 15.0
    assert str(err.value) == f"the server at {server.base_url} timed out after 1s"


def test_replies_too_big_to_be_answers_are_not_read_whole(scripted: Callable[..., ScriptedServer]) -> None:
    """A 100 MB reply was held whole (and echoed twice in --json output): a body over 16 MB, or a
    stream line over 1 MB, ends the read with one line."""
    from assistant.llm import MAX_EVENT_LINE, MAX_REPLY_BYTES

    server = scripted(raw_body(b'{"choices": "' + b"a" * (MAX_REPLY_BYTES + 10) + b'"}'))
    client = ChatClient(settings_for(server.base_url, max_retries=0), backoff=0.05)
    with pytest.raises(BackendError, match="sent a reply over 16 MB; stopped reading it"):
        client.complete(HI)
    server = scripted(raw_body(b"data: " + b"a" * (MAX_EVENT_LINE + 10), "text/event-stream"))
    client = ChatClient(settings_for(server.base_url, max_retries=0), backoff=0.05)
    with pytest.raises(BackendError, match="sent a stream line over 1 MB"):
        client.complete(HI, stream=True, on_token=lambda t: None)


def test_a_stream_longer_than_any_answer_stops_being_read(scripted: Callable[..., ScriptedServer],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast server ignoring max_tokens streamed for as long as the deadline allowed, all of it kept."""
    import assistant.llm as llm

    monkeypatch.setattr(llm, "MAX_REPLY_BYTES", 50)  # 16 MB in the product; the rule is what is tested
    server = scripted(sse(["0123456789"] * 20))
    shown: list[str] = []
    with pytest.raises(BackendError, match="broke after 50 characters: the reply passed 0 MB; stopped reading it"):
        ChatClient(settings_for(server.base_url, max_retries=0), backoff=0.05).complete(
            HI, stream=True, on_token=shown.append)
    assert "".join(shown) == "0123456789" * 5


def test_only_a_refusing_status_retries_without_the_json_schema(scripted: Callable[..., ScriptedServer]) -> None:
    """The plain-JSON retry matched "400"/"422" anywhere in the message: "timed out after 400s", or a
    host named gpu-400, sent a second whole request."""
    from assistant.answering.generative import rejected_format

    refused = scripted(status(400, {"error": {"message": "response_format is not supported"}}))
    with pytest.raises(BackendError) as err:
        ChatClient(settings_for(refused.base_url, max_retries=0), backoff=0.05).complete(HI)
    assert rejected_format(err.value)
    hung = scripted(slow(30.0))
    with pytest.raises(BackendError) as err:
        ChatClient(settings_for(hung.base_url, request_timeout=1.0, max_retries=0), backoff=0.05).complete(HI)
    assert "timed out" in str(err.value) and not rejected_format(err.value)
    assert not rejected_format(BackendError("the server at http://gpu-400:8080/v1 timed out after 400s"))
    # An error event inside a stream has no status; its words name the refused field.
    assert rejected_format(BackendError("the server at http://x/v1 sent an error: response_format is not supported"))


def test_the_optional_context_question_is_asked_once_without_retries(scripted: Callable[..., ScriptedServer]) -> None:
    """A /models failing with 500 was retried four times (with backoff) before every answer."""
    server = scripted(status(500))
    client = ChatClient(settings_for(server.base_url, max_retries=3), backoff=0.05)
    assert client.context_tokens() is None and client.context_tokens() is None
    assert len(server.requests) == 1


# -- embeddings share the policy (issue 13 item 8) ------------------------------------------------
def embeddings_json(vectors: list[list[float]]) -> Reply:
    # Out of order on purpose: rows are matched to inputs by "index".
    rows = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)][::-1]
    return status(200, {"object": "list", "data": rows, "model": "emb"})


def test_embeddings_use_the_chat_retry_policy_deadline_and_messages(
        scripted: Callable[..., ScriptedServer]) -> None:
    from assistant.index.embeddings import OpenAIEmbedder

    def embedder(url: str, **kw: Any) -> OpenAIEmbedder:
        e = OpenAIEmbedder(settings_for(url, embedding="openai", embedding_model="emb", **kw))
        e.client.backoff = 0.05
        return e

    server = scripted(status(503), embeddings_json([[3.0, 4.0], [0.0, 2.0]]))
    vecs = embedder(server.base_url).embed(["a", "b"])
    assert vecs.shape == (2, 2) and vecs.ravel().tolist() == pytest.approx([0.6, 0.8, 0.0, 1.0])
    assert len(server.requests) == 2 and server.requests[0]["path"] == "/v1/embeddings"
    assert server.requests[1]["json"] == {"model": "emb", "input": ["a", "b"], "encoding_format": "float"}

    failing = scripted(status(503))
    with pytest.raises(BackendError) as err:
        embedder(failing.base_url, max_retries=1).embed(["a"])
    assert str(err.value) == f"the server at {failing.base_url} failed with HTTP 503 after 2 attempts: status 503"

    slow_server = scripted(trickle(stream=False))
    with pytest.raises(BackendError) as err:
        embedder(slow_server.base_url, request_timeout=1.0).embed(["a"])
    assert str(err.value) == f"the server at {slow_server.base_url} timed out after 1s"

    garbled = scripted(raw_body(b"<html>login required</html>"))
    with pytest.raises(BackendError, match="sent a reply that is not JSON"):
        embedder(garbled.base_url).embed(["a"])


# -- the real llama.cpp server ------------------------------------------------------------------
@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    gguf = require_llama_server()
    handle = start_llama_server(gguf, tmp_path_factory.mktemp("llama"))
    yield handle
    handle.stop()


@pytest.mark.llm_server
@pytest.mark.slow
def test_real_completion(llama: ServerHandle) -> None:
    client = ChatClient(settings_for(llama.base_url, request_timeout=LLAMA_TIMEOUT))
    text = client.complete([{"role": "user", "content": "What is the capital of France?"}], max_tokens=40)
    assert text.strip()
    assert client.last_finish_reason in {"stop", "length"}


@pytest.mark.llm_server
@pytest.mark.slow
def test_real_streaming(llama: ServerHandle) -> None:
    tokens: list[str] = []
    client = ChatClient(settings_for(llama.base_url, request_timeout=LLAMA_TIMEOUT))
    text = client.complete([{"role": "user", "content": "Name three colours."}], stream=True,
                           on_token=tokens.append, max_tokens=60)
    assert len(tokens) >= 3
    assert "".join(tokens) == text and text.strip()


@pytest.mark.llm_server
@pytest.mark.slow
def test_real_json_mode(llama: ServerHandle) -> None:
    client = ChatClient(settings_for(llama.base_url, request_timeout=LLAMA_TIMEOUT))
    messages = [{"role": "user", "content": 'Reply with a JSON object like {"city": "Paris"} for France.'}]
    text = client.complete(messages, json_mode=True, max_tokens=60)
    assert isinstance(json.loads(text), dict)


@pytest.mark.llm_server
@pytest.mark.slow
def test_real_first_token_logprobs(llama: ServerHandle) -> None:
    client = ChatClient(settings_for(llama.base_url, request_timeout=LLAMA_TIMEOUT))
    lps = client.first_token_logprobs([{"role": "user", "content": "Is Paris in France? Answer Yes or No."}], top=5)
    assert 2 <= len(lps) <= 5
    assert all(k == k.strip().lower() and k for k in lps)
    assert all(v <= 0.0 for v in lps.values())
    assert max(lps.values()) > -2.0  # the likeliest first token is likely
    sent = max(lps, key=lps.get)
    again = client.first_token_logprobs([{"role": "user", "content": "Is Paris in France? Answer Yes or No."}], top=5)
    assert max(again, key=again.get) == sent  # temperature 0: the same verdict twice


@pytest.mark.llm_server
@pytest.mark.slow
def test_real_model_names(llama: ServerHandle) -> None:
    client = ChatClient(settings_for(llama.base_url, request_timeout=LLAMA_TIMEOUT))
    models = client.list_models()
    assert len(models) == 1 and models[0].endswith(".gguf")
    # llama-cpp-python serving a single model answers whatever model name is asked for,
    # so a wrong ASSISTANT_LLM_MODEL is not an error with it (other servers answer 404).
    other = ChatClient(settings_for(llama.base_url, llm_model="no-such-model", request_timeout=LLAMA_TIMEOUT))
    assert other.complete(HI, max_tokens=8).strip()


@pytest.mark.llm_server
@pytest.mark.slow
def test_server_killed_mid_stream_then_restarted(tmp_path: Path) -> None:
    gguf = require_llama_server()
    server = start_llama_server(gguf, tmp_path)
    try:
        client = ChatClient(settings_for(server.base_url, max_retries=1, request_timeout=LLAMA_TIMEOUT),
                            backoff=0.05)
        tokens: list[str] = []

        def on_token(text: str) -> None:
            tokens.append(text)
            if len(tokens) == 5:
                server.kill()

        # SmolLM2 writes 1500 tokens (tens of seconds) for this; the kill comes after 5.
        essay = "Write a very long, detailed essay about the history of the Roman Empire."
        with pytest.raises(BackendError) as err:
            client.complete([{"role": "user", "content": essay}], stream=True, on_token=on_token, max_tokens=1500)
        msg = str(err.value)
        assert msg.startswith(f"the stream from {server.base_url} broke after ")
        assert len(tokens) >= 5 and f"after {len(''.join(tokens))} characters" in msg
        assert "\n" not in msg

        # The same client works again once a server is back on the same address.
        server = start_llama_server(gguf, tmp_path, port=server.port)
        assert client.complete(HI, max_tokens=16).strip()
    finally:
        server.stop()


# -- through the real CLI ----------------------------------------------------------------------------
@pytest.mark.parametrize("reply", ["not_json", "trickle"])
def test_cli_ask_against_a_broken_server_is_one_line(scripted: Callable[..., ScriptedServer], sample_home: Path,
                                                     embed_cache: Path, reply: str) -> None:
    # `--json` (and piped output) takes the non-streaming path, where a 200 reply that is not
    # JSON was an 86-line JSONDecodeError traceback and a trickling server hung `ask`.
    import subprocess

    from tests.conftest import cli_env

    server = scripted(raw_body(b"<html>Bad Gateway</html>") if reply == "not_json" else trickle(stream=False))
    env = cli_env(sample_home, embed_cache, ASSISTANT_LLM="openai", OPENAI_BASE_URL=server.base_url,
                  ASSISTANT_LLM_MODEL="smollm2", ASSISTANT_REQUEST_TIMEOUT="2", ASSISTANT_MAX_RETRIES="1")
    t0 = time.monotonic()
    r = subprocess.run(["assistant", "ask", "--json", "What does ARRA align LLM hidden states with?"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 25.0  # the trickle lasts 30 s
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("error: the server at ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert ("not JSON" if reply == "not_json" else "timed out after 2s") in r.stderr
