"""Streaming ingest (issue 27): papers staged on disk while reading, BM25 written without
holding the texts. Both must give exactly what the in-memory paths gave."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant import scratch
from assistant.index import lexical
from assistant.index.ingest import sample_paths
from assistant.index.lexical import LexicalIndex
from assistant.index.storage import date_int
from assistant.readers import read_paths
from assistant.readers.staged import StagedPapers
from assistant.text import content_tokens


def _papers() -> list:
    return sorted(read_paths(sample_paths()).papers, key=lambda p: p.paper_id)


@pytest.mark.parametrize("slice_docs", [8192, 16])
def test_streamed_bm25_scores_equal_bm25s_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                slice_docs: int) -> None:
    """The streamed build (one slice, and many slices whose entries interleave per token) stores the
    very scores bm25s's own ``index`` computes, and the ids, dates and document frequencies."""
    import bm25s

    monkeypatch.setattr(lexical, "_DOCS_PER_PASS", slice_docs)
    if slice_docs < 100:  # and each slice's entries written, and the word file read, a few at a time
        monkeypatch.setattr(lexical, "_PAGES_PER_RELEASE", 1)
        monkeypatch.setattr(lexical, "_WORDS_PER_READ", 5)
    papers = _papers()
    papers[3].abstract = papers[3].title = "the of and"  # only stopwords: bm25s's placeholder token
    lex = LexicalIndex(tmp_path / "bm25")
    lex.write(papers, 7)
    assert lex.load() and lex.generation == 7
    assert lex.paper_ids == [p.paper_id for p in papers]
    ref = bm25s.BM25(k1=1.2, b=0.75)
    ref.index([content_tokens(LexicalIndex.document_text(p)) or ["_empty_"] for p in papers], show_progress=False)
    df: dict[str, int] = {}
    for p in papers:
        for t in set(content_tokens(LexicalIndex.document_text(p))):
            df[t] = df.get(t, 0) + 1
    assert lex.df == df
    assert "_empty_" not in lex.df
    for q in ("sparse attention for long context", "video diffusion model", "reward model reinforcement learning",
              "language model benchmark evaluation"):
        toks = [t for t in content_tokens(q) if t in lex.df]
        np.testing.assert_array_equal(lex.retriever.get_scores(toks), ref.get_scores(toks))
    dated = [i for i, p in enumerate(papers) if p.date]
    assert dated and int(lex.date_ints[dated[0]]) > 19000000
    assert lex.date_ints.tolist() == [date_int(p.date) or 0 for p in papers]
    assert not list(tmp_path.glob("bm25.tmp*"))  # nothing left beside the index


def test_build_in_memory_matches_written(tmp_path: Path) -> None:
    """A home that cannot be written builds in memory: same ids and scores, no folder left."""
    papers = _papers()
    written, memory = LexicalIndex(tmp_path / "a"), LexicalIndex(tmp_path / "b")
    written.write(papers, 3)
    written.load()
    memory.build(papers, 3)
    assert not (tmp_path / "b").exists()
    assert memory.paper_ids == written.paper_ids and memory.df == written.df
    assert [h.paper_id for h in memory.query("attention", 10)] == [h.paper_id for h in written.query("attention", 10)]


def test_saved_generation_reads_the_head_of_ids_json(tmp_path: Path) -> None:
    """Whether BM25 is stale is read from the head of ids.json, for an index written while streaming
    and one saved after an in-memory build, without loading it; none, or another tokenizer's, is -1."""
    papers = _papers()[:20]
    written = LexicalIndex(tmp_path / "w")
    assert written.saved_generation() == -1
    written.write(papers, 11)
    memory = LexicalIndex(tmp_path / "m")
    memory.build(papers, 12)
    memory.save()
    for lex, gen in ((written, 11), (memory, 12)):
        fresh = LexicalIndex(lex.directory)
        assert fresh.saved_generation() == gen
        assert fresh.load() and fresh.generation == gen
    ids = tmp_path / "w" / "ids.json"
    meta = json.loads(ids.read_text())
    ids.write_text(json.dumps({"generation": 11, "tokenizer": "other", "ids": meta["ids"]}))
    assert LexicalIndex(tmp_path / "w").saved_generation() == -1


def _as_dicts(papers: list) -> list[dict]:
    return [p.to_dict() for p in papers]


