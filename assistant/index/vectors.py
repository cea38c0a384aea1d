"""Chroma collections of chunk vectors and of sentence vectors (embedded PersistentClient
or a `chroma run` server).

Chroma keeps no text: each vector carries its paper id, offsets, title and date key;
the catalogue holds the abstracts. Sentence vectors (``NAME.sentences``) hold one vector
per abstract sentence (the text layer's ``split_sentences`` spans), so an answerer can
score every candidate sentence against the question without a model call.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IndexStateError
from ..records import Chunk, Paper
from ..runtime import ensure_offline
from ..text import split_sentences
from .storage import date_int, disk_full_message

if TYPE_CHECKING:
    import numpy as np

    from ..settings import Settings


class VectorStore:
    """Chroma collection of chunk vectors; PersistentClient or HttpClient, same code path."""

    def __init__(self, settings: Settings, persist_dir: Path, model_name: str, name: str = "papers",
                 reads_only: bool = False) -> None:
        """``name``: the Chroma collection of the chunk vectors (the collection's family prefix).
        ``reads_only``: nothing will be written through this store, so on a full disk (Chroma writes
        as it opens) the papers are read from a private copy, as on a read-only home."""
        ensure_offline()
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.settings = settings
        self.model_name = model_name
        self.name = name
        self._copy: Path | None = None
        """The private copy a read-only home is queried from (removed on close, else at exit)."""
        self._lock_file: Path | None = None
        """Embedded: the file whose shared/exclusive lock orders this folder's Chroma calls across processes."""
        self._read: set[str] = set()
        """Collections this store has read once (the first read of one may load and save its files)."""
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        try:
            if settings.server_mode:
                self.where = f"http://{settings.index.chroma_host}:{settings.index.chroma_port}"
                self.client = _http_client(settings, chroma_settings)
            else:
                self.where = str(persist_dir)
                self._lock_file = persist_dir.with_name(persist_dir.name + ".lock")
                open_dir = persist_dir
                if persist_dir.is_dir() and not _writable(persist_dir):
                    open_dir = self._copy = _readonly_copy(persist_dir)
                else:
                    persist_dir.mkdir(parents=True, exist_ok=True)
                try:
                    with SYSTEMS_LOCK, chroma_lock(self._lock_file if self._copy is None else None, True):
                        if self._copy is None:
                            note_chroma_state(open_dir, starting=True)
                        self.client = chromadb.PersistentClient(path=str(open_dir), settings=chroma_settings)
                except Exception as exc:
                    forget_system(open_dir)
                    if not (reads_only and self._copy is None and disk_full_message(persist_dir, exc)):
                        raise
                    # A full disk: the indexed papers stay searchable from a copy in the temporary folder
                    # (another filesystem, or the same error again).
                    open_dir = self._copy = _readonly_copy(persist_dir, "the disk holding the home is full")
                    try:
                        with SYSTEMS_LOCK:
                            self.client = chromadb.PersistentClient(path=str(open_dir), settings=chroma_settings)
                    except Exception:
                        forget_system(open_dir)
                        raise exc from None
        except IndexStateError:
            raise
        except Exception as exc:  # chromadb raises many types; the user needs one line
            raise IndexStateError(_chroma_error(settings, persist_dir, exc)) from None
        self._collection: Any = None
        self._sentences: SentenceStore | None = None
        # A store dropped without close() (an Assistant let go of) releases its client when collected:
        # its reference kept this process's Chroma system running, so a writer could never reload it.
        weakref.finalize(self, _close_client, self.client)

    @property
    def lock_file(self) -> Path | None:
        """The cross-process lock of this folder's Chroma calls (None: a private copy, or a server)."""
        return None if self._copy is not None else self._lock_file

    @property
    def is_copy(self) -> bool:
        """Read from a private copy (a read-only home, a full disk): never to be written through."""
        return self._copy is not None

    def close(self) -> None:
        """Release this process's Chroma client (embedded: its loaded collections, so the next
        client reads the files afresh). Safe to call twice."""
        self._collection = None
        self._sentences = None
        _close_client(self.client)
        if self._copy is not None:
            import shutil

            shutil.rmtree(self._copy, ignore_errors=True)
            self._copy = None

    def collection(self, create: bool = False) -> Any:
        if self._collection is not None:
            return self._collection
        name = self.name
        try:
            with chroma_lock(self.lock_file, True):
                if create:
                    col = self.client.get_or_create_collection(
                        name, embedding_function=None,
                        metadata={"hnsw:space": "cosine", "hnsw:search_ef": 128, "hnsw:construction_ef": 128,
                                  "embedding_model": self.model_name})
                else:
                    col = self.client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if not create and "does not exist" in str(exc).lower():
                return None
            raise IndexStateError(_chroma_error(self.settings, Path(self.where), exc)) from None
        built_with = (col.metadata or {}).get("embedding_model")
        if built_with and built_with != self.model_name:
            raise IndexStateError(
                f"the index in {self.where} (collection '{name}') was built with embedding model "
                f"'{built_with}', but the settings ask for '{self.model_name}'; rebuild it with "
                f"`assistant ingest --rebuild SOURCES` or set ASSISTANT_EMBEDDING_MODEL={built_with}")
        self._collection = col
        return col

    def upsert(self, chunks: Sequence[Chunk], papers: dict[str, Paper], vectors: np.ndarray,
               batch: int = 2000) -> None:
        col = self.collection(create=True)
        for start in range(0, len(chunks), batch):
            part = chunks[start:start + batch]
            metas = []
            for c in part:
                p = papers[c.paper_id]
                meta: dict[str, Any] = {"paper_id": c.paper_id, "idx": c.index, "start": c.start,
                                        "end": c.end, "title": p.title[:500]}
                di = date_int(p.date)
                if di is not None:
                    meta["date_int"] = di
                    meta["year"] = di // 10000
                metas.append(meta)
            # No `documents`: the catalogue holds each abstract and the chunk offsets, and
            # Chroma's full-text index over documents cost ~70% of the upsert time.
            self._call(col.upsert, ids=[c.chunk_id for c in part],
                       embeddings=vectors[start:start + len(part)], metadatas=metas)

    def delete_papers(self, paper_ids: Sequence[str], batch: int = 500) -> None:
        """Drop the papers' chunk vectors and their sentence vectors (sentences first, so a
        kill in between leaves chunk orphans, which the next ingest finds and drops with both)."""
        self.sentences.delete_papers(paper_ids, batch)
        col = self.collection(create=False)
        if col is None:
            return
        for start in range(0, len(paper_ids), batch):
            part = list(paper_ids[start:start + batch])
            self._call(col.delete, where={"paper_id": {"$in": part}})

    def all_paper_ids(self) -> set[str]:
        return {pid for page in self.paper_id_pages() for pid in page}

    def paper_id_pages(self, size: int = 5000) -> Iterator[set[str]]:
        """Paper ids of the chunk vectors, a page of vectors at a time (memory: one page)."""
        col = self.collection(create=False)
        if col is None:
            return
        total = self._call(col.count)
        for offset in range(0, total, size):
            res = self._call(col.get, include=["metadatas"], limit=size, offset=offset)
            yield {m["paper_id"] for m in res["metadatas"]}

    def count(self) -> int:
        col = self.collection(create=False)
        return 0 if col is None else int(self._call(col.count))

    def query(self, vector: np.ndarray, n: int, dates: DateFilter | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, paper_id, cosine similarity) best first."""
        col = self.collection(create=False)
        if col is None:
            return []
        hits = nearest(lambda **kw: self._call(col.query, **kw), vector, n, self.count(), dates)
        return [(cid, meta["paper_id"], sim) for cid, meta, sim in hits]

    @property
    def sentences(self) -> SentenceStore:
        """The sentence-vector collection beside this one (same client)."""
        if self._sentences is None:
            self._sentences = SentenceStore(self)
        return self._sentences

    def _family_gone(self) -> bool:
        """On a Chroma server: none of this collection's companions is left (deleted, not being rebuilt:
        a rebuild keeps its ``.meta``). The default collection is never gone."""
        from ..collection_names import DEFAULT, made_here

        if self.settings.index.collection == DEFAULT:
            return False
        try:
            have = {str(getattr(c, "name", c)) for c in self.client.list_collections()}
        except Exception:  # noqa: BLE001 - cannot tell: the message about a rebuild stands
            return False
        return not made_here(self.name, have)

    def drop(self) -> None:
        self.sentences.drop()
        try:
            self.run(self.client.delete_collection, self.name)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise IndexStateError(_chroma_error(self.settings, Path(self.where), exc)) from None
        self._collection = None

    def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One Chroma call, embedded under the folder's lock across processes: exclusive for a write,
        shared for a read.

        Embedded Chroma is no multi-process store: a write appends to its log, then applies the log to
        the collection's HNSW index in memory and every ``hnsw:sync_threshold`` vectors saves the index
        over its files, in place; a process's first read of a collection loads those files and applies the
        log too (and may save). A load while another process saved read half-written files (a segmentation
        fault in count or query), and two saves at once left files no process could open (link_lists.bin
        grown to tens of GB). The ingest lock orders the writers only: this orders every call. A read
        is exclusive too the first time this store reads a collection (that read may load and save)."""
        if self._copy is not None or self._lock_file is None:
            return fn(*args, **kwargs)
        target = getattr(getattr(fn, "__self__", None), "name", None)
        first = isinstance(target, str) and target not in self._read
        exclusive = first or getattr(fn, "__name__", "") in _WRITES
        with chroma_lock(self._lock_file, exclusive):
            out = fn(*args, **kwargs)
        if first:
            self._read.add(target)  # type: ignore[arg-type]
        return out

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.run(fn, *args, **kwargs)
        except IndexStateError:
            raise
        except Exception as exc:
            if getattr(getattr(fn, "__self__", None), "name", None) == self.name:
                # Another client's (or process's) `ingest --rebuild` dropped and re-made the collection.
                self._collection = None
                return self.retry_stale(exc, fn, lambda: self.collection(create=False), *args, **kwargs)
            raise self.error(exc) from None

    def retry_stale(self, exc: Exception, fn: Any, reopen: Any, *args: Any, **kwargs: Any) -> Any:
        """Redo ``fn`` once on the collection ``reopen`` finds again by name, when ``exc`` says the
        handle ``fn`` was bound to names a collection that no longer exists."""
        if "does not exist" not in str(exc).lower():
            raise self.error(exc) from None
        col = reopen()
        if col is None and self.settings.server_mode and self._family_gone():
            from ..collection_names import NoSuchCollection

            name = self.settings.index.collection  # deleted by another client: a 404 from serve, not "rebuild it"
            raise NoSuchCollection(f"no collection '{name}' on the Chroma server at {self.where} (another client "
                                   f"deleted it?); `assistant collections list` shows them", name) from None
        if col is None:
            where = (f"Chroma server at {self.settings.index.chroma_host}:{self.settings.index.chroma_port}: "
                     "the shared index" if self.settings.server_mode else f"{self.where}: the index")
            raise IndexStateError(f"{where} is being rebuilt by another client (`ingest --rebuild`); "
                                  "try again when it finishes (if no rebuild is running, one was "
                                  "interrupted: run `assistant ingest --rebuild SOURCES`)") from None
        try:
            return self.run(getattr(col, fn.__name__), *args, **kwargs)
        except Exception as again:
            raise self.error(again) from None

    def error(self, exc: Exception) -> IndexStateError:
        """The one-line error for a failed Chroma call."""
        return IndexStateError(_chroma_error(self.settings, Path(self.where), exc))


