"""Named collections on real embedded Chroma: names, a home built before collections read in place,
each collection's papers, vectors and answers untouched by what happens to another, and two
ingests into two collections at once (two processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from assistant import collections
from assistant.api import Assistant
from assistant.collection_names import CollectionError, chroma_name, from_chroma, from_model, model_id
from assistant.errors import AssistantError
from assistant.settings import Settings, SettingsError
from tests.conftest import FIXTURES, SAMPLE_DIR, cli_env, make_settings

OLD_HOME = FIXTURES / "home-v0"
PAPERS = OLD_HOME / "papers.jsonl"
EXPECTED = json.loads((OLD_HOME / "expected.json").read_text(encoding="utf-8"))
QUESTION = EXPECTED["question"]


def old_home(tmp_path: Path) -> Path:
    """A fresh copy of the home built by the code before collections (tests/fixtures/home-v0)."""
    home = tmp_path / "home"
    home.mkdir()
    with tarfile.open(OLD_HOME / "home.tar.gz") as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12
            tar.extractall(home, filter="data")
        else:  # pragma: no cover
            tar.extractall(home)
    return home


def subset(tmp_path: Path, name: str, lines: slice) -> Path:
    rows = PAPERS.read_text(encoding="utf-8").splitlines()[lines]
    path = tmp_path / f"{name}.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def snapshot(a: Assistant) -> dict[str, object]:
    """What a collection holds and answers: papers, chunk and sentence vectors, one answer."""
    ans = a.ask(QUESTION)
    st = a.status()
    return {"papers": sorted(p.paper_id for p in a.papers()),
            "counts": (st["papers"], st["chunks"], st["vectors"], st["sentence_vectors"]),
            "answer": ans.text, "citations": [c.paper_id for c in ans.citations],
            "hits": [s.paper.paper_id for s in a.search(QUESTION, 5)]}


def assistant(home: Path, cache: Path, collection: str | None = None) -> Assistant:
    a = Assistant(make_settings(home, cache, collection=collection))
    a.auto_sample = False
    return a


# -- names -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["Bad", "with space", "-lead", "trail-", "a.b", "x" * 49, "", "server-x", "ü"])
def test_bad_names_get_a_one_line_error(bad: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load(env={"ASSISTANT_CONFIG": ""}, collection=bad)
    assert str(err.value).startswith("collection: ") and "\n" not in str(err.value)
    if not bad:
        return  # an empty variable means "not set", as for every setting
    with pytest.raises(SettingsError) as err:
        Settings.load(env={"ASSISTANT_CONFIG": "", "ASSISTANT_COLLECTION": bad})
    assert str(err.value).startswith("ASSISTANT_COLLECTION: ") and "\n" not in str(err.value)
    with pytest.raises(CollectionError, match="not a valid collection name|must be"):
        collections.canonical(bad)


def test_names_map_to_chroma_and_models() -> None:
    env = {"ASSISTANT_CONFIG": ""}
    assert Settings.load(env=env).index.collection == "default"
    # The old setting's default value names the default collection.
    assert Settings.load(env={**env, "ASSISTANT_COLLECTION": "papers"}).index.collection == "default"
    assert Settings.load(env={**env, "ASSISTANT_COLLECTION": "ml-2024"}).index.collection == "ml-2024"
    assert chroma_name("default") == "papers" and chroma_name("ml-2024") == "ml-2024"
    for name in ("default", "a", "ml", "abc", "ml-2024", "x_y"):
        assert from_chroma(chroma_name(name)) == name
        assert len(chroma_name(name)) >= 3
    assert chroma_name("ml") != chroma_name("ml-c")  # the short-name tail cannot clash
    assert from_chroma("Other") is None and from_chroma("ml-C.x") is None
    assert model_id("default") == "paper-assistant" and model_id("ml") == "paper-assistant:ml"
    assert model_id("default", served="ml") == "paper-assistant:default"
    assert from_model("paper-assistant:ml") == "ml" and from_model("paper-assistant") == "default"
    assert from_model("gpt-4o", served="ml") == "ml"
    with pytest.raises(CollectionError):
        from_model("paper-assistant:No Such")


# -- a home built before collections -------------------------------------------------------------------
@pytest.mark.slow
def test_a_home_built_before_collections_upgrades_in_place(tmp_path: Path, embed_cache: Path) -> None:
    home = old_home(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (home / "index").rglob("*") if p.is_file()}
    a = assistant(home, embed_cache)
    assert a.collection == "default"
    assert [c.name for c in a.collections()] == ["default", "older"]
    assert [p.paper_id for p in a.papers()] == EXPECTED["papers"]["default"]
    ans = a.ask(QUESTION)
    assert ans.text == EXPECTED["answer"]
    assert [c.paper_id for c in ans.citations] == EXPECTED["citations"]
    # The collection the old ASSISTANT_COLLECTION made is a named collection now, vectors included.
    older = a.use("older")
    assert [p.paper_id for p in older.papers()] == EXPECTED["papers"]["older"]
    assert older.status()["vectors"] > 0 and older.search(QUESTION, 3)
    a.index.release()
    older.index.release()
    # Nothing was moved or migrated: the same folders, every old file still in place.
    assert sorted(p.name for p in home.iterdir()) == ["index", "index-older"]
    after = {p for p in (home / "index").rglob("*") if p.is_file()}
    assert set(before) <= after


@pytest.mark.slow
def test_cli_lists_and_reads_collections_of_an_old_home(tmp_path: Path, embed_cache: Path) -> None:
    home = old_home(tmp_path)
    env = cli_env(home, embed_cache)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "assistant", *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=300)

    listed = json.loads(run("collections", "list", "--json").stdout)
    assert [(c["name"], c["papers"], c["default"]) for c in listed] == [("default", 12, True), ("older", 3, False)]
    papers = json.loads(run("papers", "list", "--json", "-c", "older").stdout)
    assert [p["paper_id"] for p in papers] == EXPECTED["papers"]["older"]
    via_env = json.loads(run("papers", "list", "--json", ASSISTANT_COLLECTION="older").stdout)
    assert via_env == papers
    ans = json.loads(run("ask", "--json", QUESTION).stdout)
    assert ans["answer"] == EXPECTED["answer"]
    bad = run("ask", "-c", "Nope!", QUESTION)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "collection name" in bad.stderr
    missing = run("status", "-c", "nope")
    assert missing.returncode == 1 and "no collection 'nope'" in missing.stderr
    assert "default, older" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


# -- one collection's changes leave the others as they were --------------------------------------------
@pytest.mark.slow
def test_rebuild_delete_and_rename_leave_other_collections_unchanged(tmp_path: Path, embed_cache: Path) -> None:
    home = old_home(tmp_path)
    default = assistant(home, embed_cache)
    other = assistant(home, embed_cache, "other")
    third = assistant(home, embed_cache, "third")
    assert other.ingest(str(subset(tmp_path, "other", slice(0, 8)))).new == 8  # one path, not a list: one file
    assert third.ingest([subset(tmp_path, "third", slice(4, 12))]).new == 8
    before = {"default": snapshot(default), "third": snapshot(third)}
    assert snapshot(other)["papers"] != before["default"]["papers"]

    # Rebuild `other` from other papers: only `other` changes.
    rebuilt = other.ingest([subset(tmp_path, "small", slice(10, 12))], rebuild=True)
    assert rebuilt.papers_total == 2
    assert len(other.papers()) == 2 and other.status()["vectors"] == other.status()["chunks"]
    for name, a in (("default", default), ("third", third)):
        assert snapshot(a) == before[name], name

    # Delete `other`: gone, and the others answer as before.
    default.delete_collection("other")
    assert [c.name for c in default.collections()] == ["default", "older", "third"]
    with pytest.raises(CollectionError, match="no collection 'other'"):
        assistant(home, embed_cache, "other").papers()
    with pytest.raises(CollectionError, match="no collection 'other'"):
        other.search(QUESTION)  # the Assistant that had read it: not an empty collection now
    assert not list(home.glob(".deleted-*")) and not (home / "index-other").exists()
    for name, a in (("default", default), ("third", third)):
        assert snapshot(a) == before[name], name

    # Rename `third`: same papers, vectors and answer under the new name; an ingest there finds its vectors.
    default.rename_collection("third", "renamed")
    renamed = assistant(home, embed_cache, "renamed")
    assert snapshot(renamed) == before["third"]
    with pytest.raises(CollectionError, match="no collection 'third'"):
        third.papers()
    again = renamed.ingest([subset(tmp_path, "third", slice(4, 12))])
    assert (again.new, again.unchanged, again.chunks_written) == (0, 8, 0)
    assert snapshot(renamed) == before["third"]
    assert snapshot(default) == before["default"]

    with pytest.raises(CollectionError, match="default collection cannot be deleted"):
        default.delete_collection("default")
    with pytest.raises(CollectionError, match="already exists"):
        default.rename_collection("renamed", "older")
    with pytest.raises(CollectionError, match="already exists"):
        default.create_collection("older")
    made = default.create_collection("empty-one")
    assert (made.papers, made.vectors) == (0, 0)
    with pytest.raises(AssistantError, match="collection 'empty-one' has no papers yet"):
        assistant(home, embed_cache, "empty-one").ask(QUESTION)
    for a in (default, other, third, renamed):
        a.index.release()


def test_a_rename_or_delete_cut_short_leaves_whole_collections(tmp_path: Path, embed_cache: Path) -> None:
    """Rename is two atomic steps (record the Chroma name in the folder, rename the folder) and delete
    moves the folder aside before removing it: a kill between steps leaves whole collections."""
    home = old_home(tmp_path)

    def seen(name: str) -> tuple[list[str], list[str]]:
        a = assistant(home, embed_cache, name)
        try:
            return [p.paper_id for p in a.papers()], [s.paper.paper_id for s in a.search(QUESTION, 3)]
        finally:
            a.index.release()

    before = seen("older")
    assert before[0] == EXPECTED["papers"]["older"] and before[1]
    (home / "index-older" / "collection.json").write_text('{"chroma_collection": "older"}')  # killed after step 1
    assert seen("older") == before
    (home / "index-older").rename(home / "index-newer")  # step 2
    assert seen("newer") == before
    names = [c.name for c in collections.list_all(make_settings(home, embed_cache))]
    assert names == ["default", "newer"]
    (home / "index-newer").rename(home / ".deleted-newer-0a1b2c3d")  # a delete killed mid-removal
    assert [c.name for c in collections.list_all(make_settings(home, embed_cache))] == ["default"]


def test_named_collection_is_never_filled_with_the_sample(fresh_home: Path, embed_cache: Path) -> None:
    """Only the default collection gets the bundled sample on a first question."""
    a = Assistant(make_settings(fresh_home, embed_cache, collection="mine"))
    with pytest.raises(CollectionError, match="no collection 'mine'"):
        a.ask("What does ARRA align LLM hidden states with?")
    assert not any(fresh_home.iterdir())


@pytest.mark.slow
def test_a_collection_deleted_and_made_again_elsewhere_is_read_afresh(fresh_home: Path, embed_cache: Path,
                                                                      tmp_path: Path) -> None:
    """`assistant serve` kept the deleted folder's files open and answered from papers no longer indexed
    after another shell deleted the collection and ingested others under its name."""
    reader = assistant(fresh_home, embed_cache, "alpha")
    assert reader.ingest([subset(tmp_path, "old", slice(0, 8))]).new == 8
    old_ids = {p.paper_id for p in reader.papers()}
    assert {s.paper.paper_id for s in reader.search(QUESTION, 5)} <= old_ids
    assert {s.paper.paper_id for s in reader.search(QUESTION, 5, mode="dense")} <= old_ids  # vectors loaded
    env = cli_env(fresh_home, embed_cache)

    def cli(*args: str) -> None:
        r = subprocess.run([sys.executable, "-m", "assistant", *args], env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stderr

    cli("collections", "delete", "alpha", "--yes")  # and made again before the reader asks anything
    from assistant.readers import read_paths

    new_file = subset(tmp_path, "new", slice(8, 12))
    cli("ingest", "-c", "alpha", str(new_file))
    new_ids = {p.paper_id for p in reader.papers()}
    assert new_ids == {p.paper_id for p in read_paths([new_file]).papers} and not new_ids & old_ids
    assert reader.status()["papers"] == len(new_ids) > 0
    assert {s.paper.paper_id for s in reader.search(QUESTION, 5)} <= new_ids
    # The vectors loaded for exact search were the deleted collection's (same generation, 1): dense
    # retrieval found nothing, and hybrid ran on BM25 alone.
    dense = {s.paper.paper_id for s in reader.search(QUESTION, 5, mode="dense")}
    assert dense and dense <= new_ids
    assert {c.paper_id for c in reader.ask(QUESTION).citations} <= new_ids
    # Asked while it is gone (a 404 from `serve`), then made again: every question was refused, the BM25
    # index and loaded vectors of the collection before kept (and the new catalogue taken as the one open).
    cli("collections", "delete", "alpha", "--yes")
    with pytest.raises(CollectionError, match="no collection 'alpha'"):
        reader.ask(QUESTION)
    third = subset(tmp_path, "third", slice(0, 6))
    cli("ingest", "-c", "alpha", str(third))
    third_ids = {p.paper_id for p in read_paths([third]).papers}
    for mode in ("dense", "bm25", "hybrid"):
        found = {s.paper.paper_id for s in reader.search(QUESTION, 5, mode=mode)}
        assert found and found <= third_ids, mode
    reader.index.release()


@pytest.mark.slow
def test_two_ingests_into_two_collections_at_once(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """Two processes, each ingesting its own collection in small batches: both finish, and each
    collection holds exactly its own papers with a vector per chunk."""
    files = sorted(SAMPLE_DIR.glob("*.txt"))
    env = cli_env(fresh_home, embed_cache)
    procs = {name: subprocess.Popen([sys.executable, "-m", "assistant", "ingest", "-c", name, "--batch", "4",
                                     "--no-wait", str(path)], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, path in (("first", files[0]), ("second", files[1]))}
    outs = {name: p.communicate(timeout=900) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, outs[name][1][-2000:]
    from assistant.readers import read_paths

    for name, path in (("first", files[0]), ("second", files[1])):
        want = sorted(p.paper_id for p in read_paths([path]).papers)
        a = assistant(fresh_home, embed_cache, name)
        st = a.status()
        assert sorted(p.paper_id for p in a.papers()) == want, name
        assert st["vectors"] == st["chunks"] > 0 and st["sentence_vectors"] > 0
        assert a.search("preference optimization", 3)
        a.index.release()
    assert [c.name for c in collections.list_all(make_settings(fresh_home, embed_cache))] == \
        ["default", "first", "second"]


# -- Chroma server mode ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.chroma_server
def test_collections_on_a_chroma_server(tmp_path: Path, embed_cache: Path) -> None:
    """On a `chroma run` server a collection is a Chroma collection family; two clients (two homes)
    see the same collections, and one collection's rebuild, rename or deletion leaves the others as
    they were."""
    from tests.test_chroma_server import ChromaServer

    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    try:
        def client(home: str, collection: str | None = None) -> Assistant:
            return Assistant(make_settings(tmp_path / home, embed_cache, collection=collection,
                                           chroma_host="127.0.0.1", chroma_port=server.port))

        default, ml = client("one"), client("one", "ml")
        assert default.ingest([PAPERS]).new == 12
        assert ml.ingest([subset(tmp_path, "ml", slice(0, 5))]).new == 5
        keep = client("one", "keep")
        assert keep.ingest([subset(tmp_path, "keep", slice(6, 12))]).new == 6
        before = {"default": snapshot(default), "keep": snapshot(keep)}
        assert before["default"]["answer"] == EXPECTED["answer"]  # as in embedded mode, same papers

        # A second client (another home) sees the same collections and papers.
        other = client("two")
        assert [c.name for c in other.collections()] == ["default", "keep", "ml"]
        names = {getattr(c, "name", c) for c in other.index.vectors.client.list_collections()}
        assert {"papers", "papers.sentences", "papers.papers", "papers.meta", "ml-C", "ml-C.sentences",
                "ml-C.papers", "ml-C.meta", "keep", "keep.sentences", "keep.papers", "keep.meta"} <= names
        assert sorted(p.paper_id for p in client("two", "keep").papers()) == before["keep"]["papers"]

        ml.ingest([subset(tmp_path, "ml2", slice(10, 12))], rebuild=True)
        assert len(ml.papers()) == 2
        assert snapshot(default) == before["default"] and snapshot(keep) == before["keep"]

        other.rename_collection("ml", "renamed")
        renamed = client("two", "renamed")
        assert len(renamed.papers()) == 2 and renamed.search(QUESTION, 2)
        other.delete_collection("renamed")
        assert [c.name for c in other.collections()] == ["default", "keep"]
        with pytest.raises(CollectionError, match="no collection 'renamed'"):
            client("one", "renamed").papers()
        assert snapshot(client("two")) == before["default"] and snapshot(client("two", "keep")) == before["keep"]
        made = other.create_collection("empty")
        assert (made.papers, [c.name for c in other.collections()]) == (0, ["default", "empty", "keep"])
    finally:
        server.stop()


def test_every_index_command_takes_the_collection_option() -> None:
    """`-c NAME` wherever an index is read or written (the option other command groups reuse)."""
    import typer

    from assistant.cli import app

    root = typer.main.get_command(app)

    def options(*path: str) -> set[str]:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        return {opt for p in cmd.params for opt in getattr(p, "opts", [])}

    for path in (("ingest",), ("ask",), ("chat",), ("status",), ("serve",), ("papers", "list"),
                 ("papers", "show"), ("papers", "search"), ("papers", "export"), ("eval", "run"), ("add",),
                 ("verify",)):
        assert {"--collection", "-c"} <= options(*path), path
    assert set(root.commands["collections"].commands) == {"list", "create", "delete", "rename", "info"}


@pytest.mark.slow
@pytest.mark.chroma_server
def test_two_ingests_into_two_collections_at_once_on_a_chroma_server(tmp_path: Path, embed_cache: Path) -> None:
    """The same with a `chroma run` server: two processes (two homes), two collection families."""
    from tests.test_chroma_server import ChromaServer

    server = ChromaServer(tmp_path / "chroma-data", tmp_path / "chroma.log")
    try:
        sources = {"first": subset(tmp_path, "first", slice(0, 6)), "second": subset(tmp_path, "second", slice(6, 12))}
        procs = {name: subprocess.Popen(
            [sys.executable, "-m", "assistant", "ingest", "-c", name, "--batch", "1", str(path)],
            env=cli_env(tmp_path / f"home-{name}", embed_cache, CHROMA_HOST="127.0.0.1", CHROMA_PORT=str(server.port)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name, path in sources.items()}
        outs = {name: p.communicate(timeout=900) for name, p in procs.items()}
        for name, p in procs.items():
            assert p.returncode == 0, outs[name][1][-2000:]
        rows = PAPERS.read_text(encoding="utf-8").splitlines()
        for name, ids in (("first", rows[0:6]), ("second", rows[6:12])):
            a = Assistant(make_settings(tmp_path / "reader", embed_cache, collection=name, chroma_host="127.0.0.1",
                                        chroma_port=server.port))
            st = a.status()
            assert sorted(p.paper_id for p in a.papers()) == sorted(json.loads(r)["paper_id"] for r in ids)
            assert st["vectors"] == st["chunks"] > 0 and st["sentence_vectors"] > 0
    finally:
        server.stop()


def test_a_model_that_cannot_load_is_not_recorded_and_other_models_are_listed(tmp_path: Path,
                                                                               embed_cache: Path) -> None:
    """A mistyped ASSISTANT_EMBEDDING_MODEL was recorded by the failed ingest (or create): every later
    command then asked for a model that does not exist. And one collection built with another model made
    `collections list` fail for the whole home, and `delete -y` refuse it."""
    home = tmp_path / "home"
    src = subset(tmp_path, "a", slice(0, 2))
    env = cli_env(home, embed_cache)

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["assistant", *args], env={**env, **extra}, capture_output=True, text=True, timeout=300)

    typo = {"ASSISTANT_EMBEDDING_MODEL": "minilm-typo"}
    for args in (("ingest", str(src)), ("collections", "create", "typo")):
        r = run(*args, **typo)
        assert r.returncode == 1 and "unknown local model 'minilm-typo'" in r.stderr, r.stderr
    assert run("ingest", str(src)).returncode == 0  # the default model: nothing was recorded for the typo
    assert "typo" not in run("collections", "list").stdout
    r = run("collections", "create", "oa", ASSISTANT_EMBEDDING="openai", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    assert r.returncode == 0, r.stderr
    listed = run("collections", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    models = {c["name"]: c["embedding_model"] for c in json.loads(listed.stdout)}
    assert models == {"default": "all-MiniLM-L6-v2-int8", "oa": "text-embedding-3-small"}
    assert run("collections", "delete", "oa", "-y").returncode == 0
    r = run("ask", "-c", "default", "What is this about?")
    assert r.returncode == 0, r.stderr


def test_serve_keeps_only_the_collections_used_last_open(fresh_home: Path, embed_cache: Path) -> None:
    """Every collection a request named stayed open in `assistant serve` for good (with HTTP ingest
    creating collections, without a bound); the 8 used last are kept, the others closed and reopened
    when asked again."""
    from assistant.server.app import MAX_OPEN_OTHERS, Shared
    from assistant.server.options import ServeOptions

    a = Assistant(make_settings(fresh_home, embed_cache))
    names = [f"c{i:02d}" for i in range(MAX_OPEN_OTHERS + 2)]
    for name in names:
        a.create_collection(name)
    shared = Shared(a, ServeOptions())
    first = shared.collection(names[0])
    first.status()  # opens its catalogue
    assert first.index._catalogue is not None
    for name in names[1:]:
        shared.collection(name).status()
    assert list(shared.others) == names[2:] and first.index._catalogue is None  # closed
    again = shared.collection(names[0])
    assert again.status()["papers"] == 0 and list(shared.others)[-1] == names[0]
    for other in shared.others.values():
        other.index.release()
    a.index.release()
