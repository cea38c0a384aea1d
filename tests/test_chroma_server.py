"""Server mode against a real `chroma run` on loopback: same answers as embedded mode,
and a stopped or frozen server gives a clear error instead of a hang."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import IndexStateError
from tests.conftest import SAMPLE_DIR, make_settings

pytestmark = pytest.mark.chroma_server

QUESTIONS = ["What does ARRA align LLM hidden states with?",
             "Which papers remove the need for a reference model in preference optimization?",
             "What is the capital of France?"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChromaServer:
    def __init__(self, path: Path, log: Path) -> None:
        exe = shutil.which("chroma")
        if exe is None:
            pytest.skip("the `chroma` command (ships with chromadb) is not installed")
        self.port = _free_port()
        self.log = log.open("wb")
        self.proc = subprocess.Popen([exe, "run", "--path", str(path), "--host", "127.0.0.1", "--port",
                                      str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "ANONYMIZED_TELEMETRY": "False"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"chroma run did not answer its heartbeat: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture()
def chroma_server(tmp_path: Path) -> Iterator[ChromaServer]:
    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    yield server
    server.stop()


def test_server_mode_answers_match_embedded_mode(chroma_server: ChromaServer, sample_assistant: Assistant,
                                                 tmp_path: Path, embed_cache: Path) -> None:
    settings = make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1", chroma_port=chroma_server.port)
    a = Assistant(settings)
    rep = a.ingest([SAMPLE_DIR])
    assert rep.papers_total == 247
    # The report's totals are two count requests on a server; they agree with the scanned summary and
    # with the embedded home's.
    assert (rep.papers_total, rep.chunks_total) == a.index.catalogue.count() == sample_assistant.index.catalogue.count()
    assert a.index.catalogue.paper_count() == sample_assistant.index.catalogue.paper_count() == 247
    assert a.status()["vectors"] == sample_assistant.status()["vectors"]
    assert "chroma server" in a.status()["mode"]
    # Sentence vectors live on the server too (NAME.sentences) and give the same similarities.
    assert a.index.vectors.sentences.count() == sample_assistant.index.vectors.sentences.count() > 0
    remote_r, local_r = a.retriever.retrieve(QUESTIONS[0]), sample_assistant.retriever.retrieve(QUESTIONS[0])
    common = set(remote_r.sentence_sims) & set(local_r.sentence_sims)
    assert len(common) >= 20
    assert all(abs(remote_r.sentence_sims[k] - local_r.sentence_sims[k]) < 1e-5 for k in common)
    for q in QUESTIONS:
        remote, local = a.ask(q), sample_assistant.ask(q)
        assert remote.text == local.text
        # HNSW is approximate, and whether a query is served from the exact write log or the
        # compacted graph depends on background compaction (timing): near-ties at rank 4-5 can
        # swap under load. The answer (above) must be identical, the top 3 identical in order,
        # and the top 5 the same papers but for at most one.
        remote_ids = [s.paper.paper_id for s in remote.sources[:5]]
        local_ids = [s.paper.paper_id for s in local.sources[:5]]
        assert remote_ids[:3] == local_ids[:3]
        assert len(set(remote_ids) & set(local_ids)) >= 4
    # A second client (another process, another home) sees the same collection.
    again = Assistant(make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                                    chroma_port=chroma_server.port))
    assert again.ingest([SAMPLE_DIR]).new == 0


def test_stopped_server_is_a_clear_error(chroma_server: ChromaServer, tmp_path: Path, embed_cache: Path) -> None:
    settings = make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                             chroma_port=chroma_server.port, chroma_timeout=3)
    a = Assistant(settings)
    a.ingest([SAMPLE_DIR])
    a.ask(QUESTIONS[0])
    # Frozen server (SIGSTOP): the request must time out, not hang.
    chroma_server.proc.send_signal(signal.SIGSTOP)
    t = time.monotonic()
    with pytest.raises(IndexStateError, match="Chroma server at 127.0.0.1"):
        a.ask(QUESTIONS[1])
    assert time.monotonic() - t < 60
    chroma_server.proc.send_signal(signal.SIGCONT)
    # Dead server: connection refused, one clear line.
    chroma_server.stop()
    with pytest.raises(IndexStateError, match="CHROMA_HOST"):
        a.ask(QUESTIONS[2])
    fresh = Assistant(settings)
    with pytest.raises(IndexStateError, match="is `chroma run` up"):
        fresh.search("anything")


def _rows_file(path: Path, start: int, n: int) -> Path:
    import json

    path.write_text("".join(json.dumps({
        "id": f"s{i}", "title": f"Shared paper {i} on reward model ensembles",
        "abstract": f"Reward model ensemble {i} reduces over-optimisation by {i} points on benchmark E{i}. "
                    "We release code.", "date": f"2024-0{1 + i % 9}-02"}) + "\n" for i in range(start, start + n)))
    return path


def test_two_homes_share_one_server_index(chroma_server: ChromaServer, tmp_path: Path, embed_cache: Path) -> None:
    """Every client sees every paper any client ingested; two clients ingesting at once end with the union."""
    from tests.conftest import cli_env

    def client(name: str) -> Assistant:
        return Assistant(make_settings(tmp_path / name, embed_cache, chroma_host="127.0.0.1",
                                       chroma_port=chroma_server.port))

    a_src, b_src = _rows_file(tmp_path / "a.jsonl", 0, 12), _rows_file(tmp_path / "b.jsonl", 12, 12)
    assert client("home-a").ingest([a_src]).papers_total == 12
    b = client("home-b")
    assert b.status()["papers"] == 12  # another home, same server: A's papers are there
    assert "s3" in [s.paper.paper_id for s in b.search("Shared paper 3 reward model ensembles", k=3)]
    assert b.ingest([a_src]).new == 0  # nothing re-embedded: the records came from the server
    assert b.ingest([b_src]).new == 12
    time.sleep(2.1)  # clients re-check the server's generation at most every 2 s
    assert client("home-a").status()["papers"] == 24
    # Two clients (processes, homes) ingesting different files at once end with the union.
    c_src, d_src = _rows_file(tmp_path / "c.jsonl", 24, 10), _rows_file(tmp_path / "d.jsonl", 34, 10)
    env = {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_server.port)}
    procs = [subprocess.Popen(["assistant", "ingest", str(src)], env=cli_env(tmp_path / home, embed_cache, **env),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src, home in ((c_src, "home-c"), (d_src, "home-d"))]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    time.sleep(2.1)  # clients re-check the server's generation at most every 2 s
    for home in ("home-a", "home-b", "home-c", "home-d"):
        c = client(home)
        ids = {p.paper_id for p in c.papers()}
        assert ids == {f"s{i}" for i in range(44)}, home
        assert set(c.index.lexical().paper_ids) == ids
        assert "s40" in [s.paper.paper_id for s in c.search("Shared paper 40 reward model ensembles", k=3)]


def test_same_titled_papers_on_a_server_keep_apart_and_edit_in_place(chroma_server: ChromaServer, tmp_path: Path,
                                                                      embed_cache: Path) -> None:
    """The server catalogue's title lookup: a paper sharing a title with another file's is kept apart,
    and an edit of it in its own file updates it (the lookup finds it by title and file)."""
    import json

    a = Assistant(make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                                chroma_port=chroma_server.port))
    x, y = "Reward hacking with zebras. We study it.", "Oversmoothing with giraffes. We analyse it."
    a_src, b_src = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    b_src.write_text(json.dumps({"title": "One Title", "abstract": y}) + "\n")
    a_src.write_text(json.dumps({"title": "One Title", "abstract": x}) + "\n")
    a.ingest([b_src])
    assert a.ingest([a_src]).new == 1
    a_src.write_text(json.dumps({"title": "One Title", "abstract": x + " Edited."}) + "\n")
    rep = a.ingest([a_src])
    assert (rep.new, rep.updated) == (0, 1)
    assert sorted(p.abstract for p in a.papers()) == [y, x + " Edited."]


def test_title_lookups_on_a_server_do_not_grow_with_the_id_less_papers(chroma_server: ChromaServer, tmp_path: Path,
                                                                        embed_cache: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a file asked the server for each id-less paper's indexed record of its title, one request per
    paper (~30 min of round trips for a million such papers): a reader's batch is one lookup."""
    from assistant.index.server_catalogue import ServerCatalogue

    a = Assistant(make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                                chroma_port=chroma_server.port))

    def rows(path: Path, n: int) -> Path:
        path.write_text("".join(json.dumps({"title": f"{path.stem} title {i}",
                                            "abstract": f"Paper {i} of {path.stem} on reward models."}) + "\n"
                                for i in range(n)))
        return path

    small, big = rows(tmp_path / "small.jsonl", 3), rows(tmp_path / "big.jsonl", 30)
    a.ingest([small, big])
    calls: list[str] = []
    real = ServerCatalogue._call

    def counted(self: ServerCatalogue, fn: object, *args: object, **kwargs: object) -> object:
        calls.append(getattr(fn, "__name__", "?"))
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ServerCatalogue, "_call", counted)
    made = []
    for src in (small, big):
        calls.clear()
        rep = a.ingest([src])
        assert (rep.new, rep.updated) == (0, 0)
        made.append(len(calls))
    assert made[0] == made[1], made


