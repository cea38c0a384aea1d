"""Where the index lives: a SQLite catalogue (source of truth for papers and chunks),
Chroma for vectors (embedded or server) and a bm25s lexical index beside them.

Write order makes crashes harmless: vectors are upserted first, the catalogue row
is committed last, and readers ignore vectors whose paper the catalogue does not
know. A re-run sees such papers as new, deletes their vectors by paper id and
writes them again, so nothing is duplicated or lost.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IndexStateError
from ..records import Chunk, Paper
from ..runtime import ensure_offline
from ..text import TOKENIZER_VERSION, bm25_idf, content_tokens

if TYPE_CHECKING:
    import numpy as np

    from ..settings import Settings

SCHEMA_VERSION = 1


def date_int(date: str | None) -> int | None:
    """YYYYMMDD as an int (missing parts = 0) so Chroma can range-filter dates."""
    if not date or not date[:4].isdigit():
        return None
    parts = (date.split("-") + ["0", "0"])[:3]
    try:
        return int(parts[0]) * 10000 + int(parts[1] or 0) * 100 + int(parts[2] or 0)
    except ValueError:
        return None


LOW_DISK_BYTES = 16 * 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXT = ("disk is full", "no space left", "disk quota")
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def disk_full_message(path: Path, exc: BaseException | None = None) -> str | None:
    """A plain 'disk full' sentence when ``exc`` says so, or (Chroma reports a full disk as
    compaction or I/O failures) when the filesystem holding ``path`` is nearly out of space."""
    said_full = exc is not None and (getattr(exc, "errno", None) in _FULL_ERRNOS
                                     or any(t in str(exc).lower() for t in _FULL_TEXT))
    if exc is not None and getattr(exc, "errno", None) in _DENIED_ERRNOS:
        return None
    try:
        probe = Path(path)
        while not os.path.exists(probe) and probe != probe.parent:
            probe = probe.parent
        free: int | None = shutil.disk_usage(probe).free
    except OSError:
        free = None
    if not said_full and (free is None or free >= LOW_DISK_BYTES):
        return None
    left = f" ({free // 1024} KB free)" if free is not None else ""
    return (f"{path}: no space left on the disk{left}; free some space and run the command again - "
            "papers indexed before are kept and an interrupted ingest resumes")


def writable_error(path: Path, exc: Exception) -> IndexStateError:
    full = disk_full_message(path, exc)
    if full:
        return IndexStateError(full)
    reason = getattr(exc, "strerror", None) or str(exc)
    return IndexStateError(f"{path}: cannot write the index ({reason}); check ASSISTANT_HOME "
                           "is writable and the disk has space")


class Catalogue:
    """Papers, chunks and index metadata in one SQLite file (transactional, crash-safe)."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        try:
            if readonly:
                self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                          check_same_thread=False)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.executescript("""
                    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
                    CREATE TABLE IF NOT EXISTS papers (
                        paper_id TEXT PRIMARY KEY, content_hash TEXT NOT NULL, title TEXT NOT NULL,
                        date_int INTEGER, source TEXT, data TEXT NOT NULL, ingested_at REAL);
                    CREATE TABLE IF NOT EXISTS chunks (
                        chunk_id TEXT PRIMARY KEY, paper_id TEXT NOT NULL, idx INTEGER NOT NULL,
                        start INTEGER NOT NULL, end INTEGER NOT NULL);
                    CREATE INDEX IF NOT EXISTS chunks_paper ON chunks(paper_id);
                """)
                self.db.commit()
        except (sqlite3.OperationalError, OSError) as exc:
            raise writable_error(path, exc) from None

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
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)",
                                (str(self.generation + 1),))
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def delete_papers(self, paper_ids: Sequence[str]) -> None:
        ids = [(p,) for p in paper_ids]
        try:
            with self.db:
                self.db.executemany("DELETE FROM chunks WHERE paper_id=?", ids)
                self.db.executemany("DELETE FROM papers WHERE paper_id=?", ids)
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)",
                                (str(self.generation + 1),))
        except sqlite3.OperationalError as exc:
            raise writable_error(self.path, exc) from None

    def get(self, paper_id: str) -> Paper | None:
        row = self.db.execute("SELECT data FROM papers WHERE paper_id=?", (paper_id,)).fetchone()
        return Paper.from_dict(json.loads(row[0])) if row else None

    def get_many(self, paper_ids: Sequence[str]) -> dict[str, Paper]:
        out: dict[str, Paper] = {}
        for start in range(0, len(paper_ids), 500):
            part = list(paper_ids[start:start + 500])
            q = "SELECT paper_id, data FROM papers WHERE paper_id IN ({})".format(",".join("?" * len(part)))
            for pid, data in self.db.execute(q, part):
                out[pid] = Paper.from_dict(json.loads(data))
        return out

    def iter_papers(self, order: str = "title") -> Iterator[Paper]:
        col = {"title": "title COLLATE NOCASE", "date": "date_int DESC", "id": "paper_id"}[order]
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


