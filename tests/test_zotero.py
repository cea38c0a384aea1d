"""A Zotero library, read-only from a copy, on databases built from Zotero's own schema files
(tests/zotero_db.py, tests/fixtures/zotero/NOTICE)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.readers import read_paths, zotero
from tests.conftest import cli_env, make_settings
from tests.zotero_db import Item, build

DPO_ABSTRACT = ("While large-scale unsupervised language models learn broad world knowledge, achieving precise "
                "control of their behavior is difficult. We introduce Direct Preference Optimization (DPO), which "
                "solves the standard RLHF problem with only a simple classification loss.")
ITEMS = [
    Item("DPOKEY01", "preprint", {"title": "Direct Preference Optimization: Your Language Model is Secretly a "
                                           "Reward Model", "abstractNote": DPO_ABSTRACT,
                                  "archiveID": "arXiv:2305.18290", "repository": "arXiv",
                                  "url": "http://arxiv.org/abs/2305.18290", "date": "2023-05-29 2023-05-29",
                                  "DOI": "10.48550/arXiv.2305.18290"},
         [("Rafael", "Rafailov", "author"), ("Archit", "Sharma", "author"), ("Jane", "Editor", "editor")],
         ["Alignment"]),
    Item("NATURE01", "journalArticle", {"title": "Deep learning", "publicationTitle": "Nature",
                                        "abstractNote": "Deep learning allows computational models that are composed "
                                                        "of multiple processing layers to learn representations.",
                                        "date": "2015-05-00 May 2015", "DOI": "10.1038/nature14539",
                                        "extra": "PMID: 26017442"},
         [("Yann", "LeCun", "author"), ("Yoshua", "Bengio", "author"), ("Geoffrey", "Hinton", "author")],
         ["Classics"]),
    Item("ATTN0001", "conferencePaper", {"title": "Attention Is All You Need",
                                         "abstractNote": "The dominant sequence transduction models are based on "
                                                         "complex recurrent or convolutional neural networks.",
                                         "proceedingsTitle": "Advances in Neural Information Processing Systems",
                                         "date": "2017-00-00 2017", "extra": "arXiv: 1706.03762v7\nPublisher: x"},
         [("Ashish", "Vaswani", "author"), ("", "Google Brain", "author")], ["Transformers"]),
    Item("CASE0001", "case", {"caseName": "Authors Guild v. Google", "abstractNote": "Digitizing books for a search "
                                                                                    "index is fair use.",
                              "dateDecided": "2015-10-16 October 16, 2015"}, [("", "Second Circuit", "author")]),
    Item("WEBPAGE1", "webpage", {"title": "A blog post without an abstract", "url": "https://example.org/post"}),
    Item("NOTE0001", "note"),
    Item("TRASHED1", "journalArticle", {"title": "Deleted paper", "abstractNote": "In the trash."}, trashed=True),
]
COLLECTIONS = {"Alignment": None, "Transformers": "Alignment", "Classics": None}


@pytest.fixture()
def library(tmp_path: Path) -> Path:
    folder = tmp_path / "Zotero"
    (folder / "storage" / "ABCD1234").mkdir(parents=True)
    # A data folder also holds PDFs' extracted text and other SQLite files: none of them is read.
    (folder / "storage" / "ABCD1234" / ".zotero-ft-cache").write_text("full text", encoding="utf-8")
    (folder / "storage" / "ABCD1234" / "notes.txt").write_text("not a paper", encoding="utf-8")
    sqlite3.connect(str(folder / "better-bibtex.sqlite")).close()
    build(folder / "zotero.sqlite", ITEMS, COLLECTIONS)
    return folder


def test_reads_items_with_their_metadata(library: Path) -> None:
    res = read_paths([library / "zotero.sqlite"])
    by_key = {p.extra["zotero_key"]: p for p in res.papers}
    assert sorted(by_key) == ["ATTN0001", "CASE0001", "DPOKEY01", "NATURE01"]
    dpo = by_key["DPOKEY01"]
    assert dpo.paper_id == "2305.18290" and dpo.arxiv_id == "2305.18290"  # from the Archive ID
    assert dpo.title.startswith("Direct Preference Optimization") and dpo.abstract == DPO_ABSTRACT
    assert dpo.authors == ["Rafael Rafailov", "Archit Sharma"]  # authors, not editors
    assert dpo.date == "2023-05-29" and "doi" not in dpo.extra  # arXiv's own DOI is the arXiv id
    nature = by_key["NATURE01"]
    assert nature.extra["doi"] == "10.1038/nature14539" and nature.extra["venue"] == "Nature"
    assert nature.date == "2015-05" and nature.arxiv_id is None
    assert nature.authors == ["Yann LeCun", "Yoshua Bengio", "Geoffrey Hinton"]
    attn = by_key["ATTN0001"]
    assert attn.arxiv_id == "1706.03762" and attn.date == "2017"  # from the Extra field
    assert attn.authors == ["Ashish Vaswani", "Google Brain"]  # a one-field name
    case = by_key["CASE0001"]
    assert case.title == "Authors Guild v. Google" and case.date == "2015-10-16"  # base fields title, date
    # The item without an abstract is named (a warning: the library was read completely, so --prune
    # works); notes and trashed items are not papers at all.
    assert not res.problems and not res.incomplete
    assert [str(p) for p in res.warnings] == [f"{library / 'zotero.sqlite'}:item WEBPAGE1: item has no abstract; "
                                              "skipped"]


def test_the_data_folder_reads_only_its_database(library: Path) -> None:
    res = read_paths([library])
    assert res.files == 1 and len(res.papers) == 4
    assert all(p.source.startswith(str(library / "zotero.sqlite")) for p in res.papers)


def test_read_from_a_copy_while_zotero_holds_its_lock(library: Path) -> None:
    db = library / "zotero.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    holder = sqlite3.connect(str(db))
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # what a running Zotero does: nobody else may open the file
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            sqlite3.connect(str(db), timeout=0).execute("SELECT COUNT(*) FROM items").fetchone()
        res = zotero.read(db)
        assert len(res.papers) == 4
    finally:
        holder.rollback()
        holder.close()
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in library.iterdir()) == ["better-bibtex.sqlite", "storage", "zotero.sqlite"]


def test_one_collection_with_its_subcollections(library: Path) -> None:
    res = read_paths([library], zotero_collection="Alignment")
    assert sorted(p.extra["zotero_key"] for p in res.papers) == ["ATTN0001", "DPOKEY01"]
    assert not res.problems
    res = read_paths([library], zotero_collection="classics")  # case-insensitive when no exact match
    assert [p.extra["zotero_key"] for p in res.papers] == ["NATURE01"]
    res = read_paths([library], zotero_collection="Nope")
    assert not res.papers
    assert [p.message for p in res.problems] == [
        "no Zotero collection named 'Nope' (collections: 'Alignment', 'Classics', 'Transformers')"]
    res = read_paths([library / "storage"], zotero_collection="Alignment")
    assert any("names a collection of a Zotero library, but none was given" in str(p) for p in res.problems)


def test_other_sqlite_files_are_named_not_read(tmp_path: Path) -> None:
    other = tmp_path / "cache.sqlite"
    sqlite3.connect(str(other)).execute("CREATE TABLE t (x)").connection.commit()
    garbage = tmp_path / "broken.sqlite"
    garbage.write_bytes(b"SQLite format 3\x00" + b"\x07" * 500)
    res = read_paths([other, garbage])
    msgs = [str(p) for p in res.problems]
    assert msgs[0] == f"{other}: not a Zotero database (no items/itemData tables)"
    assert msgs[1].startswith(f"{garbage}: cannot read as a Zotero database")


def test_ingest_and_ask_then_cli_with_a_collection(library: Path, tmp_path: Path, embed_cache: Path) -> None:
    home = tmp_path / "home"
    a = Assistant(make_settings(home, embed_cache))
    a.auto_sample = False
    report = a.ingest([library])
    assert report.new == 4 and len(report.warnings) == 1
    again = a.ingest([library])
    assert (again.new, again.unchanged) == (0, 4)
    # Pruning with the library in a collection's place drops what is not in that collection.
    pruned = a.ingest([library], prune=True, zotero_collection="Alignment")
    assert (pruned.removed, pruned.prune_skipped) == (2, False)
    assert sorted(p.paper_id for p in a.papers()) == ["1706.03762", "2305.18290"]
    a.ingest([library])
    hits = a.search("classification loss instead of RLHF", 1)
    assert hits[0].paper.paper_id == "2305.18290"
    bib = a.export(["2305.18290"], "bibtex")
    assert "eprint        = {2305.18290}" in bib and "Rafailov" in bib
    a.index.close()

    env = cli_env(tmp_path / "home2", embed_cache)
    r = subprocess.run([sys.executable, "-m", "assistant", "ingest", str(library / "zotero.sqlite"),
                        "--zotero-collection", "Transformers"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "assistant", "papers", "list", "--json"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert [p["paper_id"] for p in json.loads(r.stdout)] == ["1706.03762"]


def test_a_collection_name_given_to_several_collections_is_said(library: Path) -> None:
    """Two collections named alike (under other parents) were read together without a word."""
    db = sqlite3.connect(str(library / "zotero.sqlite"))
    db.execute("INSERT INTO collections (collectionID, collectionName, parentCollectionID, libraryID, key) "
               "VALUES (99, 'Alignment', (SELECT collectionID FROM collections WHERE collectionName = 'Classics'), "
               "1, 'COLL0099')")
    db.commit()
    db.close()
    res = read_paths([library], zotero_collection="Alignment")
    assert sorted(p.extra["zotero_key"] for p in res.papers) == ["ATTN0001", "DPOKEY01"] and not res.problems
    assert [w.message for w in res.warnings] == [
        "--zotero-collection 'Alignment' names 2 collections (same name, or differing in case, under other "
        "parents); the items of all of them were read"]
