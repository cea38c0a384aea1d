"""The index: sample ingest, incremental re-ingest, prune, lock, kill-midway, bad input, model mismatch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import IndexStateError
from assistant.index.chunking import chunk_paper
from tests.conftest import SAMPLE_DIR, cli_env, make_settings


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _rows(n: int, start: int = 0, tag: str = "") -> list[dict]:
    return [{"id": f"p{i}", "title": f"Synthetic paper number {i} on reward modelling {tag}",
             "abstract": f"We study reward model {i}. It improves alignment of language models by {i} points. "
                         f"Experiments on benchmark B{i} confirm it. {tag}", "date": f"202{i % 5}-0{1 + i % 9}-15"}
            for i in range(start, start + n)]


def _chroma_ids(a: Assistant) -> list[str]:
    col = a.index.vectors.collection()
    return col.get(include=[])["ids"]


def test_sample_corpus_counts_and_reingest_is_noop(sample_home: Path, embed_cache: Path) -> None:
    a = Assistant(make_settings(sample_home, embed_cache))
    st = a.status()
    assert st["papers"] == 247
    assert st["chunks"] == st["vectors"] > 247
    assert st["built_with"] == "all-MiniLM-L6-v2-int8"
    from assistant.index.vectors import paper_sentences

    assert st["sentence_vectors"] == sum(len(paper_sentences(p)) for p in a.papers()) > 2000
    empty = Assistant(make_settings(sample_home.parent / "never-built", embed_cache)).status()
    assert empty["papers"] == empty["sentence_vectors"] == 0
    rep = a.ingest([SAMPLE_DIR])
    assert (rep.entries, rep.duplicates_merged, rep.duplicate_papers) == (344, 97, 65)
    assert (rep.new, rep.updated, rep.unchanged) == (0, 0, 247)
    assert rep.chunks_written == 0
    ids = _chroma_ids(a)
    assert len(ids) == len(set(ids)) == st["chunks"]


def test_chunks_carry_offsets_and_metadata(sample_assistant: Assistant) -> None:
    a = sample_assistant
    p = a.papers()[0]
    spans = a.index.catalogue.chunk_spans([p.paper_id])[p.paper_id]
    col = a.index.vectors.collection()
    got = col.get(ids=[cid for cid, *_ in spans], include=["metadatas"])
    chunks = {c.chunk_id: c for c in chunk_paper(p, a.settings.index.chunk_size, a.settings.index.chunk_overlap)}
    assert set(got["ids"]) == set(chunks)
    for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
        # Chroma keeps no text: the offsets into the catalogue's abstract give the chunk back.
        assert p.abstract[meta["start"]:meta["end"]] == chunks[cid].text
        assert meta["paper_id"] == p.paper_id and meta["title"] == p.title
    covered = set()
    for _, _, s, e in spans:
        covered.update(range(s, e))
    assert len(covered) >= 0.95 * len(p.abstract)


def test_changed_paper_is_replaced_and_prune_removes(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    src = _jsonl(tmp_path / "a.jsonl", _rows(6))
    rep = a.ingest([src])
    assert (rep.new, rep.updated, rep.unchanged) == (6, 0, 0)
    rows = _rows(6)
    rows[2]["abstract"] = "A completely rewritten abstract about token-level DPO. It has two sentences."
    _jsonl(src, rows[:5])
    rep = a.ingest([src])
    assert (rep.new, rep.updated, rep.unchanged) == (0, 1, 4)
    assert "token-level DPO" in a.get_paper("p2").abstract
    assert a.search("token-level DPO rewritten", k=1)[0].paper.paper_id == "p2"
    assert a.status()["papers"] == 6  # p5 is still there without --prune
    rep = a.ingest([src], prune=True)
    assert rep.removed == 1 and a.get_paper("p5") is None
    assert {m for m in _chroma_ids(a) if m.startswith("p5#")} == set()
    assert "p5" not in a.index.lexical().paper_ids
    assert a.status()["papers"] == 5


def test_same_titled_papers_from_two_files_survive_any_order_of_ingests(fresh_home: Path, embed_cache: Path,
                                                                         tmp_path: Path) -> None:
    """Two id-less records share a title: one ingest of both kept two papers, but ingesting the files
    one after the other replaced the first with the second, and re-reading the second file alone then
    stored its abstract under both ids (the first paper lost)."""
    x = "Reinforcement learning from human feedback aligns models. We study reward hacking with zebras."
    y = "Graph neural networks pass messages along edges. We analyse oversmoothing with giraffes."
    a_file = _jsonl(tmp_path / "a.jsonl", [{"title": "A Shared Title", "abstract": x}])
    b_file = _jsonl(tmp_path / "b.jsonl", [{"title": "A Shared Title", "abstract": y}])

    def abstracts(a: Assistant) -> list[str]:
        return sorted(p.abstract for p in a.papers())

    for n, runs in enumerate([[[a_file, b_file]], [[a_file], [b_file]], [[b_file], [a_file]]]):
        home = fresh_home / str(n)
        a = Assistant(make_settings(home, embed_cache))
        for run in runs:
            a.ingest(run)
        assert abstracts(a) == [y, x], runs
        for again in ([b_file], [a_file], [b_file, a_file], [a_file, b_file]):
            rep = a.ingest(again)
            assert (rep.new, rep.updated) == (0, 0), (runs, again)
            assert abstracts(a) == [y, x], (runs, again)
        assert a.search("oversmoothing giraffes", k=2)[0].paper.abstract == y
    # An edit of the record in the file that gave it is still an edit, not a new paper.
    _jsonl(a_file, [{"title": "A Shared Title", "abstract": x + " Edited."}])
    rep = a.ingest([a_file])
    assert (rep.new, rep.updated) == (0, 1)
    assert abstracts(a) == [y, x + " Edited."]


def test_a_file_with_two_papers_of_a_title_another_file_has_keeps_both(fresh_home: Path, embed_cache: Path,
                                                                        tmp_path: Path) -> None:
    """The index's first paper of that title from the file was taken for each record: the second was lost,
    and after an edit every unchanged re-ingest swapped the two back and forth."""
    a = Assistant(make_settings(fresh_home, embed_cache))
    b1, b2 = "Beta editorial about penguins in Antarctica.", "Gamma editorial about quantum error correction."
    a.ingest([_jsonl(tmp_path / "a.jsonl", [{"title": "Editorial", "abstract": "Alpha editorial on lava."}])])
    b_file = _jsonl(tmp_path / "b.jsonl", [{"title": "Editorial", "abstract": b1},
                                           {"title": "Editorial", "abstract": b2}])
    a.ingest([b_file])
    assert a.ingest([b_file]).updated == 0
    _jsonl(b_file, [{"title": "Editorial", "abstract": b1 + " Edited."}, {"title": "Editorial", "abstract": b2}])
    a.ingest([b_file])
    kept = sorted(p.abstract for p in a.papers())
    for _ in range(2):
        rep = a.ingest([b_file])
        assert (rep.new, rep.updated) == (0, 0) and sorted(p.abstract for p in a.papers()) == kept
    assert {b1 + " Edited.", b2} <= set(kept)  # (the old b1 stays until --prune: which record changed is unknown)
    assert a.ingest([tmp_path / "a.jsonl", b_file], prune=True).removed == 1
    assert sorted(p.abstract for p in a.papers()) == sorted(["Alpha editorial on lava.", b1 + " Edited.", b2])


def test_an_upload_replaces_the_id_less_record_of_its_title(fresh_home: Path, embed_cache: Path,
                                                             tmp_path: Path) -> None:
    """The server's upload is an upsert (the last upload wins): a corrected id-less record sent under
    another name was kept beside the old one as a paper of its own."""
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.ingest([_jsonl(tmp_path / "a.jsonl", [{"title": "T", "abstract": "Old text of the paper."}])])
    up = _jsonl(tmp_path / "upload.jsonl", [{"title": "T", "abstract": "Corrected text of the paper."}])
    from assistant.readers import file_key

    rep = a.ingest([up], names={file_key(up): "upload:fix.jsonl"}, replace=True)
    assert (rep.new, rep.updated) == (0, 1)
    assert [p.abstract for p in a.papers()] == ["Corrected text of the paper."]


def test_a_rebuild_with_a_source_it_cannot_read_changes_nothing(fresh_home: Path, embed_cache: Path,
                                                                  tmp_path: Path) -> None:
    """`ingest --rebuild ok.jsonl typo.jsonl` dropped every paper and indexed ok.jsonl's alone."""
    a = Assistant(make_settings(fresh_home, embed_cache))
    src = _jsonl(tmp_path / "a.jsonl", _rows(4))
    other = _jsonl(tmp_path / "b.jsonl", _rows(2, start=4))
    a.ingest([src, other])
    run = subprocess.run(["assistant", "ingest", "--rebuild", str(src), str(tmp_path / "typo.jsonl")],
                         env=cli_env(fresh_home, embed_cache), capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        f"error: --rebuild refused, the index is unchanged: {tmp_path / 'typo.jsonl'}: no such file or folder; "
        "check the path and run `assistant ingest PATH` again (files or folders); a rebuild keeps only the papers "
        "it reads, so fix the source or leave it out"]
    assert a.status()["papers"] == 6
    bad = tmp_path / "half.jsonl"
    bad.write_text(json.dumps(_rows(1, start=9)[0]) + "\n{not json\n")
    rep = a.ingest([src, bad], rebuild=True)  # a skipped record inside a file read: the rebuild goes on
    assert rep.papers_total == 5 and len(rep.problems) == 1


