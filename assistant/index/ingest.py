"""Incremental, locked, resumable ingest.

Papers are compared with the catalogue by content hash: unchanged ones are
skipped, new and changed ones are chunked, embedded (through the embedding
cache) and written batch by batch, vectors first and catalogue last (see
catalogue.py for why that order makes a killed ingest harmless).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IndexStateError, InputError
from ..records import Chunk, Paper, combine_provenance, merge_provenance, own_fields
from .catalogue import Catalogue, UnreadableCatalogue
from .chunking import chunk_paper, embed_text
from .lexical import LexicalIndex
from .paper_index import PaperIndex
from .sentences import plan as sentence_plan
from .sentences import recorded as recorded_sentences
from .sentences import rows as sentence_rows
from .storage import scratch_folder, writable_error

if TYPE_CHECKING:
    from ..readers import ReadResult, TitleClash
    from ..readers.staged import StagedPapers


class Reporter(Protocol):
    """Progress sink: the CLI passes a rich one, tests and the API a silent one."""

    def start(self, task: str, total: int | None) -> None: ...
    def advance(self, task: str, n: int = 1) -> None: ...
    def message(self, text: str) -> None: ...
    def finish(self, task: str) -> None: ...


class SilentReporter:
    def __init__(self, on_message: Callable[[str], None] | None = None) -> None:
        self.on_message = on_message

    def start(self, task: str, total: int | None) -> None:
        pass

    def advance(self, task: str, n: int = 1) -> None:
        pass

    def message(self, text: str) -> None:
        if self.on_message:
            self.on_message(text)

    def finish(self, task: str) -> None:
        pass


@dataclass
class IngestReport:
    files: int = 0
    entries: int = 0
    duplicates_merged: int = 0
    duplicate_papers: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    removed: int = 0
    prune_skipped: bool = False
    """--prune was asked for but some source was not read completely, so nothing was removed."""
    chunks_written: int = 0
    sentences_written: int = 0
    """Sentence vectors written (new and changed papers, plus any backfill of older ones)."""
    sentences_backfilled: int = 0
    """Papers already indexed that got their sentence vectors in this run."""
    papers_total: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Non-zero exit only when nothing could be read at all."""
        return self.entries > 0 or not self.problems

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def ingest(index: PaperIndex, paths: Sequence[str | Path], *, prune: bool = False, rebuild: bool = False,
           wait: bool = True, reporter: Reporter | None = None, embedder: Any = None,
           batch_papers: int = 256, after_batch: Callable[[int], None] | None = None,
           names: Mapping[str, str] | None = None, replace: bool = False,
           zotero_collection: str | None = None) -> IngestReport:
    """``names`` maps a file (absolute path) to the name recorded for it instead (an HTTP upload is
    recorded under the client's name for it, never the server's temporary file). With ``replace``,
    a paper read now replaces the stored record of its id outright (the server's upsert: the last
    upload wins) instead of being merged field by field with what other files said.
    ``zotero_collection`` takes one collection of a Zotero library (with its subcollections).

    Papers read go to a staging file on disk (readers/staged.py), not memory: ingest holds one
    batch of papers at a time whatever the corpus size."""
    from ..readers import read_paths

    rep = reporter or SilentReporter()
    settings = index.settings
    t0 = time.perf_counter()
    staged = None if names else staging(settings)  # uploads are renamed in memory (they are small)
    try:
        rep.start("read", None)
        result = read_paths(paths, max_abstract_chars=settings.index.max_abstract_chars,
                            hf_page_year=settings.index.hf_page_year, zotero_collection=zotero_collection,
                            staged=staged,
                            # (an upload replaces the record of its id, as the server's docs say: "last wins")
                            title_clash=None if rebuild or replace else _title_clash(index, names or {}))
        rep.finish("read")
        if names:
            _rename_sources(result, names)
        return ingest_read(index, result, prune=prune, rebuild=rebuild, wait=wait, reporter=rep,
                           embedder=embedder, batch_papers=batch_papers, after_batch=after_batch, t0=t0,
                           replace=replace)
    finally:
        if staged is not None:
            staged.close()


