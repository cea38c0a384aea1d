"""Stalled clients are timed out.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a client that opens a
connection and sends half a request line or half its headers is kept forever (its first byte cancels
the keep-alive timer, and nothing else is armed). This wraps uvicorn's HTTP protocol (httptools or
h11, whichever uvicorn picks) with a deadline for the headers: from the moment the connection opens,
or the previous answer was sent, the client has ``header_timeout`` seconds to finish a request's
headers; otherwise it gets 408 and the connection is closed. Headers over ``MAX_HEADER_BYTES`` get
431. Body reads are bounded in ``app.Guard`` (``body_timeout`` between pieces of a body).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .headers import COMMON

#: The most a request line and its headers may take: httptools has no limit of its own, and 50 MB of
#: header was read (and held) before the token check, which runs once the headers are complete.
MAX_HEADER_BYTES = 64 * 1024
_SLICE = 4096
"""Bytes fed to the parser at a time (what a new message's count may include of the message before it)."""


def _plain(status: bytes, reason: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
            + b"".join(k + b": " + v + b"\r\n" for k, v in COMMON)
            + b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(reason), reason))


TIMEOUT_408 = _plain(b"408 Request Timeout", b"request headers not sent in time")
TOO_LARGE_431 = _plain(b"431 Request Header Fields Too Large",
                       b"request line and headers over %d bytes" % MAX_HEADER_BYTES)


def _base_protocol() -> type[asyncio.Protocol]:
    """The class uvicorn's ``http="auto"`` would use."""
    try:
        import httptools  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol


def header_deadline_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's protocol class with a deadline on each request's headers (pass as ``http=``)."""
    base: Any = _base_protocol()

    counts_messages = hasattr(base, "on_message_begin")  # httptools' callbacks (h11 caps events itself)

    class HeaderDeadline(base):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _partial = False
        _armed: Any = None
        _header_bytes = 0
        _message_bytes = 0
        _body_bytes = 0
        _chunk_bytes = 0
        _framing = 0

        # Every message's bytes that are neither its body nor its chunks' framing (request line, headers,
        # trailers) count toward MAX_HEADER_BYTES: trailers after a chunked body, or the headers of a
        # request pipelined behind one being answered, were not counted (191 MB of trailer was held, and
        # httptools' growing header value stalled every client).
        def on_message_begin(self) -> None:
            self._message_bytes = self._body_bytes = self._framing = 0
            super().on_message_begin()

        def on_body(self, body: bytes) -> None:
            self._body_bytes += len(body)
            self._chunk_bytes += len(body)
            super().on_body(body)

        def on_chunk_header(self) -> None:
            self._chunk_bytes = 0

        def on_chunk_complete(self) -> None:
            self._framing += len(b"%x" % self._chunk_bytes) + 4  # "SIZE\r\n" ... "\r\n"

        def data_received(self, data: bytes) -> None:
            self._partial = True
            if not counts_messages:
                self._count_first_headers(data)
                return
            # Fed in slices, so that the bytes of a message begun mid-read are told from the last one's
            # (a whole read was counted as the new message's: 256 KiB unaccounted, or another's body).
            view = memoryview(data)
            for start in range(0, len(data), _SLICE):
                piece = bytes(view[start:start + _SLICE])
                super().data_received(piece)
                if self.transport.is_closing():
                    return
                self._message_bytes += len(piece)
                if self._message_bytes - self._body_bytes - self._framing > MAX_HEADER_BYTES:
                    cycle = self.cycle
                    if cycle is None or not cycle.response_started or cycle.response_complete:
                        self.transport.write(TOO_LARGE_431)  # (not into the middle of an answer being sent)
                    self.transport.close()
                    return

        def _count_first_headers(self, data: bytes) -> None:
            """h11 (no per-message callbacks): the bytes before each request's headers complete."""
            super().data_received(data)
            # Still no new request (uvicorn makes its cycle when the headers are complete), and the last
            # one's body all read (an answer sent before its body was read, a 401 or 413, is followed by
            # the rest of that body): all of it was request line and headers.
            if (self.cycle is self._armed and not getattr(self._armed, "more_body", False)
                    and not self.transport.is_closing()):
                self._header_bytes += len(data)
                if self._header_bytes > MAX_HEADER_BYTES:
                    self.transport.write(TOO_LARGE_431)
                    self.transport.close()

        def _unsupported_upgrade_warning(self) -> None:
            """An Upgrade request is a plain request here (no WebSocket routes): uvicorn logged two warnings for
            each, advising to install a WebSocket library, so any client could fill the log."""

        def send_400_response(self, msg: str) -> None:
            """uvicorn's own 400 (a malformed request line) with the security headers every answer has."""
            self.transport.write(_plain(b"400 Bad Request", msg.encode("ascii", "replace")))
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._partial = False
            self._armed, self._header_bytes = self.cycle, 0
            self._header_timer = self.loop.call_later(header_timeout, self._header_deadline, self.cycle)

        def _header_deadline(self, armed: Any) -> None:
            """No new request's headers completed since the deadline was armed, and nothing is being
            answered: the client stalled (or idles with a partial request)."""
            self._header_timer = None
            if self.transport.is_closing() or self.cycle is not armed:
                return
            if armed is not None and not armed.response_complete:
                return  # an answer is still being computed or sent: not the client's stall
            if self._partial:  # half a request: say why; an idle connection is just closed
                self.transport.write(TIMEOUT_408)
            self.transport.close()

    return HeaderDeadline
