"""The arXiv API as a source of papers: ids and URLs, searches, and the API's etiquette.

One request at a time, at least ``sources.arxiv_delay`` seconds apart (3 by the API's terms
of use), with a User-Agent that says who is asking; 429/503 answers (and cut-off connections)
are retried after Retry-After or a doubling backoff; every request is bounded by
``sources.arxiv_timeout``. Answers go through the same Atom parser as ingested ``.xml`` files
(readers/arxiv_atom.py), so arXiv's DOI, categories and version are kept in ``Paper.extra``.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import AssistantError, BackendError
from ..readers.arxiv_atom import parse_feed
from ..readers.common import FileResult
from ..records import Paper, own_fields
from ..settings import SourcesSettings

USER_AGENT = (f"paper-assistant/{__version__} (question answering over paper abstracts; "
              "fetches metadata with the arXiv API, one request at a time)")
MAX_RESPONSE_BYTES = 50_000_000
_RETRY_CODES = (429, 500, 502, 503, 504)

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
        url = self.url + ("&" if "?" in self.url else "?") + urllib.parse.urlencode(params)
        s = self.settings
        with _REQUEST_LOCK:
            for attempt in range(s.arxiv_retries + 1):
                self._throttle()
                last = attempt == s.arxiv_retries
                try:
                    self.requests += 1
                    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                                               "Accept": "application/atom+xml"})
                    with urllib.request.urlopen(req, timeout=s.arxiv_timeout) as resp:  # noqa: S310 (http(s) only)
                        return _decode(resp.read(MAX_RESPONSE_BYTES + 1))
                except urllib.error.HTTPError as exc:
                    if exc.code == 400:  # a bad id or query: the body is an Atom feed naming the error
                        try:
                            return _decode(exc.read(MAX_RESPONSE_BYTES + 1))
                        except OSError:
                            pass
                    if exc.code in _RETRY_CODES and not last:
                        wait = max(_retry_after(exc.headers.get("Retry-After")), s.arxiv_delay * 2 ** attempt, 1.0)
                        self.on_wait(f"the arXiv API answered HTTP {exc.code}; waiting {wait:.0f} s before "
                                     f"retry {attempt + 1} of {s.arxiv_retries}")
                        self.sleep(wait)
                        continue
                    raise BackendError(f"the arXiv API at {self.url} answered HTTP {exc.code} "
                                       f"({exc.reason}){' after ' + str(attempt) + ' retries' if attempt else ''}; "
                                       "nothing was changed for this request - try again later") from None
                except (urllib.error.URLError, OSError) as exc:
                    reason = getattr(exc, "reason", exc)
                    if _refused(reason) or last:
                        raise ArxivUnreachable(f"cannot reach the arXiv API at {self.url} ({_why(reason)})") from None
                    wait = max(s.arxiv_delay * 2 ** attempt, 1.0)
                    self.on_wait(f"the arXiv API did not answer ({_why(reason)}); waiting {wait:.0f} s before "
                                 f"retry {attempt + 1} of {s.arxiv_retries}")
                    self.sleep(wait)
                finally:
                    _last_request[0] = time.monotonic()
        raise ArxivUnreachable(f"cannot reach the arXiv API at {self.url}")  # pragma: no cover - loop returns

    def _throttle(self) -> None:
        wait = _last_request[0] + self.settings.arxiv_delay - time.monotonic()
        if wait > 0 and _last_request[0]:
            self.sleep(wait)


def _decode(data: bytes) -> str:
    if len(data) > MAX_RESPONSE_BYTES:
        raise BackendError(f"the arXiv API answer is larger than {MAX_RESPONSE_BYTES} bytes; refused")
    return data.decode("utf-8", errors="replace")


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), 600.0)
    except ValueError:
        return 0.0


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
    """Papers for ``refs``, ``page_size`` ids per request."""
    out = Fetched()
    for start in range(0, len(refs), page_size):
        batch = list(refs[start:start + page_size])
        try:
            text = client.get({"search_query": "", "id_list": ",".join(str(r) for r in batch),
                               "start": "0", "max_results": str(len(batch))})
        except BackendError as exc:
            if not out.papers:
                raise
            out.error = str(exc)
            out.not_found.extend(str(r) for r in refs[start:])
            break
        result = FileResult()
        info = parse_feed(text, Path(client.url), result, max_abstract_chars=max_abstract_chars)
        _collect(out, result, info.errors)
        got = {p.paper_id for p in result.papers}
        by_id = {p.paper_id: p for p in result.papers}
        for ref in batch:
            if ref.id in got:
                out.papers.append(_label(by_id.pop(ref.id)))
            elif not any(ref.id in e or str(ref) in e for e in info.errors):
                out.not_found.append(str(ref))
    return out


def search(client: ArxivClient, query: str, max_results: int, *, page_size: int,
           max_abstract_chars: int = 20000, on_page: Callable[[int, int | None], None] | None = None) -> Fetched:
    """The first ``max_results`` hits of an arXiv search (``all:"direct preference optimization"``,
    ``au:...``, ``cat:cs.CL``), page by page, each page a full ``page_size`` request."""
    out = Fetched()
    seen: set[str] = set()
    per_page = min(page_size, max_results)
    start = 0
    while len(out.papers) < max_results:
        try:
            text = client.get({"search_query": query, "id_list": "", "sortBy": "relevance",
                               "sortOrder": "descending", "start": str(start), "max_results": str(per_page)})
        except BackendError as exc:
            if not out.papers:
                raise
            out.error = str(exc)
            break
        result = FileResult()
        info = parse_feed(text, Path(client.url), result, max_abstract_chars=max_abstract_chars)
        if info.errors:
            if not out.papers:
                raise AssistantError(f"the arXiv API refused the search '{query}': {info.errors[0]}")
            out.error = info.errors[0]
            break
        _collect(out, result, [])
        for p in result.papers:
            if p.paper_id not in seen and len(out.papers) < max_results:
                seen.add(p.paper_id)
                out.papers.append(_label(p))
        entries = info.entries
        start += entries
        if on_page:
            on_page(len(out.papers), info.total_results)
        if entries == 0 or (info.total_results is not None and start >= info.total_results):
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
