"""The arXiv API as a source of papers: ids and URLs, searches, and the API's etiquette.

One request at a time, at least ``sources.arxiv_delay`` seconds apart (3 by the API's terms
of use), with a User-Agent that says who is asking; 429/503 answers (and cut-off connections)
are retried after Retry-After or a doubling backoff; every request, from name lookup to the
last byte, is bounded by ``sources.arxiv_timeout``, and redirects are followed to http(s) URLs
only. Answers go through the same Atom parser as ingested ``.xml`` files
(readers/arxiv_atom.py), so arXiv's DOI, categories and version are kept in ``Paper.extra``.
"""

from __future__ import annotations

import contextlib
import http.client
import math
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .. import __version__
from ..errors import AssistantError, BackendError
from ..readers.arxiv_atom import parse_feed
from ..readers.common import FileResult
from ..records import Paper, own_fields
from ..settings import SettingsError, SourcesSettings

USER_AGENT = (f"paper-assistant/{__version__} (question answering over paper abstracts; "
              "fetches metadata with the arXiv API, one request at a time)")
MAX_RESPONSE_BYTES = 50_000_000
_RETRY_CODES = (429, 500, 502, 503, 504)
_CHUNK = 1 << 16
_URL_SETTING = "sources.arxiv_api_url (ASSISTANT_ARXIV_API_URL)"

_NEW = re.compile(r"^(\d{4}\.\d{4,5})(v\d+)?$")
_OLD = re.compile(r"^([a-z][a-z\-]*(?:\.[A-Za-z]{2})?/\d{7})(v\d+)?$")
_URL = re.compile(r"^(?:https?://)?(?:www\.|export\.)?arxiv\.org/(?:abs|pdf|html)/(.+?)(?:\.pdf)?/?(?:[?#].*)?$",
                  re.IGNORECASE)


@dataclass(frozen=True)
class ArxivRef:
    """One paper as the user named it: the bare id and, when given, the version."""

    id: str
    version: str | None = None

    def __str__(self) -> str:
        return self.id + (self.version or "")


def parse_ref(text: str) -> ArxivRef:
    """'2401.01234', '2401.01234v2', 'arXiv:2401.01234', 'hep-th/9901001v2',
    'https://arxiv.org/abs/2402.00001', 'https://arxiv.org/pdf/2401.01234v1.pdf' -> ArxivRef."""
    raw = str(text).strip()
    m = _URL.match(raw)
    body = m.group(1) if m else re.sub(r"^arxiv:\s*", "", raw, flags=re.IGNORECASE)
    for pattern in (_NEW, _OLD):
        mm = pattern.match(body)
        if mm:
            return ArxivRef(mm.group(1), mm.group(2))
    raise AssistantError(f"'{text}' is not an arXiv id or URL (expected e.g. 2401.01234, 2401.01234v2, "
                         "hep-th/9901001v2 or https://arxiv.org/abs/2401.01234)")


class ArxivUnreachable(BackendError):
    """The API did not answer at all (offline, refused, timed out): nothing was fetched."""


# One request at a time per process, and the time of the last one, shared by every client.
_REQUEST_LOCK = threading.Lock()
_last_request = [0.0]


