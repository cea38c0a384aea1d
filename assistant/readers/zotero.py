"""A Zotero library (``zotero.sqlite``, or the Zotero data folder holding it), read-only.

Zotero keeps its database open with an exclusive lock, so the file (and its -wal/-journal,
when present) is copied to a temporary folder and the copy is read; the user's library is
never opened for writing, not even for a moment. Each regular item (not notes, attachments,
annotations, trashed items or feed items) becomes a Paper with title, abstract, authors, date,
DOI and arXiv id (from the Archive ID, an arxiv.org URL, an ``arXiv:`` line in Extra, or an
arXiv DOI). ``collection`` keeps the items of one Zotero collection and its subcollections.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from ..records import clean_text
from .common import FileResult, Problem, arxiv_id, date_field, make_paper

SKIPPED_TYPES = ("note", "attachment", "annotation")
_ARXIV_DOI = re.compile(r"^10\.48550/arxiv\.(.+)$", re.IGNORECASE)
_EXTRA_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.+?)\s*$")
_ARXIV_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/([^\s?#]+?)(?:\.pdf)?(?:[?#]|$)", re.IGNORECASE)


def is_zotero_folder(path: Path) -> bool:
    """A Zotero data folder: the one holding ``zotero.sqlite`` (and ``storage/``)."""
    return (path / "zotero.sqlite").is_file()


def read(path: Path, *, max_abstract_chars: int = 20000, collection: str | None = None) -> FileResult:
    result = FileResult()
    try:
        with tempfile.TemporaryDirectory(prefix="paper-assistant-zotero-") as tmp:
            copy = Path(tmp) / "zotero.sqlite"
            shutil.copyfile(path, copy)
            for suffix in ("-wal", "-journal"):
                side = path.with_name(path.name + suffix)
                if side.is_file():
                    shutil.copyfile(side, copy.with_name(copy.name + suffix))
            db = sqlite3.connect(str(copy))
            try:
                db.execute("PRAGMA query_only = ON")
                _read_db(db, path, result, max_abstract_chars, collection)
            finally:
                db.close()
    except OSError as exc:
        result.problems.append(Problem(str(path), None, f"cannot copy the Zotero database to read it "
                                                        f"({exc.strerror or exc})"))
    except sqlite3.DatabaseError as exc:
        result.problems.append(Problem(str(path), None, f"cannot read as a Zotero database ({exc}); if Zotero "
                                                        "was writing it, try again"))
    return result


def _read_db(db: sqlite3.Connection, path: Path, result: FileResult, max_abstract_chars: int,
             collection: str | None) -> None:
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"items", "itemData", "itemDataValues", "fields", "itemTypes", "creators"} <= tables:
        result.problems.append(Problem(str(path), None, "not a Zotero database (no items/itemData tables)"))
        return
    types, fields, base = _schema_tables(db, tables)
    wanted: set[int] | None = None
    if collection is not None:
        wanted = _collection_items(db, path, result, collection)
        if wanted is None:
            return
    skip_libraries = ("SELECT libraryID FROM libraries WHERE type = 'feed'" if "libraries" in tables
                      else "SELECT NULL WHERE 0")
    trashed = "SELECT itemID FROM deletedItems" if "deletedItems" in tables else "SELECT NULL WHERE 0"
    items = db.execute(
        f"SELECT i.itemID, i.key, t.typeName FROM items i JOIN {types} t ON t.itemTypeID = i.itemTypeID "
        f"WHERE t.typeName NOT IN ({','.join('?' * len(SKIPPED_TYPES))}) "
        f"AND i.itemID NOT IN ({trashed}) AND i.libraryID NOT IN ({skip_libraries}) ORDER BY i.itemID",
        SKIPPED_TYPES).fetchall()
    values: dict[int, dict[str, str]] = {}
    for item_id, name, base_name, value in db.execute(
            f"SELECT d.itemID, f.fieldName, bf.fieldName, v.value FROM itemData d "
            f"JOIN {fields} f ON f.fieldID = d.fieldID JOIN itemDataValues v ON v.valueID = d.valueID "
            f"JOIN items i ON i.itemID = d.itemID "
            f"LEFT JOIN {base} b ON b.itemTypeID = i.itemTypeID AND b.fieldID = d.fieldID "
            f"LEFT JOIN {fields} bf ON bf.fieldID = b.baseFieldID"):
        own = values.setdefault(item_id, {})
        own[name] = "" if value is None else str(value)
        if base_name:  # e.g. caseName -> title, websiteTitle -> publicationTitle
            own.setdefault(base_name, "" if value is None else str(value))
    creators: dict[int, list[tuple[str, str]]] = {}
    for item_id, first, last, mode, ctype in db.execute(
            "SELECT ic.itemID, c.firstName, c.lastName, c.fieldMode, ct.creatorType FROM itemCreators ic "
            "JOIN creators c ON c.creatorID = ic.creatorID "
            "LEFT JOIN creatorTypes ct ON ct.creatorTypeID = ic.creatorTypeID ORDER BY ic.itemID, ic.orderIndex"):
        name = (last or "").strip() if mode == 1 else " ".join(x for x in ((first or "").strip(),
                                                                          (last or "").strip()) if x)
        if name:
            creators.setdefault(item_id, []).append((ctype or "", name))
    for item_id, key, type_name in items:
        if wanted is not None and item_id not in wanted:
            continue
        _item_paper(result, path, f"item {key}", type_name, values.get(item_id, {}), creators.get(item_id, []),
                    max_abstract_chars, key)


def _schema_tables(db: sqlite3.Connection, tables: set[str]) -> tuple[str, str, str]:
    """Zotero fills the *Combined tables (built-in plus custom types and fields) at start-up;
    an older database has only the plain ones."""
    def filled(name: str) -> bool:
        return name in tables and db.execute(f"SELECT EXISTS (SELECT 1 FROM {name})").fetchone()[0] == 1

    types = "itemTypesCombined" if filled("itemTypesCombined") else "itemTypes"
    fields = "fieldsCombined" if filled("fieldsCombined") else "fields"
    base = "baseFieldMappingsCombined" if filled("baseFieldMappingsCombined") else "baseFieldMappings"
    if base not in tables:
        base = "(SELECT NULL AS itemTypeID, NULL AS baseFieldID, NULL AS fieldID WHERE 0)"
    return types, fields, base


def _collection_items(db: sqlite3.Connection, path: Path, result: FileResult, name: str) -> set[int] | None:
    rows = db.execute("SELECT collectionID FROM collections WHERE collectionName = ?", (name,)).fetchall()
    if not rows:
        rows = db.execute("SELECT collectionID FROM collections WHERE lower(collectionName) = lower(?)",
                          (name,)).fetchall()
    if not rows:
        names = sorted({r[0] for r in db.execute("SELECT collectionName FROM collections")})
        shown = ", ".join(f"'{n}'" for n in names[:20]) + (" ..." if len(names) > 20 else "")
        result.problems.append(Problem(str(path), None, f"no Zotero collection named '{name}' "
                                                        f"(collections: {shown or 'none'})"))
        return None
    ids = [r[0] for r in rows]
    if len(ids) > 1:  # taken together without a word before
        result.warnings.append(Problem(str(path), None, f"--zotero-collection '{name}' names {len(ids)} collections "
                                                        "(same name, or differing in case, under other parents); the "
                                                        "items of all of them were read"))
    found = db.execute(
        "WITH RECURSIVE sub(id) AS (SELECT collectionID FROM collections WHERE collectionID IN "
        f"({','.join('?' * len(ids))}) UNION SELECT c.collectionID FROM collections c JOIN sub "
        "ON c.parentCollectionID = sub.id) SELECT itemID FROM collectionItems WHERE collectionID IN sub", ids)
    return {r[0] for r in found}


def _extra(text: str) -> dict[str, str]:
    """'Key: value' lines of Zotero's Extra field (how it stores arXiv ids, DOIs of other types ...)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _EXTRA_LINE.match(line)
        if m:
            out.setdefault(m.group(1).strip().lower(), m.group(2))
    return out