def _title_clash(index: PaperIndex, names: Mapping[str, str]) -> TitleClash | None:
    """readers.TitleClash over this index. The indexed paper of a title-derived id came from other
    files only and has another abstract: this record is another paper with that title, or the edit of
    one this file gave before (found among the indexed papers of that title, looked up only then)."""
    from ..readers import apart_id

    if not index.exists():
        return None
    try:
        cat = index.catalogue
        if cat.is_empty():
            return None
    except (IndexStateError, UnreadableCatalogue, sqlite3.Error, OSError):
        return None  # the ingest itself says what is wrong with the index, under its lock

    def files(paper: Paper) -> dict[str, Any]:
        return paper.provenance or _legacy_provenance(paper)

    claimed: set[str] = set()  # ids an earlier record of this run was placed at

    def clashes(papers: Sequence[Paper], file: str) -> list[tuple[str, str | None] | None]:
        indexed = cat.get_many(list(dict.fromkeys(p.paper_id for p in papers)))
        return [clash(p, indexed.get(p.paper_id), file) for p in papers]

    def clash(paper: Paper, before: Paper | None, file: str) -> tuple[str, str | None] | None:
        if before is None or before.abstract == paper.abstract:
            return None
        file = names.get(file, file)
        if file in files(before):
            return None  # an edit of the record this file gave
        mine = [o for o in cat.with_title(paper.title) if o.paper_id != paper.paper_id and file in files(o)]
        same = [o for o in mine if o.abstract == paper.abstract]
        # This file's paper of that title: the one with this text, else the only one not yet placed (an
        # edit). Two or more left: which one was edited cannot be told, so a paper of its own (the first
        # found was taken, and a file with two such records lost one of them on every other run).
        free = [o for o in mine if o.paper_id not in claimed]
        chosen = same[0] if same else free[0] if len(free) == 1 else None
        if chosen is not None:
            claimed.add(chosen.paper_id)
            return chosen.paper_id, None
        return apart_id(paper), min(files(before), default=before.source)

    return clashes


def staging(settings: Any) -> StagedPapers:
    """A staging file in the scratch folder, else the system's temporary folder (a read-only home
    still reports its own error)."""
    from ..readers.staged import StagedPapers

    try:
        return StagedPapers(scratch_folder(settings, "ingest"))
    except OSError:
        return StagedPapers(None)


def ingest_read(index: PaperIndex, result: ReadResult, *, prune: bool = False, rebuild: bool = False,
                wait: bool = True, reporter: Reporter | None = None, embedder: Any = None,
                batch_papers: int = 256, after_batch: Callable[[int], None] | None = None,
                t0: float | None = None, replace: bool = False) -> IngestReport:
    """Index records already read: from files (``ingest``) or from a remote source (sources/),
    so both take the same incremental, locked, resumable path."""
    rep = reporter or SilentReporter()
    t0 = time.perf_counter() if t0 is None else t0
    unread = [p for p in result.problems if p.where is None]
    if rebuild and unread:
        # A rebuild drops every paper first: a mistyped or unreadable source would lose its papers.
        more = f" (and {len(unread) - 1} more source(s) not read)" if len(unread) > 1 else ""
        raise InputError(f"--rebuild refused, the index is unchanged: {unread[0]}{more}; a rebuild keeps only the "
                         "papers it reads, so fix the source or leave it out")
    report = IngestReport()
    report.files = result.files
    report.entries = result.entries
    report.duplicates_merged = result.duplicates_merged
    report.duplicate_papers = result.duplicate_papers
    report.problems = [str(p) for p in result.problems]
    report.warnings = [str(w) for w in result.warnings]
    report.skipped = len(result.problems)
    for line in report.problems + report.warnings:
        rep.message(line)
    if prune and result.incomplete:
        # A paper behind an unreadable line, file or folder is not "gone": never prune on a partial read.
        prune, report.prune_skipped = False, True
        shown = ", ".join(result.incomplete[:3]) + (f" and {len(result.incomplete) - 3} more"
                                                    if len(result.incomplete) > 3 else "")
        note = (f"--prune skipped: {len(result.incomplete)} source(s) not read completely ({shown}); "
                "no paper was removed - fix them and run again")
        report.warnings.append(note)
        rep.message(note)
    own = result.staged is None
    staged = result.staged if result.staged is not None else staging(index.settings)
    try:
        if own:  # records from a remote source or an upload: staged like files' (same code path)
            for p in result.papers:
                staged[p.paper_id] = p
        if not len(staged) and not prune:
            if index.exists():  # the summary shows what the index still holds
                report.papers_total, report.chunks_total = index.totals()
            report.seconds = time.perf_counter() - t0
            return report
        try:
            _ingest_locked(index, staged, result.complete_files, report, rep, prune=prune, rebuild=rebuild,
                           wait=wait, embedder=embedder, batch_papers=batch_papers, after_batch=after_batch,
                           replace=replace)
        except (sqlite3.OperationalError, OSError) as exc:
            # Writes are ordered so that a failure here leaves the index as it was (see catalogue.py);
            # what failed is named by the file the OS reports, else the index directory.
            if isinstance(exc, BrokenPipeError):
                raise
            where = Path(exc.filename) if isinstance(exc, OSError) and exc.filename else index.dir
            raise writable_error(where, exc) from exc
    finally:
        if own:
            staged.close()
    report.seconds = time.perf_counter() - t0
    return report


