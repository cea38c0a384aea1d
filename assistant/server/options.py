"""What `assistant serve` is asked to do, checked before anything heavy is imported."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import AssistantError
from ..settings import ServeSettings

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
_DEFAULTS = ServeSettings()  # one place for the limits: [serve] in settings


@dataclass
class ServeOptions:
    """How one server process runs; every default is the [serve] settings' default."""

    host: str = _DEFAULTS.host
    port: int = _DEFAULTS.port
    token: str | None = None
    """Bearer token every request (except the static web page) must carry; None = open."""
    allow_ingest: bool = False
    """Accept POST /v1/ingest without a token (loopback use)."""
    max_concurrent: int = _DEFAULTS.max_concurrent
    max_queue: int = _DEFAULTS.max_queue
    queue_timeout: float = _DEFAULTS.queue_timeout
    max_body_bytes: int = _DEFAULTS.max_body_bytes
    max_ingest_bytes: int = _DEFAULTS.max_ingest_bytes
    allowed_hosts: list[str] = field(default_factory=lambda: list(_DEFAULTS.allowed_hosts))
    """Names accepted in ``Host`` besides loopback and the bound host (``origins.py``)."""
    allowed_origins: list[str] = field(default_factory=lambda: list(_DEFAULTS.allowed_origins))
    """Web origins besides the server's own that may POST."""
    header_timeout: float = _DEFAULTS.header_timeout
    body_timeout: float = _DEFAULTS.body_timeout
    keep_alive_timeout: float = _DEFAULTS.keep_alive_timeout


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The token file holds one line; an unreadable or empty one is an error, never 'no token'."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AssistantError(f"{path}: cannot read the token file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise AssistantError(f"{path}: the token file is not UTF-8 text") from None
    if not token or "\n" in token or any(c.isspace() for c in token):
        raise AssistantError(f"{path}: the token file must hold one token on one line, without spaces")
    return token


def make_options(settings: Any, host: str | None = None, port: int | None = None, token_file: Path | None = None,
                 allow_ingest: bool = False, max_concurrent: int | None = None,
                 max_queue: int | None = None) -> ServeOptions:
    """Command-line values over ``settings.serve``; a non-loopback address needs a token."""
    cfg = settings.serve
    host = host or cfg.host
    port = cfg.port if port is None else port
    token_file = token_file or cfg.token_file
    token = read_token(token_file) if token_file else None
    if not is_loopback(host) and token is None:
        raise AssistantError(f"refusing to listen on {host} without --token-file: anyone who can reach it could "
                             "read the index; pass --token-file FILE (or bind 127.0.0.1)")
    if not 0 < port < 65536:
        raise AssistantError(f"--port {port}: expected 1-65535")
    if max_concurrent is not None and max_concurrent < 1:
        raise AssistantError(f"--max-concurrent {max_concurrent}: expected at least 1")
    if max_queue is not None and max_queue < 0:
        raise AssistantError(f"--queue {max_queue}: expected 0 or more")
    return ServeOptions(
        host=host, port=port, token=token, allow_ingest=allow_ingest,
        max_concurrent=max_concurrent or cfg.max_concurrent,
        max_queue=cfg.max_queue if max_queue is None else max_queue,
        queue_timeout=cfg.queue_timeout, max_body_bytes=cfg.max_body_bytes, max_ingest_bytes=cfg.max_ingest_bytes,
        allowed_hosts=list(cfg.allowed_hosts), allowed_origins=list(cfg.allowed_origins),
        header_timeout=cfg.header_timeout, body_timeout=cfg.body_timeout, keep_alive_timeout=cfg.keep_alive_timeout)


def serve(assistant: Any, options: ServeOptions) -> None:
    """Open the index once, then run uvicorn until interrupted (one process, shared index)."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise AssistantError(f"serving needs the serve extra ({exc.name or exc} is missing): "
                             "pip install -e '.[serve]' in a clone (pip install 'paper-assistant[serve]' otherwise), "
                             "then run `assistant serve` again") from None
    # Bound first: a port in use was said after "serving ..." (and after a first run built the sample index).
    socks = _listen(options.host, options.port)
    try:
        app = create_app(assistant, options)
        where = f"http://{options.host}:{options.port}/"
        guard = "bearer token required" if options.token else "no token (loopback)"
        print(f"serving {where} ({guard}; ingest {'allowed' if options.allow_ingest or options.token else 'off'})",
              file=sys.stderr, flush=True)
        from .timeouts import header_deadline_protocol

        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=5,
                                timeout_keep_alive=max(1, round(options.keep_alive_timeout)),
                                http=header_deadline_protocol(options.header_timeout),
                                ws="none")  # no WebSocket routes: an upgrade is a plain request
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down gracefully (as uvicorn.run)
            uvicorn.Server(config).run(sockets=socks)
    finally:
        for sock in socks:
            sock.close()


def _listen(host: str, port: int) -> list[socket.socket]:
    """The server's sockets, bound to every address ``host`` names (as uvicorn binds them: ``localhost``
    is 127.0.0.1 and ::1); a port in use or a host that does not resolve is one line."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise AssistantError(f"--host {host}: cannot listen there ({exc.strerror or exc})") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys((i[0], i[1], i[2], i[3], i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart needs no wait
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise AssistantError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None
    return socks