class VectorStore:
    """Chroma collection of chunk vectors; PersistentClient or HttpClient, same code path."""

    def __init__(self, settings: Settings, persist_dir: Path, model_name: str) -> None:
        ensure_offline()
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        self.settings = settings
        self.model_name = model_name
        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        try:
            if settings.server_mode:
                self.where = f"http://{settings.index.chroma_host}:{settings.index.chroma_port}"
                self.client = chromadb.HttpClient(host=settings.index.chroma_host, port=settings.index.chroma_port,
                                                  settings=chroma_settings)
                _bound_http_timeout(self.client, settings.index.chroma_timeout)
            else:
                self.where = str(persist_dir)
                persist_dir.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(persist_dir), settings=chroma_settings)
        except Exception as exc:  # chromadb raises many types; the user needs one line
            raise IndexStateError(_chroma_error(settings, persist_dir, exc)) from None
        self._collection: Any = None

    def collection(self, create: bool = False) -> Any:
        if self._collection is not None:
            return self._collection
        name = self.settings.index.collection
        try:
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
        col = self.collection(create=False)
        if col is None:
            return
        for start in range(0, len(paper_ids), batch):
            part = list(paper_ids[start:start + batch])
            self._call(col.delete, where={"paper_id": {"$in": part}})

    def all_paper_ids(self) -> set[str]:
        col = self.collection(create=False)
        if col is None:
            return set()
        ids: set[str] = set()
        total = self._call(col.count)
        for offset in range(0, total, 5000):
            res = self._call(col.get, include=["metadatas"], limit=5000, offset=offset)
            ids.update(m["paper_id"] for m in res["metadatas"])
        return ids

    def count(self) -> int:
        col = self.collection(create=False)
        return 0 if col is None else int(self._call(col.count))

    def query(self, vector: np.ndarray, n: int, where: dict[str, Any] | None = None) -> list[tuple[str, str, float]]:
        """(chunk_id, paper_id, cosine similarity) best first."""
        col = self.collection(create=False)
        if col is None:
            return []
        n = min(n, max(1, self.count()))
        res = self._call(col.query, query_embeddings=[vector.tolist()], n_results=n, where=where or None,
                         include=["metadatas", "distances"])
        out = []
        for cid, meta, dist in zip(res["ids"][0], res["metadatas"][0], res["distances"][0], strict=False):
            out.append((cid, meta["paper_id"], 1.0 - float(dist)))
        return out

    def drop(self) -> None:
        try:
            self.client.delete_collection(self.settings.index.collection)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise IndexStateError(_chroma_error(self.settings, Path(self.where), exc)) from None
        self._collection = None

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IndexStateError:
            raise
        except Exception as exc:
            raise IndexStateError(_chroma_error(self.settings, Path(self.where), exc)) from None