def _ingest_locked(index: PaperIndex, staged: StagedPapers, complete_files: set[str], report: IngestReport,
                   rep: Reporter, *,
                   prune: bool, rebuild: bool, wait: bool, embedder: Any, batch_papers: int,
                   after_batch: Callable[[int], None] | None, replace: bool = False) -> None:
    settings = index.settings
    with index.write_lock(wait=wait, on_wait=rep.message):
        if rebuild:
            _drop_all(index)
        path = index.catalogue_path
        absent = not settings.server_mode and (not path.is_file() or path.stat().st_size == 0)
        if absent and not rebuild:
            index.refuse_a_lost_catalogue()  # before opening it for writing makes an empty one that hides it
        cat = index.catalogue

        def get_embedder_once() -> Any:
            nonlocal embedder
            if embedder is None:
                from .embeddings import CachedEmbedder, get_embedder

                embedder = CachedEmbedder(get_embedder(settings), settings.embedding_cache)
            return embedder

        if cat.get_meta("embedding_model") is None:
            if not rebuild and not absent:  # (checked just above when there was no file)
                index.refuse_a_lost_catalogue()
            # The model is recorded only once it loads: a mistyped model name was recorded by the failed
            # ingest, and the index then asked for a model that does not exist.
            get_embedder_once()
            cat.set_meta("embedding_model", settings.embedding_model_name)
            cat.set_meta("schema", "1")
            cat.db.commit()
        was_empty = cat.is_empty()
        if cat.get_meta("writing") == "1" and not settings.server_mode:
            # (On a shared server, vectors without a paper record may be another client's
            # ingest in flight: they are ignored by readers and never deleted from here.)
            _reconcile_orphans(index, rep)
            cat.set_meta("writing", "0")
            cat.db.commit()
        sentences_on = settings.index.sentence_vectors
        sentence_plan(cat, settings, _papers_after(cat, staged, settings))  # index.sentence_strategy, recorded
        if sentences_on and was_empty:
            # A new (or emptied) home: every paper written from here on carries its sentence vectors.
            cat.set_meta("sentence_vectors", "complete")
            cat.db.commit()

        writer = _Writer(index, get_embedder_once, rep, report, batch_papers, after_batch)
        started = False
        # One batch of read papers at a time: compared with the catalogue by indexed lookups of
        # their ids, new and changed ones written in batches of ``batch_papers`` as before.
        for batch in staged.batches(max(batch_papers, 500)):
            known = cat.hashes_of([p.paper_id for p in batch])
            conflicts: list[str] = []
            merged, data_only = _merge_with_catalogue(cat, batch, complete_files, known, replace=replace,
                                                      conflicts=conflicts, prune=prune)
            for line in conflicts:
                report.warnings.append(line)
                rep.message(line)
            if data_only:
                cat.update_data(data_only)
            for p in merged:
                old = known.get(p.paper_id)
                if old is None:
                    report.new += 1
                elif old != p.content_hash:
                    report.updated += 1
                else:
                    report.unchanged += 1
                    if started:
                        rep.advance("embed", 1)
                    continue
                if not started:  # the bar counts what is left to look at once there is work
                    started = True
                    rep.start("embed", len(staged) - report.unchanged)
                if not sentences_on:
                    # Papers written now have none: the next ingest with the setting on backfills them.
                    writer.mark_partial()
                writer.add(p, old is not None)
        writer.finish()
        if started:
            rep.finish("embed")
        if prune:
            # Catalogue ids not read in this run, looked up page by page in the staging file.
            gone = _gone(cat, staged)
            if gone:
                # Catalogue first: vectors left behind by a kill here are orphans, reconciled next run.
                cat.set_meta("writing", "1")
                cat.db.commit()
                cat.delete_papers(gone)
                index.vectors.delete_papers(gone)
                cat.set_meta("writing", "0")
                cat.db.commit()
                report.removed = len(gone)
        if sentences_on and cat.get_meta("sentence_vectors") != "complete":
            _backfill_sentences(index, get_embedder_once, rep, report, batch_papers)
            cat.set_meta("sentence_vectors", "complete")
            cat.db.commit()
            if report.sentences_backfilled:
                cat.bump_generation()
        stale = cat.generation != LexicalIndex(index.dir / "bm25").saved_generation()  # reads ids.json's head
        if writer.wrote or report.removed or rebuild or stale:
            rep.message("building the BM25 index ...")
            index.refresh_lexical()
        report.papers_total, report.chunks_total = index.totals()


