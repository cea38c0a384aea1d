"""A loopback HTTP server that replays recorded arXiv API responses (tests/fixtures/arxiv_api).

A request is matched to a recording by what the API answers on: ``id_list`` (order kept) and
``start`` for id look-ups; ``search_query``, ``start`` and ``max_results`` for searches. Other
parameters (sortBy, sortOrder) must be what the recording sent, or the request gets a 404 that
names what was asked, so a client that drifts from the recorded requests fails loudly.
``faults`` answers the next requests with those HTTP codes first (429/503, with Retry-After: 0).
"""

from __future__ import annotations

import json
import threading
import time
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
                        self._send(fault, b"<html><body>slow down</body></html>", "text/html", retry_after="0")
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