def test_staged_reading_equals_in_memory_reading(tmp_path: Path) -> None:
    """Cross-file merging through indexed lookups in the staging file gives the same papers, in the
    same order, with the same provenance and counts as the in-memory map. The sample has 65 titles
    in several files; a JSONL file handed over in pieces (more than 1,000 records) repeats ids
    across pieces and files, and one id with a changed abstract."""
    big = tmp_path / "big.jsonl"
    other = tmp_path / "other.jsonl"
    with big.open("w") as fh:
        for i in range(2500):
            fh.write(json.dumps({"id": f"p{i % 1800}", "title": f"Paper {i % 1800}",
                                 "abstract": f"Abstract of paper {i % 1800} about topic {i % 7}."}) + "\n")
    with other.open("w") as fh:
        fh.write(json.dumps({"id": "p5", "title": "Paper 5", "abstract": "Abstract of paper 5 about topic 5.",
                             "date": "2024-01-02"}) + "\n")
        fh.write(json.dumps({"id": "p6", "title": "Paper 6", "abstract": "A new abstract."}) + "\n")
    paths = [*sample_paths(), big, other]
    plain = read_paths(paths)
    with StagedPapers(tmp_path / "stage") as staged:
        streamed = read_paths(paths, staged=staged)
        assert streamed.papers == []
        got = [p for batch in staged.batches(300) for p in batch]
        assert len(staged) == len(got)
        assert staged.known(["p5", "nope", got[0].paper_id]) == {"p5", got[0].paper_id}
    assert _as_dicts(got) == _as_dicts(plain.papers)
    for field in ("entries", "duplicates_merged", "duplicate_papers", "files"):
        assert getattr(streamed, field) == getattr(plain, field), field
    assert [str(w) for w in streamed.warnings] == [str(w) for w in plain.warnings]
    assert streamed.complete_files == plain.complete_files
    assert not list((tmp_path / "stage").iterdir())  # the staging file goes with the run


def test_no_papers_writes_an_empty_index(tmp_path: Path) -> None:
    """An empty catalogue gives an index that loads with no papers (and leaves no scratch files)."""
    lex = LexicalIndex(tmp_path / "bm25")
    lex.write([], 2)
    assert sorted(f.name for f in lex.directory.iterdir()) == ["date_ints.npy", "df.json", "ids.json"]
    assert lex.load() and lex.paper_ids == [] and lex.df == {} and len(lex.date_ints) == 0
    assert lex.query("attention", 5) == [] and lex.saved_generation() == 2


def test_a_killed_builds_leftovers_are_swept_a_running_ones_kept(tmp_path: Path) -> None:
    """A build killed mid-way leaves its scratch folder (gigabytes at a million papers) beside the
    index; the next build removes it, and leaves alone one whose process still runs, or that another
    host made (a home on a network filesystem: that host's pids cannot be checked from here)."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead_pid = int(gone.stdout)
    host = scratch.host()
    dead = [tmp_path / f"bm25.tmp{dead_pid}h{host}-x1y2", tmp_path / f"bm25.old{dead_pid}h{host}",
            tmp_path / f"bm25.tmp{dead_pid}h{host}", tmp_path / f"bm25.tmp{dead_pid}-x1y2"]  # last: no host (older)
    live = tmp_path / f"bm25.tmp{scratch.owner()}-busy"
    elsewhere = "00000000" if host != "00000000" else "11111111"  # a home shared with another host
    kept = [live, tmp_path / "bm25.tmpnotapid", tmp_path / f"bm25.tmp{dead_pid}h{elsewhere}-x1y2"]
    for folder in [*dead, *kept]:
        folder.mkdir()
        (folder / "tokens.u64").write_bytes(b"\0" * 64)
    LexicalIndex(tmp_path / "bm25").write(_papers()[:10], 1)
    assert not any(f.exists() for f in dead)
    assert all((f / "tokens.u64").exists() for f in kept)
    assert sorted(f.name for f in tmp_path.iterdir()) == sorted(["bm25", *(f.name for f in kept)])


def test_a_killed_ingests_staging_file_is_swept_by_the_next(tmp_path: Path) -> None:
    """Each ingest stages what it read in a SQLite file (about 3 KB a paper); a killed one's stayed
    in the cache folder for good. The next ingest removes those of processes gone from this host."""
    import subprocess
    import sys

    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout)
    elsewhere = "00000000" if scratch.host() != "00000000" else "11111111"
    dead = tmp_path / f"ingest-staged-{dead_pid}h{scratch.host()}-abc.sqlite"
    kept = [tmp_path / f"ingest-staged-{scratch.owner()}-busy.sqlite",
            tmp_path / f"ingest-staged-{dead_pid}h{elsewhere}-abc.sqlite", tmp_path / "notes.sqlite"]
    for path in [dead, *kept]:
        path.write_bytes(b"x")
    with StagedPapers(tmp_path) as staged:
        assert staged.path.name.startswith(f"ingest-staged-{scratch.owner()}-")
        assert not dead.exists() and all(p.exists() for p in kept)
    assert not staged.path.exists()