def _gone(cat: Catalogue | Any, staged: StagedPapers) -> list[str]:
    """Catalogue papers not read in this run (``--prune``), by pages of ids."""
    gone: list[str] = []
    for ids in cat.iter_id_pages():
        kept = staged.known(ids)
        gone.extend(pid for pid in ids if pid not in kept)
    return gone


class _Writer:
    """New and changed papers, buffered into batches of ``batch_papers`` and written in order
    (vectors, then catalogue): the batches a kill can cut are those the whole-list ingest wrote."""

    def __init__(self, index: PaperIndex, get_embedder: Callable[[], Any], rep: Reporter, report: IngestReport,
                 batch_papers: int, after_batch: Callable[[int], None] | None) -> None:
        self.index, self.get_embedder, self.rep, self.report = index, get_embedder, rep, report
        self.batch_papers, self.after_batch = batch_papers, after_batch
        self.pending: list[tuple[Paper, bool]] = []
        self.batches = 0
        self.wrote = False
        self._partial = False

    def mark_partial(self) -> None:
        if not self._partial:
            self._partial = True
            cat = self.index.catalogue
            cat.set_meta("sentence_vectors", "partial")
            cat.db.commit()

    def add(self, paper: Paper, known: bool) -> None:
        self.pending.append((paper, known))
        if len(self.pending) >= self.batch_papers:
            self._flush()

    def finish(self) -> None:
        if self.pending:
            self._flush()
        if self.wrote:
            cat = self.index.catalogue
            cat.set_meta("writing", "0")
            cat.db.commit()

    def _flush(self) -> None:
        batch, self.pending = self.pending, []
        cat = self.index.catalogue
        if not self.wrote:
            self.wrote = True
            embedder = self.get_embedder()  # loaded before the flag: a failing model leaves no flag behind
            cat.set_meta("writing", "1")
            cat.db.commit()
        else:
            embedder = self.get_embedder()
        _write_batch(self.index, [p for p, _ in batch], {p.paper_id for p, known in batch if known}, embedder,
                     self.report)
        self.rep.advance("embed", len(batch))
        if self.after_batch:
            self.after_batch(self.batches)
        self.batches += 1


def _rename_sources(result: Any, names: Mapping[str, str]) -> None:
    """Record each file of ``names`` under its given name: sources, provenance, problems."""
    def rename(text: str) -> str:
        for path, name in names.items():
            if text.startswith(path):
                return name + text[len(path):]
        return text

    for p in result.papers:
        p.source = rename(p.source)
        p.provenance = {rename(f): {k: rename(v) if k == "source" and isinstance(v, str) else v
                                    for k, v in fields.items()} for f, fields in p.provenance.items()}
    for problem in [*result.problems, *result.warnings]:
        problem.path = rename(problem.path)
    result.complete_files = {rename(f) for f in result.complete_files}
    result.incomplete = [rename(f) for f in result.incomplete]