def test_lock_no_wait_fails_clearly_and_waiting_writer_proceeds(fresh_home: Path, embed_cache: Path,
                                                                tmp_path: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    src = _jsonl(tmp_path / "a.jsonl", _rows(3))
    messages: list[str] = []
    with a.index.write_lock():
        b = Assistant(make_settings(fresh_home, embed_cache))
        with pytest.raises(IndexStateError, match="another ingest is writing"):
            b.ingest([src], wait=False)
        done = threading.Event()

        class Rep:
            def start(self, *a: object) -> None: ...
            def advance(self, *a: object) -> None: ...
            def finish(self, *a: object) -> None: ...
            def message(self, text: str) -> None:
                messages.append(text)

        t = threading.Thread(target=lambda: (b.ingest([src], progress=Rep()), done.set()))
        t.start()
        time.sleep(1.0)
        assert not done.is_set()  # waiting for the lock
    t.join(timeout=120)
    assert done.is_set()
    assert any("waiting" in m for m in messages)
    assert b.status()["papers"] == 3


@pytest.mark.parametrize("attempt", range(2))
def test_ctrl_c_midway_says_interrupted_and_exits_130(attempt: int, tmp_path: Path, embed_cache: Path) -> None:
    """Ctrl-C while papers are embedded on every core: `interrupted`, exit 130 (it used to abort with
    "terminate called without an active exception", exit 134, when a worker was inside onnxruntime),
    and the next ingest completes the index."""
    src = _jsonl(tmp_path / "a.jsonl", [{**r, "abstract": r["abstract"] * 6} for r in _rows(400)])
    home = tmp_path / "home"
    env = cli_env(home, tmp_path / "cache")  # own cache: the embedding really runs when the signal lands
    # SIGINT as a terminal delivers it: a run started in the background (CI's nohup'd shell) would
    # otherwise pass on SIGINT ignored, and Python keeps an ignored SIGINT ignored.
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "ingest", "--batch", "50", str(src)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("Embedding papers:"):  # a progress line: the embedding workers are running
            break
    time.sleep(0.3 * attempt)
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130, rest
    assert rest.strip().splitlines()[-1] == "interrupted" and "terminate called" not in rest, rest
    done = subprocess.run([sys.executable, "-m", "assistant", "ingest", str(src)], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert Assistant(make_settings(home, embed_cache)).status()["papers"] == 400


KILL_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from assistant.api import Assistant
    from assistant.settings import Settings
    a = Assistant(Settings.load(env={}, home=Path(sys.argv[1]), cache_dir=Path(sys.argv[2])))
    def after(b):
        print(f"batch {b}", flush=True)
    a.ingest([sys.argv[3]], batch_papers=8, after_batch=after)
    print("done", flush=True)
""")


@pytest.mark.parametrize("kill_after_batch", [0, 2, -1])
def test_sigkill_midway_then_rerun_equals_clean_ingest(kill_after_batch: int, tmp_path: Path,
                                                       embed_cache: Path) -> None:
    src = _jsonl(tmp_path / "a.jsonl", _rows(40))
    home = tmp_path / "home"
    script = tmp_path / "ingest.py"
    script.write_text(KILL_SCRIPT)
    cache = tmp_path / "cache"  # own cache: embedding must really run, so the kill lands mid-work
    proc = subprocess.Popen([sys.executable, str(script), str(home), str(cache), str(src)],
                            stdout=subprocess.PIPE, text=True, env=cli_env(home))
    assert proc.stdout is not None
    if kill_after_batch < 0:
        time.sleep(2.5)  # somewhere during model load / reading / the first batch
    else:
        for line in proc.stdout:
            if line.strip() == f"batch {kill_after_batch}":
                break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    a = Assistant(make_settings(home, embed_cache))
    if a.index.exists():  # the interrupted index is usable: search works on what was committed
        a.auto_sample = False
        a.search("reward model alignment", k=3)
    rep = a.ingest([src])
    assert rep.papers_total == 40
    clean_home = tmp_path / "clean"
    clean = Assistant(make_settings(clean_home, embed_cache)).ingest([src])
    assert (rep.papers_total, rep.chunks_total) == (clean.papers_total, clean.chunks_total)
    ids = _chroma_ids(a)
    assert len(ids) == len(set(ids)) == clean.chunks_total
    lex = a.index.lexical()
    assert sorted(lex.paper_ids) == sorted(set(lex.paper_ids)) and len(lex.paper_ids) == 40
    assert a.ingest([src]).new == 0


def test_bad_inputs_are_reported_and_good_records_still_go_in(fresh_home: Path, embed_cache: Path,
                                                              tmp_path: Path) -> None:
    good = _rows(2)
    lines = [json.dumps(good[0]), "{not json", json.dumps({"abstract": "no title here"}), json.dumps(good[1])]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(lines) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(b"\x00\x01\x02binary\x00" * 50)
    a = Assistant(make_settings(fresh_home, embed_cache))
    rep = a.ingest([src, empty, binary])
    assert rep.new == 2 and rep.ok
    text = "\n".join(rep.problems)
    assert "mixed.jsonl:line 2" in text.replace(": line", ":line")
    assert "mixed.jsonl:line 3" in text.replace(": line", ":line")
    assert "empty.jsonl" in text and "blob.csv" in text
    assert rep.skipped >= 4


def test_cli_exit_code_nonzero_only_when_nothing_read(tmp_path: Path, embed_cache: Path) -> None:
    home = tmp_path / "home"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = subprocess.run(["assistant", "ingest", str(empty)], env=cli_env(home, embed_cache),
                       capture_output=True, text=True)
    assert r.returncode == 1 and "empty.jsonl" in r.stderr
    ok = _jsonl(tmp_path / "ok.jsonl", _rows(2))
    r = subprocess.run(["assistant", "ingest", str(ok), str(empty)], env=cli_env(home, embed_cache),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "papers new" in r.stderr and "empty.jsonl" in r.stderr
    r = subprocess.run(["assistant", "ingest", str(tmp_path / "missing.jsonl")], env=cli_env(home, embed_cache),
                       capture_output=True, text=True)
    assert r.returncode == 1 and "missing.jsonl" in r.stderr and "Traceback" not in r.stderr


def test_other_embedding_model_is_a_clear_error(copied_sample_home: Path, embed_cache: Path) -> None:
    a = Assistant(make_settings(copied_sample_home, embed_cache, embedding="openai",
                                openai_base_url="http://127.0.0.1:9/v1"))
    with pytest.raises(IndexStateError, match="built with embedding model 'all-MiniLM-L6-v2-int8'.*--rebuild"):
        a.search("anything")


def test_read_only_home_is_a_clear_error(copied_sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0 and shutil.which("unshare") is None:
        pytest.skip("root ignores permissions and no unshare to drop them")
    ro = tmp_path / "ro"
    ro.mkdir()
    src = _jsonl(tmp_path / "a.jsonl", _rows(2))
    code = ("import sys\nfrom assistant.api import Assistant\nfrom assistant.settings import Settings\n"
            "from pathlib import Path\nfrom assistant.errors import AssistantError\n"
            f"a = Assistant(Settings.load(env={{}}, home=Path({str(ro / 'home')!r})))\n"
            "try:\n"
            f"    a.ingest([{str(src)!r}])\n"
            "except AssistantError as e:\n    print('ERR', e)\n")
    # A read-only bind mount makes the home unwritable even for root.
    cmd = ["unshare", "-m", "bash", "-c", f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} && "
                                          f"{sys.executable} -c \"$0\"", code]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(ro))
    if "mount" in r.stderr and r.returncode != 0 and "ERR" not in r.stdout:
        pytest.skip(f"cannot make a read-only mount here: {r.stderr.strip()[:200]}")
    assert "ERR" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert "ASSISTANT_HOME" in r.stdout or "read-only" in r.stdout.lower()


def test_token_counting_works_with_network_cut(tmp_path: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare not available")
    code = ("from assistant.index.chunking import count_tokens\n"
            "print(count_tokens('Token-level DPO aligns language models.'))")
    env = cli_env(tmp_path)
    env.pop("TIKTOKEN_CACHE_DIR", None)
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode != 0 and "unshare" in r.stderr and "Operation not permitted" in r.stderr:
        pytest.skip("no permission to cut the network here")
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) > 5


def test_store_is_split_and_bm25_idf_reads_the_stored_document_frequencies(sample_assistant: Assistant) -> None:
    """Catalogue, vectors and BM25 live in their own modules; idf comes from df.json written at build
    time, checked against an independent count over the catalogue, with bm25s's score matrix gone."""
    import math
    from collections import Counter

    from assistant.index.catalogue import Catalogue
    from assistant.index.lexical import LexicalIndex
    from assistant.index.vectors import VectorStore
    from assistant.text import content_tokens

    a = sample_assistant
    assert isinstance(a.index.catalogue, Catalogue) and isinstance(a.index.vectors, VectorStore)
    papers = list(a.index.catalogue.iter_papers(order="id"))
    df = Counter(t for p in papers for t in set(content_tokens(LexicalIndex.document_text(p))))
    saved = json.loads((a.index.dir / "bm25" / "df.json").read_text())
    assert saved["df"] == dict(df) and saved["n_docs"] == len(papers) == 247
    lex = LexicalIndex(a.index.dir / "bm25")
    assert lex.load()
    lex.retriever.scores = None  # bm25s internals: idf must not need them
    common, rare = df.most_common(1)[0][0], min(df, key=lambda t: (df[t], t))
    idf = lex.idf([common, rare, "zzzunseen"])
    n = len(papers)
    for t in (common, rare):
        assert idf[t] == pytest.approx(math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)))
    assert idf["zzzunseen"] == pytest.approx(math.log(1 + (n + 0.5) / 0.5))
    assert idf[common] < idf[rare] < idf["zzzunseen"]


