"""Exact nearest-neighbour search over the stored vectors of a small collection.

Chroma's HNSW graph of a small collection is rebuilt differently at each open and at each index
build, so the tail of its ranking differed between process starts (two processes on one home
disagreed on the dense candidates of 34 of 102 fit questions), and an answer near a threshold
with it. Below ``retrieval.exact_search_max`` vectors, retrieval compares the question with every
stored vector instead: the ranking then depends on the vectors alone, the same in every process,
and the fitting script ranks exactly as ``ask`` does.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

SIM_DECIMALS = 6
"""Cosines are rounded to this many decimals, ties broken by id: float noise cannot reorder."""


@dataclass(frozen=True)
class VectorTable:
    """Every vector of a collection, unit length, in id order (Chroma's listing order is no contract)."""

    mat: np.ndarray
    ids: list[str]
    metas: list[dict[str, Any]]
    stored: np.ndarray
    """The vectors as stored (float32, ``mat``'s order), for similarities equal to Chroma's own."""
    row: dict[str, int]
    """Id -> row."""

    def get(self, ids: list[str]) -> dict[str, np.ndarray]:
        """Stored vectors by id, as ``SentenceStore.get`` returns them (ids not stored are absent)."""
        return {i: self.stored[self.row[i]] for i in ids if i in self.row}


def load_table(col: Any, page: int = 5000) -> VectorTable | None:
    """All of ``col``'s vectors, or None when they cannot be read whole (the caller then searches by
    HNSW, whose own errors are the one-line ones): a page that fails, or rows deleted between pages
    by another writer, which offset paging would skip."""
    ids: list[str] = []
    metas: list[dict[str, Any]] = []
    rows: list[np.ndarray] = []
    try:
        total = col.count() if col is not None else 0
        for offset in range(0, total, page):
            res = col.get(include=["embeddings", "metadatas"], limit=page, offset=offset)
            if len(res["ids"]) == 0:
                continue
            ids.extend(res["ids"])
            metas.extend(res["metadatas"])
            rows.append(np.asarray(res["embeddings"], dtype=np.float32))
        if col is not None and col.count() != total:
            return None  # written meanwhile: the next question reloads
    except Exception:  # noqa: BLE001 - any read failure: fall back to the approximate search
        return None
    if len(set(ids)) != len(ids):
        return None
    stored = np.vstack(rows) if rows else np.zeros((0, 1), dtype=np.float32)
    mat = stored.astype(np.float64)
    mat /= np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ids = [ids[i] for i in order]
    return VectorTable(mat[order], ids, [metas[i] for i in order], stored[order],
                       {i: n for n, i in enumerate(ids)})


def search(table: VectorTable, qvec: Any, n: int,
           where: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any], float]]:
    """The ``n`` best rows by cosine (rounded), ties by id; ``where`` as Chroma takes it."""
    if not table.ids:
        return []
    q = np.asarray(qvec, dtype=np.float64)
    sims = np.round(table.mat @ (q / (np.linalg.norm(q) or 1.0)), SIM_DECIMALS)
    if where:
        keep = np.array([matches(m, where) for m in table.metas], dtype=bool)
        sims = np.where(keep, sims, -np.inf)
    order = np.argsort(-sims, kind="stable")[:n]
    return [(table.ids[i], table.metas[i], float(sims[i])) for i in order if np.isfinite(sims[i])]


_COMPARE = {"$gte": operator.ge, "$lte": operator.le, "$gt": operator.gt, "$lt": operator.lt,
            "$eq": operator.eq, "$ne": operator.ne}


def matches(meta: dict[str, Any], where: dict[str, Any]) -> bool:
    """Chroma's metadata filter for what retrieval asks (``$and``, ``$gte``, ``$lte``, equality);
    as in Chroma, a row without the field does not match a condition on it."""
    for key, cond in where.items():
        if key == "$and":
            if not all(matches(meta, c) for c in cond):
                return False
            continue
        if key.startswith("$"):
            raise ValueError(f"exact search: unsupported filter operator {key}")
        if key not in meta:
            return False
        value = meta[key]
        ops = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, bound in ops.items():
            ok = _COMPARE.get(op)
            if ok is None:
                raise ValueError(f"exact search: unsupported filter operator {op}")
            if not ok(value, bound):
                return False
    return True
