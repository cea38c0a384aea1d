"""The FastAPI app: JSON API, OpenAI-compatible chat, the web chat's static files.

One Assistant per process, opened and warmed before the first request, shared by
every request. Answers run in a bounded pool of worker threads (``capacity.py``),
never on the event loop, so a slow answer does not hold up the others.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import json
import logging
import re
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

from ..collection_names import NoSuchCollection
from ..errors import AssistantError, BackendError, IndexStateError
from ..records import Answer
from . import openai_compat
from .capacity import Capacity, OverCapacity
from .headers import SecurityHeaders
from .options import ServeOptions
from .origins import OriginGuard
from .schemas import AskRequest, ChatRequest, VerifyRequest, check_date

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
    # A lone surrogate echoed from the request must not turn a 4xx into a 500 while encoding.
    line = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": {"message": line, "type": kind, "code": status}}, status_code=status,
                        headers=headers)


_TYPE_TAG = re.compile(r"^(?:str|int|float|bool|none|bytes|date|datetime|list|dict)$|^[\w-]+\[|^function-")


def validation_message(errors: list[Any]) -> str:
    """First pydantic error as 'field: reason' (unknown fields named as such)."""
    err = errors[0]
    kind = err.get("type", "")
    # Without the union member pydantic names ('since.str', 'messages.0.content.list[ContentPart]'); an
    # unknown field is named whatever it is called (one called 'str' is still a field).
    loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")
           and (kind == "extra_forbidden" or not _TYPE_TAG.match(str(x)))]
    where = ".".join(loc) or "body"
    if kind == "extra_forbidden":
        return f"unknown field '{where}'"
    if kind == "missing":
        return f"{where}: required field missing"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{where}: {msg}" if loc else msg  # a check across fields names its fields itself


# -- the gate in front of the app: token, body size ------------------------------------
MAX_OPEN_OTHERS = 8
"""Collections besides the served one kept open at once (the ones used last)."""
MIN_BODY_RATE = 64 * 1024
"""Bytes a second a body arrives at, on average, at the least (beyond one ``body_timeout`` to start)."""


INGEST_OFF = "ingest is off: start the server with --token-file FILE (and send the token) or with --allow-ingest"


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
        if self.options.token and not public and not self._token_ok(_raw_header(scope, b"authorization")):
            resp = error_response(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'",
                                  {"WWW-Authenticate": "Bearer"})
            await resp(scope, receive, send)
            return
        if not _query_is_utf8(scope.get("query_string", b"")):
            await error_response(400, "the query string is not UTF-8 text once percent-decoded")(scope, receive, send)
            return
        if path == "/v1/ingest" and not (self.options.token or self.options.allow_ingest):
            # With ingest off, 50 MB uploads were read and held only to be refused: the body is read and
            # dropped as it comes (a client that sends all of it before reading the answer, as urllib
            # and requests do, saw a connection reset when refused first).
            await self._discard_body(receive, self.options.max_ingest_bytes)
            await error_response(403, INGEST_OFF, {"Connection": "close"})(scope, receive, send)
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
        # A pause is bounded by body_timeout, and the whole body too (a byte every 29 s held a connection
        # for as long as the client liked): body_timeout plus the largest body at 64 KB/s.
        loop = asyncio.get_running_loop()
        total = self.options.body_timeout + limit / MIN_BODY_RATE
        deadline = loop.time() + total
        while True:
            wait = min(self.options.body_timeout, deadline - loop.time())
            try:
                if wait <= 0:
                    raise asyncio.TimeoutError
                message = await asyncio.wait_for(receive(), wait)
            except asyncio.TimeoutError:  # (not yet the builtin TimeoutError on Python 3.10)
                reason = (f"nothing came for {self.options.body_timeout:g} s" if wait >= self.options.body_timeout
                          else f"the whole body did not arrive within {total:.0f} s")
                await error_response(408, f"request body not received: {reason}", {"Connection": "close"}
                                     )(scope, receive, send)
                return
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

    async def _discard_body(self, receive: Any, limit: int) -> None:
        """Read a body and keep none of it: up to ``limit`` bytes, within the same deadlines as a body kept."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.body_timeout + limit / MIN_BODY_RATE
        size = 0
        while size <= limit:
            wait = min(self.options.body_timeout, deadline - loop.time())
            if wait <= 0:
                return
            try:
                message = await asyncio.wait_for(receive(), wait)
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _token_ok(self, header: bytes) -> bool:
        """Compared as UTF-8 bytes, as sent: a non-ASCII token works (the header's bytes are not
        re-encoded through latin-1 first), in constant time."""
        scheme, _, value = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(value.strip(),
                                                                   (self.options.token or "").encode("utf-8"))