def _merge_with_catalogue(cat: Catalogue, papers: list[Paper], complete_files: set[str],
                          known: dict[str, str], replace: bool = False,
                          conflicts: list[str] | None = None, prune: bool = False) -> tuple[list[Paper], list[Paper]]:
    """Fold what the catalogue knows from other files into the papers just read, so re-reading
    one file never replaces a field another file gave (records.merge_provenance). Returns the
    merged papers and those whose stored record changed only outside the content hash
    (provenance, source, upvotes): those are rewritten without re-embedding. A paper whose abstract
    another file gave differently is replaced by the record read now, said in ``conflicts``. With
    ``prune`` (every source read completely), the files read now are all there is: what files not read
    said goes with them (a date from a deleted or moved file stayed in its papers for good)."""
    old = cat.get_many([p.paper_id for p in papers if p.paper_id in known])
    merged: list[Paper] = []
    data_only: list[Paper] = []
    for p in papers:
        before = old.get(p.paper_id)
        if replace:  # the record as read now is the paper (provenance: this source only)
            merged.append(p)
            if before is not None and p.content_hash == before.content_hash and p.to_dict() != before.to_dict():
                data_only.append(p)
            continue
        if before is None or before.abstract != p.abstract:
            merged.append(p)  # new, or a changed text: the record read now replaces the old one
            others = sorted(set(before.provenance) - set(p.provenance)) if before is not None else []
            if others and conflicts is not None:
                shown = others[0] + (f" and {len(others) - 1} more" if len(others) > 1 else "")
                conflicts.append(f"{p.source}: paper '{p.paper_id}' has another abstract in {shown}; the one read "
                                 "now replaces it, with its fields (the last ingested wins)")
            continue
        prov = before.provenance or _legacy_provenance(before)
        # What a file read completely now says replaces what it said before; other files' say stays.
        prov = {} if prune else {f: fields for f, fields in prov.items() if f not in complete_files}
        combine_provenance(prov, p.provenance)
        p = Paper.from_dict({**p.to_dict(), "provenance": prov})
        merge_provenance(p)
        merged.append(p)
        if p.content_hash == before.content_hash and p.to_dict() != before.to_dict():
            data_only.append(p)
    return merged, data_only


def _legacy_provenance(paper: Paper) -> dict[str, dict[str, Any]]:
    """Records stored before provenance existed: credit all their fields to their source file."""
    import re

    m = re.match(r"^(.*?):(?:line|entry|record) ", paper.source)
    path = m.group(1) if m else paper.source
    return {str(Path(path).absolute()): own_fields(paper)}


def _write_batch(index: PaperIndex, batch: list[Paper], stale_ids: set[str], embedder: Any,
                 report: IngestReport) -> None:
    settings = index.settings
    chunks: list[Chunk] = []
    for p in batch:
        chunks.extend(chunk_paper(p, settings.index.chunk_size, settings.index.chunk_overlap, fits=embedder.fits))
    by_id = {p.paper_id: p for p in batch}
    sents = _sentence_rows(index, batch)
    texts = [embed_text(by_id[c.paper_id], c) for c in chunks] + [p.abstract[a:b] for p, a, b in sents]
    t = time.perf_counter()
    vectors = embedder.embed(texts)  # one call: the embedder batches chunks and sentences together
    report.embed_seconds += time.perf_counter() - t
    # Old vectors of changed papers (or leftovers of a killed run) go first, by paper id
    # (chunks and sentences alike).
    stale = [p.paper_id for p in batch if p.paper_id in stale_ids]
    if stale:
        index.vectors.delete_papers(stale)
    # Chunks before sentences: a kill in between leaves chunk orphans, which the next run drops.
    index.vectors.upsert(chunks, by_id, vectors[:len(chunks)])
    index.vectors.sentences.upsert(sents, vectors[len(chunks):])
    index.catalogue.commit_papers(batch, chunks)
    report.chunks_written += len(chunks)
    report.sentences_written += len(sents)


def _papers_after(cat: Any, staged: StagedPapers, settings: Any) -> int:
    """Papers the index will hold after this ingest (indexed + staged ones not yet indexed), read a
    batch at a time; only ``auto`` sentence strategy needs it (0 otherwise)."""
    if settings.index.sentence_strategy != "auto" or not settings.index.sentence_vectors:
        return 0
    new = 0
    for batch in staged.batches(1000):
        new += len(batch) - len(cat.hashes_of([p.paper_id for p in batch]))
    return cat.paper_count() + new


