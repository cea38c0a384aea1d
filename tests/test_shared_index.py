"""Chroma server mode is one shared index (issue 16.6): two homes against one real
`chroma run` see the same papers, concurrent ingests from two clients end with the
union, and each client's cached BM25 follows the server's generation."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import IndexStateError
from tests.conftest import SAMPLE_DIR, cli_env, make_settings
from tests.test_chroma_server import ChromaServer

pytestmark = pytest.mark.chroma_server

PAGES = sorted(SAMPLE_DIR.glob("*.txt"))
QUESTION = "What does ARRA align LLM hidden states with?"


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    yield server
    server.stop()


def _client(home: Path, cache: Path, server: ChromaServer, **kw: object) -> Assistant:
    a = Assistant(make_settings(home, cache, chroma_host="127.0.0.1", chroma_port=server.port, **kw))
    a.auto_sample = False
    return a


Spans = list[tuple[str, int, int, int]]


def _embedded_all(tmp_path: Path, cache: Path, pages: list[Path]) -> dict[str, tuple[str, Spans]]:
    """What one embedded ingest of ``pages`` holds: paper id -> (content hash, chunk spans)."""
    a = Assistant(make_settings(tmp_path / f"embedded-{len(list(tmp_path.glob('embedded-*')))}", cache))
    a.ingest(pages)
    cat = a.index.catalogue
    ids = list(cat.hashes())
    spans = cat.chunk_spans(ids)
    out = {pid: (h, spans[pid]) for pid, h in cat.hashes().items()}
    a.index.close()
    return out


def _server_state(a: Assistant) -> tuple[dict[str, tuple[str, Spans]], list[str]]:
    cat = a.index.catalogue
    hashes = cat.hashes()
    spans = cat.chunk_spans(list(hashes))
    col = a.index.vectors.collection()
    vector_ids = col.get(include=[])["ids"]
    return {pid: (h, spans[pid]) for pid, h in hashes.items()}, vector_ids


def test_second_home_sees_and_answers_from_the_first_homes_papers(chroma_server: ChromaServer, tmp_path: Path,
                                                                 embed_cache: Path) -> None:
    a = _client(tmp_path / "home-a", embed_cache, chroma_server)
    rep = a.ingest(PAGES)
    assert rep.papers_total == 247
    b = _client(tmp_path / "home-b", embed_cache, chroma_server)
    st = b.status()
    assert (st["papers"], st["chunks"], st["vectors"]) == (247, a.status()["chunks"], a.status()["vectors"])
    assert st["chunks"] == st["vectors"] > 247
    ans = b.ask(QUESTION)
    assert not ans.refused and ans.citations
    a_ids = {p.paper_id for p in a.papers()}
    assert {c.paper_id for c in ans.citations} <= a_ids
    assert ans.text == a.ask(QUESTION).text
    assert {p.paper_id for p in b.papers()} == a_ids
    some = next(iter(a_ids))
    assert b.get_paper(some) == a.get_paper(some)
    # The command line of the second user says the same.
    r = subprocess.run(["assistant", "status", "--json"], capture_output=True, text=True, timeout=120,
                       env=cli_env(tmp_path / "home-c", embed_cache, CHROMA_HOST="127.0.0.1",
                                   CHROMA_PORT=str(chroma_server.port)))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["papers"] == 247
    # Re-ingesting the same files from another home is a no-op: nothing new, nothing duplicated.
    again = b.ingest(PAGES)
    assert (again.new, again.updated, again.papers_total) == (0, 0, 247)
    assert b.status()["vectors"] == st["vectors"]


def test_two_clients_ingesting_different_files_at_once_end_with_the_union(chroma_server: ChromaServer,
                                                                          tmp_path: Path, embed_cache: Path) -> None:
    halves = (PAGES[:3], PAGES[3:])
    want = _embedded_all(tmp_path, embed_cache, PAGES)
    alone = [_embedded_all(tmp_path, embed_cache, list(h)) for h in halves]
    both = set(alone[0]) & set(alone[1])
    assert both and set(alone[0]) | set(alone[1]) == set(want)  # the sample pages share some papers
    extra = {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_server.port)}
    procs = [subprocess.Popen(["assistant", "ingest", *map(str, files)],
                              env=cli_env(tmp_path / f"home-{i}", embed_cache, **extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, files in enumerate(halves)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs

    def check(expect_merged: bool) -> None:
        for i in range(2):
            c = _client(tmp_path / f"home-{i}", embed_cache, chroma_server)
            got, vector_ids = _server_state(c)
            assert set(got) == set(want)
            for pid, rec in got.items():
                if expect_merged or pid not in both:
                    assert rec == want[pid], pid
                else:  # written by both at once: one client's record (no cross-client merge)
                    assert rec in (alone[0][pid], alone[1][pid]), pid
            chunk_ids = [cid for _, spans in got.values() for cid, *_ in spans]
            assert sorted(vector_ids) == sorted(chunk_ids)  # one vector per chunk, none left over, none twice
            st = c.status()
            assert (st["papers"], st["chunks"], st["vectors"]) == (len(want), len(chunk_ids), len(chunk_ids))
            assert set(c.index.lexical().paper_ids) == set(want)

    check(expect_merged=False)
    # Run again one after the other, each merges its say with what the server holds: the
    # shared papers are then exactly one embedded ingest of all the files.
    for i, files in enumerate(halves):
        _client(tmp_path / f"home-{i}", embed_cache, chroma_server).ingest(list(files))
    check(expect_merged=True)


def test_cached_bm25_follows_the_server_generation(chroma_server: ChromaServer, tmp_path: Path,
                                                   embed_cache: Path) -> None:
    a = _client(tmp_path / "home-a", embed_cache, chroma_server)
    a.ingest(PAGES[:3])
    b = _client(tmp_path / "home-b", embed_cache, chroma_server)
    lex = b.index.lexical()
    assert len(lex.paper_ids) == a.status()["papers"]
    saved = b.index.dir / "bm25" / "ids.json"
    first = saved.stat().st_mtime_ns, saved.read_text()
    # Nothing changed on the server: a new client process (same home) loads the cache, no rebuild.
    b2 = _client(tmp_path / "home-b", embed_cache, chroma_server)
    assert b2.index.lexical().generation == lex.generation
    assert b2.search("preference optimization", mode="bm25")
    assert (saved.stat().st_mtime_ns, saved.read_text()) == first
    # A adds papers: B's long-lived client sees the new generation and rebuilds its cache.
    a.ingest(PAGES[3:])
    new_ids = {p.paper_id for p in a.papers()} - set(lex.paper_ids)
    assert new_ids
    title = next(p.title for p in a.papers() if p.paper_id in new_ids)
    hits = b2.search(title, mode="bm25", k=5)
    assert hits and hits[0].paper.paper_id in new_ids
    lex2 = b2.index.lexical()
    assert lex2.generation != lex.generation and len(lex2.paper_ids) == 247
    assert saved.read_text() != first[1]
    assert b2.status()["lexical_generation"] == b2.status()["catalogue_generation"] == lex2.generation


def test_prune_from_one_client_removes_for_all_and_stopped_server_is_one_line(chroma_server: ChromaServer,
                                                                            tmp_path: Path, embed_cache: Path) -> None:
    a = _client(tmp_path / "home-a", embed_cache, chroma_server, chroma_timeout=3)
    b = _client(tmp_path / "home-b", embed_cache, chroma_server, chroma_timeout=3)
    a.ingest(PAGES[:2])
    b.ingest(PAGES[2:3])
    total = b.status()["papers"]
    assert a.status()["papers"] == total
    rep = a.ingest(PAGES[:1], prune=True)  # prune keeps only what this client read now
    assert rep.removed > 0
    assert b.status()["papers"] == rep.papers_total == total - rep.removed
    assert {p.paper_id for p in b.papers()} == {p.paper_id for p in a.papers()}
    assert b.status()["vectors"] == b.status()["chunks"]
    chroma_server.stop()
    for call in (b.status, lambda: b.ask(QUESTION), b.papers):
        with pytest.raises(IndexStateError, match="is `chroma run` up") as err:
            call()
        assert "\n" not in str(err.value)
    r = subprocess.run(["assistant", "status"], capture_output=True, text=True, timeout=120,
                       env=cli_env(tmp_path / "home-b", embed_cache, CHROMA_HOST="127.0.0.1",
                                   CHROMA_PORT=str(chroma_server.port), ASSISTANT_CHROMA_TIMEOUT="3"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "is `chroma run` up" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_write_landing_while_bm25_is_built_invalidates_that_cache(chroma_server: ChromaServer, tmp_path: Path,
                                                                     embed_cache: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    a = _client(tmp_path / "home-a", embed_cache, chroma_server)
    a.ingest(PAGES[:1])
    b = _client(tmp_path / "home-b", embed_cache, chroma_server)
    cat = b.index.catalogue
    read_papers = cat.iter_papers

    def papers_then_a_writes(order: str = "title") -> Iterator[object]:
        papers = list(read_papers(order))  # B has read the papers ...
        a.ingest(PAGES[1:2])               # ... and A's write lands before B saves its cache
        return iter(papers)

    monkeypatch.setattr(cat, "iter_papers", papers_then_a_writes)
    stale = b.index.lexical()
    monkeypatch.undo()
    assert len(stale.paper_ids) < a.status()["papers"]
    # The cache carries the generation read before the papers, so it is already out of date:
    # another client process of B's home does not trust the copy on disk ...
    assert stale.generation != cat.generation
    b2 = _client(tmp_path / "home-b", embed_cache, chroma_server)
    assert len(b2.index.lexical().paper_ids) == a.status()["papers"]
    # ... and B's own next query rebuilds it.
    fresh = b.index.lexical()
    assert len(fresh.paper_ids) == a.status()["papers"] and fresh.generation == cat.generation


def test_clients_merge_each_others_records_as_one_embedded_ingest(chroma_server: ChromaServer, tmp_path: Path,
                                                                   embed_cache: Path) -> None:
    from tests.test_integrity import _catalogue, _overlapping, _write

    a_src, b_src = _overlapping(tmp_path)
    Assistant(make_settings(tmp_path / "embedded", embed_cache)).ingest([a_src, b_src])
    want = _catalogue(tmp_path / "embedded", embed_cache)
    a = _client(tmp_path / "home-a", embed_cache, chroma_server)
    b = _client(tmp_path / "home-b", embed_cache, chroma_server)
    a.ingest([a_src])
    b.ingest([b_src])  # B's say is merged with what A put on the server, field by field
    for c in (a, b):
        assert [p.to_dict() for p in c.index.catalogue.iter_papers(order="id")] == want
    # A record change outside the content hash (the same rows read from one more file: its
    # provenance) is rewritten without re-embedding, and still changes the generation, so
    # B's cache and records follow.
    gen = b.index.lexical().generation
    copy = _write(tmp_path / "copy" / "a.jsonl", a_src.read_text().splitlines())
    rep = a.ingest([copy])
    assert (rep.new, rep.updated, rep.chunks_written) == (0, 0, 0)
    first = json.loads(a_src.read_text().splitlines()[0])["id"]
    assert str(copy.absolute()) in b.get_paper(first).provenance
    assert b.index.lexical().generation != gen


def test_a_long_running_client_follows_a_rebuild_by_another(chroma_server: ChromaServer, tmp_path: Path,
                                                             embed_cache: Path) -> None:
    a = _client(tmp_path / "home-a", embed_cache, chroma_server)
    a.ingest(PAGES[:2])
    b = _client(tmp_path / "home-b", embed_cache, chroma_server)
    assert b.search("preference optimization") and b.status()["papers"] == a.status()["papers"]
    rep = a.ingest(PAGES[2:3], rebuild=True)  # the server's collections are dropped and made anew
    assert rep.papers_total == a.status()["papers"]
    hits = b.search("preference optimization", k=50)
    assert hits and {h.paper.paper_id for h in hits} <= {p.paper_id for p in a.papers()}
    st = b.status()
    assert (st["papers"], st["vectors"]) == (rep.papers_total, st["chunks"])


def test_bm25_reads_the_servers_papers_in_id_order_with_ids_sorted_on_disk(
        chroma_server: ChromaServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The BM25 build reads a server's papers in Python's id order (so ties break as in embedded mode),
    the ids listed a few at a time and sorted in a scratch file that is gone afterwards."""
    from assistant.index import server_catalogue

    monkeypatch.setattr(server_catalogue, "_ID_PAGE", 3)
    monkeypatch.setattr(server_catalogue, "_PAGE", 4)
    ids = ["b-2", "B-1", "a", "é-paper", "z9", "Z10", "ä", "10", "9", "a-b", "a_b", "ab"]
    src = tmp_path / "papers.jsonl"
    src.write_text("".join(json.dumps({"id": i, "title": f"Paper {n} on sparse attention",
                                       "abstract": f"We study sparse attention, case {n}."}) + "\n"
                           for n, i in enumerate(ids)))
    cache = tmp_path / "cache"
    a = _client(tmp_path / "home", cache, chroma_server)
    assert a.ingest([src]).new == len(ids)
    assert [p.paper_id for p in a.index.catalogue.iter_papers(order=None)] == sorted(ids)
    assert not [p for p in cache.rglob("ids-*")]  # the scratch folder went with the iteration
    assert a.index.lexical().paper_ids == sorted(ids)
