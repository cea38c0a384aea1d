"""Exact vector search below ``retrieval.exact_search_max``: repeatable answers, HNSW above it."""

from __future__ import annotations

import json
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
    t = VectorTable(mat, ["a", "b", "c"], [{}, {}, {}], mat.astype(np.float32), {"a": 0, "b": 1, "c": 2})
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
    assert all(a.retriever._exact[k][1] is not None for k in ("chunks", "sentences"))  # below the limit: exact
    assert ra.chunk_sims == rb.chunk_sims and ra.sentence_sims == rb.sentence_sims
    assert [x.paper.paper_id for x in ra.sources] == [x.paper.paper_id for x in rb.sources]
    h = Assistant(s.with_(retrieval={"exact_search_max": 0}))
    rh = h.retriever.retrieve(Q)
    assert all(t is None for t in h.retriever._exact.values())  # nothing loaded
    # the answerer's sentence similarities come from the loaded table, equal to a fetch from Chroma
    stored = a.index.vectors.sentences.get(list(a.retriever._exact["sentences"][1].row)[:50])
    table = a.retriever._exact["sentences"][1]
    assert all(np.array_equal(v, table.get([k])[k]) for k, v in stored.items())
    assert [x.paper.paper_id for x in rh.sources][:3] == [x.paper.paper_id for x in ra.sources][:3]
    for x in (a, b, h):
        x.index.close()


def test_an_ingest_reloads_the_exact_table(tmp_path: Path, embed_cache: Path) -> None:
    """Loaded once per catalogue generation: a paper added after a question, by this process or by
    another one (its own Assistant), is found by the next question."""
    s = make_settings(tmp_path / "home", embed_cache)

    def paper(pid: str, title: str, abstract: str) -> Path:
        f = tmp_path / f"{pid}.jsonl"
        f.write_text(json.dumps({"id": pid, "title": title, "abstract": abstract}) + "\n")
        return f

    asst = Assistant(s)
    asst.auto_sample = False
    asst.ingest([paper("a1", "Direct preference optimisation",
                       "We align language models with preferences without a reward model. It is simple.")])
    assert [x.paper.paper_id for x in asst.retriever.retrieve("tokamak plasma confinement").sources] == ["a1"]
    gen = asst.retriever._exact["chunks"][0]
    asst.retriever.retrieve("preference optimisation")
    asst.ingest([tmp_path / "a1.jsonl"])  # nothing changes, yet this process forgets its tables (backfills)
    assert asst.retriever._exact == {}
    asst.ingest([paper("b1", "Tokamak plasma confinement",
                       "We study plasma confinement in a tokamak with magnetic fields. Confinement improves.")])
    r = asst.retriever.retrieve("tokamak plasma confinement")
    assert r.sources[0].paper.paper_id == "b1" and asst.retriever._exact["chunks"][0] > gen
    assert any(pid == "b1" for pid, _, _ in r.sentence_sims)
    other = Assistant(s)  # another process's writer
    other.auto_sample = False
    other.ingest([paper("c1", "Coral reef bleaching",
                        "Coral reefs bleach when ocean water warms. We map bleaching events by satellite.")])
    other.index.close()
    r = asst.retriever.retrieve("coral reef bleaching from warm water")
    assert r.sources[0].paper.paper_id == "c1"
    hits = asst.retriever.sentence_hits(asst.embedder.embed_query("coral reefs bleach"), 3, None)
    assert hits[0][0] == "c1"
    asst.index.close()


def test_load_table_pages_and_gives_up_on_a_concurrent_write(sample_home: Path, embed_cache: Path) -> None:
    """Paged reads assemble the whole collection; rows deleted between pages (another writer) make it
    give up (None: the caller searches by HNSW this time) instead of caching a table with holes."""
    from assistant.exact_search import load_table

    a = Assistant(make_settings(sample_home, embed_cache))
    col = a.index.vectors.collection()
    whole = load_table(col, page=5000)
    paged = load_table(col, page=97)
    assert whole is not None and paged is not None and whole.ids == paged.ids and len(whole.ids) == col.count()
    assert np.array_equal(whole.mat, paged.mat) and whole.ids == sorted(whole.ids)

    class DeletingMidway:
        """The real collection; the second page is read after another writer deleted some rows."""

        def __init__(self) -> None:
            self.pages = 0
            self.gone: list[str] = []

        def count(self) -> int:
            return col.count() - len(self.gone)

        def get(self, **kw: object) -> dict:
            self.pages += 1
            res = col.get(**kw)
            if self.pages == 1:
                self.gone = res["ids"][:3]
            return res

    assert load_table(DeletingMidway(), page=97) is None
    a.index.close()