def _query_is_utf8(raw: bytes) -> bool:
    """Starlette would decode ``?q=%ff`` to U+FFFD and answer about a replacement character."""
    from urllib.parse import unquote_to_bytes

    try:
        unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _raw_header(scope: dict[str, Any], name: bytes) -> bytes:
    return next((v for k, v in scope.get("headers", []) if k.lower() == name), b"")


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
        self.others: collections.OrderedDict[str, Any] = collections.OrderedDict()
        """Assistants of the collections other than the served one, opened on first request; the
        ``MAX_OPEN_OTHERS`` used last are kept (every collection ever asked stayed open, ~1.4 MB each)."""

    def collection(self, name: str | None) -> Any:
        """The Assistant answering from collection ``name`` (None: the served one)."""
        from ..collections import canonical, require

        served = self.assistant
        name = canonical(name) if name else served.collection
        if name == served.collection:
            return served
        with self.lock:
            if name in self.others:
                self.others.move_to_end(name)
                return self.others[name]
        require(served.settings, name)
        evicted: list[Any] = []
        with self.lock:
            if name not in self.others:
                other = served.use(name)
                other.auto_sample = False
                self.others[name] = other
                while len(self.others) > MAX_OPEN_OTHERS:
                    evicted.append(self.others.popitem(last=False)[1])
            chosen = self.others[name]
        for old in evicted:  # closed once its questions in flight are done (it reopens if used again)
            old.index.release_when_idle()
        return chosen

    def chat_collection(self, req: ChatRequest) -> str:
        """The collection a chat request asks for: ``collection``, else its model ``paper-assistant:NAME``."""
        from ..collection_names import MODEL_PREFIX, from_model

        served = self.assistant.collection
        by_model = from_model(req.model, served)
        if req.collection and req.model.startswith(MODEL_PREFIX + ":") and by_model != req.collection:
            raise ApiError(422, f"model '{req.model}' and collection '{req.collection}' name different collections")
        return req.collection or by_model

    def warm(self) -> None:
        a = self.assistant
        with self.lock:
            if not a.settings.server_mode:  # (a shared server with no papers yet still serves: ingest fills it)
                a.ensure_index()
            a.answerer()
            if a.index.exists() or a.settings.server_mode:
                a.index.lexical()
                a.search("warm up the model and the index", 1)

    def ask(self, req: AskRequest) -> Answer:
        return self.collection(req.collection).ask(req.question, k=req.k, since=req.since, until=req.until,
                                                   backend=req.backend)

    def verify(self, req: VerifyRequest) -> Any:
        return self.collection(req.collection).verify(req.claim, k=req.k, since=req.since, until=req.until,
                                                      backend=req.backend)

    def chat(self, req: ChatRequest) -> Answer:
        from ..api import ChatSession

        turns = req.turns()
        session = ChatSession(self.collection(self.chat_collection(req)), backend=req.backend)
        session.history = openai_compat.history_from_messages(turns[:-1])
        return session.ask(turns[-1]["text"], k=req.k, since=req.since, until=req.until)

    def ingest(self, path: Path, name: str = "body", collection: str | None = None) -> Any:
        """A separate Assistant (own SQLite connection) writes; the serving one sees the new
        generation and reloads BM25, its vector store and its exact-search vectors on its next
        question (the exact-search vectors are forgotten here too, at once). An upsert: each paper
        uploaded replaces the stored record of its id, recorded as coming from ``upload:NAME``."""
        from ..api import Assistant
        from ..collections import canonical
        from ..readers import file_key

        target = canonical(collection) if collection else self.assistant.collection
        writer = Assistant(self.assistant.settings, collection=target)
        writer.auto_sample = False
        try:
            return writer.ingest([path], names={file_key(path): f"upload:{name}"}, replace=True)
        finally:
            writer.index.release()  # its Chroma client too, or the serving index never reloads
            reader = self.assistant if target == self.assistant.collection else self.others.get(target)
            if reader is not None:
                reader.retriever.forget_exact()