def test_a_collection_of_another_model_on_the_server_is_refused_to_an_ingest(
        chroma_server: ChromaServer, tmp_path: Path, embed_cache: Path) -> None:
    """A first catalogue access that failed the model check was kept unchecked: an ingest from a home with
    the local model then wrote MiniLM vectors into a collection recorded as another model's, which no
    client could use after."""
    from assistant.errors import IndexStateError

    server = {"chroma_host": "127.0.0.1", "chroma_port": chroma_server.port}
    other = Assistant(make_settings(tmp_path / "s6", embed_cache, embedding="openai",
                                    openai_base_url="http://127.0.0.1:9/v1", **server))
    other.create_collection("mixed")
    local = Assistant(make_settings(tmp_path / "s7", embed_cache, collection="mixed", **server))
    src = _rows_file(tmp_path / "a.jsonl", 0, 2)
    for _ in range(2):  # the second attempt too: the failed check is not remembered as passed
        with pytest.raises(IndexStateError, match=r"\(collection 'mixed'\) was built with embedding model "
                                                  "'text-embedding-3-small'"):
            local.ingest([src])
    assert other.collection_info("mixed").papers == 0


def test_another_applications_collections_are_left_alone(chroma_server: ChromaServer, tmp_path: Path,
                                                         embed_cache: Path) -> None:
    """A Chroma collection another program made ('notes') was listed as a collection, and
    `collections delete notes -y` deleted it."""
    import chromadb

    from assistant.collection_names import CollectionError
    from assistant.errors import IndexStateError

    other = chromadb.HttpClient(host="127.0.0.1", port=chroma_server.port)
    notes = other.get_or_create_collection("notes", embedding_function=None)
    notes.add(ids=["n1", "n2"], embeddings=[[0.1] * 8, [0.2] * 8])
    a = Assistant(make_settings(tmp_path / "home", embed_cache, chroma_host="127.0.0.1",
                                chroma_port=chroma_server.port))
    assert [c.name for c in a.collections()] == ["default"]
    with pytest.raises(CollectionError, match="no collection 'notes'"):
        a.delete_collection("notes")
    with pytest.raises(IndexStateError, match="'notes' was not made by paper-assistant"):
        a.use("notes").ingest([_rows_file(tmp_path / "a.jsonl", 0, 2)])
    assert other.get_collection("notes").count() == 2
    assert "notes.meta" not in {c.name for c in other.list_collections()}
    # A home of the layout before .meta (chunk and sentence collections, the papers kept locally) is this
    # tool's own: its documented upgrade, one ingest over the same sources, goes ahead.
    other.get_or_create_collection("papers", embedding_function=None,
                                   metadata={"hnsw:space": "cosine", "embedding_model": "all-MiniLM-L6-v2-int8"})
    other.get_or_create_collection("papers.sentences", embedding_function=None)
    assert a.ingest([_rows_file(tmp_path / "b.jsonl", 0, 2)]).new == 2


