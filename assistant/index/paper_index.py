"""The index as one object: the catalogue, the vector store and the lexical index,
opened lazily and kept consistent with each other."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..collection_names import DEFAULT, chroma_name
from ..errors import IndexStateError
from ..settings import Settings
from .catalogue import Catalogue
from .lexical import LexicalIndex
from .server_catalogue import ServerCatalogue
from .vectors import VectorStore, forget_system, note_chroma_state, written_elsewhere

_OPEN: dict[str, weakref.WeakSet[PaperIndex]] = {}
"""Per Chroma folder: the indexes of this process that opened a vector store on it (they share one
Chroma system: a writer must be able to make them all let go of it)."""
_OPEN_LOCK = threading.Lock()


@dataclass
class IndexStatus:
    location: str
    mode: str
    papers: int
    chunks: int
    vectors: int
    embedding_model: str
    built_with: str | None
    lexical_generation: int
    catalogue_generation: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Readers:
    """Questions in flight, or one reopen of the vector store: a Chroma client is closed only while
    no question is using it. A thread already reading may read again (nested calls)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._waiting = 0
        """Reopens waiting: a question that starts meanwhile waits behind them (under a steady flow of
        questions a reopen, and an ingest holding the ingest lock for one, waited without end)."""
        self._mine = threading.local()

    def held(self) -> bool:
        return getattr(self._mine, "depth", 0) > 0

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            if not self.held():  # (a thread already reading goes on: it would wait for itself)
                self._cond.wait_for(lambda: self._waiting == 0)
            self._count += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._count -= 1
                if not self._count:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: self._count == 0)
            finally:
                self._waiting -= 1
            try:
                yield
            finally:
                self._cond.notify_all()  # the questions that waited behind it


