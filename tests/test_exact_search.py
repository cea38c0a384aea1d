"""Exact vector search below ``retrieval.exact_search_max``: repeatable answers, HNSW above it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.api import Assistant
from assistant.exact_search import VectorTable, matches, search
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[1]
Q = "Which papers drop the reference model from preference optimisation?"


def test_filters_follow_chromas_rules() -> None:
    meta = {"paper_id": "p", "date_int": 20240315}
    assert matches(meta, {"date_int": {"$gte": 20240101}})
    assert not matches(meta, {"date_int": {"$lte": 20231231}})
    assert matches(meta, {"$and": [{"date_int": {"$gte": 20240101}}, {"date_int": {"$lte": 20240331}}]})
    assert not matches({"paper_id": "p"}, {"date_int": {"$gte": 0}}), "no date: excluded, as in Chroma"
    assert matches(meta, {"paper_id": "p"}) and not matches(meta, {"paper_id": {"$ne": "p"}})
    with pytest.raises(ValueError, match=r"\$in"):
        matches(meta, {"paper_id": {"$in": ["p"]}})


def test_ties_by_id_and_rounding() -> None:
    mat = np.array([[1.0, 1e-4], [1.0, 0.0], [0.0, 1.0]])  # rows in id order, as load_table keeps them
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    t = VectorTable((0, 3), mat, ["a", "b", "c"], [{}, {}, {}])
    # "b" is nearer by 5e-9 only: rounded to 6 decimals they tie, and the id decides
    assert float(mat[1] @ [1.0, 0.0]) > float(mat[0] @ [1.0, 0.0])
    got = search(t, [1.0, 0.0], 3)
    assert [g[0] for g in got] == ["a", "b", "c"] and got[0][2] == got[1][2] == 1.0
    assert search(t, [1.0, 0.0], 5, {"date_int": {"$gte": 1}}) == []


def test_ask_is_exact_below_the_limit_and_repeatable_across_processes(sample_home: Path, embed_cache: Path) -> None:
    """Two Assistants (own Chroma clients, as two processes have) rank every dense candidate the same;
    with exact_search_max 0 retrieval goes to HNSW and keeps the same best papers."""
    s = make_settings(sample_home, embed_cache)
    a, b = Assistant(s), Assistant(s)
    ra, rb = a.retriever.retrieve(Q), b.retriever.retrieve(Q)
    assert a.retriever._exact and b.retriever._exact  # the sample is below the limit: exact tables loaded
    assert ra.chunk_sims == rb.chunk_sims and ra.sentence_sims == rb.sentence_sims
    assert [x.paper.paper_id for x in ra.sources] == [x.paper.paper_id for x in rb.sources]
    h = Assistant(s.with_(retrieval={"exact_search_max": 0}))
    rh = h.retriever.retrieve(Q)
    assert not h.retriever._exact
    assert [x.paper.paper_id for x in rh.sources][:3] == [x.paper.paper_id for x in ra.sources][:3]
    for x in (a, b, h):
        x.index.close()


def test_an_ingest_reloads_the_exact_table(tmp_path: Path, embed_cache: Path) -> None:
    """The table is keyed by the catalogue generation: a paper added after a question is found by the next."""
    s = make_settings(tmp_path / "home", embed_cache)
    first = tmp_path / "a.jsonl"
    first.write_text('{"id": "a1", "title": "Direct preference optimisation", "abstract": '
                     '"We align language models with preferences without a reward model. It is simple."}\n')
    asst = Assistant(s)
    asst.auto_sample = False
    asst.ingest([first])
    assert [x.paper.paper_id for x in asst.retriever.retrieve("tokamak plasma confinement").sources] == ["a1"]
    key = asst.retriever._exact["chunks"].key
    second = tmp_path / "b.jsonl"
    second.write_text('{"id": "b1", "title": "Tokamak plasma confinement", "abstract": '
                      '"We study plasma confinement in a tokamak with magnetic fields. Confinement improves."}\n')
    asst.ingest([second])
    r = asst.retriever.retrieve("tokamak plasma confinement")
    assert r.sources[0].paper.paper_id == "b1" and asst.retriever._exact["chunks"].key != key
    assert any(pid == "b1" for pid, _, _ in r.sentence_sims)
    asst.index.close()