def test_a_collection_another_client_deleted_is_named_as_gone(chroma_server: ChromaServer, tmp_path: Path,
                                                              embed_cache: Path) -> None:
    """It read as "the shared index is being rebuilt ... run `assistant ingest --rebuild`" (a 503), and
    following that advice made the deleted collection again."""
    from assistant.collection_names import NoSuchCollection

    server = {"chroma_host": "127.0.0.1", "chroma_port": chroma_server.port}
    a = Assistant(make_settings(tmp_path / "a", embed_cache, collection="sy", **server))
    b = Assistant(make_settings(tmp_path / "b", embed_cache, **server))
    src = _rows_file(tmp_path / "s.jsonl", 0, 3)
    a.ingest([src])
    assert a.search("Shared paper 1 reward model ensembles", 2)
    b.delete_collection("sy")
    with pytest.raises(NoSuchCollection, match="no collection 'sy'"):
        a.search("Shared paper 1 reward model ensembles", 2, mode="dense")
    b.use("sy").ingest([src])
    assert a.search("Shared paper 1 reward model ensembles", 2, mode="dense")


def test_frozen_server_is_one_line_within_the_timeout(chroma_server: ChromaServer, tmp_path: Path,
                                                      embed_cache: Path) -> None:
    """A `chroma run` frozen by SIGSTOP (it still accepts connections, never answers): `ask`, `status`,
    `ingest` in fresh processes (client construction talks to the server) and the server's `/healthz`
    each end with one line naming the timeout. Before, every one of them hung."""
    import sys

    from tests.conftest import cli_env
    from tests.server_process import ServerProcess

    timeout = 4
    env = {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(chroma_server.port),
           "ASSISTANT_CHROMA_TIMEOUT": str(timeout)}
    src = _rows_file(tmp_path / "a.jsonl", 0, 6)
    home = tmp_path / "home"
    done = subprocess.run([sys.executable, "-m", "assistant", "ingest", str(src)],
                          env=cli_env(home, embed_cache, **env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    server = ServerProcess(tmp_path / "serve-home", embed_cache, tmp_path / "serve.log", env=env)
    try:
        assert server.json("GET", "/healthz")[1]["papers"] == 6
        chroma_server.proc.send_signal(signal.SIGSTOP)
        # A generous bound (interpreter start and model load included): the point is "returns", not speed.
        bound = 3 * timeout + 30
        for args in (["ask", "Which reward model ensemble reduces over-optimisation?"], ["status"],
                     ["ingest", str(_rows_file(tmp_path / "b.jsonl", 6, 3))]):
            run = subprocess.run([sys.executable, "-m", "assistant", *args], env=cli_env(home, embed_cache, **env),
                                 capture_output=True, text=True, timeout=bound)
            assert run.returncode == 1, (args, run.stdout, run.stderr)
            errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, (args, run.stderr)
            assert f"did not answer within {timeout} s" in errors[0] and "Traceback" not in run.stderr, run.stderr
        status, body = server.json("GET", "/healthz", timeout=bound)
        assert status == 503 and f"did not answer within {timeout} s" in json.dumps(body), body
    finally:
        chroma_server.proc.send_signal(signal.SIGCONT)
        server.stop()
    # Thawed, everything works again (nothing was left half-written by the failed ingest).
    again = Assistant(make_settings(home, embed_cache, chroma_host="127.0.0.1", chroma_port=chroma_server.port))
    assert again.status()["papers"] == 6


def test_an_empty_server_index_is_named_not_answered_with_refusals(chroma_server: ChromaServer, tmp_path: Path,
                                                                    embed_cache: Path) -> None:
    """`ask` on a Chroma server holding no papers printed "The indexed papers do not answer this." (exit 0),
    and `papers list` an empty table without a hint - also for a home whose embedded index is full."""
    from tests.conftest import cli_env

    env = cli_env(tmp_path / "home", embed_cache, CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(chroma_server.port))
    r = subprocess.run(["assistant", "ask", "What is DPO?"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("error: no papers are indexed in collection 'default' on the "
                                                     "Chroma server at 127.0.0.1:"), r.stderr
    r = subprocess.run(["assistant", "papers", "list"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "add some with `assistant ingest SOURCES`" in r.stderr, r.stderr
