"""Named collections: several indexes in one home, each with its own papers, vectors and BM25.

A collection is a Chroma collection family (``NAME``, ``NAME.sentences``; in server mode also
``NAME.papers`` and ``NAME.meta``) plus its catalogue. Embedded, each collection has a folder of
its own (``HOME/index-NAME``: catalogue, Chroma, BM25, ingest lock), so ingests into two collections
never wait for each other and deleting one cannot touch another. The ``default`` collection is the
index a home had before collections existed: ``HOME/index`` with Chroma collection ``papers``, so a
home built before upgrades in place with nothing moved. The names map to storage exactly as the old
``ASSISTANT_COLLECTION`` (Chroma collection name) did, so homes and servers that used it keep theirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .collection_names import (
    DEFAULT,
    FAMILY,
    LEGACY_DEFAULT,
    MODEL_PREFIX,
    CollectionError,
    NoSuchCollection,
    canonical,
    check_name,
    chroma_name,
    from_chroma,
    from_model,
    made_here,
    model_id,
    name_problem,
)
from .errors import IndexStateError
from .index.paper_index import CHROMA_NAME_FILE, PaperIndex, embedded_dir, stored_chroma_name

if TYPE_CHECKING:
    from .settings import Settings


def settings_for(settings: Settings, name: str) -> Settings:
    """These settings pointed at collection ``name``."""
    return settings.with_(collection=canonical(name))


@dataclass
class CollectionInfo:
    """What `collections list` / `info` show for one collection."""

    name: str
    default: bool
    """The collection these settings select (ASSISTANT_COLLECTION / --collection)."""
    papers: int
    chunks: int
    vectors: int
    sentence_vectors: int
    location: str
    mode: str
    embedding_model: str | None
    """The model the collection was built with (None: nothing written yet)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# -- listing ---------------------------------------------------------------------------------

def _embedded_exists(directory: Path) -> bool:
    return (directory / "catalogue.sqlite").is_file() or (directory / "chroma").is_dir()


def _server_names(settings: Settings) -> set[str]:
    """Every Chroma collection name on the server."""
    from .index.vectors import VectorStore, _chroma_error

    store = VectorStore(settings, Path("."), settings.embedding_model_name, name=LEGACY_DEFAULT)
    try:
        return {str(getattr(c, "name", c)) for c in store.client.list_collections()}
    except Exception as exc:
        raise IndexStateError(_chroma_error(settings, Path("."), exc)) from None
    finally:
        store.close()


def names(settings: Settings) -> list[str]:
    """The collections of this home (embedded) or Chroma server: ``default`` first (it always
    exists: a home's first question builds it), then the others by name."""
    found: set[str] = set()
    if settings.server_mode:
        have = _server_names(settings)
        for chroma in have:
            base, dot, suffix = chroma.partition(".")
            name = from_chroma(base)
            if name is not None and dot + suffix in FAMILY and made_here(base, have):
                found.add(name)
    elif settings.home.is_dir():
        for entry in settings.home.iterdir():
            if entry.name.startswith("index-") and name_problem(entry.name[6:]) is None \
                    and entry.name[6:] != LEGACY_DEFAULT and _embedded_exists(entry):
                found.add(entry.name[6:])
    found.discard(DEFAULT)
    return [DEFAULT, *sorted(found)]


def exists(settings: Settings, name: str) -> bool:
    name = canonical(name)
    if name == DEFAULT:
        return True
    if settings.server_mode:
        return made_here(chroma_name(name), _server_names(settings))
    return _embedded_exists(embedded_dir(settings, name))


def require(settings: Settings, name: str | None = None) -> None:
    """A one-line error when ``name`` (default: the settings' collection) does not exist."""
    name = canonical(name or settings.index.collection)
    if not exists(settings, name):
        raise NoSuchCollection(_missing(settings, name), name)


def _missing(settings: Settings, name: str) -> str:
    where = "the Chroma server" if settings.server_mode else str(settings.home)
    return (f"no collection '{name}' in {where} (collections: {', '.join(names(settings))}); create it with "
            f"`assistant collections create {name}` or `assistant ingest -c {name} SOURCES`")


def info(settings: Settings, name: str | None = None) -> CollectionInfo:
    name = canonical(name or settings.index.collection)
    require(settings, name)
    index = PaperIndex(settings_for(settings, name), check_model=False)  # described whatever its model
    try:
        with index.reading():
            st = index.status()
            has = index.exists() or settings.server_mode
            sentences = index.vectors.sentences.count() if has else 0
    finally:
        index.release()
    return CollectionInfo(name=name, default=name == settings.index.collection, papers=st.papers,
                          chunks=st.chunks, vectors=st.vectors, sentence_vectors=sentences,
                          location=st.location, mode=st.mode, embedding_model=st.built_with)


def list_all(settings: Settings) -> list[CollectionInfo]:
    return [info(settings, n) for n in names(settings)]


