"""A loopback HTTP server that replays recorded arXiv API responses (tests/fixtures/arxiv_api).

A request is matched to a recording by what the API answers on: ``id_list`` (order kept) and
``start`` for id look-ups; ``search_query``, ``start`` and ``max_results`` for searches. Other
parameters (sortBy, sortOrder) must be what the recording sent, or the request gets a 404 that
names what was asked, so a client that drifts from the recorded requests fails loudly.
``faults`` answers the next requests with those HTTP codes first (429/503, with Retry-After:
``retry_after``, "0" unless a test sets it).

``RawHTTP`` is the hostile counterpart: a loopback server whose answers a test writes byte by byte
(a status line dripped a byte at a time, garbage, a body cut short, a redirect to ftp://), with
``atom_feed``/``atom_entry``/``http_answer`` to build the usual parts.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

FIXTURES = Path(__file__).parent / "fixtures" / "arxiv_api"


def _key(query: str) -> tuple[str, ...]:
    qs = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    ids = qs.get("id_list", "")
    if ids:
        return ("id", ids, qs.get("start", "0"))
    return ("q", qs.get("search_query", ""), qs.get("start", "0"), qs.get("max_results", "10"),
            qs.get("sortBy", ""), qs.get("sortOrder", ""))


class ArxivReplay:
    def __init__(self, fixtures: Path = FIXTURES) -> None:
        self.recordings: dict[tuple[str, ...], tuple[int, bytes]] = {}
        for path in sorted(fixtures.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            self.recordings[_key(urlparse(data["url"]).query)] = (data["status_code"], data["body"].encode("latin-1"))
        self.requests: list[dict[str, object]] = []
        self.faults: list[int] = []
        self.fail_from: int | None = None
        self.retry_after = "0"
        """Answer 503 to every request from this one on (0-based): an API that goes away mid-run."""
        self._server: ThreadingHTTPServer | None = None
        self._active = 0
        self.max_active = 0
        self._lock = threading.Lock()

    def __enter__(self) -> ArxivReplay:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with replay._lock:
                    replay._active += 1
                    replay.max_active = max(replay.max_active, replay._active)
                    fault = replay.faults.pop(0) if replay.faults else None
                    if replay.fail_from is not None and len(replay.requests) >= replay.fail_from:
                        fault = 503
                try:
                    url = urlparse(self.path)
                    replay.requests.append({"t": time.monotonic(), "path": url.path, "query": url.query,
                                            "user_agent": self.headers.get("User-Agent", ""),
                                            "status": fault or 200})
                    if fault is not None:
                        self._send(fault, b"<html><body>slow down</body></html>", "text/html",
                                   retry_after=replay.retry_after)
                        return
                    found = replay.recordings.get(_key(url.query))
                    if found is None:
                        self._send(404, f"no recording for {url.query}".encode(), "text/plain")
                        return
                    time.sleep(0.05)  # overlapping requests, if a client made them, would show in max_active
                    self._send(found[0], found[1], "application/atom+xml; charset=UTF-8")
                finally:
                    with replay._lock:
                        replay._active -= 1

            def _send(self, code: int, body: bytes, ctype: str, retry_after: str | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/query"

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def atom_entry(versioned_id: str, *, title: str | None = None, abstract: str | None = None) -> str:
    """One Atom entry as the API writes it, for an id with its version ('2401.00002v1')."""
    title = f"Paper {versioned_id} on testing" if title is None else title
    abstract = f"We study problem {versioned_id} with careful methods and report results." if abstract is None \
        else abstract
    return (f"<entry><id>http://arxiv.org/abs/{versioned_id}</id><published>2024-01-02T00:00:00Z</published>"
            f"<title>{title}</title><summary>{abstract}</summary><author><name>Ada Lovelace</name></author>"
            f'<link href="http://arxiv.org/abs/{versioned_id}" rel="alternate" type="text/html"/></entry>')


def atom_feed(entries: Sequence[str], total: int | str | None = None) -> bytes:
    total = len(entries) if total is None else total
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
            'xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">'
            f"<opensearch:totalResults>{total}</opensearch:totalResults>{''.join(entries)}</feed>").encode()


def http_answer(body: bytes, status: str = "200 OK", headers: Sequence[tuple[str, str]] = (),
                ctype: str = "application/atom+xml; charset=UTF-8") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}", "Connection: close",
            *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def query_of(target: str) -> dict[str, str]:
    """The request's query parameters (first value of each)."""
    return {k: v[0] for k, v in parse_qs(urlparse(target).query, keep_blank_values=True).items()}


class RawHTTP:
    """A loopback server that answers each request by calling ``respond(server, conn, target)``,
    which writes whatever bytes it likes to the connection. ``stopping`` is set on exit, so a
    responder that drips for ever ends with the test."""

    def __init__(self, respond: Callable[[RawHTTP, socket.socket, str], None]) -> None:
        self.respond = respond
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self.port = 0
        self._sock: socket.socket | None = None

    def __enter__(self) -> RawHTTP:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)  # accept() wakes up to see ``stopping``
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/query"

    def _serve(self) -> None:
        assert self._sock is not None
        while not self.stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                target = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[1]
                self.requests.append(target)
                self.respond(self, conn, target)
            except OSError:  # the client hung up (as a client that gives up should)
                pass

    def drip(self, conn: socket.socket, data: bytes, every: float = 0.2, at_most: float = 8.0) -> None:
        """``data`` a byte every ``every`` seconds, for ``at_most`` seconds: a client without a deadline
        of its own hangs that long, and then gets a cut-off answer."""
        end = time.monotonic() + at_most
        for b in data:
            if self.stopping.is_set() or time.monotonic() > end:
                return
            conn.sendall(bytes([b]))
            time.sleep(every)

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self._sock is not None:
            self._sock.close()
