"""index.sentence_strategy: which sentence vectors are stored (all / top / query-time / auto by
index size), and the vectors of the rest embedded at question time so the answerers still get a
cosine for every sentence of the papers they read."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.index.embeddings import get_embedder
from assistant.index.sentences import select_spans
from assistant.index.vectors import sentence_id
from assistant.text import split_sentences
from tests.conftest import make_settings

QUESTION = "Which reward model improves alignment on benchmark B3?"


def _rows(start: int, n: int) -> list[dict]:
    return [{"id": f"p{i}", "title": f"Reward modelling study {i}",
             "abstract": (f"Short one {i}. This second sentence about reward model {i} is somewhat longer "
                          f"than the first. Third {i} is brief. The fourth sentence describes alignment "
                          f"experiments on benchmark B{i} in considerable detail with many more words. End {i}."),
             "date": "2024-05-01"} for i in range(start, start + n)]


def _ingest(a: Assistant, path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    a.ingest([path])


def _stored(a: Assistant) -> dict[str, set[tuple[int, int]]]:
    col = a.index.vectors.sentences.collection()
    out: dict[str, set[tuple[int, int]]] = {}
    if col is None:
        return out
    for meta in col.get(include=["metadatas"])["metadatas"]:
        out.setdefault(meta["paper_id"], set()).add((meta["start"], meta["end"]))
    return out


def _assistant(home: Path, cache: Path, **index: object) -> Assistant:
    a = Assistant(make_settings(home, cache, index=index))
    a.auto_sample = False
    return a


def _direct_sims(a: Assistant, sims: dict[tuple[str, int, int], float]) -> dict[tuple[str, int, int], float]:
    """The cosine of each key's sentence with the question, computed here with the real embedder."""
    emb = get_embedder(a.settings)
    q = emb.embed_query(QUESTION)
    papers = {p.paper_id: p for p in a.papers()}
    keys = sorted(sims)
    vecs = emb.embed([papers[pid].abstract[s:e] for pid, s, e in keys])
    return {k: float(v) for k, v in zip(keys, (vecs @ q).tolist(), strict=True)}


def test_top_stores_each_papers_longest_sentences_and_embeds_the_rest_at_question_time(
        tmp_path: Path, embed_cache: Path) -> None:
    a = _assistant(tmp_path / "home", embed_cache, sentence_strategy="top", sentence_top=2)
    _ingest(a, tmp_path / "p.jsonl", _rows(0, 8))
    assert a.index.catalogue.get_meta("sentence_strategy") == "top"
    stored = _stored(a)
    for p in a.papers():
        spans = split_sentences(p.abstract)
        assert len(spans) == 5
        longest = set(sorted(spans, key=lambda s: s[0] - s[1])[:2])
        assert stored[p.paper_id] == longest == set(select_spans(p.abstract, spans, "longest", 2))
    res = a.retriever.retrieve(QUESTION)
    first = res.sources[:a.settings.index.sentence_query_papers]
    want = {(s.paper.paper_id, x, y) for s in first for x, y in split_sentences(s.paper.abstract)}
    assert want <= set(res.sentence_sims)  # every sentence of the papers the answerers read has a cosine
    direct = _direct_sims(a, res.sentence_sims)
    for key, sim in res.sentence_sims.items():
        assert sim == pytest.approx(direct[key], abs=1e-4), key
    # Sources past sentence_query_papers keep only their stored sentences (nothing embedded for them).
    for s in res.sources[len(first):]:
        got = {(x, y) for pid, x, y in res.sentence_sims if pid == s.paper.paper_id}
        assert got == stored[s.paper.paper_id]


