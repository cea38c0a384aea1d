"""Build a zotero.sqlite the way Zotero does: its own schema SQL (tests/fixtures/zotero, see NOTICE),
then the global schema (item types, fields, creator types) loaded as Zotero's schema.js
``_updateGlobalSchema`` loads it, the *Combined tables filled as at Zotero's start-up, the user
library, and finally the given items through the same tables Zotero writes."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = Path(__file__).parent / "fixtures" / "zotero"


@dataclass
class Item:
    key: str
    type: str = "journalArticle"
    fields: dict[str, str] = field(default_factory=dict)
    creators: list[tuple[str, str, str]] = field(default_factory=list)
    """(firstName, lastName, creatorType); an empty firstName is a one-field name (fieldMode 1)."""
    collections: list[str] = field(default_factory=list)
    trashed: bool = False


def build(path: Path, items: list[Item], collections: dict[str, str | None] | None = None) -> Path:
    """``collections``: name -> parent name (None for top level)."""
    db = sqlite3.connect(str(path))
    db.executescript((SCHEMA / "system.sql").read_text(encoding="utf-8"))
    db.executescript((SCHEMA / "userdata.sql").read_text(encoding="utf-8"))
    schema = json.loads((SCHEMA / "schema-itemtypes.json").read_text(encoding="utf-8"))
    field_ids: dict[str, int] = {}
    creator_ids: dict[str, int] = {}
    for t in schema["itemTypes"]:
        for f in t["fields"]:
            for name in (f["field"], f.get("baseField")):
                if name and name not in field_ids:
                    field_ids[name] = len(field_ids) + 1
                    db.execute("INSERT INTO fields VALUES (?, ?, NULL)", (field_ids[name], name))
        for c in t["creatorTypes"]:
            if c["creatorType"] not in creator_ids:
                creator_ids[c["creatorType"]] = len(creator_ids) + 1
                db.execute("INSERT INTO creatorTypes VALUES (?, ?)", (creator_ids[c["creatorType"]], c["creatorType"]))
    type_ids: dict[str, int] = {}
    for t in schema["itemTypes"]:
        type_ids[t["itemType"]] = tid = len(type_ids) + 1
        db.execute("INSERT INTO itemTypes VALUES (?, ?, NULL, 1)", (tid, t["itemType"]))
        for i, f in enumerate(t["fields"]):
            db.execute("INSERT INTO itemTypeFields VALUES (?, ?, 0, ?)", (tid, field_ids[f["field"]], i))
            if f.get("baseField"):
                db.execute("INSERT INTO baseFieldMappings VALUES (?, ?, ?)",
                           (tid, field_ids[f["baseField"]], field_ids[f["field"]]))
        for c in t["creatorTypes"]:
            db.execute("INSERT INTO itemTypeCreatorTypes VALUES (?, ?, ?)",
                       (tid, creator_ids[c["creatorType"]], 1 if c.get("primary") else 0))
    offset = 10000  # Zotero.ItemTypes.customIDOffset
    db.execute("INSERT INTO itemTypesCombined SELECT itemTypeID, typeName, display, 0 AS custom FROM itemTypes "
               f"UNION SELECT customItemTypeID + {offset}, typeName, display, 1 FROM customItemTypes")
    db.execute("INSERT INTO fieldsCombined SELECT fieldID, fieldName, NULL AS label, fieldFormatID, 0 AS custom "
               f"FROM fields UNION SELECT customFieldID + {offset}, fieldName, label, NULL, 1 FROM customFields")
    db.execute("INSERT INTO itemTypeFieldsCombined SELECT itemTypeID, fieldID, hide, orderIndex FROM itemTypeFields")
    db.execute("INSERT INTO baseFieldMappingsCombined SELECT itemTypeID, baseFieldID, fieldID FROM baseFieldMappings")
    db.execute("INSERT INTO libraries (libraryID, type, editable, filesEditable) VALUES (1, 'user', 1, 1)")

    coll_ids: dict[str, int] = {}
    for name, parent in (collections or {}).items():
        coll_ids[name] = cid = len(coll_ids) + 1
        db.execute("INSERT INTO collections (collectionID, collectionName, parentCollectionID, libraryID, key) "
                   "VALUES (?, ?, ?, 1, ?)", (cid, name, coll_ids.get(parent) if parent else None, f"COLL{cid:04d}"))
    value_ids: dict[str, int] = {}
    creator_rows: dict[tuple[str, str, int], int] = {}
    for item_id, item in enumerate(items, start=1):
        db.execute("INSERT INTO items (itemID, itemTypeID, libraryID, key) VALUES (?, ?, 1, ?)",
                   (item_id, type_ids[item.type], item.key))
        for name, value in item.fields.items():
            if value not in value_ids:
                value_ids[value] = len(value_ids) + 1
                db.execute("INSERT INTO itemDataValues (valueID, value) VALUES (?, ?)", (value_ids[value], value))
            db.execute("INSERT INTO itemData VALUES (?, ?, ?)", (item_id, field_ids[name], value_ids[value]))
        for order, (first, last, ctype) in enumerate(item.creators):
            mode = 0 if first else 1
            ckey = (first, last, mode)
            if ckey not in creator_rows:
                creator_rows[ckey] = len(creator_rows) + 1
                db.execute("INSERT INTO creators (creatorID, firstName, lastName, fieldMode) VALUES (?, ?, ?, ?)",
                           (creator_rows[ckey], first, last, mode))
            db.execute("INSERT INTO itemCreators VALUES (?, ?, ?, ?)",
                       (item_id, creator_rows[ckey], creator_ids[ctype], order))
        for name in item.collections:
            db.execute("INSERT INTO collectionItems (collectionID, itemID) VALUES (?, ?)", (coll_ids[name], item_id))
        if item.trashed:
            db.execute("INSERT INTO deletedItems (itemID) VALUES (?)", (item_id,))
    db.commit()
    db.close()
    return path
