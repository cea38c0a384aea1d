"""The FastAPI app: JSON API, OpenAI-compatible chat, the web chat's static files.

One Assistant per process, opened and warmed before the first request, shared by
every request. Answers run in a bounded pool of worker threads (``capacity.py``),
never on the event loop, so a slow answer does not hold up the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hmac
import json
import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from ..errors import AssistantError, BackendError, IndexStateError
from ..records import Answer
from . import openai_compat
from .capacity import Capacity, OverCapacity
from .options import ServeOptions
from .schemas import AskRequest, ChatRequest, VerifyRequest

log = logging.getLogger("assistant.server")
STATIC = Path(str(resources.files("assistant.server") / "static"))
#: Paths served without a token: the web page itself holds no data and must load to ask for the token.
PUBLIC_PATHS = ("/", "/index.html", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
INGEST_FORMATS = {"jsonl": ".jsonl", "json": ".json", "bibtex": ".bib", "bib": ".bib"}
INGEST_TYPES = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl", "application/json": "json",
                "application/x-bibtex": "bibtex", "text/x-bibtex": "bibtex"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """OpenAI-style error body, one line of reason (clients of both APIs read ``error.message``)."""
    kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
            503: "overloaded_error"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    line = " ".join(message.split())
    return JSONResponse({"error": {"message": line, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


def validation_message(errors: list[Any]) -> str:
    """First pydantic error as 'field: reason' (unknown fields named as such)."""
    err = errors[0]
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")]
    where = ".".join(loc) or "body"
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"{where}: required field missing"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}"


# -- the gate in front of the app: token, body size ------------------------------------
class Guard:
    """Plain ASGI middleware: checks the bearer token before anything runs and refuses
    bodies over the limit before they are parsed (also when Content-Length is absent)."""

    def __init__(self, app: Any, options: ServeOptions) -> None:
        self.app = app
        self.options = options

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.options.token and not public and not self._token_ok(headers.get("authorization", "")):
            resp = error_response(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                                  {"WWW-Authenticate": "Bearer"})
            await resp(scope, receive, send)
            return
        limit = self.options.max_ingest_bytes if path == "/v1/ingest" else self.options.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _drain_and_refuse(scope, receive, send, limit)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await error_response(413, f"request body too large: over {limit // 1024} KB")(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        data = b"".join(chunks)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": data, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _token_ok(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                                  (self.options.token or "").encode())


async def _drain_and_refuse(scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
    await error_response(413, f"request body too large: over {limit // 1024} KB")(scope, receive, send)


# -- the shared assistant ---------------------------------------------------------------
class Shared:
    """The one Assistant of this process. Its parts (embedder, retriever, BM25, answer backend)
    are built at start-up, so requests find them ready; the Assistant creates any other backend a
    request names under its own lock."""

    def __init__(self, assistant: Any, options: ServeOptions) -> None:
        self.assistant = assistant
        self.options = options
        self.lock = threading.Lock()
        self.answers = Capacity(options.max_concurrent, options.max_queue, options.queue_timeout)
        self.ingest_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self.ingesting = asyncio.Lock()
        self.started = time.time()

    def warm(self) -> None:
        a = self.assistant
        with self.lock:
            a.ensure_index()
            a.answerer()
            if a.index.exists() or a.settings.server_mode:
                a.index.lexical()
                a.search("warm up the model and the index", 1)

    def ask(self, req: AskRequest) -> Answer:
        return self.assistant.ask(req.question, k=req.k, since=req.since, until=req.until, backend=req.backend)

    def verify(self, req: VerifyRequest) -> Any:
        return self.assistant.verify(req.claim, k=req.k, since=req.since, until=req.until, backend=req.backend)

    def chat(self, req: ChatRequest) -> Answer:
        from ..api import ChatSession

        turns = req.turns()
        session = ChatSession(self.assistant, backend=req.backend)
        session.history = openai_compat.history_from_messages(turns[:-1])
        return session.ask(turns[-1]["text"], k=req.k, since=req.since, until=req.until)

    def ingest(self, path: Path) -> Any:
        """A separate Assistant (own SQLite connection) writes; the serving one sees the new
        generation and reloads BM25, its vector store and its exact-search vectors on its next
        question (the exact-search vectors are forgotten here too, at once)."""
        from ..api import Assistant

        writer = Assistant(self.assistant.settings)
        writer.auto_sample = False
        try:
            return writer.ingest([path])
        finally:
            writer.index.release()  # its Chroma client too, or the serving index never reloads
            self.assistant.retriever.forget_exact()


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """JSON whatever the Content-Type (`curl -d` sends a form type), then the model's checks."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "the request body is empty; expected a JSON object")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    if not isinstance(data, dict):
        raise ApiError(422, f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, validation_message(exc.errors())) from None


def only_params(request: Request, *allowed: str) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise ApiError(422, f"unknown query parameter '{unknown[0]}' (expected: {', '.join(allowed) or 'none'})")


def paper_summary(p: Any) -> dict[str, Any]:
    return {"paper_id": p.paper_id, "title": p.title, "date": p.date, "authors": p.authors,
            "url": openai_compat.arxiv_url(p.paper_id, p.arxiv_id) or p.url}