def _sentence_rows(index: PaperIndex, papers: Sequence[Paper]) -> list[tuple[Paper, int, int]]:
    """(paper, start, end) of the abstract sentences whose vectors the index stores (its recorded
    ``index.sentence_strategy``), in the answerers' spans."""
    return sentence_rows(papers, recorded_sentences(index.catalogue, index.settings), index.settings.index.sentence_top)


def _backfill_sentences(index: PaperIndex, get_embedder: Callable[[], Any], rep: Reporter,
                        report: IngestReport, batch_papers: int) -> None:
    """Give papers indexed without sentence vectors (a home built before they existed, or with
    ``index.sentence_vectors`` off) theirs. Only adds vectors, so a kill here loses nothing:
    the flag stays unset and the next ingest carries on from what is stored."""
    have = index.vectors.sentences.paper_counts()
    # A paper with fewer (or other) vectors than spans, e.g. cut by a kill mid-batch, is redone.
    missing = [p for p in index.catalogue.iter_papers(order="id")
               if have.get(p.paper_id, 0) != len(_sentence_rows(index, [p]))]
    if not missing:
        return
    rep.message(f"aligning the sentence vectors of {len(missing)} paper(s) with the index's strategy ...")
    rep.start("sentences", len(missing))
    for start in range(0, len(missing), batch_papers):
        batch = missing[start:start + batch_papers]
        rows = _sentence_rows(index, batch)
        partial = [p.paper_id for p in batch if have.get(p.paper_id)]
        if partial:
            index.vectors.sentences.delete_papers(partial)
        if rows:  # none under query-time: the papers' stored vectors are only dropped
            t = time.perf_counter()
            vectors = get_embedder().embed([p.abstract[a:b] for p, a, b in rows])
            report.embed_seconds += time.perf_counter() - t
            index.vectors.sentences.upsert(rows, vectors)
        report.sentences_written += len(rows)
        report.sentences_backfilled += len(batch)
        rep.advance("sentences", len(batch))
    rep.finish("sentences")


def _reconcile_orphans(index: PaperIndex, rep: Reporter) -> None:
    """Vectors whose paper the catalogue does not know come from a killed ingest: drop them."""
    if index.vectors.collection(create=False) is None:
        return
    found: set[str] = set()
    for page in index.vectors.paper_id_pages():  # a page at a time: no set of every paper
        found |= page - index.catalogue.known_ids(page)
    orphans = sorted(found)
    if orphans:
        rep.message(f"removing vectors of {len(orphans)} paper(s) left by an interrupted ingest")
        index.vectors.delete_papers(orphans)


def _drop_all(index: PaperIndex) -> None:
    import shutil

    try:
        index.vectors.drop()
    except IndexStateError as exc:
        # An embedded store Chroma cannot open (its SQLite file damaged) can only be removed: --rebuild
        # was the advice the error gave, and the store is rewritten from the sources.
        from .vectors import is_damaged

        if index.settings.server_mode or not is_damaged(str(exc)):
            raise
        index.close()
        shutil.rmtree(index.dir / "chroma")
    if index.settings.server_mode:  # the shared papers go with the shared vectors, for every client
        index.catalogue.drop()
    index.close()
    if not index.settings.server_mode:
        _clear_catalogue(index.catalogue_path)
    shutil.rmtree(index.dir / "bm25", ignore_errors=True)
    index._lexical = None
    if index.catalogue.paper_count():
        raise IndexStateError(f"{index.dir}: could not clear the index for --rebuild")


def _clear_catalogue(path: Path) -> None:
    """Empty the home's catalogue in place under a new generation, so a process that has the index
    open (``assistant serve`` in another shell) sees the rebuild and reloads: with the file replaced,
    it kept answering from the old one, citing papers no longer indexed. Opened without the
    embedding-model check (a model change is what --rebuild is for); a file SQLite cannot read is
    removed instead."""
    if not path.is_file():
        return
    try:
        cat = Catalogue(path)
        try:
            cat.clear()
        finally:
            cat.close()
    except UnreadableCatalogue:
        for name in (path.name, f"{path.name}-wal", f"{path.name}-shm"):
            (path.parent / name).unlink(missing_ok=True)


def sample_paths() -> list[Path]:
    """The bundled sample corpus (five HF Papers pages)."""
    from importlib import resources

    base = Path(str(resources.files("assistant.data.sample")))
    return sorted(base.glob("*.txt"))
