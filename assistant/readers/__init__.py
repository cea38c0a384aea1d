"""Source readers: one module per format, each path -> Paper records.

``read_paths`` walks files and folders, picks the reader by extension, never
raises for bad content (every failure is a Problem naming file and line/entry),
and merges duplicates: the same paper id with the same abstract is one paper;
the same title-derived id with a different abstract is two papers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import Paper, combine_provenance, merge_provenance, normalise_title, own_fields, short_hash
from . import arxiv_atom, bibtex, csv_, hf_papers, jsonl, zotero
from .common import PAPER_SINK, FileResult, Problem
from .staged import StagedPapers

__all__ = ["Problem", "ReadResult", "iter_source_files", "read_paths", "SUPPORTED"]

SUPPORTED: dict[str, Callable[..., FileResult]] = {
    ".txt": hf_papers.read, ".jsonl": jsonl.read, ".ndjson": jsonl.read, ".json": jsonl.read,
    ".xml": arxiv_atom.read, ".atom": arxiv_atom.read, ".bib": bibtex.read, ".bibtex": bibtex.read,
    ".csv": csv_.read, ".tsv": csv_.read, ".sqlite": zotero.read,
}
#: In folders, only Zotero's own database is read among SQLite files (not caches or other apps' files).
_FOLDER_SQLITE = {"zotero.sqlite"}


@dataclass
class ReadResult:
    papers: list[Paper] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files: int = 0
    entries: int = 0
    """Records read before merging duplicates."""
    duplicates_merged: int = 0
    """Entries folded into an earlier record of the same paper."""
    duplicate_papers: int = 0
    """Distinct papers that appeared more than once (the sample: 65 titles in several files)."""
    complete_files: set[str] = field(default_factory=set)
    """Absolute paths of the files read with no problem: their say replaces what the catalogue
    recorded from them before (see records.merge_provenance)."""
    incomplete: list[str] = field(default_factory=list)
    """Files and folders not read completely (unreadable, missing, or with a skipped record):
    ``ingest --prune`` removes nothing when this is not empty."""
    staged: StagedPapers | None = None
    """Where the papers are when read for an ingest (``papers`` is then empty)."""


def iter_source_files(paths: Iterable[str | Path], problems: list[Problem] | None = None) -> Iterator[Path]:
    """Supported files under ``paths`` (folders recursed, hidden parts skipped); what cannot be
    listed or opened becomes a Problem, so a partial listing is never silent."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir() and zotero.is_zotero_folder(path):
            yield path / "zotero.sqlite"  # a Zotero data folder: its database, not storage/'s PDFs
        elif path.is_dir():
            yield from _walk(path, problems)
        elif path.is_file():
            if path.suffix.lower() in SUPPORTED:
                yield path
            elif problems is not None:
                problems.append(Problem(str(path), None, f"unsupported file type '{path.suffix or '(none)'}'; "
                                                         f"supported: {', '.join(sorted(SUPPORTED))}"))
        elif problems is not None and path.exists():  # a FIFO, socket or device: never opened (a FIFO blocks)
            problems.append(Problem(str(path), None, "not a regular file or folder (a pipe, socket or device); "
                                                     "save it to a file first"))
        elif problems is not None:
            problems.append(Problem(str(path), None, "no such file or folder; check the path and run "
                                                     "`assistant ingest PATH` again (files or folders)"))