class PaperIndex:
    def __init__(self, settings: Settings, *, check_model: bool = True) -> None:
        """``check_model=False`` opens an index built with another embedding model, to describe it
        (`collections list` failed for a whole home holding one such collection)."""
        self.settings = settings
        self.check_model = check_model
        self.dir = index_dir(settings)
        self._catalogue: Catalogue | ServerCatalogue | None = None
        self._vectors: VectorStore | None = None
        self._vectors_generation: int | None = None
        """Catalogue generation read just before the embedded vector store was opened."""
        self._lexical: LexicalIndex | None = None
        self._lock = threading.RLock()
        self._readers = _Readers()
        self._writing = False
        """True inside write_lock: only then is the catalogue opened for writing."""
        self.epoch = 0
        """Counts ``release``s: what was read from the index before one is not to be reused."""
        self._opened_file: tuple[int, int] | None = None
        """(device, inode) of the catalogue file open here (embedded). Held open, its inode cannot be
        reused by a new file: the folder's could (a folder removed and made again got its old inode
        back), so the file is what tells a collection made again from the one read."""

    # -- paths ---------------------------------------------------------------
    @property
    def catalogue_path(self) -> Path:
        return self.dir / "catalogue.sqlite"

    @property
    def chroma_name(self) -> str:
        """The Chroma collection (family prefix) holding this collection's vectors: named after the
        collection, or embedded after a rename, the name recorded in its folder."""
        if not self.settings.server_mode:
            stored = stored_chroma_name(self.dir)
            if stored:
                return stored
        return chroma_name(self.settings.index.collection)

    @property
    def lock_path(self) -> Path:
        return self.dir / "ingest.lock"

    def exists(self) -> bool:
        """Embedded: the home has a catalogue. Server mode: always (the server is the index;
        a server nobody has written to reads as empty)."""
        return self.settings.server_mode or self.catalogue_path.is_file()

    def claim_first_write(self) -> bool:
        """True for the first writer this home ever had, once: the lock file is created
        exclusively, so a home another ingest holds, or has ever held, is never claimed."""
        if self.exists() or (self.dir / "chroma").exists():
            return False
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        except OSError as exc:
            raise IndexStateError(f"{self.dir}: cannot create the index ({exc.strerror}); "
                                  "check ASSISTANT_HOME is writable") from None
        return True

    # -- components ------------------------------------------------------------
    @property
    def catalogue(self) -> Catalogue | ServerCatalogue:
        """The SQLite catalogue under the home, or in server mode the papers on the server."""
        with self._lock:
            if self.settings.server_mode:
                if self._catalogue is None:
                    cat = ServerCatalogue(self.vectors)
                    self._check_model(cat)  # kept only once checked: a failed check is made again next time
                    self._catalogue = cat
                return self._catalogue
            stale = self._catalogue is not None and (self._catalogue.readonly == self._writing or (
                self._catalogue.in_memory and self.catalogue_path.is_file()))
            if stale and self._catalogue is not None:
                self._catalogue.close()
                self._catalogue = None
            if self._catalogue is None:
                cat = Catalogue(self.catalogue_path, readonly=not self._writing)
                try:
                    self._check_model(cat)
                except IndexStateError:  # not kept: an ingest reusing it wrote past the model check
                    cat.close()
                    raise
                self._catalogue = cat
                self._opened_file = None if cat.in_memory else self._catalogue_id()
            return self._catalogue

    def _catalogue_id(self) -> tuple[int, int] | None:
        try:
            st = self.catalogue_path.stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def refuse_a_lost_catalogue(self) -> None:
        """No catalogue (or an empty one) beside a vector store that holds vectors: the catalogue was
        deleted or emptied (a first ingest records its model before it writes a vector). An ingest went on
        to make an index of only its own papers, leaving the others' vectors behind without a word, and
        `status` showed 0 papers and 0 vectors."""
        if self.settings.server_mode or not (self.dir / "chroma").is_dir():
            return
        n = self.vectors.count()
        if n:
            raise IndexStateError(f"{self.catalogue_path}: the index catalogue is missing or empty, but the vector "
                                  f"store beside it holds {n} vectors; the papers' records were lost, so rebuild the "
                                  "index from your sources with `assistant ingest --rebuild SOURCES`")

    def _another_writer(self) -> bool:
        """Does another process hold the ingest lock now? (False when it cannot be told: no lock file,
        or a home this process cannot write.)"""
        if not self.lock_path.exists():
            return False
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        except OSError:
            return False
        lock.release()
        return False

    def _check_model(self, cat: Catalogue | ServerCatalogue) -> None:
        if not self.check_model:
            return
        built = cat.get_meta("embedding_model")
        want = self.settings.embedding_model_name
        if built and built != want:
            where = (f"{cat.path} (collection '{self.settings.index.collection}')" if self.settings.server_mode
                     else self.dir)
            raise IndexStateError(
                f"the index in {where} was built with embedding model '{built}', but the settings ask for "
                f"'{want}'; rebuild it with `assistant ingest --rebuild SOURCES` "
                f"or set ASSISTANT_EMBEDDING_MODEL={built}")

    @property
    def vectors(self) -> VectorStore:
        with self._lock:
            if self._vectors is None:
                # Not while writing: a rebuild opens the store before it mends the catalogue.
                followed = not (self.settings.server_mode or self._writing or not self.exists())
                self._vectors_generation = self.catalogue.generation if followed else None
                store = VectorStore(self.settings, self.dir / "chroma", self.settings.embedding_model_name,
                                    name=self.chroma_name, reads_only=not self._writing)
                if followed:
                    self._check_vectors_present(store)
                if not self.settings.server_mode and not store.is_copy:
                    with _OPEN_LOCK:
                        _OPEN.setdefault(str(self.dir / "chroma"), weakref.WeakSet()).add(self)
                self._vectors = store
            return self._vectors

    def _check_vectors_present(self, store: VectorStore) -> None:
        """A catalogue with papers beside a store without their collection (the chroma folder deleted, or
        a wrong name recorded) answered every question with a refusal, and `status` showed 0 vectors
        without a word: say so, and how to mend it."""
        if store.collection(create=False) is not None:
            return
        papers, chunks = self.catalogue.count()
        if papers:
            store.close()
            if self._another_writer():  # a --rebuild drops the vectors before it clears the catalogue
                raise IndexStateError(f"the index in {self.dir} is being rebuilt by another process; try again "
                                      "when it finishes")
            raise IndexStateError(f"{self.dir / 'chroma'}: the vector store holds none of the {chunks} chunk vectors "
                                  f"of the {papers} indexed papers (deleted or moved?); rebuild the index with "
                                  "`assistant ingest --rebuild SOURCES`")

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Run a question's reads inside: first follow what other processes wrote, then keep the
        vector store open until the reads are done."""
        if not self._readers.held():
            self._follow_writes()
        with self._readers.read():
            yield

    def stale_vectors(self) -> None:
        """Reopen the vector store before the next question's reads, whatever the generation
        (a question failed the way a concurrent write makes it fail)."""
        with self._lock:
            if self._vectors is not None:
                self._vectors_generation = None

    def _follow_writes(self) -> None:
        """Embedded Chroma loads a collection into this process once: vectors another process adds
        later are not in it (a question reaching them failed with "Error finding id" until a
        restart; `assistant serve` with an ingest in another shell). A catalogue generation newer
        than the open store's means such a write: reopen the store, once no question is using it.
        Not while this process writes (it writes through the open store), nor in server mode.

        A collection deleted (or renamed) and made again by another process has another catalogue
        file: the files open here were the old one's, so `assistant serve` answered from deleted
        papers. A catalogue that is not the one opened closes everything, to be opened afresh."""
        if self.settings.server_mode:
            return
        with self._lock:
            moved = (not self._writing and self._opened_file is not None
                     and self._catalogue_id() != self._opened_file)
        if moved:
            with self._readers.exclusive(), self._lock:
                self.release()
                self._opened_file = None
        if not self.exists():
            return
        gen = self.catalogue.generation
        with self._lock:
            if self._vectors is None or self._writing or self._vectors_generation == gen:
                return
        # Lock order: the readers' condition, then _lock (no reader enters or leaves under _lock).
        with self._readers.exclusive(), self._lock:
            if self._vectors is not None and not self._writing and \
                    self._vectors_generation != self.catalogue.generation:
                self._drop_vectors()

    def lexical(self) -> LexicalIndex:
        """The BM25 index, rebuilt if it lags the catalogue (e.g. after a killed ingest)."""
        with self._lock:
            gen = self.catalogue.generation
            if self._lexical is not None and self._lexical.generation == gen:
                return self._lexical
            lex = LexicalIndex(self.dir / "bm25")
            if not lex.load() or lex.generation != gen:
                # The generation read before the papers: a write landing meanwhile changes it,
                # so the next call rebuilds (server mode: other clients write at any time).
                built = False
                if self.exists():  # an empty home stays untouched
                    with contextlib.suppress(IndexStateError):
                        lex.write(self.catalogue.iter_papers(order=None), gen)
                        built = lex.load()
                if not built:  # a home that cannot be written: built in memory
                    lex.build(self.catalogue.iter_papers(order=None), gen)
            self._lexical = lex
            return lex

    def refresh_lexical(self) -> None:
        """Build and save the BM25 index from the catalogue (once per ingest)."""
        with self._lock:
            lex = LexicalIndex(self.dir / "bm25")
            gen = self.catalogue.generation  # before reading the papers (see lexical())
            lex.write(self.catalogue.iter_papers(order=None), gen)  # streamed: no paper held
            self._lexical = None  # mapped from the saved files on the next question

    def totals(self) -> tuple[int, int]:
        """Papers and chunks (on a Chroma server, two count requests)."""
        return self.catalogue.count() if self.exists() else (0, 0)

    def status(self) -> IndexStatus:
        if not self.exists():
            self.refuse_a_lost_catalogue()
        papers, chunks = self.totals()
        # On a server the chunks were counted as the chunk vectors: no second request.
        vectors = chunks if self.settings.server_mode else self.vectors.count() if self.exists() else 0
        lex_gen = LexicalIndex(self.dir / "bm25").saved_generation()
        return IndexStatus(
            location=str(self.dir),
            mode=(f"chroma server {self.settings.index.chroma_host}:{self.settings.index.chroma_port}"
                  if self.settings.server_mode else "embedded chroma"),
            papers=papers, chunks=chunks, vectors=vectors,
            embedding_model=self.settings.embedding_model_name,
            built_with=self.catalogue.get_meta("embedding_model") if self.exists() else None,
            lexical_generation=lex_gen,
            catalogue_generation=self.catalogue.generation if self.exists() else 0,
        )

    @contextlib.contextmanager
    def write_lock(self, wait: bool = True, on_wait: Any = None) -> Iterator[None]:
        """One writer at a time, across processes."""
        from filelock import FileLock, Timeout

        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise IndexStateError(f"{self.dir}: cannot create the index directory ({exc.strerror}); "
                                  "check ASSISTANT_HOME") from None
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                raise IndexStateError(f"another ingest is writing this index ({self.lock_path}); "
                                      "try again when it finishes, or drop --no-wait to wait") from None
            if on_wait:
                on_wait(f"another ingest is writing this index; waiting for {self.lock_path} ...")
            lock.acquire()
        except OSError as exc:
            raise IndexStateError(f"{self.lock_path}: cannot take the ingest lock ({exc.strerror}); "
                                  "check ASSISTANT_HOME is writable") from None
        fresh = False  # this process's Chroma system holds what is on disk (only then is the state noted)
        try:
            if not self.settings.server_mode:
                self._drop_stale_chroma()
            fresh = True
            with self._lock:
                copy = self._vectors is not None and self._vectors.is_copy
            if copy:  # opened for reading from a copy (a full disk then): a write through it would be lost
                with self._readers.exclusive(), self._lock:
                    if self._vectors is not None and self._vectors.is_copy:
                        self._drop_vectors()
            with self._lock:
                self._writing = True
            yield
        finally:
            with self._lock:
                self._writing = False
                self.close()
            if fresh and not self.settings.server_mode:
                # What this process's Chroma system now holds is what is on disk: only a write by another
                # process from here on makes it stale.
                with contextlib.suppress(Exception):
                    note_chroma_state(self.dir / "chroma")
            lock.release()

    def _drop_stale_chroma(self) -> None:
        """Under the ingest lock, before writing: when another process wrote the vector store since this
        process's Chroma system loaded it, close every vector store of this process on it (each once its
        questions are done), so the system stops and the writer loads the files afresh. Writing through the
        old system saved its stale HNSW index over the other process's: their vectors were lost."""
        path = self.dir / "chroma"
        if not written_elsewhere(path):
            return
        for _ in range(5):  # a question may reopen a store (joining the old system) meanwhile: again
            with _OPEN_LOCK:
                holders = list(_OPEN.get(str(path), ()))
            for idx in holders:
                if idx._readers.held():  # this thread reads through it: cannot wait for itself
                    continue
                with idx._readers.exclusive(), idx._lock:
                    idx._drop_vectors()
            forget_system(path)  # stopped once its last client closed: a store opened since started a fresh one
            if not written_elsewhere(path):
                return
            gc.collect()  # an index let go of without release(), in a reference cycle: its client closes now
        raise IndexStateError(f"{path}: another process wrote the vector store, and this process still holds an "
                              "older copy of it open (a vector store opened through the Python API and not "
                              "released: call Assistant.index.release()); writing through it would lose that "
                              "process's vectors")

    def _drop_vectors(self) -> None:
        """Close this index's vector store (callers hold ``_lock``, and the readers' exclusive side where
        a question of another thread may be using it)."""
        old, self._vectors = self._vectors, None
        if old is not None:
            old.close()

    def close(self) -> None:
        if self._catalogue is not None:
            self._catalogue.close()
            self._catalogue = None

    def release_when_idle(self) -> None:
        """``release`` once no question of this process is reading (another thread's catalogue and Chroma
        client were closed under it); nothing when this thread is itself inside a read."""
        if self._readers.held():
            return
        with self._readers.exclusive(), self._lock:
            self.release()

    def release(self) -> None:
        """Close the catalogue and the vector store of an index nobody will read again (the
        server's writer). Chroma shares one loaded copy of a folder among a process's clients and
        reloads it only when the last one closes: a client left open kept every other index of the
        process on the old copy."""
        with self._lock:
            self.close()
            self._drop_vectors()
            # What was read from it goes too: a collection deleted and made again starts its generation
            # at 1 again, so caches keyed by generation alone (BM25 here, the retriever's loaded vectors)
            # kept answering from the deleted one's papers - or from none.
            self._lexical = None
            self.epoch += 1