def test_query_time_stores_no_sentence_vector_and_gives_the_same_cosines_as_all(
        tmp_path: Path, embed_cache: Path) -> None:
    rows = _rows(0, 8)
    full = _assistant(tmp_path / "all", embed_cache, sentence_strategy="all")
    _ingest(full, tmp_path / "a.jsonl", rows)
    lazy = _assistant(tmp_path / "qt", embed_cache, sentence_strategy="query-time")
    _ingest(lazy, tmp_path / "b.jsonl", rows)
    assert lazy.index.vectors.sentences.count() == 0 and full.index.vectors.sentences.count() == 40
    got = lazy.retriever.retrieve(QUESTION)
    assert got.sentence_sims
    first = got.sources[:lazy.settings.index.sentence_query_papers]
    assert {k[0] for k in got.sentence_sims} == {s.paper.paper_id for s in first}
    ref = full.index.vectors.sentences.get([sentence_id(*k) for k in got.sentence_sims])
    q = get_embedder(full.settings).embed_query(QUESTION)
    for key, sim in got.sentence_sims.items():
        assert sim == pytest.approx(float(ref[sentence_id(*key)] @ q), abs=1e-4), key
    # A second question over the same papers embeds nothing again (bounded in-process cache).
    embedded = lazy.retriever._query_time.embedded
    lazy.retriever.retrieve(QUESTION)
    assert lazy.retriever._query_time.embedded == embedded
    # The answerer receives them.
    ans = lazy.ask(QUESTION)
    assert ans.citations


def test_auto_gives_every_vector_to_a_small_index_and_none_past_its_size(
        tmp_path: Path, embed_cache: Path) -> None:
    a = _assistant(tmp_path / "home", embed_cache, sentence_auto_papers=4, sentence_top=3)
    _ingest(a, tmp_path / "a.jsonl", _rows(0, 3))
    assert a.index.catalogue.get_meta("sentence_strategy") == "all"
    assert {len(v) for v in _stored(a).values()} == {5}
    _ingest(a, tmp_path / "b.jsonl", _rows(3, 3))  # 6 papers > 4: query-time, the stored vectors go
    assert a.index.catalogue.get_meta("sentence_strategy") == "query-time"
    assert _stored(a) == {}
    assert a.index.catalogue.get_meta("sentence_vectors") == "complete"
    # the answerer still gets a cosine for the sentences of the papers it reads, embedded now
    res = a.retriever.retrieve("p1")
    assert res.sentence_sims and a.retriever._query_time is not None


def test_an_index_from_before_strategies_counts_as_all(copied_sample_home: Path, embed_cache: Path) -> None:
    db = sqlite3.connect(copied_sample_home / "index" / "catalogue.sqlite")
    assert db.execute("DELETE FROM meta WHERE key = 'sentence_strategy'").rowcount == 1
    db.commit()
    db.close()
    a = _assistant(copied_sample_home, embed_cache)
    assert a.retriever.sentence_strategy() == "all"
    res = a.retriever.retrieve("direct preference optimisation")
    assert res.sentence_sims and a.retriever._query_time is None  # stored vectors only, nothing embedded


@pytest.mark.chroma_server
def test_a_shared_index_tells_every_client_its_strategy(tmp_path: Path, embed_cache: Path) -> None:
    """On a `chroma run` server the strategy is recorded with the shared papers: a client whose own
    settings say auto (all) follows the writer's top, embedding what the index does not store."""
    from tests.test_chroma_server import ChromaServer

    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    try:
        def client(name: str, **index: object) -> Assistant:
            a = Assistant(make_settings(tmp_path / name, embed_cache, chroma_host="127.0.0.1",
                                        chroma_port=server.port, index=index))
            a.auto_sample = False
            return a

        writer = client("w", sentence_strategy="top", sentence_top=2)
        _ingest(writer, tmp_path / "p.jsonl", _rows(0, 8))
        assert writer.index.vectors.sentences.count() == 16
        reader = client("r")
        assert reader.retriever.sentence_strategy() == "top"
        res = reader.retriever.retrieve(QUESTION)
        first = res.sources[:reader.settings.index.sentence_query_papers]
        assert {(s.paper.paper_id, x, y) for s in first for x, y in split_sentences(s.paper.abstract)} \
            <= set(res.sentence_sims)
        assert reader.retriever._query_time.embedded == 3 * len(first)
    finally:
        server.stop()