async def parse_body(request: Request, model: type[BaseModel]) -> Any:
    """JSON whatever the Content-Type (`curl -d` sends a form type), then the model's checks."""
    raw = await request.body()
    if not raw.strip():
        raise ApiError(400, "the request body is empty; expected a JSON object")
    data = load_json(raw)
    if not isinstance(data, dict):
        raise ApiError(422, f"expected a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, validation_message(exc.errors())) from None
    except RecursionError:
        raise ApiError(422, "the request body is nested too deeply") from None


def load_json(raw: bytes) -> Any:
    """Parse a body; every malformed one is a 4xx naming what is wrong: not UTF-8, not JSON, nested
    too deeply, a number too long to convert, or text that is not valid Unicode (a lone surrogate
    such as ``"\\ud800"``, which nothing downstream could encode)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ApiError(400, f"the request body holds a value that cannot be read: {exc}"[:300]) from None
    if "\\u" in text:  # only escapes can make a lone surrogate out of valid UTF-8
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApiError(422, f"the request body holds text that is not valid Unicode (a lone surrogate "
                                f"{exc.object[exc.start:exc.end]!a})") from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply") from None
    return data


def upload_name(request: Request) -> str:
    """What the client calls the uploaded file (``X-Source`` header or ``?source=``; a path is cut to
    its last part), recorded as the papers' source: never the server's temporary file."""
    raw = request.query_params.get("source") or request.headers.get("x-source") or ""
    if "x-source" in request.headers and not request.query_params.get("source"):
        raw = raw.encode("latin-1", "replace").decode("utf-8", "replace")  # header bytes are UTF-8
    name = raw.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = "".join(ch if ch.isprintable() and not ("\ud800" <= ch <= "\udfff") else "_" for ch in name).strip()
    return name[:200] or "body"


def only_params(request: Request, *allowed: str) -> None:
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        raise ApiError(422, f"unknown query parameter '{unknown[0]}' (expected: {', '.join(allowed) or 'none'})")


REFERENCE_TYPES = {"bibtex": "application/x-bibtex; charset=utf-8",
                   "ris": "application/x-research-info-systems; charset=utf-8",
                   "csl-json": "application/vnd.citationstyles.csl+json; charset=utf-8",
                   "markdown": "text/markdown; charset=utf-8"}


def reference_response(assistant: Any, ids: list[str], fmt: str) -> Response:
    if fmt not in REFERENCE_TYPES:
        raise ApiError(422, f"format: '{fmt}' is not a reference format (one of {', '.join(REFERENCE_TYPES)})")
    try:
        text = assistant.export(ids, fmt)
    except AssistantError as exc:  # without the CLI's hint: GET /v1/papers lists them here
        raise ApiError(404, str(exc).replace("(see `assistant papers list`)", "(GET /v1/papers lists them)")) from None
    return Response(text, media_type=REFERENCE_TYPES[fmt])


def paper_summary(p: Any) -> dict[str, Any]:
    return {"paper_id": p.paper_id, "title": p.title, "date": p.date, "authors": p.authors,
            "url": openai_compat.paper_link(p.paper_id, p.arxiv_id, p.url)}


def paper_json(p: Any) -> dict[str, Any]:
    """The whole record, every url in it a safe link or null (the catalogue keeps what was read)."""
    from ..display import web_link

    out = p.to_dict()
    out["url"] = openai_compat.paper_link(p.paper_id, p.arxiv_id, p.url)
    out["provenance"] = {source: {**fields, "url": web_link(fields["url"])} if "url" in fields else fields
                         for source, fields in out.get("provenance", {}).items()}
    return out


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

    app = FastAPI(title="paper-assistant", version="1", docs_url=None, redoc_url=None,
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
        if isinstance(exc, NoSuchCollection):  # (the CLI's message names the home folder: not for clients)
            return error_response(404, f"no collection '{exc.name}' on this server; GET /v1/models lists "
                                       "them (paper-assistant:NAME)")
        return error_response(status, str(exc))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")  # the details (paths, internals) go to the server's log only
        return error_response(500, f"internal error ({type(exc).__name__}); the server's log has the details")

    # -- web chat ----------------------------------------------------------------------
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- health and models ---------------------------------------------------------------
    @app.get("/healthz")
    def healthz(request: Request) -> dict[str, Any]:
        only_params(request)
        a = shared.assistant
        papers, chunks = a.index.totals()
        return {"status": "ok", "papers": papers, "chunks": chunks, "llm": a.settings.llm.backend,
                "embedding": a.settings.embedding_model_name, "token_required": bool(options.token),
                "ingest": bool(options.allow_ingest or options.token), "answers": shared.answers.stats(),
                "uptime_s": round(time.time() - shared.started, 1), "collection": a.collection}

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        """One model per collection: ``paper-assistant`` is the served one, ``paper-assistant:NAME`` the others."""
        from ..collections import model_id, names

        only_params(request)
        served = shared.assistant.collection
        listed = [served, *(n for n in names(shared.assistant.settings) if n != served)]
        return {"object": "list", "data": [{"id": model_id(n, served), "object": "model", "collection": n,
                                            "created": int(shared.started), "owned_by": "paper-assistant"}
                                           for n in listed]}

    # -- papers and search ---------------------------------------------------------------
    @app.get("/v1/papers")
    def papers(request: Request, order: str = Query("title", pattern="^(title|date|id)$"),
               limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0),
               collection: str | None = None) -> dict[str, Any]:
        only_params(request, "order", "limit", "offset", "collection")
        a = shared.collection(collection)
        if not a.index.exists():
            return {"total": 0, "papers": []}
        total = a.index.catalogue.paper_count()
        out = []
        for i, p in enumerate(a.index.catalogue.iter_papers(order=order)):
            if i >= offset + limit:
                break
            if i >= offset:
                out.append(paper_summary(p))
        return {"total": total, "offset": offset, "papers": out}

    @app.get("/v1/papers/{paper_id:path}", response_model=None)
    def paper(request: Request, paper_id: str, format: str | None = None,  # noqa: A002
              collection: str | None = None) -> dict[str, Any] | Response:
        only_params(request, "format", "collection")
        a = shared.collection(collection)
        p = a.get_paper(paper_id)
        if p is None:
            shown = paper_id if len(paper_id) <= 200 else paper_id[:200] + "…"
            raise ApiError(404, f"no paper with id '{shown}'")
        if format is not None:
            return reference_response(a, [paper_id], format)
        return paper_json(p)

    @app.get("/v1/references")
    def references(request: Request, ids: list[str] = Query(..., min_length=1, max_length=200),
                   format: str = "bibtex", collection: str | None = None) -> Response:  # noqa: A002
        """Several papers' references at once, keys unique among them (the web chat's copy control)."""
        only_params(request, "ids", "format", "collection")
        return reference_response(shared.collection(collection), ids, format)

    @app.get("/v1/search")
    async def search(request: Request, q: str = Query(..., min_length=1, max_length=4000),
                     k: int = Query(10, ge=1, le=100), since: str | None = None, until: str | None = None,
                     mode: str = Query("hybrid", pattern="^(hybrid|dense|bm25)$"),
                     collection: str | None = None) -> dict[str, Any]:
        only_params(request, "q", "k", "since", "until", "mode", "collection")
        if not q.strip():
            raise ApiError(422, "q: the query is empty")
        for name, value, upper in (("since", since, False), ("until", until, True)):
            try:
                check_date(value, upper=upper)
            except ValueError as exc:
                raise ApiError(422, f"{name}: {exc}") from None
        from ..retrieval import date_range_problem

        problem = date_range_problem(since, until, names=("since", "until"))
        if problem:
            raise ApiError(422, problem)
        sources = await shared.answers.run(
            lambda: shared.collection(collection).search(q, k, since=since, until=until, mode=mode))
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
        from ..collection_names import model_id

        model = model_id(shared.chat_collection(req), shared.assistant.collection)
        if req.stream:
            usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(openai_compat.stream_events(answer, prompt, include_usage=usage, model=model),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return JSONResponse(openai_compat.completion(answer, prompt, model=model))

    # -- ingest --------------------------------------------------------------------------
    @app.post("/v1/ingest")
    async def ingest(request: Request) -> dict[str, Any]:
        only_params(request, "format", "source", "collection")
        if not (options.token or options.allow_ingest):
            raise ApiError(403, INGEST_OFF)
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
        name = upload_name(request)
        async with shared.ingesting:
            with tempfile.TemporaryDirectory(prefix="assistant-ingest-") as tmp:
                path = Path(tmp) / f"upload{INGEST_FORMATS[fmt]}"
                path.write_bytes(body)
                loop = asyncio.get_running_loop()
                report = await loop.run_in_executor(shared.ingest_pool, shared.ingest, path, name,
                                                    request.query_params.get("collection"))
        out = report.to_dict()
        # (Any message that still quotes the temporary file says the upload's name instead.)
        out["problems"] = [p.replace(str(path), f"upload:{name}") for p in out["problems"]]
        out["warnings"] = [w.replace(str(path), f"upload:{name}") for w in out["warnings"]]
        out["source"] = f"upload:{name}"
        if not report.ok:
            first = out["problems"][0] if out["problems"] else "no records"
            raise ApiError(422, f"nothing could be read from the body: {first}")
        return out

    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return SecurityHeaders(OriginGuard(Guard(app, options), options))


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bodies the routes parse themselves (so clients, and the Schemathesis
    fuzzing in the tests, see every field and limit)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path, model in (("/v1/ask", AskRequest), ("/v1/verify", VerifyRequest),
                        ("/v1/chat/completions", ChatRequest)):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/"
                                                                                  f"{model.__name__}"}}}}
    text = {"schema": {"type": "string"}}
    schema["paths"]["/v1/ingest"]["post"]["requestBody"] = {
        "required": True, "content": {"application/x-ndjson": text, "application/x-bibtex": text}}
    schema["paths"]["/v1/ingest"]["post"]["parameters"] = [
        {"name": "format", "in": "query", "required": False,
         "schema": {"type": "string", "enum": sorted(INGEST_FORMATS)}},
        {"name": "source", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
        {"name": "collection", "in": "query", "required": False,
         "description": "the collection to ingest into (made when new)", "schema": {"type": "string", "maxLength": 48}},
        {"name": "X-Source", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200}}]
    app.openapi_schema = schema
    return schema