class ArxivClient:
    """GET requests to the arXiv API with its etiquette (see the module docstring)."""

    def __init__(self, settings: SourcesSettings, *, on_wait: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.url = settings.arxiv_api_url
        self.on_wait = on_wait or (lambda _msg: None)
        self.sleep = sleep
        self.requests = 0

    def get(self, params: dict[str, str]) -> str:
        """The Atom text the API answers for ``params``; BackendError when it cannot be had."""
        url = _request_url(self.url, params)
        s = self.settings
        with _REQUEST_LOCK:
            for attempt in range(s.arxiv_retries + 1):
                self._throttle()
                last = attempt == s.arxiv_retries
                retries = f" after {attempt} retries" if attempt else ""
                try:
                    self.requests += 1
                    answer = _bounded(url, s.arxiv_timeout)
                except _RedirectRefused as exc:
                    raise BackendError(f"the arXiv API at {self.url} redirected to {exc.target!r}, which is not a "
                                       "valid http(s) URL; refused") from None
                except (urllib.error.URLError, OSError) as exc:
                    reason = getattr(exc, "reason", exc)
                    if _refused(reason) or last:
                        raise ArxivUnreachable(f"cannot reach the arXiv API at {self.url} ({_why(reason)})") from None
                    wait = max(s.arxiv_delay * 2 ** attempt, 1.0)
                    self.on_wait(f"the arXiv API did not answer ({_why(reason)}); waiting {wait:.0f} s before "
                                 f"retry {attempt + 1} of {s.arxiv_retries}")
                    self.sleep(wait)
                    continue
                except (http.client.HTTPException, ValueError) as exc:  # a server that does not speak HTTP
                    # A cut-off body may be a network hiccup; a garbled status line or headers is no better later.
                    if isinstance(exc, http.client.IncompleteRead) and not last:
                        wait = max(s.arxiv_delay * 2 ** attempt, 1.0)
                        self.on_wait(f"the arXiv API's answer was cut off; waiting {wait:.0f} s before "
                                     f"retry {attempt + 1} of {s.arxiv_retries}")
                        self.sleep(wait)
                        continue
                    raise BackendError(f"the arXiv API at {self.url} sent a broken HTTP answer ({_broken(exc)})"
                                       f"{retries}; nothing was changed for this request") from None
                finally:
                    _last_request[0] = time.monotonic()
                if answer.code < 300:
                    return _decode(answer.body)
                if answer.code == 400 and answer.body is not None:
                    return _decode(answer.body)  # a bad id or query: an Atom feed naming the error
                if answer.code in _RETRY_CODES and not last:
                    wait = max(_retry_after(answer.retry_after), s.arxiv_delay * 2 ** attempt, 1.0)
                    self.on_wait(f"the arXiv API answered HTTP {answer.code}; waiting {wait:.0f} s before "
                                 f"retry {attempt + 1} of {s.arxiv_retries}")
                    self.sleep(wait)
                    continue
                raise BackendError(f"the arXiv API at {self.url} answered HTTP {answer.code} ({answer.reason})"
                                   f"{retries}; nothing was changed for this request"
                                   + (" - try again later" if answer.code in _RETRY_CODES else ""))
        raise ArxivUnreachable(f"cannot reach the arXiv API at {self.url}")  # pragma: no cover - loop returns

    def _throttle(self) -> None:
        wait = _last_request[0] + self.settings.arxiv_delay - time.monotonic()
        if wait > 0 and _last_request[0]:
            self.sleep(wait)


def _request_url(base: str, params: dict[str, str]) -> str:
    """The request URL, or a SettingsError naming the setting: urllib's ValueError for a URL without
    http(s):// or with a broken host was a traceback."""
    def bad(why: str) -> SettingsError:
        return SettingsError(f"{_URL_SETTING} is {base!r}: {why} (e.g. https://export.arxiv.org/api/query)")

    if any(ch.isspace() or not ch.isprintable() for ch in base):
        raise bad("a URL cannot hold spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(base)
        _ = parts.port  # a port that is not a number in 0-65535 raises here, not at request time
    except ValueError as exc:
        raise bad(f"not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise bad("not an http:// or https:// URL with a host")
    return base + ("&" if "?" in base else "?") + urllib.parse.urlencode(params)


@dataclass
class _Answer:
    code: int
    reason: str
    body: bytes | None
    retry_after: str | None = None


class _RedirectRefused(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target[:200]


class _Deadline:
    """The end of one attempt. A socket timeout bounds each read only: a server sending a byte every
    half second never trips it. At the deadline the attempt's sockets are shut down, which ends any
    read blocked on them (the request then fails as timed out)."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socks.append(sock)
            if self.expired:
                _shutdown(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        # The plain socket call: SSLSocket.shutdown would drop its SSL state under a running read.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _watched(base: type[http.client.HTTPConnection], deadline: _Deadline) -> type[http.client.HTTPConnection]:
    class Watched(base):  # type: ignore[valid-type,misc]
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


def _watching(base: type[urllib.request.AbstractHTTPHandler], deadline: _Deadline) -> urllib.request.BaseHandler:
    """urllib's HTTP or HTTPS handler whose connections the deadline can shut down."""
    class Watching(base):  # type: ignore[valid-type,misc]
        def do_open(self, http_class: Any, req: urllib.request.Request, **kw: Any) -> http.client.HTTPResponse:
            return super().do_open(_watched(http_class, deadline), req, **kw)

    return Watching()


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: urllib's own handler follows ftp:// too."""

    def http_error_302(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                       headers: Message) -> Any:
        target = headers.get("location") or headers.get("uri")
        if target is not None:
            try:
                scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, target.strip())).scheme
            except ValueError:  # e.g. 'http://[::1': urllib's handler raised it as a traceback
                scheme = ""
            if scheme.lower() not in ("http", "https"):
                fp.close()
                raise _RedirectRefused(target)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urlopen's opener without its ftp, file and data handlers: an answer comes over http(s) or not at all."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(),
                    _watching(urllib.request.HTTPHandler, deadline), _watching(urllib.request.HTTPSHandler, deadline),
                    urllib.request.HTTPDefaultErrorHandler(), _HttpOnlyRedirects(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def _bounded(url: str, timeout: float) -> _Answer:
    """One GET of ``url``, all of it (name lookup, connection, headers, body) within ``timeout``
    seconds; TimeoutError after. It runs in a worker thread, so that even a lookup that hangs is
    left behind at the deadline."""
    deadline = _Deadline(timeout)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["answer"] = _attempt(url, timeout, deadline)
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            box["error"] = exc

    worker = threading.Thread(target=run, name="arxiv-request", daemon=True)
    worker.start()
    try:
        worker.join(max(deadline.at - time.monotonic(), 0.0))
    finally:
        if worker.is_alive():  # the deadline passed (or Ctrl-C): end the request where it stands
            deadline.expire()
    if worker.is_alive() or deadline.expired:
        raise TimeoutError("timed out")
    if "error" in box:
        raise box["error"]
    answer: _Answer = box["answer"]
    return answer


def _attempt(url: str, timeout: float, deadline: _Deadline) -> _Answer:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "application/atom+xml"})
    try:
        with _opener(deadline).open(req, timeout=timeout) as resp:
            return _Answer(resp.status, str(resp.reason), _read(resp, deadline))
    except urllib.error.HTTPError as exc:
        with exc:
            headers = exc.headers if exc.headers is not None else Message()
            body = None
            if exc.code == 400:  # a bad id or query: the API's Atom feed names the error
                try:
                    body = _read(exc, deadline)
                except (OSError, http.client.HTTPException):
                    body = None
                ctype = (headers.get("Content-Type") or "").lower()
                if body is not None and "xml" not in ctype and body.lstrip()[:5] not in (b"<?xml", b"<feed"):
                    body = None  # an HTML error page names nothing: the request failed, not the ids
            return _Answer(exc.code, " ".join(str(exc.reason).split())[:100], body, headers.get("Retry-After"))


def _read(resp: Any, deadline: _Deadline) -> bytes:
    """The body, in chunks, stopping at the deadline (the shut-down socket ends a read blocked on it)."""
    data = bytearray()
    while len(data) <= MAX_RESPONSE_BYTES:
        chunk = resp.read(_CHUNK)
        if not chunk:
            break
        data += chunk
        if deadline.passed():
            raise TimeoutError("timed out")
    missing = getattr(resp, "length", None)
    if isinstance(missing, int) and missing > 0 and len(data) <= MAX_RESPONSE_BYTES:
        # http.client's read(n) returns a body shorter than its Content-Length without a word.
        raise http.client.IncompleteRead(bytes(data), missing)
    return bytes(data)


def _decode(data: bytes | None) -> str:
    data = data or b""
    if len(data) > MAX_RESPONSE_BYTES:
        raise BackendError(f"the arXiv API answer is larger than {MAX_RESPONSE_BYTES} bytes; refused")
    return data.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float:
    try:
        seconds = float(value or 0)
    except ValueError:
        return 0.0
    # 'nan' and 'inf' parse as floats; time.sleep(nan) raised ValueError.
    return min(max(seconds, 0.0), 600.0) if math.isfinite(seconds) else 0.0


def _broken(exc: Exception) -> str:
    """What was wrong with an answer, in a few words; the server's own bytes shown escaped and cut short."""
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut off"
    if isinstance(exc, http.client.LineTooLong):
        return "a header line too long"
    if isinstance(exc, http.client.BadStatusLine):
        return f"not an HTTP status line: {str(exc)[:60]!r}"
    text = " ".join(str(exc).split())[:100]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _refused(reason: object) -> bool:
    """Failures a retry cannot fix: nothing listens there, or the host name does not resolve."""
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


def _why(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not found"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "timed out"
    return str(reason) or type(reason).__name__


@dataclass
class Fetched:
    """Papers the API returned, in the order asked, and what it did not return."""

    papers: list[Paper] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    """Set when fetching stopped part-way (the papers before it are kept)."""


def fetch_ids(client: ArxivClient, refs: Sequence[ArxivRef], *, page_size: int,
              max_abstract_chars: int = 20000) -> Fetched:
    """Papers for ``refs``, ``page_size`` ids per request. An id the API's answer lacks is "not
    found"; one that was never asked (the API stopped answering) or whose answer could not be read
    is a problem line instead - it may well be on arXiv."""
    out = Fetched()
    refs = one_per_paper(refs, out)
    for start in range(0, len(refs), page_size):
        batch = refs[start:start + page_size]
        try:
            text = client.get({"search_query": "", "id_list": ",".join(str(r) for r in batch),
                               "start": "0", "max_results": str(len(batch))})
        except BackendError as exc:
            if not out.papers:
                raise
            out.error = str(exc)
            out.problems.append(_not_fetched(refs[start:], "the arXiv API stopped answering before them"))
            break
        result = FileResult()
        info = parse_feed(text, client.url, result, max_abstract_chars=max_abstract_chars)
        _collect(out, result, info.errors)
        if not info.readable:
            out.problems.append(_not_fetched(batch, "the arXiv API's answer could not be read"))
            continue
        by_id = {p.paper_id: p for p in result.papers}
        refused = []
        for ref in batch:
            paper = by_id.pop(ref.id, None)
            if paper is not None:
                out.papers.append(_label(paper))
            elif ref.id in info.ids or any(ref.id in e or str(ref) in e for e in info.errors):
                continue  # found but unusable, or named in an error: a problem line says why
            elif info.errors:
                refused.append(ref)  # the API refused the request as a whole: this id was not looked up
            else:
                out.not_found.append(str(ref))
        if refused:
            out.problems.append(_not_fetched(refused, "the arXiv API refused the request they were part of"))
    return out


def one_per_paper(refs: Sequence[ArxivRef], out: Fetched) -> list[ArxivRef]:
    """One ref per paper, as one version of a paper is indexed: the latest if any ref has no
    version, else the highest version asked. Two refs of one paper made one request return
    two entries of one id (a KeyError)."""
    chosen: dict[str, ArxivRef] = {}
    for ref in refs:
        old = chosen.get(ref.id)
        if old is None or old == ref:
            chosen[ref.id] = ref
            continue
        keep = old if _version_rank(old) >= _version_rank(ref) else ref
        chosen[ref.id] = keep
        dropped = ref if keep is old else old
        out.warnings.append(f"{dropped} and {keep} are the same paper; fetching {keep} only "
                            f"({'its latest version' if keep.version is None else 'the newest version asked'})")
    return list(chosen.values())


def _version_rank(ref: ArxivRef) -> float:
    return math.inf if ref.version is None else int(ref.version[1:])


def _not_fetched(refs: Sequence[ArxivRef], why: str) -> str:
    shown = ", ".join(str(r) for r in refs[:20]) + (f" and {len(refs) - 20} more" if len(refs) > 20 else "")
    return f"not fetched ({why}; run again to fetch them): {shown}"


def search(client: ArxivClient, query: str, max_results: int, *, page_size: int,
           max_abstract_chars: int = 20000, on_page: Callable[[int, int | None], None] | None = None) -> Fetched:
    """The first ``max_results`` hits of an arXiv search (``all:"direct preference optimization"``,
    ``au:...``, ``cat:cs.CL``), page by page, each page a full ``page_size`` request.
    Stops at a page that adds no new paper, and once twice ``max_results`` entries (and a page) were read
    without enough usable ones: a server that answers every page alike with a huge total would
    otherwise be asked forever. Counted in entries, not pages: the API often sends short pages."""
    out = Fetched()
    seen: set[str] = set()
    per_page = min(page_size, max_results)
    max_entries = 2 * max_results + per_page  # room for repeated or unusable entries
    start = 0
    while len(out.papers) < max_results:
        if start >= max_entries:
            out.warnings.append(f"the arXiv search stopped after {start} entries with {len(out.papers)} of "
                                f"{max_results} results (too many repeated or unusable entries)")
            break
        try:
            text = client.get({"search_query": query, "id_list": "", "sortBy": "relevance",
                               "sortOrder": "descending", "start": str(start), "max_results": str(per_page)})
        except BackendError as exc:
            if not out.papers:
                raise
            out.error = str(exc)
            break
        result = FileResult()
        info = parse_feed(text, client.url, result, max_abstract_chars=max_abstract_chars)
        if info.errors:
            if not out.papers:
                raise AssistantError(f"the arXiv API refused the search '{query}': {info.errors[0]}")
            out.error = info.errors[0]
            break
        _collect(out, result, [])
        new = 0
        for p in result.papers:
            if p.paper_id not in seen and len(out.papers) < max_results:
                seen.add(p.paper_id)
                out.papers.append(_label(p))
                new += 1
        entries = info.entries
        start += entries
        if on_page:
            on_page(len(out.papers), info.total_results)
        if entries == 0 or (info.total_results is not None and start >= info.total_results):
            break
        if new == 0 and len(out.papers) < max_results:
            out.warnings.append(f"the arXiv search stopped at a page (from result {start - entries}) that added "
                                f"no new paper, with {len(out.papers)} of {max_results} results")
            break
    return out


def _collect(out: Fetched, result: FileResult, errors: list[str]) -> None:
    out.problems.extend(str(p) for p in result.problems)
    out.warnings.extend(str(w) for w in result.warnings)
    out.problems.extend(f"the arXiv API: {e}" for e in errors)


def _label(paper: Paper) -> Paper:
    """Name the record's origin for provenance: re-adding a paper replaces what arXiv said of it
    before, and leaves what files said of it alone (records.merge_provenance)."""
    version = paper.extra.get("version") or ""
    paper.source = f"arXiv:{paper.paper_id}{version}"
    paper.provenance = {provenance_key(paper.paper_id): own_fields(paper)}
    return paper


def provenance_key(paper_id: str) -> str:
    return f"arxiv:{paper_id}"
