"""The catalogue on a Chroma server: in server mode the server, not a client's home,
is the source of truth for papers and chunk spans, so every client sees every paper.

Two small collections sit beside the chunk collection ``NAME``:

- ``NAME.papers``: one record per paper (id = paper id); its metadata holds the paper
  JSON, the content hash, the date key and the paper's chunk spans, so a record is
  always consistent with itself whichever client wrote it last.
- ``NAME.meta``: index metadata (embedding model, schema) and the **generation**, a
  random token set after every change of the papers. Clients cache BM25 under their
  home tagged with the generation they read *before* reading the papers, so any write
  that lands later changes the token and invalidates the cache.

Chroma records need an embedding; these carry a constant one-dimensional one.

Across clients (the per-home ingest lock does not span machines): upserts by id are
idempotent, so concurrent ingests end with the union; write order is the embedded one
(vectors, then paper records, then the generation), so a reader never sees a paper
without its vectors. Not guaranteed: two clients changing the *same* paper at the same
moment end with the record of whichever wrote last; ``--prune`` and ``--rebuild`` act
on the shared index, i.e. for every client.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ..errors import IndexStateError
from ..records import Chunk, Paper
from .storage import date_int, scratch_folder
from .vectors import VectorStore

_PAGE = 1000
_ID_PAGE = 20_000
_DUMMY = [0.0]


class _NoTransaction:
    """Server writes are immediate; ingest's ``cat.db.commit()`` calls have nothing to do."""

    def commit(self) -> None:
        pass