@dataclass(frozen=True)
class DateFilter:
    """A date range for a vector search, and the share of the index's papers inside it (when known).

    Chroma applies a metadata filter before its vector search, at a cost linear in the collection
    (dense search with a two-year filter on a Chroma server: 136 ms at 10k papers, 1.6 s at 100k;
    benchmarks/scale_1m.py). When enough of the index is in range, the nearest ``n / share`` vectors
    fetched with no filter hold the ``n`` nearest in range, for the cost of a plain search."""

    lo: int | None
    hi: int | None
    share: float | None = None
    post_filter_max: int = 2000

    def where(self) -> dict[str, Any] | None:
        """Chroma needs an explicit $and for two conditions (a classic llama-index + Chroma pitfall)."""
        conds: list[dict[str, Any]] = []
        if self.lo is not None:
            conds.append({"date_int": {"$gte": self.lo}})
        if self.hi is not None:
            conds.append({"date_int": {"$lte": self.hi}})
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else {"$and": conds}

    def admits(self, meta: dict[str, Any]) -> bool:
        d = meta.get("date_int")
        return (isinstance(d, int) and (self.lo is None or d >= self.lo)
                and (self.hi is None or d <= self.hi))

    def unfiltered_fetch(self, n: int) -> int | None:
        """Nearest vectors to fetch unfiltered for ``n`` in range (1.5x the expected need), or None
        when that is past ``post_filter_max`` (a narrow range: Chroma filters first)."""
        if self.post_filter_max <= 0 or self.share == 0:
            return None
        need = 4 * n if self.share is None else int(1.5 * n / self.share) + 1
        need = max(need, n)
        return need if need <= self.post_filter_max else None