def _bound_http_timeout(client: Any, seconds: float) -> None:
    """chromadb's HTTP client waits forever by default; a stopped server must give an
    error, not a hang."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:
        session.timeout = httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _chroma_error(settings: Settings, path: Path, exc: Exception) -> str:
    msg = " ".join(str(exc).split())[:300] or type(exc).__name__
    if settings.server_mode:
        return (f"Chroma server at {settings.index.chroma_host}:{settings.index.chroma_port} failed: {msg} "
                "(is `chroma run` up? check CHROMA_HOST/CHROMA_PORT)")
    full = disk_full_message(path, exc)
    if full:
        return full
    low = msg.lower()
    if "readonly" in low or "read-only" in low or "permission" in low or "disk" in low or "space" in low:
        return f"{path}: cannot write the index ({msg}); check ASSISTANT_HOME is writable and the disk has space"
    return f"{path}: Chroma failed: {msg}"


@dataclass
class LexicalHit:
    paper_id: str
    score: float


class LexicalIndex:
    """bm25s over title + abstract of each paper, stemmed, stopwords removed.

    Built once per ingest from the catalogue and saved atomically with the catalogue
    generation it reflects; a stale or missing index is rebuilt on open.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.retriever: Any = None
        self.paper_ids: list[str] = []
        self.date_ints: Any = None
        self._vocab: dict[str, int] = {}
        self.generation = -1

    @staticmethod
    def document_text(paper: Paper) -> str:
        return f"{paper.title}. {paper.title}. {paper.abstract}"

    def build(self, papers: Iterable[Paper], generation: int, k1: float = 1.2, b: float = 0.75) -> None:
        import bm25s
        import numpy as np

        ids: list[str] = []
        dates: list[int] = []
        corpus_tokens: list[list[str]] = []
        for p in papers:
            ids.append(p.paper_id)
            dates.append(date_int(p.date) or 0)
            corpus_tokens.append(content_tokens(self.document_text(p)) or ["_empty_"])
        retriever = bm25s.BM25(k1=k1, b=b)
        if corpus_tokens:
            retriever.index(corpus_tokens, show_progress=False)
        self.retriever = retriever if corpus_tokens else None
        self.paper_ids = ids
        self.date_ints = np.asarray(dates, dtype=np.int64)
        self._vocab = dict(retriever.vocab_dict) if corpus_tokens else {}
        self.generation = generation

    def save(self) -> None:
        import numpy as np

        tmp = self.directory.with_name(self.directory.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            if self.retriever is not None:
                self.retriever.save(str(tmp), show_progress=False)
            np.save(tmp / "date_ints.npy", self.date_ints)
            (tmp / "ids.json").write_text(json.dumps({"generation": self.generation, "ids": self.paper_ids,
                                                      "tokenizer": TOKENIZER_VERSION}))
            old = self.directory.with_name(self.directory.name + f".old{os.getpid()}")
            if self.directory.exists():
                self.directory.rename(old)
            tmp.rename(self.directory)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise writable_error(self.directory, exc) from None

    def load(self) -> bool:
        """Load from disk; False when missing or unreadable (caller rebuilds)."""
        import bm25s
        import numpy as np

        meta_path = self.directory / "ids.json"
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("tokenizer") != TOKENIZER_VERSION:
                return False
            self.paper_ids = list(meta["ids"])
            self.generation = int(meta["generation"])
            self.date_ints = np.load(self.directory / "date_ints.npy")
            if self.paper_ids:
                self.retriever = bm25s.BM25.load(str(self.directory), mmap=False, show_progress=False)
                self._vocab = dict(self.retriever.vocab_dict)
            else:
                self.retriever = None
            return True
        except (OSError, ValueError, KeyError):
            return False

    def idf(self, tokens: list[str]) -> dict[str, float]:
        """BM25 idf of stemmed tokens over the whole index (unknown tokens get the max idf)."""
        n_docs = len(self.paper_ids) or 1
        out: dict[str, float] = {}
        indptr = self.retriever.scores["indptr"] if self.retriever is not None else None
        for t in tokens:
            col = self._vocab.get(t)
            df = int(indptr[col + 1] - indptr[col]) if (indptr is not None and col is not None) else 0
            out[t] = bm25_idf(n_docs, df)
        return out

    def query(self, text: str, n: int, date_range: tuple[int | None, int | None] = (None, None)) -> list[LexicalHit]:
        import numpy as np

        if self.retriever is None:
            return []
        toks = [t for t in content_tokens(text) if t in self._vocab]
        if not toks:
            return []
        mask = None
        lo, hi = date_range
        if lo is not None or hi is not None:
            ok = self.date_ints > 0
            if lo is not None:
                ok &= self.date_ints >= lo
            if hi is not None:
                ok &= self.date_ints <= hi
            mask = ok.astype(np.float32)
        scores = self.retriever.get_scores(toks, weight_mask=mask)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [LexicalHit(self.paper_ids[i], float(scores[i])) for i in top if scores[i] > 0]
