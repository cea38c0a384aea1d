"""Server mode: paper records live on the Chroma server, so every client sees every paper.

A second collection ``<collection>__papers`` beside the chunk vectors holds one record per
paper (its catalogue row and chunk spans as metadata, a constant 1-d embedding) and one
generation record whose random token changes on every write. Each client keeps its SQLite
catalogue and BM25 index as a local cache of these records, pulled again whenever the
server's token differs from the one the cache was built from.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..records import Paper
from .vectors import VectorStore

TOKEN_ID = "__generation__"


class SharedPapers:
    def __init__(self, vectors: VectorStore) -> None:
        self.vectors = vectors
        self.name = f"{vectors.settings.index.collection}__papers"
        self._col: Any = None

    def _collection(self, create: bool) -> Any:
        if self._col is not None:
            return self._col
        client = self.vectors.client
        try:
            col = (self.vectors._call(client.get_or_create_collection, self.name, embedding_function=None)
                   if create else self.vectors._call(client.get_collection, self.name, embedding_function=None))
        except Exception as exc:
            if not create and "does not exist" in str(exc).lower():
                return None
            raise
        self._col = col
        return col

    def token(self) -> str | None:
        """The server's generation token (None: nothing was ever written)."""
        col = self._collection(create=False)
        if col is None:
            return None
        res = self.vectors._call(col.get, ids=[TOKEN_ID], include=["metadatas"])
        return str(res["metadatas"][0]["token"]) if res["ids"] else None

    def put(self, papers: Sequence[Paper], spans: dict[str, list[tuple[str, int, int, int]]],
            batch: int = 500) -> None:
        """Upsert paper records with their chunk spans (chunk_id, idx, start, end), then bump."""
        col = self._collection(create=True)
        for start in range(0, len(papers), batch):
            part = papers[start:start + batch]
            self.vectors._call(col.upsert, ids=[p.paper_id for p in part], embeddings=[[1.0]] * len(part),
                               metadatas=[{"hash": p.content_hash,
                                           "data": json.dumps(p.to_dict(), ensure_ascii=False),
                                           "spans": json.dumps([list(x) for x in spans.get(p.paper_id, [])])}
                                          for p in part])
        self.bump()

    def delete(self, paper_ids: Sequence[str], batch: int = 500) -> None:
        col = self._collection(create=False)
        if col is None:
            return
        for start in range(0, len(paper_ids), batch):
            self.vectors._call(col.delete, ids=list(paper_ids[start:start + batch]))
        self.bump()

    def bump(self) -> None:
        col = self._collection(create=True)
        self.vectors._call(col.upsert, ids=[TOKEN_ID], embeddings=[[1.0]],
                           metadatas=[{"token": uuid.uuid4().hex}])

    def all(self, page: int = 1000) -> list[tuple[Paper, list[tuple[str, int, int, int]]]]:
        col = self._collection(create=False)
        if col is None:
            return []
        out = []
        total = int(self.vectors._call(col.count))
        for offset in range(0, total, page):
            res = self.vectors._call(col.get, include=["metadatas"], limit=page, offset=offset)
            for pid, meta in zip(res["ids"], res["metadatas"], strict=True):
                if pid == TOKEN_ID:
                    continue
                spans = [(str(c), int(i), int(s), int(e)) for c, i, s, e in json.loads(meta["spans"])]
                out.append((Paper.from_dict(json.loads(meta["data"])), spans))
        return out

    def drop(self) -> None:
        try:
            self.vectors.client.delete_collection(self.name)
        except Exception as exc:
            if "does not exist" not in str(exc).lower():
                raise
        self._col = None