def nearest(query: Callable[..., Any], vector: np.ndarray, n: int, total: int,
            dates: DateFilter | None) -> list[tuple[str, dict[str, Any], float]]:
    """(id, metadata, cosine) of the ``n`` nearest vectors within ``dates``, best first; ``query``
    is a collection's ``query`` and ``total`` its size. Filtered here when ``dates`` says that
    pays (the result is the same: every vector in range nearer than the last one kept was
    fetched), else, or when too few fetched were in range, by Chroma."""

    def run(m: int, where: dict[str, Any] | None) -> list[tuple[str, dict[str, Any], float]]:
        res = query(query_embeddings=[vector.tolist()], n_results=max(1, min(m, total)), where=where,
                    include=["metadatas", "distances"])
        # A hit without its metadata is a vector another process is deleting or rewriting this moment
        # (a TypeError, a 500 from the server, about one search in 1,000 beside two writers): left out.
        return [(i, meta, 1.0 - float(d))
                for i, meta, d in zip(res["ids"][0], res["metadatas"][0], res["distances"][0], strict=False)
                if isinstance(meta, dict) and meta.get("paper_id") is not None and d is not None]

    where = dates.where() if dates is not None else None
    if dates is None or where is None:
        return run(n, None)
    fetch = dates.unfiltered_fetch(n)
    if fetch is not None:
        hits = run(fetch, None)
        kept = [h for h in hits if dates.admits(h[1])]
        if len(kept) >= n or fetch >= total:
            return kept[:n]
    return run(n, where)


