"""The SQLite catalogue: the source of truth for papers, chunk offsets and index metadata.

Write order makes crashes harmless: vectors are upserted first, the catalogue row
is committed last, and readers ignore vectors whose paper the catalogue does not
know. A re-run sees such papers as new, deletes their vectors by paper id and
writes them again, so nothing is duplicated or lost.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ..errors import IndexStateError
from ..records import Chunk, Paper
from .storage import date_int, writable_error

SCHEMA_VERSION = 1


_SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
    CREATE TABLE IF NOT EXISTS papers (
        paper_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, title TEXT NOT NULL,
        date_int INTEGER, source TEXT, data TEXT NOT NULL, ingested_at REAL);
    CREATE TABLE IF NOT EXISTS chunks (
        chunk_id TEXT PRIMARY KEY, paper_id TEXT NOT NULL, idx INTEGER NOT NULL,
        start INTEGER NOT NULL, end INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS chunks_paper ON chunks(paper_id);
"""


def _create_schema(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
    db.commit()


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        db = sqlite3.connect(":memory:", check_same_thread=False)
        _create_schema(db)
        return db
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    try:
        db.execute("SELECT COUNT(*) FROM meta").fetchone()
        return db
    except sqlite3.OperationalError:
        # A WAL database in a read-only directory cannot get its -shm file: read it as immutable
        # (nobody can be writing it, the directory is read-only).
        db.close()
        db = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
        db.execute("SELECT COUNT(*) FROM meta").fetchone()
        return db


class UnreadableCatalogue(IndexStateError):
    """The catalogue file is not a database SQLite can read: only ``--rebuild`` can help."""


class Catalogue:
    """Papers, chunks and index metadata in one SQLite file (transactional, crash-safe)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        """``readonly`` opens an existing file without writing a byte (queries on a read-only
        home work), or an empty in-memory catalogue when there is no file (nothing created)."""
        self.path = path
        self.readonly = readonly
        self.in_memory = readonly and not path.is_file()
        """An empty stand-in for a catalogue that did not exist yet (reopened once it does)."""
        try:
            if readonly:
                self.db = _open_readonly(path)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            _create_schema(self.db)
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a file emptied (truncated to 0 bytes) or not ours: not a write problem
                raise UnreadableCatalogue(f"{path}: the index catalogue holds no papers table (emptied or "
                                          "damaged); rebuild the index with `assistant ingest --rebuild SOURCES`"
                                          ) from None
            raise writable_error(path, exc) from None
        except OSError as exc:
            raise writable_error(path, exc) from None
        except sqlite3.DatabaseError as exc:  # not SQLite at all, or a damaged file
            raise UnreadableCatalogue(f"{path}: cannot read the index catalogue ({exc}); rebuild the index "
                                      "with `assistant ingest --rebuild SOURCES`") from None

    # -- meta ---------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- papers -------------------------------------------------------------
    def hashes(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT paper_id, content_hash FROM papers").fetchall())

    def hashes_of(self, paper_ids: Sequence[str]) -> dict[str, str]:
        """Content hash of those of ``paper_ids`` that are indexed (one indexed lookup per 500):
        ingest compares a batch at a time, never the whole catalogue."""
        out: dict[str, str] = {}
        for start in range(0, len(paper_ids), 500):
            part = list(paper_ids[start:start + 500])
            q = "SELECT paper_id, content_hash FROM papers WHERE paper_id IN ({})".format(",".join("?" * len(part)))
            out.update(self.db.execute(q, part).fetchall())
        return out

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM papers LIMIT 1").fetchone() is None

    def paper_count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])

    def iter_id_pages(self, size: int = 5000) -> Iterator[list[str]]:
        """Every paper id, ``size`` at a time in id order (``--prune`` compares them page by page)."""
        last = ""
        while True:
            rows = self.db.execute("SELECT paper_id FROM papers WHERE paper_id > ? ORDER BY paper_id LIMIT ?",
                                   (last, size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [r[0] for r in rows]

    def count(self) -> tuple[int, int]:
        papers = self.db.execute("SELECT COUNT(*) FROM papers").fetchone()[0]
        chunks = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        return int(papers), int(chunks)

    def commit_papers(self, papers: Sequence[Paper], chunks: Sequence[Chunk]) -> None:
        """Replace these papers and their chunks in one transaction."""
        ids = [(p.paper_id,) for p in papers]
        now = time.time()
        try:
            with self.db:
                self.db.executemany("DELETE FROM chunks WHERE paper_id=?", ids)
                self.db.executemany(
                    "INSERT OR REPLACE INTO papers VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(p.paper_id, p.content_hash, p.title, date_int(p.date), p.source,
                      json.dumps(p.to_dict(), ensure_ascii=False), now) for p in papers])
                self.db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?)",
                                    [(c.chunk_id, c.paper_id, c.index, c.start, c.end) for c in chunks])
                self._next_generation()
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def update_data(self, papers: Sequence[Paper]) -> None:
        """Rewrite stored records whose content hash (so chunks, vectors, BM25) is unchanged."""
        try:
            with self.db:
                self.db.executemany("UPDATE papers SET source=?, data=? WHERE paper_id=?",
                                    [(p.source, json.dumps(p.to_dict(), ensure_ascii=False), p.paper_id)
                                     for p in papers])
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def delete_papers(self, paper_ids: Sequence[str]) -> None:
        ids = [(p,) for p in paper_ids]
        try:
            with self.db:
                self.db.executemany("DELETE FROM chunks WHERE paper_id=?", ids)
                self.db.executemany("DELETE FROM papers WHERE paper_id=?", ids)
                self._next_generation()
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def _next_generation(self) -> None:
        """Inside a write's transaction: the generation that tells readers the index changed."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(self.generation + 1),))

    def bump_generation(self) -> None:
        """A new generation with no paper changed: the stored vectors changed (a sentence-vector
        backfill), and a process that has the index open reloads what it caches per generation."""
        try:
            with self.db:
                self._next_generation()
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def clear(self) -> None:
        """Forget every paper and the index metadata (``ingest --rebuild``) in this same file, under
        a new generation: a process holding the index open sees the change and reloads, where a
        replaced file would keep it reading the old one."""
        try:
            with self.db:
                # Python's sqlite3 opens no transaction before DROP/CREATE: begin one, or a failure
                # midway would leave a catalogue without tables (and the generation lost).
                self.db.execute("BEGIN IMMEDIATE")
                new = self.generation + 1
                # Dropped and made anew (not emptied): a rebuild also takes a changed schema.
                for table in ("chunks", "papers", "meta"):
                    self.db.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT INTO meta VALUES ('generation', ?)", (str(new),))
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None
        except sqlite3.DatabaseError as exc:  # opened, but a damaged page turned up
            raise UnreadableCatalogue(f"{self.path}: cannot read the index catalogue ({exc})") from None

    def get(self, paper_id: str) -> Paper | None:
        row = self.db.execute("SELECT data FROM papers WHERE paper_id=?", (paper_id,)).fetchone()
        return Paper.from_dict(json.loads(row[0])) if row else None

    def with_title(self, title: str) -> list[Paper]:
        """Papers of exactly this title. A scan (titles are not indexed): ingest asks only when two
        papers' titles clash, which is rare."""
        return [Paper.from_dict(json.loads(data))
                for (data,) in self.db.execute("SELECT data FROM papers WHERE title=? ORDER BY paper_id", (title,))]

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        out: dict[str, Paper] = {}
        for start in range(0, len(paper_ids), 500):
            part = list(paper_ids[start:start + 500])
            q = "SELECT paper_id, data FROM papers WHERE paper_id IN ({})".format(",".join("?" * len(part)))
            for pid, data in self.db.execute(q, part):
                out[pid] = Paper.from_dict(json.loads(data))
        return out

    def iter_papers(self, order: str | None = "title") -> Iterator[Paper]:
        """Streamed from a cursor. ``order=None``: any order the store streams cheaply (here by id)."""
        col = {"title": "title COLLATE NOCASE", "date": "date_int DESC", "id": "paper_id", None: "paper_id"}[order]
        for (data,) in self.db.execute(f"SELECT data FROM papers ORDER BY {col}"):
            yield Paper.from_dict(json.loads(data))

    def chunk_spans(self, paper_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int, int]]]:
        out: dict[str, list[tuple[str, int, int, int]]] = {}
        for start in range(0, len(paper_ids), 500):
            part = list(paper_ids[start:start + 500])
            q = ("SELECT paper_id, chunk_id, idx, start, end FROM chunks WHERE paper_id IN ({}) "
                 "ORDER BY paper_id, idx").format(",".join("?" * len(part)))
            for pid, cid, idx, s, e in self.db.execute(q, part):
                out.setdefault(pid, []).append((cid, idx, s, e))
        return out

    def known_ids(self, paper_ids: Iterable[str]) -> set[str]:
        ids = list(paper_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            part = ids[start:start + 500]
            q = "SELECT paper_id FROM papers WHERE paper_id IN ({})".format(",".join("?" * len(part)))
            found.update(r[0] for r in self.db.execute(q, part))
        return found

    def close(self) -> None:
        self.db.close()