def index_dir(settings: Settings) -> Path:
    """Embedded mode keeps everything of a collection in one folder under home (home/index for the
    default one); server mode keeps only the BM25 cache and the ingest lock locally, keyed by server
    and collection so two servers never mix."""
    idx = settings.index
    if settings.server_mode:
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{idx.chroma_host}_{idx.chroma_port}_{chroma_name(idx.collection)}")
        return settings.home / f"index-server-{tag}"
    return embedded_dir(settings, idx.collection)


CHROMA_NAME_FILE = "collection.json"
"""In an embedded collection's folder after a rename: the Chroma name its vectors were stored under."""


def embedded_dir(settings: Settings, name: str) -> Path:
    """An embedded collection's folder (``HOME/index`` for the default one)."""
    return settings.index_dir if name == DEFAULT else settings.home / f"index-{name}"


def stored_chroma_name(directory: Path) -> str | None:
    """The Chroma name recorded in an embedded collection's folder by a rename, if any."""
    path = directory / CHROMA_NAME_FILE
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("chroma_collection")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        raise IndexStateError(f"{path}: cannot read the collection's Chroma name ({exc}); a rename wrote it "
                              'as {"chroma_collection": "NAME"}, naming the Chroma collection that holds this '
                              "collection's vectors: restore it from a backup, or remove the folder and ingest "
                              "the collection again") from None
    return value if isinstance(value, str) and value else None