def sentence_id(paper_id: str, start: int, end: int) -> str:
    """Deterministic id of one abstract sentence's vector: re-upserts overwrite, never duplicate."""
    return f"{paper_id}@{start}:{end}"


def paper_sentences(paper: Paper) -> list[tuple[int, int]]:
    """The spans whose vectors are stored: exactly those the answerers iterate over."""
    return split_sentences(paper.abstract)


class SentenceStore:
    """One vector per abstract sentence, in collection ``NAME.sentences`` beside the chunks.

    Ids are ``paper_id@start:end`` (character offsets into the abstract), metadata the paper
    id, offsets and date key; the text is the sentence alone (no title), so sentences of one
    paper differ from each other as much as they do. Written with a paper's chunk vectors and
    dropped with them; a paper without sentence vectors is answered without the feature.
    """

    def __init__(self, vectors: VectorStore) -> None:
        self.vectors = vectors
        self.name = f"{vectors.name}.sentences"
        self._collection: Any = None

    def collection(self, create: bool = False) -> Any:
        if self._collection is not None:
            return self._collection
        client = self.vectors.client
        try:
            with chroma_lock(self.vectors.lock_file, True):
                if create:
                    col = client.get_or_create_collection(
                        self.name, embedding_function=None,
                        metadata={"hnsw:space": "cosine", "hnsw:search_ef": 128, "hnsw:construction_ef": 128,
                                  "embedding_model": self.vectors.model_name})
                else:
                    col = client.get_collection(self.name, embedding_function=None)
        except Exception as exc:
            if not create and "does not exist" in str(exc).lower():
                return None
            raise self.vectors.error(exc) from None
        built_with = (col.metadata or {}).get("embedding_model")
        if built_with and built_with != self.vectors.model_name:
            raise IndexStateError(
                f"the sentence vectors in {self.vectors.where} (collection '{self.name}') were built with "
                f"embedding model '{built_with}', but the settings ask for '{self.vectors.model_name}'; "
                "rebuild with `assistant ingest --rebuild SOURCES`")
        self._collection = col
        return col

    def upsert(self, rows: Sequence[tuple[Paper, int, int]], vectors: np.ndarray, batch: int = 2000) -> None:
        """Store ``vectors[i]`` for sentence ``rows[i]`` = (paper, start, end)."""
        if not rows:
            return
        col = self.collection(create=True)
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            metas = []
            for p, a, b in part:
                meta: dict[str, Any] = {"paper_id": p.paper_id, "start": a, "end": b}
                di = date_int(p.date)
                if di is not None:
                    meta["date_int"] = di
                metas.append(meta)
            self._call(col.upsert, ids=[sentence_id(p.paper_id, a, b) for p, a, b in part],
                       embeddings=vectors[start:start + len(part)], metadatas=metas)

    def delete_papers(self, paper_ids: Sequence[str], batch: int = 500) -> None:
        col = self.collection(create=False)
        if col is None:
            return
        for start in range(0, len(paper_ids), batch):
            self._call(col.delete, where={"paper_id": {"$in": list(paper_ids[start:start + batch])}})

    def paper_counts(self) -> dict[str, int]:
        """Sentence vectors stored per paper (a backfill compares them with the spans)."""
        col = self.collection(create=False)
        if col is None:
            return {}
        counts: dict[str, int] = {}
        total = self._call(col.count)
        for offset in range(0, total, 5000):
            res = self._call(col.get, include=["metadatas"], limit=5000, offset=offset)
            for m in res["metadatas"]:
                counts[m["paper_id"]] = counts.get(m["paper_id"], 0) + 1
        return counts

    def count(self) -> int:
        col = self.collection(create=False)
        return 0 if col is None else int(self._call(col.count))

    def get(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by sentence id (ids not stored are absent): one batched fetch."""
        import numpy as np

        col = self.collection(create=False)
        if col is None or not ids:
            return {}
        res = self._call(col.get, ids=list(ids), include=["embeddings"])
        embs = res["embeddings"]
        if embs is None or len(res["ids"]) == 0:
            return {}
        mat = np.asarray(embs, dtype=np.float32)
        return {sid: mat[i] for i, sid in enumerate(res["ids"])}

    def query(self, vector: np.ndarray, n: int,
              dates: DateFilter | None = None) -> list[tuple[str, int, int, float]]:
        """(paper_id, start, end, cosine similarity) of the ``n`` nearest sentences, best first."""
        col = self.collection(create=False)
        if col is None:
            return []
        hits = nearest(lambda **kw: self._call(col.query, **kw), vector, n, self.count(), dates)
        return [(m["paper_id"], int(m["start"]), int(m["end"]), sim) for _, m, sim in hits]

    def drop(self) -> None:
        try:
            self.vectors.run(self.vectors.client.delete_collection, self.name)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise self.vectors.error(exc) from None
        self._collection = None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.vectors.run(fn, *args, **kwargs)
        except IndexStateError:
            raise
        except Exception as exc:
            # Another client's (or process's) `ingest --rebuild` dropped and re-made the collection.
            self._collection = None
            return self.vectors.retry_stale(exc, fn, lambda: self.collection(create=False), *args, **kwargs)


def _writable(directory: Path) -> bool:
    db = directory / "chroma.sqlite3"
    return os.access(directory, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


def _readonly_copy(directory: Path, why: str = "the home is read-only") -> Path:
    """Chroma cannot open its files read-only, so a read-only home (or one on a full disk) is queried
    from a private temporary copy (removed at exit). Writes never reach it: ingest needs the home's lock."""
    import atexit
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="assistant-readonly-chroma-"))
    atexit.register(shutil.rmtree, tmp, True)
    try:
        shutil.copytree(directory, tmp, dirs_exist_ok=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise IndexStateError(f"{directory}: {why} and its vectors could not be copied to "
                              f"{tmp} ({exc.strerror or exc})") from None
    return tmp


def _http_client(settings: Settings, chroma_settings: Any) -> Any:
    """A ``chromadb.HttpClient`` whose every request, those its constructor makes included
    (user identity, tenant and database checks), fails after ``index.chroma_timeout``.

    chromadb's HTTP session waits forever and the constructor talks to the server before a
    caller could bound it, so a frozen ``chroma run`` hung every command. The client class
    here bounds the session the moment the constructor attaches it, before any request.
    """
    from chromadb.api.client import Client

    seconds = settings.index.chroma_timeout

    class _BoundedClient(Client):  # type: ignore[misc]
        @property  # type: ignore[override]
        def _server(self) -> Any:
            return self.__dict__["_bounded_server"]

        @_server.setter
        def _server(self, server: Any) -> None:
            _bound_http_timeout(server, seconds)
            self.__dict__["_bounded_server"] = server

    chroma_settings.chroma_api_impl = "chromadb.api.fastapi.FastAPI"
    chroma_settings.chroma_server_host = settings.index.chroma_host
    chroma_settings.chroma_server_http_port = settings.index.chroma_port
    chroma_settings.chroma_server_ssl_enabled = False
    return _BoundedClient(settings=chroma_settings)


def _bound_http_timeout(server: Any, seconds: float) -> None:
    """chromadb's HTTP session waits forever by default; a stopped server must give an
    error, not a hang. Fails loudly if chromadb's internals moved (no silent hang)."""
    import httpx

    session = getattr(server, "_session", None)
    if not isinstance(session, httpx.Client):
        raise RuntimeError("this chromadb version keeps no httpx session on its server API; "
                           "cannot bound Chroma server requests by index.chroma_timeout")
    session.timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _timed_out(exc: BaseException) -> bool:
    """Whether a Chroma server request failed by ``index.chroma_timeout`` (frozen or overloaded)."""
    import httpx

    seen: BaseException | None = exc
    for _ in range(8):  # chromadb re-raises some as ValueError: look down the chain
        if seen is None:
            return False
        if isinstance(seen, httpx.TimeoutException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


CHROMA_LOCK_WAIT = 300.0
"""Seconds to wait for another process's Chroma call (one call, not an ingest: an upsert of one batch)."""


@contextlib.contextmanager
def chroma_lock(lock_file: Path | None, exclusive: bool) -> Iterator[None]:
    """The folder's cross-process lock around one Chroma call (nothing without a lock file, or where
    flock is missing or the file cannot be opened: a home this process cannot write). A holder stopped
    (Ctrl-Z) or hung is one line after ``CHROMA_LOCK_WAIT``, not a silent wait."""
    if lock_file is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: unordered, as before
        yield
        return
    try:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            fd = os.open(lock_file, os.O_RDONLY)  # another user's file: a shared lock still works
        except OSError:
            yield
            return
    try:
        import time

        kind = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + CHROMA_LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, kind | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise IndexStateError(f"{lock_file}: another process has held the vector store for over "
                                          f"{CHROMA_LOCK_WAIT:.0f} s; is an `assistant` process stopped (Ctrl-Z) "
                                          "or hung?") from None
                time.sleep(0.01)
            except OSError:  # (a read-only descriptor cannot take LOCK_EX on some systems): unordered
                break
        yield
    finally:
        os.close(fd)  # releases the lock


_WRITES = frozenset({"add", "upsert", "update", "delete", "delete_collection"})
"""Chroma calls that write (taken under the folder's exclusive lock)."""

TRANSIENT_CHROMA = ("Error finding id", "Nothing found on disk")
"""Embedded Chroma's errors while another process writes the same folder: a collection this process
loaded before the write, or one the writer has made but not yet flushed. Asked again, they pass."""


def forget_system(path: Path) -> None:
    """Drop this process's Chroma system of the folder if no client holds it. Chroma keeps a folder's
    system in a per-process table before starting it: one that failed to start (a damaged chroma.sqlite3)
    stayed there, and every later client of that folder in the process, after --rebuild had replaced the
    files, failed with "'RustBindingsAPI' object has no attribute 'bindings'"; one stopped since another
    process wrote must not be joined by the next store opened."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient as Shared
    except ImportError:  # pragma: no cover - another chromadb layout: nothing to forget
        return
    with contextlib.suppress(Exception), SYSTEMS_LOCK, Shared._refcount_lock:
        key = str(path)
        if Shared._identifier_to_refcount.get(key, 0) == 0:
            Shared._identifier_to_system.pop(key, None)


def _close_client(client: Any) -> None:
    """Close a Chroma client (chromadb's close runs once per client, so twice is harmless)."""
    close = getattr(client, "close", None)
    if callable(close):
        with contextlib.suppress(Exception), SYSTEMS_LOCK:
            close()


SYSTEMS_LOCK = threading.RLock()
"""Held while a Chroma client is made or closed. chromadb adds a folder's system to its per-process table,
then counts the client; a close in another thread between the two (the refcount at 0) stopped and dropped
the system the new client was joining: "'RustBindingsAPI' object has no attribute 'bindings'", or a
KeyError naming the folder, when a question reopened the store while the server's writer opened its own."""

_SEEN: dict[str, tuple[Any, ...] | None] = {}
"""Per folder: Chroma's state (``chroma_state``) the running Chroma system of this process is known to
hold, read before the system started or after this process's last write under the ingest lock."""


def chroma_state(path: Path) -> tuple[Any, ...] | None:
    """What changes whenever any process writes the Chroma folder: the last operation in Chroma's write
    log (it keeps the last one when it trims the log) and the segments (a collection dropped or made).
    None when it cannot be read."""
    import sqlite3

    db_path = path / "chroma.sqlite3"
    if not db_path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            seq = db.execute("SELECT max(seq_id) FROM embeddings_queue").fetchone()[0]
            segments = tuple(r[0] for r in db.execute("SELECT id FROM segments ORDER BY id"))
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return (seq, segments)


def system_running(path: Path) -> bool:
    """Does this process run a Chroma system for the folder (one that clients of it share)?"""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient as Shared
    except ImportError:  # pragma: no cover
        return False
    return str(path) in Shared._identifier_to_system


def note_chroma_state(path: Path, starting: bool = False) -> None:
    """Record the folder's state as what this process's Chroma system holds: just before a system is started
    (``starting``; nothing when one runs already), or after this process wrote under the ingest lock."""
    if starting == system_running(path):
        return
    _SEEN[str(path)] = chroma_state(path)


def written_elsewhere(path: Path) -> bool:
    """Has another process written the folder since this process's running Chroma system loaded it?

    Embedded Chroma keeps a collection's HNSW index in memory and writes it out only every
    ``hnsw:sync_threshold`` (1000) vectors; after each write it reads its log from the index's watermark in
    chroma.sqlite3, not from what its own copy holds, and trims the log. A system loaded before another
    process wrote (and trimmed) applied its next writes to its old copy and saved that over the other
    process's index: those vectors were lost from the HNSW while chroma.sqlite3 kept their rows, and the
    files, saved in place by two processes, later crashed Chroma (a segmentation fault in count)."""
    if not system_running(path):
        return False
    seen = _SEEN.get(str(path))
    return seen is None or seen != chroma_state(path)


_DAMAGED = ("malformed", "file is not a database", "file is encrypted")
"""SQLite's words for a file it cannot read as a database (Chroma's own chroma.sqlite3)."""


def is_damaged(message: str) -> bool:
    return any(m in message.lower() for m in _DAMAGED)


def _chroma_error(settings: Settings, path: Path, exc: Exception) -> str:
    msg = " ".join(str(exc).split())[:300] or type(exc).__name__
    if settings.server_mode and _timed_out(exc):
        return (f"Chroma server at {settings.index.chroma_host}:{settings.index.chroma_port} did not answer within "
                f"{settings.index.chroma_timeout:g} s (index.chroma_timeout): is `chroma run` frozen or overloaded?")
    if settings.server_mode:
        return (f"Chroma server at {settings.index.chroma_host}:{settings.index.chroma_port} failed: {msg} "
                "(is `chroma run` up? check CHROMA_HOST/CHROMA_PORT)")
    low = msg.lower()
    if is_damaged(low):  # "database disk image is malformed" is no disk problem, nearly full disk or not
        return (f"{path}: the vector store is damaged ({msg}); rebuild the index with "
                "`assistant ingest --rebuild SOURCES` (it removes the damaged store)")
    full = disk_full_message(path, exc)
    if full:
        return full
    if any(m.lower() in low for m in TRANSIENT_CHROMA):
        return f"{path}: Chroma failed: {msg} (another process was writing the index; ask again)"
    if "readonly" in low or "read-only" in low or "permission" in low or "disk" in low or "space" in low:
        return f"{path}: cannot write the index ({msg}); check ASSISTANT_HOME is writable and the disk has space"
    return f"{path}: Chroma failed: {msg}"
