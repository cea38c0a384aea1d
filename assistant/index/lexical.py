"""The bm25s lexical index over title + abstract, saved beside the catalogue.

Document frequencies are counted here at build time and saved as df.json, so the
idf the answerer and the citation checker use never reaches into bm25s internals.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import Paper
from ..text import TOKENIZER_VERSION, bm25_idf, content_tokens
from .storage import date_int, writable_error


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
        self.df: dict[str, int] = {}
        """Stemmed token -> number of papers containing it (saved as df.json)."""
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
        df: dict[str, int] = {}
        for p in papers:
            ids.append(p.paper_id)
            dates.append(date_int(p.date) or 0)
            toks = content_tokens(self.document_text(p))
            corpus_tokens.append(toks or ["_empty_"])
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        retriever = bm25s.BM25(k1=k1, b=b)
        if corpus_tokens:
            retriever.index(corpus_tokens, show_progress=False)
        self.retriever = retriever if corpus_tokens else None
        self.paper_ids = ids
        self.date_ints = np.asarray(dates, dtype=np.int64)
        self.df = df
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
            (tmp / "df.json").write_text(json.dumps({"n_docs": len(self.paper_ids), "df": self.df},
                                                    ensure_ascii=False), encoding="utf-8")
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
            stored = json.loads((self.directory / "df.json").read_text(encoding="utf-8"))
            if int(stored["n_docs"]) != len(self.paper_ids):
                return False
            self.df = {str(t): int(n) for t, n in stored["df"].items()}
            if self.paper_ids:
                self.retriever = bm25s.BM25.load(str(self.directory), mmap=False, show_progress=False)
            else:
                self.retriever = None
            return True
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    def idf(self, tokens: list[str]) -> dict[str, float]:
        """BM25 idf of stemmed tokens over the whole index (unknown tokens get the max idf)."""
        n_docs = len(self.paper_ids) or 1
        return {t: bm25_idf(n_docs, self.df.get(t, 0)) for t in tokens}

    def query(self, text: str, n: int, date_range: tuple[int | None, int | None] = (None, None)) -> list[LexicalHit]:
        import numpy as np

        if self.retriever is None:
            return []
        toks = [t for t in content_tokens(text) if t in self.df]
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