def _arxiv_candidates(fields: dict[str, str], extra: dict[str, str], doi: str) -> list[str]:
    out = []
    if fields.get("archiveID", "").lower().startswith("arxiv:"):
        out.append(fields["archiveID"].split(":", 1)[1])
    if "arxiv" in extra:
        out.append(extra["arxiv"])
    m = _ARXIV_DOI.match(doi)
    if m:
        out.append(m.group(1))
    m = _ARXIV_URL.search(fields.get("url", ""))
    if m:
        out.append(m.group(1))
    return [c.strip() for c in out if c.strip()]


def _item_paper(result: FileResult, path: Path, where: str, type_name: str, fields: dict[str, str],
                creators: list[tuple[str, str]], max_abstract_chars: int, key: str) -> None:
    extra = _extra(fields.get("extra", ""))
    doi = (fields.get("DOI") or extra.get("doi") or "").strip()
    ax = next((a for a in map(arxiv_id, _arxiv_candidates(fields, extra, doi)) if a), None)
    authors = [n for t, n in creators if t == "author"] or [n for _, n in creators]
    raw_date = fields.get("date", "")
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})", raw_date)  # Zotero's 'YYYY-MM-DD original' (00 = unknown)
    iso = "-".join(p for p in (m.groups() if m else ()) if p.strip("0")) if m else raw_date[:10]
    url = fields.get("url") or (f"https://doi.org/{doi}" if doi else None)
    if not (fields.get("abstractNote") or "").strip() and (fields.get("title") or "").strip():
        # Common in a library (books, web pages): a warning, so `ingest --prune` still works.
        result.warnings.append(Problem(str(path), where, "item has no abstract; skipped"))
        return
    paper = make_paper(result, path, where, fields.get("title"), fields.get("abstractNote"),
                       max_abstract_chars=max_abstract_chars, arxiv_id=ax, authors=authors, url=url,
                       date=date_field(result, path, where, iso) if iso else None)
    if paper is None:
        return
    info: dict[str, Any] = {"zotero_key": key, "zotero_type": type_name}
    if doi and not _ARXIV_DOI.match(doi):
        info["doi"] = clean_text(doi)
    venue = fields.get("publicationTitle")
    if venue:
        info["venue"] = clean_text(str(venue))
    paper.extra.update(info)
