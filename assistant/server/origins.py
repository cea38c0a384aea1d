"""Who may talk to the server: the ``Host`` it is addressed by and the web origin a write comes from.

One ASGI middleware in front of everything else, doing what Jupyter and Open WebUI do for a local
service a browser can reach:

- **Host.** Every request must name the server by a name it serves: a loopback name or address, the
  address it is bound to, or one of ``serve.allowed_hosts``. A page on ``evil.example`` whose DNS
  later points at 127.0.0.1 (DNS rebinding) still sends ``Host: evil.example`` and gets 403, so it
  cannot read a token-less loopback server. Bound to any other address (which needs the token, so
  rebinding gains nothing) any ``Host`` is accepted, as Jupyter's ``allow_remote_access`` does,
  unless ``serve.allowed_hosts`` names the accepted ones.
- **Origin of writes.** A POST that carries browser markers (``Origin`` or ``Sec-Fetch-Site``) must
  come from the server's own origin (scheme://Host) or one of ``serve.allowed_origins``; a web page
  elsewhere gets 403 before anything runs. Requests without those headers come from programs (curl,
  the OpenAI client, a front-end's back end) and are not browsers' cross-site requests.
- **Writes need a preflighted content type.** ``POST /v1/ingest`` refuses the content types a page
  may send to another site without asking first (none, ``text/plain``, form and multipart
  encodings): even a browser that sends no ``Origin`` cannot write papers from another site.

The bearer token (``app.Guard``) comes after this and is still the only thing that makes a server
safe to expose.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from .options import LOOPBACK_NAMES, ServeOptions, is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Routes that change the index: they also need a content type a cross-site page cannot send unasked.
WRITE_PATHS = frozenset({"/v1/ingest"})
#: CORS "simple" content types (plus none at all): a page on any site may POST these without a preflight.
SIMPLE_TYPES = frozenset({"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})
SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})


def split_host(value: str) -> str:
    """The host part of a ``Host`` header or origin authority, lower-case, without port or brackets;
    "" when it is malformed (``[::1]evil``, ``localhost:80.evil``, ``[::1``: no browser sends those)."""
    value = value.strip().lower()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        return host if sep and _port_ok(rest) else ""
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host if _port_ok(":" + port) else ""
    return value  # a bare IPv6 address or a plain name


def _port_ok(rest: str) -> bool:
    """What may follow the host: nothing, or ':' and a port number."""
    return rest == "" or (rest[:1] == ":" and rest[1:].isdigit() and rest[1:].isascii() and len(rest) <= 6)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


class HostPolicy:
    """The names this server answers to (see the module docstring)."""

    def __init__(self, bound: str, extra: Iterable[str] = ()) -> None:
        extra = [e.strip().lower() for e in extra if e.strip()]
        bound_host = split_host(bound) if bound else ""
        bound_ip = _ip(bound_host)
        # Exposed (a token is then required): any Host, unless the operator listed the names.
        self.any_host = "*" in extra or (not is_loopback(bound_host) and not extra)
        self.wildcard = bound_ip is not None and bound_ip.is_unspecified
        self.names = set(LOOPBACK_NAMES) | {bound_host} | {split_host(e) for e in extra if e != "*"}
        if self.wildcard:
            self.names.add(socket.gethostname().lower())  # local, no DNS lookup

    def allows(self, host: str) -> bool:
        if self.any_host:
            return True
        name = split_host(host).rstrip(".")
        if not name:
            return False
        if name in self.names or name.endswith(".localhost"):  # *.localhost always resolves to loopback
            return True
        ip = _ip(name)
        if ip is None:
            return False
        return ip.is_loopback or self.wildcard or str(ip) in self.names


class OriginGuard:
    """ASGI middleware: Host on every request, origin and content type on writes (403/415 otherwise)."""

    def __init__(self, app: Any, options: ServeOptions) -> None:
        self.app = app
        self.hosts = HostPolicy(options.host, options.allowed_hosts)
        self.origins = {o.strip().rstrip("/").lower() for o in options.allowed_origins if o.strip()}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers", [])
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        hosts = sum(1 for k, _ in raw if k.lower() == b"host")
        refusal = ((400, "a request must name this server in exactly one Host header") if hosts != 1 else
                   self.refusal(scope.get("method", "GET"), scope.get("path", ""), headers))
        if refusal is None:
            await self.app(scope, receive, send)
            return
        from .app import error_response

        status, message = refusal
        await error_response(status, message)(scope, receive, send)

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused, else None."""
        host = headers.get("host")
        if host is not None and not self.hosts.allows(host):
            return 403, (f"this server does not answer to the host name '{host[:100]}'; use 127.0.0.1 or "
                         "localhost, or add the name to serve.allowed_hosts")
        if method.upper() in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        fetch_site = headers.get("sec-fetch-site")
        if origin is not None:
            if not self._origin_ok(origin, host):
                return 403, (f"cross-origin request refused: the page at '{origin[:100]}' may not write to this "
                             "server (allow a front-end with serve.allowed_origins)")
        elif fetch_site is not None and fetch_site.strip().lower() not in SAME_ORIGIN_FETCH:
            return 403, f"cross-origin request refused (Sec-Fetch-Site: {fetch_site[:40]})"
        if path in WRITE_PATHS:
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype in SIMPLE_TYPES:
                return 415, (f"{path} needs Content-Type application/x-ndjson, application/json or "
                             f"application/x-bibtex (got '{ctype or 'none'}'): a web page on another site can "
                             "send that one without asking")
        return None

    def _origin_ok(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if "*" in self.origins or origin in self.origins:
            return True
        if origin == "null" or host is None:
            return False
        scheme, sep, authority = origin.partition("://")
        return bool(sep) and scheme in ("http", "https") and authority == host.strip().lower()
