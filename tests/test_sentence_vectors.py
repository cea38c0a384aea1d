"""Sentence vectors: one per abstract sentence, stored at ingest beside the chunks, kept in step
with the papers (re-ingest, change, prune, backfill of an older home, the setting off) and
turned into ``sentence_sims`` for the answerer with no model call."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from assistant.api import Assistant
from assistant.index.embeddings import CachedEmbedder, get_embedder
from assistant.index.ingest import ingest
from assistant.index.vectors import sentence_id
from assistant.text import split_sentences
from tests.conftest import SAMPLE_DIR, make_settings


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int) -> list[dict]:
    return [{"id": f"p{i}", "title": f"Synthetic paper {i} on reward modelling",
             "abstract": f"We study reward model {i} for alignment. It improves win rate by {i + 3} points. "
                         f"Experiments on benchmark B{i} confirm it.", "date": "2024-05-01"}
            for i in range(n)]


def _stored(a: Assistant) -> dict[str, set[str]]:
    """Sentence-vector ids per paper, as stored in Chroma."""
    col = a.index.vectors.sentences.collection()
    if col is None:
        return {}
    out: dict[str, set[str]] = {}
    res = col.get(include=["metadatas"])
    for sid, meta in zip(res["ids"], res["metadatas"], strict=True):
        out.setdefault(meta["paper_id"], set()).add(sid)
    return out


def _expected(a: Assistant) -> dict[str, set[str]]:
    """What every indexed paper should have: one id per split_sentences span of its abstract."""
    return {p.paper_id: {sentence_id(p.paper_id, s, e) for s, e in split_sentences(p.abstract)}
            for p in a.index.catalogue.iter_papers() if split_sentences(p.abstract)}


def _probe_embedder(a: Assistant, tmp_path: Path) -> CachedEmbedder:
    """The real embedder behind an empty cache of its own: its ``misses`` count every text embedded."""
    return CachedEmbedder(get_embedder(a.settings), tmp_path / "probe-cache.sqlite")


def test_every_sentence_has_its_vector_and_reingest_embeds_nothing(copied_sample_home: Path, embed_cache: Path,
                                                                   tmp_path: Path) -> None:
    a = Assistant(make_settings(copied_sample_home, embed_cache))
    want = _expected(a)
    assert len(want) == 247
    assert _stored(a) == want
    # Offsets in the metadata give the sentence back from the catalogue's abstract.
    p = a.papers()[0]
    got = a.index.vectors.sentences.collection().get(where={"paper_id": p.paper_id}, include=["metadatas"])
    assert sorted((m["start"], m["end"]) for m in got["metadatas"]) == split_sentences(p.abstract)
    probe = _probe_embedder(a, tmp_path)
    rep = ingest(a.index, [SAMPLE_DIR], embedder=probe)
    assert (rep.new, rep.updated, rep.unchanged) == (0, 0, 247)
    assert (rep.chunks_written, rep.sentences_written, probe.misses) == (0, 0, 0)
    assert _stored(a) == want


def test_changed_and_pruned_papers_take_their_sentence_vectors_along(fresh_home: Path, embed_cache: Path,
                                                                    tmp_path: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    src = _jsonl(tmp_path / "a.jsonl", _rows(6))
    rep = a.ingest([src])
    assert rep.sentences_written == 18 and _stored(a) == _expected(a)
    rows = _rows(6)
    rows[2]["abstract"] = "A rewritten abstract about token-level DPO, now much longer than before. Two sentences."
    _jsonl(src, rows[:5])
    a.ingest([src], prune=True)
    assert a.get_paper("p5") is None
    stored = _stored(a)
    assert "p5" not in stored
    assert stored["p2"] == {sentence_id("p2", s, e) for s, e in split_sentences(rows[2]["abstract"])}
    assert stored == _expected(a)
    a.ingest([src], rebuild=True)
    assert _stored(a) == _expected(a) and len(_expected(a)) == 5


def test_setting_off_stores_none_and_answering_still_works(fresh_home: Path, embed_cache: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache, sentence_vectors=False))
    a.ingest([SAMPLE_DIR])
    assert a.index.vectors.sentences.count() == 0
    q = "How long a context can Llama-3-8B decode on one A100 GPU?"
    assert a.retriever.retrieve(q).sentence_sims == {}
    ans = a.ask(q)
    assert not ans.refused and ans.citations
    assert "retrieve_sentences" not in ans.timings_ms and "retrieve_dense_sentences" not in ans.timings_ms


def test_home_built_without_sentence_vectors_is_backfilled(fresh_home: Path, embed_cache: Path,
                                                           tmp_path: Path) -> None:
    off = Assistant(make_settings(fresh_home, embed_cache, sentence_vectors=False))
    src = _jsonl(tmp_path / "a.jsonl", _rows(6))
    off.ingest([src])
    assert off.index.vectors.sentences.count() == 0
    on = Assistant(make_settings(fresh_home, embed_cache))
    # Before the backfill the home answers, without the feature.
    assert on.retriever.retrieve("reward model win rate").sentence_sims == {}
    probe = _probe_embedder(on, tmp_path)
    rep = ingest(on.index, [src], embedder=probe)
    assert rep.unchanged == 6 and rep.chunks_written == 0
    assert (rep.sentences_backfilled, rep.sentences_written, probe.misses) == (6, 18, 18)  # sentences only
    assert _stored(on) == _expected(on)
    # A home left half-done (e.g. killed mid-backfill, or a pre-change home with no flag at all):
    # one paper lost part of its vectors, the flag is gone; the next ingest completes it.
    col = on.index.vectors.sentences.collection()
    col.delete(ids=[sorted(_stored(on)["p3"])[0]])
    on.index.close()
    db = sqlite3.connect(fresh_home / "index" / "catalogue.sqlite")
    db.execute("DELETE FROM meta WHERE key = 'sentence_vectors'")
    db.commit()
    db.close()
    rep = ingest(on.index, [src], embedder=probe)
    assert rep.sentences_backfilled == 1 and _stored(on) == _expected(on)
    # Done: the next ingest scans nothing and writes nothing.
    rep = ingest(on.index, [src], embedder=probe)
    assert (rep.sentences_backfilled, rep.sentences_written) == (0, 0)


def test_sentence_sims_reach_the_answerer_and_equal_a_direct_cosine(sample_assistant: Assistant) -> None:
    a = sample_assistant
    q = "How long a context can Llama-3-8B decode on one A100 GPU?"
    seen: list[Any] = []
    answerer = a.answerer()
    real = answerer.answer

    def spy(question: str, sources: Any, context: Any) -> Any:
        seen.append((sources, context))
        return real(question, sources, context)

    answerer.answer = spy  # type: ignore[method-assign]
    try:
        ans = a.ask(q)
    finally:
        del answerer.answer
    sources, context = seen[0]
    sims = context.sentence_sims
    keys = [(s.paper.paper_id, b, e) for s in sources for b, e in split_sentences(s.paper.abstract)]
    assert sorted(sims) == sorted(keys)  # every sentence of every source, nothing else
    texts = {k: next(s.paper.abstract[k[1]:k[2]] for s in sources if s.paper.paper_id == k[0]) for k in keys}
    qv = a.embedder.embed_query(q)
    direct = a.embedder.embed([texts[k] for k in keys]) @ qv
    assert np.allclose([sims[k] for k in keys], direct, atol=1e-5)
    best = max(sims, key=lambda k: sims[k])
    assert "3.3 million context length" in texts[best]
    assert "retrieve_sentences" in ans.timings_ms
    # Ranking used the sentence signal too (retrieval.sentence_weight > 0 by default).
    assert "retrieve_dense_sentences" in ans.timings_ms
    # bm25 mode has no query vector, so no sentence similarities.
    assert a.retriever.retrieve(q, mode="bm25").sentence_sims == {}


def test_a_backfill_by_another_process_reaches_an_open_one(fresh_home: Path, embed_cache: Path,
                                                           tmp_path: Path) -> None:
    """An open process (``assistant serve``) loads the stored vectors once per index generation; a
    backfill changes no paper, so it now takes a new generation and the open process sees the new
    vectors at its next question (it used to wait for the next paper change or a restart)."""
    import subprocess

    from tests.conftest import cli_env

    src = _jsonl(tmp_path / "a.jsonl", _rows(6))
    first = Assistant(make_settings(fresh_home, embed_cache))
    first.ingest([src])
    # A home half backfilled: p3 has no sentence vectors yet and the flag is unset.
    first.index.vectors.sentences.delete_papers(["p3"])
    first.index.vectors.close()  # this process's only Chroma client is the open one's below
    first.index.close()
    db = sqlite3.connect(fresh_home / "index" / "catalogue.sqlite")
    db.execute("DELETE FROM meta WHERE key = 'sentence_vectors'")
    db.commit()
    db.close()

    open_one = Assistant(make_settings(fresh_home, embed_cache))
    open_one.auto_sample = False
    question = "reward model 3 win rate benchmark B3"
    before = open_one.retriever.retrieve(question)
    assert "p3" in {src.paper.paper_id for src in before.sources}
    assert before.sentence_sims and "p3" not in {pid for pid, _, _ in before.sentence_sims}
    gen = open_one.index.catalogue.generation
    run = subprocess.run(["assistant", "ingest", str(src)], env=cli_env(fresh_home, embed_cache),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert open_one.index.catalogue.generation == gen + 1
    after = open_one.retriever.retrieve(question).sentence_sims
    assert {k for k in after if k[0] == "p3"} == {("p3", a, b) for a, b in split_sentences(_rows(6)[3]["abstract"])}
