"""What a browser may do with the server's responses: headers added to every one (errors included).

- ``Content-Security-Policy``: the web chat runs only its own script and styles, talks only to this
  server, and may not be framed by another page (no clickjacking of the ask / ingest controls);
  nothing else is ever loaded, so an abstract that slipped markup past the text-only rendering
  could still not run script or fetch anything.
- ``X-Frame-Options: DENY`` for browsers that predate ``frame-ancestors``; ``nosniff`` so a JSON
  or text body is never taken for a script or a page; ``Referrer-Policy: no-referrer`` so opening a
  paper's link does not tell the other site where the assistant runs.
- API answers (``/v1/...``, ``/healthz``) are ``Cache-Control: no-store``: they hold the indexed papers
  and, with a token, are private.
"""

from __future__ import annotations

from typing import Any

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
COMMON = ((b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
          (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))
NO_STORE_PREFIXES = ("/v1/", "/healthz")


class SecurityHeaders:
    """Plain ASGI middleware, outermost, so the Host / Origin / token refusals carry the headers too."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = scope.get("path", "").startswith(NO_STORE_PREFIXES)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (no_store and k.lower() == b"cache-control")]
                headers += COMMON
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