# -- changing ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(index: Any, name: str) -> Iterator[None]:
    """The collection's ingest lock, or at once a one-line error when an ingest holds it."""
    try:
        lock = index.write_lock(wait=False)
        lock.__enter__()
    except IndexStateError as exc:
        if "another ingest" not in str(exc):
            raise
        raise CollectionError(f"an ingest is writing collection '{name}'; try again when it finishes") from None
    try:
        yield
    except BaseException as exc:
        if not lock.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        lock.__exit__(None, None, None)


def create(settings: Settings, name: str) -> CollectionInfo:
    """An empty collection (an ingest into a collection that does not exist creates it too)."""
    name = canonical(name)
    if exists(settings, name):
        raise CollectionError(f"collection '{name}' already exists")
    from .index.embeddings import get_embedder

    get_embedder(settings)  # a model that cannot load is not recorded (the collection asked for it ever after)
    index = PaperIndex(settings_for(settings, name))
    with _locked(index, name):
        cat = index.catalogue
        if cat.get_meta("embedding_model") is None:
            cat.set_meta("embedding_model", settings.embedding_model_name)
            cat.set_meta("schema", "1")
            cat.db.commit()
    index.release()
    return info(settings, name)


def delete(settings: Settings, name: str) -> None:
    """Remove a collection's papers, vectors and caches; no other collection is touched."""
    name = canonical(name)
    if name == DEFAULT:
        raise CollectionError("the default collection cannot be deleted; empty it with "
                              "`assistant ingest --rebuild SOURCES`, or delete another collection")
    require(settings, name)
    index = PaperIndex(settings_for(settings, name))
    if settings.server_mode:
        with _locked(index, name):
            client = index.vectors.client
            have = _server_names(settings)
            for suffix in FAMILY:
                if index.chroma_name + suffix in have:
                    index.vectors._call(client.delete_collection, index.chroma_name + suffix)
        index.release()
        shutil.rmtree(index.dir, ignore_errors=True)  # the local BM25 cache
        return
    with _locked(index, name):
        # Out of the way in one atomic step, then removed: a kill mid-removal leaves no half collection.
        doomed = settings.home / f".deleted-{name}-{secrets.token_hex(4)}"
        try:
            os.rename(index.dir, doomed)
        except OSError as exc:
            raise IndexStateError(f"{index.dir}: cannot delete the collection ({exc.strerror or exc})") from None
    index.release()
    shutil.rmtree(doomed, ignore_errors=True)


def rename(settings: Settings, old: str, new: str) -> None:
    """Give a collection another name; its papers, vectors and answers stay as they are."""
    old, new = canonical(old), canonical(new)
    if DEFAULT in (old, new):
        raise CollectionError("the default collection cannot be renamed, nor another renamed to 'default'")
    if old == new:
        raise CollectionError(f"collection '{old}' already has that name")
    require(settings, old)
    index = PaperIndex(settings_for(settings, old))
    if settings.server_mode:
        have = _server_names(settings)
        src, dst = chroma_name(old), chroma_name(new)
        clash = [dst + s for s in FAMILY if src + s in have and dst + s in have]
        if clash or (exists(settings, new) and not any(src + s in have for s in FAMILY)):
            raise CollectionError(f"collection '{new}' already exists")
        with _locked(index, old):
            client = index.vectors.client
            # Chunks first, metadata last; a rename cut short is finished by running it again.
            for suffix in FAMILY:
                if src + suffix in have:
                    col = index.vectors._call(client.get_collection, src + suffix, embedding_function=None)
                    index.vectors._call(col.modify, name=dst + suffix)
        index.release()
        shutil.rmtree(index.dir, ignore_errors=True)  # the local BM25 cache, under the old name
        return
    if exists(settings, new) or embedded_dir(settings, new).exists():
        raise CollectionError(f"collection '{new}' already exists")
    with _locked(index, old):
        # The vectors keep their Chroma name, recorded in the folder first: each step is atomic,
        # so a kill between them leaves either the old name or the new one, both complete.
        if stored_chroma_name(index.dir) is None:
            tmp = index.dir / (CHROMA_NAME_FILE + ".tmp")
            tmp.write_text(json.dumps({"chroma_collection": index.chroma_name}), encoding="utf-8")
            os.replace(tmp, index.dir / CHROMA_NAME_FILE)
        try:
            os.rename(index.dir, embedded_dir(settings, new))
        except OSError as exc:
            raise IndexStateError(f"{index.dir}: cannot rename the collection ({exc.strerror or exc})") from None
    index.release()


__all__ = ["DEFAULT", "LEGACY_DEFAULT", "MODEL_PREFIX", "CollectionError", "CollectionInfo", "canonical", "check_name",
           "chroma_name", "create", "delete", "exists", "from_model", "info", "list_all", "model_id", "name_problem",
           "names", "NoSuchCollection", "rename", "require", "settings_for"]