def test_two_processes_rank_alike(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """Separate processes (own Chroma clients, own HNSW graphs) give the same dense similarities."""
    import subprocess
    import sys

    code = (
        "import json,sys; from pathlib import Path; from tests.conftest import make_settings; "
        "from assistant.api import Assistant; "
        f"a = Assistant(make_settings(Path({str(sample_home)!r}), Path({str(embed_cache)!r}))); "
        f"r = a.retriever.retrieve({Q!r}, 20); "
        "print(json.dumps([sorted(r.chunk_sims.items()), [s.paper.paper_id for s in r.sources], "
        "sorted((f'{k}', v) for k, v in r.sentence_sims.items())]))")
    outs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert outs[0] == outs[1] and len(json.loads(outs[0])[0]) >= 50


def test_date_filtered_hnsw_search_filters_here_when_enough_is_in_range(sample_home: Path, embed_cache: Path) -> None:
    """Above exact_search_max a date filter made Chroma filter first, at a cost linear in the index. A
    range holding enough of the index is now applied to an unfiltered search here; a narrow range, or
    an unfiltered fetch that finds too few in range, still goes to Chroma's filter. The hits are
    Chroma's own filtered search's either way."""
    from assistant.index.vectors import DateFilter, nearest

    a = Assistant(make_settings(sample_home, embed_cache, retrieval={"exact_search_max": 0}))
    col = a.index.vectors.collection()
    total = col.count()
    qvec = a.retriever.embedder.embed_query(Q)
    sent: list[object] = []

    def query(**kw: object) -> dict:
        sent.append(kw["where"])
        return col.query(**kw)

    def chroma_filtered(dates: DateFilter, n: int) -> list[str]:
        return col.query(query_embeddings=[qvec.tolist()], n_results=n, where=dates.where())["ids"][0]

    lex = a.index.lexical()
    wide = DateFilter(20230101, 20251231, lex.date_share(20230101, 20251231))
    assert wide.share is not None and 0.1 < wide.share < 0.5  # the sample: most papers undated
    got = nearest(query, qvec, 10, total, wide)
    assert sent == [None], "a wide range is filtered here, Chroma is asked for no filter"
    assert len(got) == 10 and all(wide.admits(m) for _, m, _ in got)
    assert [h[0] for h in got] == chroma_filtered(wide, 10)

    sent.clear()
    narrow = DateFilter(20241001, 20241031, lex.date_share(20241001, 20241031), post_filter_max=200)
    assert narrow.unfiltered_fetch(10) is None  # 1.5 x 10 / share (~930) is past post_filter_max
    got = nearest(query, qvec, 10, total, narrow)
    assert sent == [narrow.where()] and [h[0] for h in got] == chroma_filtered(narrow, 10)

    sent.clear()
    wrong = DateFilter(20241001, 20241031, share=1.0)  # a stale share: the unfiltered fetch falls short
    got = nearest(query, qvec, 10, total, wrong)
    assert sent == [None, wrong.where()] and [h[0] for h in got] == chroma_filtered(wrong, 10)

    # through retrieval: the same papers as with Chroma filtering every time
    b = Assistant(make_settings(sample_home, embed_cache,
                                retrieval={"exact_search_max": 0, "date_post_filter_max": 0}))
    for mode in ("dense", "hybrid"):
        ra = a.retriever.retrieve(Q, since="2023", until="2025", mode=mode)
        rb = b.retriever.retrieve(Q, since="2023", until="2025", mode=mode)
        assert [s.paper.paper_id for s in ra.sources] == [s.paper.paper_id for s in rb.sources]
        assert ra.sources and all("2023" <= (s.paper.date or "")[:4] <= "2025" for s in ra.sources)
    for x in (a, b):
        x.index.close()