class ServerCatalogue:
    """Same interface as ``Catalogue``, backed by collections on the Chroma server."""

    readonly = False

    def __init__(self, vectors: VectorStore) -> None:
        self.vectors = vectors
        name = vectors.name
        self.papers_name = f"{name}.papers"
        self.meta_name = f"{name}.meta"
        self.path = vectors.where
        self.db = _NoTransaction()
        self._cols: dict[str, Any] = {}

    # -- collections ------------------------------------------------------------
    def _col(self, name: str, create: bool = False) -> Any:
        """The collection, or None when it does not exist and ``create`` is False
        (reads never create anything on the server)."""
        if name in self._cols:
            return self._cols[name]
        client = self.vectors.client
        if create:
            col = self.vectors._call(client.get_or_create_collection, name, embedding_function=None)
        else:
            try:
                col = client.get_collection(name, embedding_function=None)
            except Exception as exc:
                if "does not exist" in str(exc).lower():
                    return None
                raise self.vectors.error(exc) from None  # not asked again: a frozen server costs one timeout
        self._cols[name] = col
        return col

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IndexStateError:
            raise
        except Exception as exc:
            name = getattr(getattr(fn, "__self__", None), "name", None)
            if name not in (self.papers_name, self.meta_name):
                raise self.vectors.error(exc) from None
            # Another client's `ingest --rebuild` dropped and re-made the collection: find it again.
            self._cols.pop(name, None)
            return self.vectors.retry_stale(exc, fn, lambda: self._col(name), *args, **kwargs)

    # -- meta ---------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        if key == "writing":
            # Another client's batch in flight (vectors written, papers not yet) would look like
            # orphans; they are invisible to queries and overwritten when re-ingested, so the
            # killed-ingest clean-up of embedded mode is not run against a shared server.
            return None
        col = self._col(self.meta_name)
        if col is None:
            return None
        res = self._call(col.get, ids=[key], include=["metadatas"])
        return str(res["metadatas"][0]["value"]) if res["ids"] else None

    def _foreign(self) -> bool:
        """A chunk collection of this name that this tool did not make: no sentences or papers beside it
        and no embedding model recorded on it (a home of the layout before ``.meta`` has those)."""
        base = self._col(self.vectors.name)
        if base is None or (base.metadata or {}).get("embedding_model"):
            return False
        return self._col(self.papers_name) is None and self._col(f"{self.vectors.name}.sentences") is None

    def set_meta(self, key: str, value: str) -> None:
        if key == "writing":
            return
        if self._col(self.meta_name) is None and self._foreign():
            raise IndexStateError(f"{self.path}: the Chroma collection '{self.vectors.name}' was not made by "
                                  "paper-assistant (it has no .meta); it is left alone - choose another collection "
                                  "name")
        col = self._col(self.meta_name, create=True)
        self._call(col.upsert, ids=[key], embeddings=[_DUMMY], metadatas=[{"value": value}])

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def _bump(self) -> None:
        """A new random token (never the old one): the last step of every write."""
        old = self.generation
        new = old
        while new in (old, 0):
            new = secrets.randbits(62)
        self.set_meta("generation", str(new))

    def bump_generation(self) -> None:
        """A new generation with no paper changed (a sentence-vector backfill): clients reload."""
        self._bump()

    # -- reading ------------------------------------------------------------------
    def _records(self, ids: Sequence[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(paper id, metadata) of the given papers, or of all papers page by page."""
        col = self._col(self.papers_name)
        if col is None:
            return
        if ids is not None:
            ids = list(dict.fromkeys(ids))
            for start in range(0, len(ids), _PAGE):
                res = self._call(col.get, ids=list(ids[start:start + _PAGE]), include=["metadatas"])
                yield from zip(res["ids"], res["metadatas"], strict=True)
            return
        # Ids first, then records by id: pages by offset could skip records another client deletes meanwhile.
        all_ids = self._call(col.get, include=[])["ids"]
        yield from self._records(all_ids)

    def _pages(self, size: int = _PAGE) -> Iterator[tuple[list[str], list[dict[str, Any]]]]:
        """All records, ``size`` at a time by offset: memory stays one page whatever the index
        size. A write by another client meanwhile can shift a page; it also changes the
        generation, so what a scan fed (counts, BM25) is redone on next use."""
        col = self._col(self.papers_name)
        if col is None:
            return
        offset = 0
        while True:
            res = self._call(col.get, include=["metadatas"], limit=size, offset=offset)
            if not res["ids"]:
                return
            yield list(res["ids"]), list(res["metadatas"])
            offset += len(res["ids"])

    def hashes(self) -> dict[str, str]:
        return {pid: str(meta["content_hash"]) for pid, meta in self._records()}

    def hashes_of(self, paper_ids: Sequence[str]) -> dict[str, str]:
        """Content hash of those of ``paper_ids`` on the server (lookups by id, a page at a time)."""
        return {pid: str(meta["content_hash"]) for pid, meta in self._records(list(paper_ids))}

    def is_empty(self) -> bool:
        col = self._col(self.papers_name)
        return col is None or int(self._call(col.count)) == 0

    def paper_count(self) -> int:
        col = self._col(self.papers_name)
        return 0 if col is None else int(self._call(col.count))

    def iter_id_pages(self, size: int = _PAGE) -> Iterator[list[str]]:
        for ids, _ in self._pages(size):
            yield ids

    def count(self) -> tuple[int, int]:
        """Papers and chunks in two count requests (the chunk vectors are the chunks): summing the
        records' chunk counts would page through every record, past 0.8 GB and minutes at 1M papers."""
        return self.paper_count(), self.vectors.count()

    def get(self, paper_id: str) -> Paper | None:
        return self.get_many([paper_id]).get(paper_id)

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        return {pid: Paper.from_dict(json.loads(m["data"])) for pid, m in self._records(list(paper_ids))}

    def with_title(self, title: str) -> list[Paper]:
        """Papers of exactly this title (the records carry their first 500 characters)."""
        col = self._col(self.papers_name)
        if col is None:
            return []
        res = self._call(col.get, where={"title": title[:500]}, include=["metadatas"])
        papers = [Paper.from_dict(json.loads(m["data"])) for m in res["metadatas"] or []]
        return sorted((p for p in papers if p.title == title), key=lambda p: p.paper_id)

    def iter_papers(self, order: str | None = "title") -> Iterator[Paper]:
        """``order=None`` (the BM25 build): by id as the SQLite catalogue streams them, so BM25 breaks
        ties alike in both modes, holding one page of records (the
        ids are sorted on disk); another order reads all papers first."""
        if order is None:
            for ids in self._sorted_id_pages():
                page = sorted(self._records(ids))  # the server answers in its own order
                for _, m in page:
                    yield Paper.from_dict(json.loads(m["data"]))
            return
        papers = [Paper.from_dict(json.loads(m["data"])) for _, m in self._records()]
        if order == "title":
            papers.sort(key=lambda p: (p.title.casefold(), p.paper_id))
        elif order == "date":
            # As the SQLite catalogue: newest first, undated last.
            papers.sort(key=lambda p: (date_int(p.date) is None, -(date_int(p.date) or 0), p.paper_id))
        elif order == "id":
            papers.sort(key=lambda p: p.paper_id)
        else:
            raise KeyError(order)
        yield from papers

    def _sorted_id_pages(self) -> Iterator[list[str]]:
        """Every paper id in id order (Python's order: SQLite compares UTF-8 bytes, i.e. code points),
        ``_PAGE`` at a time, sorted in a temporary SQLite file in the scratch folder: the list of a
        million ids and the response carrying them took ~150 MB of an ingesting client. Ids are listed
        by offset; a write by another client meanwhile changes the generation, so the BM25 index this
        feeds is rebuilt on next use."""
        import sqlite3
        import tempfile
        from pathlib import Path

        col = self._col(self.papers_name)
        if col is None:
            return
        try:
            tmp = tempfile.TemporaryDirectory(prefix="ids-", dir=scratch_folder(self.vectors.settings, "ids"))
        except OSError:  # a cache folder that cannot be written: the system's temporary folder
            tmp = tempfile.TemporaryDirectory(prefix="assistant-ids-")
        with tmp as folder:
            db = sqlite3.connect(Path(folder) / "ids.sqlite")
            try:
                db.execute("PRAGMA journal_mode = OFF")
                db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")
                offset = 0
                while ids := self._call(col.get, include=[], limit=_ID_PAGE, offset=offset)["ids"]:
                    db.executemany("INSERT OR IGNORE INTO ids VALUES (?)", ((i,) for i in ids))
                    offset += len(ids)
                cur = db.execute("SELECT id FROM ids ORDER BY id")
                while rows := cur.fetchmany(_PAGE):
                    yield [r[0] for r in rows]
            finally:
                db.close()

    def chunk_spans(self, paper_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int, int]]]:
        out: dict[str, list[tuple[str, int, int, int]]] = {}
        for pid, meta in self._records(list(paper_ids)):
            spans = [(str(c), int(i), int(s), int(e)) for c, i, s, e in json.loads(meta["spans"])]
            if spans:
                out[pid] = sorted(spans, key=lambda t: t[1])
        return out

    def known_ids(self, paper_ids: Iterable[str]) -> set[str]:
        col = self._col(self.papers_name)
        if col is None:
            return set()
        ids = list(paper_ids)
        found: set[str] = set()
        for start in range(0, len(ids), _PAGE):
            found.update(self._call(col.get, ids=ids[start:start + _PAGE], include=[])["ids"])
        return found

    # -- writing ------------------------------------------------------------------
    def commit_papers(self, papers: Sequence[Paper], chunks: Sequence[Chunk]) -> None:
        """Upsert these papers with their chunk spans, then set a new generation."""
        spans: dict[str, list[tuple[str, int, int, int]]] = {p.paper_id: [] for p in papers}
        for c in chunks:
            spans[c.paper_id].append((c.chunk_id, c.index, c.start, c.end))
        self._upsert([(p, spans[p.paper_id]) for p in papers])
        self._bump()

    def update_data(self, papers: Sequence[Paper]) -> None:
        """Rewrite records whose content hash (so chunks, vectors) is unchanged. The generation
        changes too, so other clients' caches (BM25 date keys, summaries) follow."""
        old = {pid: json.loads(m["spans"]) for pid, m in self._records([p.paper_id for p in papers])}
        rows = [(p, [tuple(s) for s in old[p.paper_id]]) for p in papers if p.paper_id in old]
        if rows:
            self._upsert(rows)
            self._bump()

    def _upsert(self, rows: Sequence[tuple[Paper, Sequence[tuple[Any, ...]]]]) -> None:
        if not rows:
            return
        col = self._col(self.papers_name, create=True)
        now = time.time()
        for start in range(0, len(rows), _PAGE):
            part = rows[start:start + _PAGE]
            metas = []
            for p, spans in part:
                meta: dict[str, Any] = {"content_hash": p.content_hash, "title": p.title[:500],
                                        "data": json.dumps(p.to_dict(), ensure_ascii=False),
                                        "spans": json.dumps([list(s) for s in spans]), "n_chunks": len(spans),
                                        "ingested_at": now}
                di = date_int(p.date)
                if di is not None:
                    meta["date_int"] = di
                metas.append(meta)
            self._call(col.upsert, ids=[p.paper_id for p, _ in part], embeddings=[_DUMMY] * len(part),
                       metadatas=metas)

    def delete_papers(self, paper_ids: Sequence[str]) -> None:
        col = self._col(self.papers_name)
        if col is not None:
            for start in range(0, len(paper_ids), _PAGE):
                self._call(col.delete, ids=list(paper_ids[start:start + _PAGE]))
        self._bump()

    def drop(self) -> None:
        """Remove the shared papers and metadata (``ingest --rebuild``): for every client.
        The generation is replaced, not removed, so no client's cache can match it again."""
        try:
            self.vectors.client.delete_collection(self.papers_name)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise self.vectors.error(exc) from None
        self._cols.pop(self.papers_name, None)
        meta = self._col(self.meta_name)
        if meta is not None:
            self._call(meta.delete, ids=["embedding_model", "schema"])
        self._bump()

    def close(self) -> None:
        self._cols.clear()