def test_a_reopen_waits_for_reads_in_flight_and_nested_reads_do_not_deadlock() -> None:
    """``PaperIndex.reading``'s guard: the vector store is closed for a reopen only while no
    question is reading it, and a thread already reading may read again."""
    import threading

    from assistant.index.paper_index import _Readers

    readers = _Readers()
    inside, release, reopened = threading.Event(), threading.Event(), threading.Event()

    def question() -> None:
        with readers.read():
            with readers.read():  # nested: must not wait for anything
                assert readers.held()
            inside.set()
            release.wait(10)

    def reopen() -> None:
        with readers.exclusive():
            reopened.set()

    q = threading.Thread(target=question)
    q.start()
    assert inside.wait(10)
    r = threading.Thread(target=reopen)
    r.start()
    assert not reopened.wait(0.3)  # a question is reading: the reopen waits
    release.set()
    assert reopened.wait(10)
    q.join(10)
    r.join(10)
    assert not readers.held()


def test_a_reopen_is_not_starved_by_a_steady_flow_of_questions() -> None:
    """Questions that overlap (a busy `serve`) never let the count of readers reach 0, so a reopen, and an
    ingest holding the ingest lock while it waited for one, waited without end. A question that starts while
    a reopen waits now waits behind it; a thread already reading still goes on."""
    import threading
    import time

    from assistant.index.paper_index import _Readers

    readers = _Readers()
    stop = threading.Event()

    def questions() -> None:
        while not stop.is_set():
            with readers.read():
                time.sleep(0.02)
                with readers.read():  # nested: never waits, even behind a reopen
                    pass

    threads = [threading.Thread(target=questions) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    got_in = threading.Event()

    def reopen() -> None:
        with readers.exclusive():
            got_in.set()

    r = threading.Thread(target=reopen)
    r.start()
    try:
        assert got_in.wait(30)  # a hang guard, not a timing: without the turn it never got in
    finally:
        stop.set()
        for t in [*threads, r]:
            t.join(30)


def test_a_question_that_fails_as_a_concurrent_write_makes_it_fail_is_asked_again(
        copied_sample_home: Path, embed_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded Chroma's errors while another process writes the folder ("Error finding id",
    "Nothing found on disk") are asked again on a reopened store; any other failure with no write
    meanwhile is raised at once, and a lasting one after the retries."""
    from assistant.api import Assistant
    from assistant.errors import IndexStateError
    from assistant.index import vectors as vectors_mod
    from assistant.retrieval import RETRIES_AFTER_WRITES, HybridRetriever

    a = Assistant(make_settings(copied_sample_home, embed_cache))
    a.auto_sample = False
    real = HybridRetriever._retrieve
    calls: list[int] = []

    def failing(errors: list[str]) -> object:
        def fake(self: HybridRetriever, *args: object) -> object:
            calls.append(1)
            if errors:
                raise IndexStateError(errors.pop(0))
            return real(self, *args)
        return fake

    opened = a.index.vectors
    monkeypatch.setattr(HybridRetriever, "_retrieve", failing(
        ["x: Chroma failed: Error executing plan: Internal error: Error finding id"]))
    assert a.retriever.retrieve("direct preference optimization").sources and len(calls) == 2
    assert a.index.vectors is not opened  # reopened before the second try

    calls.clear()
    monkeypatch.setattr(HybridRetriever, "_retrieve", failing(["x: Chroma failed: something else"]))
    with pytest.raises(IndexStateError, match="something else"):
        a.retriever.retrieve("direct preference optimization")
    assert len(calls) == 1

    calls.clear()
    lasting = "x: Chroma failed: Nothing found on disk"
    monkeypatch.setattr(HybridRetriever, "_retrieve", failing([lasting] * 10))
    with pytest.raises(IndexStateError, match="Nothing found on disk"):
        a.retriever.retrieve("direct preference optimization")
    assert len(calls) == RETRIES_AFTER_WRITES + 1

    msg = vectors_mod._chroma_error(a.settings, Path("/h/index/chroma"), RuntimeError(
        "Error executing plan: Internal error: Error creating hnsw segment reader: Nothing found on disk"))
    assert "another process was writing the index" in msg and "writable" not in msg