def create_app(assistant: Any, options: ServeOptions | None = None, warm: bool = True) -> Any:
    """The app around one Assistant (opened here, once)."""
    options = options or ServeOptions()
    shared = Shared(assistant, options)
    if warm:
        shared.warm()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        shared.answers.close()
        shared.ingest_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="paper-assistant", version="1", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.shared = shared

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.headers)

    @app.exception_handler(OverCapacity)
    async def _busy(_: Request, exc: OverCapacity) -> JSONResponse:
        return error_response(503, str(exc), {"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = {404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(exc.status_code)
        return error_response(exc.status_code, reason or str(exc.detail))

    @app.exception_handler(AssistantError)
    async def _assistant_error(_: Request, exc: AssistantError) -> JSONResponse:
        status = 503 if isinstance(exc, IndexStateError) else 502 if isinstance(exc, BackendError) else 400
        return error_response(status, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    # -- web chat ----------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- health and models ---------------------------------------------------------------
    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        only_params(request)
        a = shared.assistant
        papers, chunks = a.index.catalogue.count() if a.index.exists() else (0, 0)
        return {"status": "ok", "papers": papers, "chunks": chunks, "llm": a.settings.llm.backend,
                "embedding": a.settings.embedding_model_name, "token_required": bool(options.token),
                "ingest": bool(options.allow_ingest or options.token), "answers": shared.answers.stats(),
                "uptime_s": round(time.time() - shared.started, 1)}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": openai_compat.MODEL_NAME, "object": "model",
                                            "created": int(shared.started), "owned_by": "paper-assistant"}]}

    # -- papers and search ---------------------------------------------------------------
    @app.get("/v1/papers")
    def papers(request: Request, order: str = Query("title", pattern="^(title|date|id)$"),
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        only_params(request, "order", "limit", "offset")
        a = shared.assistant
        if not a.index.exists():
            return {"total": 0, "papers": []}
        total = a.index.catalogue.count()[0]
        out = []
        for i, p in enumerate(a.index.catalogue.iter_papers(order=order)):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(paper_summary(p))
        return {"total": total, "offset": offset, "papers": out}

    @app.get("/v1/papers/{paper_id:path}")
    def paper(request: Request, paper_id: str) -> dict[str, Any]:
        only_params(request)
        p = shared.assistant.get_paper(paper_id)
        if p is None:
            raise ApiError(404, f"no paper with id '{paper_id}'")
        return {**p.to_dict(), "url": paper_summary(p)["url"]}

    @app.get("/v1/search")
    async def search(request: Request, q: str = Query(..., min_length=1, max_length=4000),
                     k: int = Query(10, ge=1, le=100), since: str | None = None, until: str | None = None,
                     mode: str = Query("hybrid", pattern="^(hybrid|dense|bm25)$")) -> dict[str, Any]:
        only_params(request, "q", "k", "since", "until", "mode")
        if not q.strip():
            raise ApiError(422, "q: the query is empty")
        sources = await shared.answers.run(
            lambda: shared.assistant.search(q, k, since=since, until=until, mode=mode))
        return {"query": q, "results": [{**s.to_dict(), "date": s.paper.date} for s in sources]}

    # -- answers -------------------------------------------------------------------------
    @app.post("/v1/ask")
    async def ask(request: Request) -> dict[str, Any]:
        only_params(request)
        req = await parse_body(request, AskRequest)
        answer = await shared.answers.run(shared.ask, req)
        return answer.to_dict()

    @app.post("/v1/verify")
    async def verify(request: Request) -> dict[str, Any]:
        only_params(request)
        req = await parse_body(request, VerifyRequest)
        verdicts = await shared.answers.run(shared.verify, req)
        return verdicts.to_dict()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        only_params(request)
        req: ChatRequest = await parse_body(request, ChatRequest)
        answer = await shared.answers.run(shared.chat, req)
        prompt = req.messages[-1].text
        if req.stream:
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(openai_compat.stream_events(answer, prompt, include_usage=usage),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse(openai_compat.completion(answer, prompt))

    # -- ingest --------------------------------------------------------------------------
    @app.post("/v1/ingest")
    async def ingest(request: Request) -> dict[str, Any]:
        only_params(request, "format")
        if not (options.token or options.allow_ingest):
            raise ApiError(403, "ingest is off: start the server with --token-file FILE (and send the token) "
                                "or with --allow-ingest")
        fmt = request.query_params.get("format") or INGEST_TYPES.get(
            request.headers.get("content-type", "").split(";")[0].strip().lower())
        if fmt not in INGEST_FORMATS:
            raise ApiError(415 if "format" not in request.query_params else 422,
                           "say what the body is: ?format=jsonl|json|bibtex or Content-Type "
                           "application/x-ndjson / application/json / application/x-bibtex")
        body = await request.body()
        if not body.strip():
            raise ApiError(400, "the request body is empty; expected JSONL or BibTeX records")
        if shared.ingesting.locked():
            raise OverCapacity("another ingest is running; retry when it finishes", 5)
        async with shared.ingesting:
            with tempfile.TemporaryDirectory(prefix="assistant-ingest-") as tmp:
                path = Path(tmp) / f"http-ingest-{time.strftime('%Y%m%dT%H%M%S')}{INGEST_FORMATS[fmt]}"
                path.write_bytes(body)
                loop = asyncio.get_running_loop()
                report = await loop.run_in_executor(shared.ingest_pool, shared.ingest, path)
        out = report.to_dict()
        out["problems"] = [p.replace(str(path), "body") for p in out["problems"]]
        out["warnings"] = [w.replace(str(path), "body") for w in out["warnings"]]
        if not report.ok:
            first = out["problems"][0] if out["problems"] else "no records"
            raise ApiError(422, f"nothing could be read from the body: {first}")
        return out

    return Guard(app, options)
