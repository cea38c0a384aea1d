"""HTTP serving: a JSON API, an OpenAI-compatible chat endpoint and the web chat.

Sits on top of the Python API (``assistant.api.Assistant``), like the CLI and the
evaluation harness; nothing below imports it. FastAPI and uvicorn come with the
``serve`` extra and are imported only when a server is built.
"""

from __future__ import annotations

from .options import ServeOptions, serve

__all__ = ["ServeOptions", "create_app", "serve"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Build the FastAPI app (see :func:`assistant.server.app.create_app`)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)