def _walk(top: Path, problems: list[Problem] | None) -> list[Path]:
    def unreadable(exc: OSError) -> None:
        if problems is not None:
            problems.append(Problem(str(exc.filename or top), None, f"cannot read folder ({exc.strerror or exc}); "
                                                                     "its files were skipped"))

    found: list[Path] = []
    visited: set[tuple[int, int]] = set()
    real_top = Path(os.path.realpath(top))
    # Links to folders are followed (they were skipped without a word, and --prune removed their
    # papers), each folder once; a link to a folder above this one (a loop) is not.
    for root, dirs, files in os.walk(top, onerror=unreadable, followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            continue
        real = Path(os.path.realpath(root))
        if (st.st_dev, st.st_ino) in visited or real in real_top.parents:
            dirs[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            child = Path(root) / name
            if name.startswith(".") or child.suffix.lower() not in SUPPORTED or (
                    child.suffix.lower() == ".sqlite" and name.lower() not in _FOLDER_SQLITE):
                continue
            if child.is_file():
                found.append(child)
            elif problems is not None:  # a dangling link or a pipe: said, so the folder is not read completely
                what = "a link to nothing" if child.is_symlink() and not child.exists() else "not a regular file"
                problems.append(Problem(str(child), None, f"{what}; its papers were not read"))
    return sorted(found)


#: ``title_clash(papers, file)``: for each paper (all with ids from their titles), when the indexed
#: paper of that id has another abstract from other files: the id it is indexed under instead, with
#: the file of the other paper when it is a paper of its own (None when the id is an earlier record
#: of this file's, being edited). None: the id stands. A batch at a time: one catalogue read for a
#: reader's batch (one request on a Chroma server), not one per paper.
TitleClash = Callable[[Sequence[Paper], str], "list[tuple[str, str | None] | None]"]


def read_paths(paths: Iterable[str | Path], *, max_abstract_chars: int = 20000, hf_page_year: int = 0,
               zotero_collection: str | None = None, staged: StagedPapers | None = None,
               title_clash: TitleClash | None = None) -> ReadResult:
    """With ``staged``, the papers go there (on disk, merged by indexed lookups) instead of
    ``ReadResult.papers``: what ingest uses, so reading a corpus holds no paper beyond the piece
    of the file being read (see staged.py). ``title_clash`` asks the index about title-derived
    ids, so that which of two same-titled papers is indexed never depends on the order of runs."""
    out = ReadResult(staged=staged)
    by_id: dict[str, Paper] | StagedPapers = staged if staged is not None else {}
    merged_ids: set[str] = set()
    zotero_files = 0
    for path in iter_source_files(paths, out.problems):
        out.files += 1
        reader = SUPPORTED[path.suffix.lower()]
        kwargs: dict[str, Any] = {"max_abstract_chars": max_abstract_chars}
        if reader is hf_papers.read:
            kwargs["page_year"] = hf_page_year
        if reader is zotero.read:
            kwargs["collection"] = zotero_collection
            zotero_files += 1
        key = file_key(path)

        def take(papers: list[Paper], key: str = key) -> None:
            for paper in papers:
                paper.provenance = {key: own_fields(paper)}
            out.entries += len(papers)
            titled = [p for p in papers if not (p.extra.get("explicit_id") or p.arxiv_id)]
            if title_clash is not None and titled:
                for paper, clash in zip(titled, title_clash(titled, key), strict=True):
                    _apart_from_indexed(paper, clash, out)
            for paper in papers:
                _merge(by_id, paper, out, merged_ids)

        sink = PAPER_SINK.set(take)
        try:
            res = reader(path, **kwargs)
        except (RecursionError, MemoryError, ValueError, OSError) as exc:  # last line of defence
            out.problems.append(Problem(str(path), None, f"cannot read: {type(exc).__name__}: {exc}"[:300]))
            continue
        finally:
            PAPER_SINK.reset(sink)
        if res.problems:
            out.incomplete.append(str(path))
        else:
            out.complete_files.add(key)
        out.problems.extend(res.problems)
        out.warnings.extend(res.warnings)
        take(res.papers)
    if zotero_collection is not None and not zotero_files:
        out.problems.append(Problem("--zotero-collection", None, f"'{zotero_collection}' names a collection of a "
                                                                 "Zotero library, but none was given (zotero.sqlite "
                                                                 "or the Zotero data folder)"))
    if staged is None:
        out.papers = list(by_id.values())  # type: ignore[union-attr]
    out.duplicate_papers = len(merged_ids)
    for problem in out.problems:  # listing problems and files that failed outright
        if problem.where is None and problem.path not in out.incomplete:
            out.incomplete.append(problem.path)
    return out


def file_key(path: Path) -> str:
    """How provenance names a file: absolute, so 'a.jsonl' and './a.jsonl' are one file."""
    return str(Path(os.path.abspath(path)))


def _apart_from_indexed(paper: Paper, clash: tuple[str, str | None] | None, out: ReadResult) -> None:
    """An indexed paper from other files has this title and another abstract: a different paper, as
    within one run (its stored record was replaced: which of the two survived hung on the order of the
    ingests, and re-reading the second file indexed it under both ids)."""
    if clash is None:
        return
    paper.paper_id, other = clash
    if other is not None:
        out.warnings.append(Problem(paper.source, None, f"an indexed paper ({other}) has the same title "
                                                        f"'{paper.title[:80]}'; kept as a separate paper "
                                                        f"({paper.paper_id})"))


def apart_id(paper: Paper) -> str:
    """The id of a title-derived paper whose title another paper has."""
    return "t-" + short_hash(normalise_title(paper.title), paper.abstract)


def _merge(by_id: dict[str, Paper] | StagedPapers, paper: Paper, out: ReadResult, merged_ids: set[str]) -> None:
    seen = by_id.get(paper.paper_id)
    if seen is None:
        by_id[paper.paper_id] = paper
        return
    if seen.abstract == paper.abstract:
        out.duplicates_merged += 1
        merged_ids.add(paper.paper_id)
        combine_provenance(seen.provenance, paper.provenance)
        merge_provenance(seen)
        by_id[seen.paper_id] = seen  # written back: a staged paper is a copy
        return
    if paper.extra.get("explicit_id") or paper.arxiv_id:
        # Same explicit id, different text: the later record wins (an updated version).
        out.warnings.append(Problem(paper.source, None, f"id '{paper.paper_id}' seen twice with different "
                                                        f"abstracts (first at {seen.source}); keeping the later "
                                                        f"record"))
        out.duplicates_merged += 1
        by_id[paper.paper_id] = paper
        return
    # Same title, different abstract and no id: two different papers.
    paper.paper_id = apart_id(paper)
    out.warnings.append(Problem(paper.source, None, f"another paper ({seen.source}) has the same title "
                                                    f"'{paper.title[:80]}'; kept as a separate paper "
                                                    f"({paper.paper_id})"))
    if paper.paper_id in by_id:
        out.duplicates_merged += 1
        return
    by_id[paper.paper_id] = paper
