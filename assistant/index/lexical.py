"""The bm25s lexical index over title + abstract, saved beside the catalogue.

Document frequencies are counted here at build time and saved as df.json, so the
idf the answerer and the citation checker use never reaches into bm25s internals.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..records import Paper
from ..scratch import OWNER, owner, sweep
from ..text import TOKENIZER_VERSION, bm25_idf, content_tokens
from .storage import date_int, writable_error


@dataclass
class LexicalHit:
    paper_id: str
    score: float


class LexicalIndex:
    """bm25s over title + abstract of each paper, stemmed, stopwords removed.

    Built once per ingest from the catalogue and saved atomically with the catalogue
    generation it reflects; a stale or missing index is rebuilt on open.

    The build streams (``write``): papers are tokenised one at a time into a token file, and
    the score matrix is laid out on disk in bm25s's own format (the same scores bm25s's
    ``index`` computes), so building holds neither the texts nor their tokens in memory,
    at most 12 bytes a word (hash, count, column cursor), nothing per paper.
    Loaded memory-mapped.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.retriever: Any = None
        self.paper_ids: list[str] = []
        self.date_ints: Any = None
        self.df: dict[str, int] = {}
        """Stemmed token -> number of papers containing it (saved as df.json)."""
        self.generation = -1

    @staticmethod
    def document_text(paper: Paper) -> str:
        return f"{paper.title}. {paper.title}. {paper.abstract}"

    def write(self, papers: Iterable[Paper], generation: int, k1: float = 1.2, b: float = 0.75) -> None:
        """Build into a folder beside ``directory`` and swap it in atomically (a reader never
        sees half an index). Loads nothing: the next ``load`` maps the saved files."""
        try:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            self._sweep()
            tmp = Path(tempfile.mkdtemp(prefix=f"{self.directory.name}.tmp{owner()}-", dir=self.directory.parent))
        except OSError as exc:
            raise writable_error(self.directory, exc) from None
        try:
            _build_into(tmp, papers, generation, k1, b)
            self._swap_in(tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise writable_error(self.directory, exc) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.generation = generation

    def build(self, papers: Iterable[Paper], generation: int, k1: float = 1.2, b: float = 0.75) -> None:
        """Build in memory (a home that cannot be written): streamed through a temporary folder
        as ``write`` does, then read into memory and the folder removed. ``save`` keeps it."""
        tmp = Path(tempfile.mkdtemp(prefix="assistant-bm25-"))
        try:
            _build_into(tmp, papers, generation, k1, b)
            if not self._load_from(tmp, mmap=False):
                raise RuntimeError(f"{tmp}: the BM25 index just built could not be read back")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def save(self) -> None:
        """Save what ``build`` made in memory (``write`` saves as it builds)."""
        import numpy as np

        tmp = self.directory.with_name(self.directory.name + f".tmp{owner()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            if self.retriever is not None:
                self.retriever.save(str(tmp), show_progress=False)
            np.save(tmp / "date_ints.npy", self.date_ints)
            (tmp / "df.json").write_text(json.dumps({"n_docs": len(self.paper_ids), "df": self.df},
                                                    ensure_ascii=False), encoding="utf-8")
            (tmp / "ids.json").write_text(json.dumps({"generation": self.generation, "tokenizer": TOKENIZER_VERSION,
                                                      "ids": self.paper_ids}))  # header first: saved_generation
            self._swap_in(tmp)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise writable_error(self.directory, exc) from None

    def _sweep(self) -> None:
        """Remove what a killed build left beside the index (its scratch files run to gigabytes at a
        million papers): the folders named for a process of this host that no longer runs."""
        name = re.escape(self.directory.name)
        sweep(self.directory.parent, re.compile(name + r"\.(?:tmp|old)" + OWNER + r"(?:-.*)?"))

    def _swap_in(self, tmp: Path) -> None:
        """Put a finished index folder in place of the current one (renames, then the old removed)."""
        old = self.directory.with_name(self.directory.name + f".old{owner()}")
        if self.directory.exists():
            self.directory.rename(old)
        tmp.rename(self.directory)
        shutil.rmtree(old, ignore_errors=True)

    def saved_generation(self) -> int:
        """The catalogue generation the saved index reflects, read from the head of ids.json; -1 when
        there is none or it was built by another tokenizer. (``load`` reads every paper id and word:
        hundreds of MB at a million papers, too much to learn whether a rebuild is due.)"""
        try:
            with (self.directory / "ids.json").open(encoding="utf-8") as fh:
                head = fh.read(512)
        except (OSError, UnicodeDecodeError):  # a damaged file: rebuilt like a missing one
            return -1
        m = re.match(r'\{"generation": (-?\d+), "tokenizer": ("(?:[^"\\]|\\.)*")', head)
        try:
            tokenizer = None if m is None else json.loads(m.group(2))
        except ValueError:
            return -1
        if m is None or tokenizer != TOKENIZER_VERSION:
            return -1
        return int(m.group(1))

    def load(self) -> bool:
        """Load from disk (score arrays memory-mapped); False when missing or unreadable (caller rebuilds)."""
        return self._load_from(self.directory, mmap=True)

    def _load_from(self, directory: Path, mmap: bool) -> bool:
        import bm25s
        import numpy as np

        meta_path = directory / "ids.json"
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("tokenizer") != TOKENIZER_VERSION:
                return False
            paper_ids = list(meta["ids"])
            generation = int(meta["generation"])
            date_ints = np.load(directory / "date_ints.npy")
            stored = json.loads((directory / "df.json").read_text(encoding="utf-8"))
            if int(stored["n_docs"]) != len(paper_ids):
                return False
            df = {str(t): int(n) for t, n in stored["df"].items()}
            retriever = None
            if paper_ids:
                retriever = bm25s.BM25.load(str(directory), mmap=mmap, show_progress=False)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False
        self.paper_ids, self.generation, self.date_ints, self.df = paper_ids, generation, date_ints, df
        self.retriever = retriever
        return True

    def idf(self, tokens: list[str]) -> dict[str, float]:
        """BM25 idf of stemmed tokens over the whole index (unknown tokens get the max idf)."""
        n_docs = len(self.paper_ids) or 1
        return {t: bm25_idf(n_docs, self.df.get(t, 0)) for t in tokens}

    def date_mask(self, lo: int | None, hi: int | None) -> Any:
        """Which papers are dated within [lo, hi] (undated ones are not), or None with no bound."""
        if lo is None and hi is None:
            return None
        ok = self.date_ints > 0
        if lo is not None:
            ok &= self.date_ints >= lo
        if hi is not None:
            ok &= self.date_ints <= hi
        return ok

    def date_share(self, lo: int | None, hi: int | None) -> float | None:
        """Share of the papers dated within [lo, hi]; None when there is no bound or no paper."""
        if self.date_ints is None:
            return None
        ok = self.date_mask(lo, hi)
        return None if ok is None or not len(ok) else float(ok.mean())

    def query(self, text: str, n: int, date_range: tuple[int | None, int | None] = (None, None)) -> list[LexicalHit]:
        import numpy as np

        if self.retriever is None:
            return []
        toks = [t for t in content_tokens(text) if t in self.df]
        if not toks:
            return []
        ok = self.date_mask(*date_range)
        mask = None if ok is None else ok.astype(np.float32)
        scores = self.retriever.get_scores(toks, weight_mask=mask)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top])]
        return [LexicalHit(self.paper_ids[i], float(scores[i])) for i in top if scores[i] > 0]


_DOCS_PER_PASS = 2048
"""Papers whose token entries are counted and placed at a time. A build's peak memory is these slices'
arrays plus the score-file pages one slice touches, both growing with the slice: when this was chosen
(an earlier build, 100k papers) 8,192 a slice peaked at 290 MB against 169 MB, for 13% less time."""


_PAGES_PER_RELEASE = 256
"""Score-file pages a slice writes between two releases of them (about 1 MB a file): a slice of papers
touches a page per word it holds in each of the two score files, tens of thousands at a million papers."""


def _build_into(directory: Path, papers: Iterable[Paper], generation: int, k1: float, b: float) -> None:
    """Write a complete lexical index (bm25s files, ids.json, df.json, date_ints.npy) into
    ``directory`` from a stream of papers.

    Pass 1 tokenises each paper once and appends a 64-bit hash of each token to a file, its
    length and date to two more; each word is written once to a word file when first seen, and
    the vocabulary is held as a sorted array of hashes (8 bytes a word, not a dictionary of
    strings: 8 against 122 MB at a million words). A word's id is its hash's place in that
    array. Pass 2 reads the files back a slice of papers at a time, counting document
    frequencies (which fix where each word's column starts in the CSC matrix bm25s scores from)
    and rewriting the tokens as word ids, after which the hashes go. Pass 3 writes each slice's
    scores at their column positions in memory-mapped ``.npy`` files, the written pages released
    every ``_PAGES_PER_RELEASE`` pages and the files flushed once at the end. Held: 12 bytes
    a word at most (hash and frequency, then frequency and fill cursor), nothing per paper.
    Scores are bm25s's "lucene" BM25 (bm25s.scoring), so bm25s loads and queries the result as
    its own. Two words with one hash would share a column: at a million words the chance is
    about 1 in 10^7.
    """
    from array import array

    import bm25s
    import numpy as np

    known = np.zeros(0, dtype=np.uint64)  # sorted hashes of the words written to the word file
    seen: dict[str, int] = {}  # this slice's words -> hash (folded into ``known`` slice by slice)
    lengths, dates = array("I"), array("q")  # this slice's, appended to their files slice by slice
    placeholders = n = n_tokens = 0
    tok_path, words_path = directory / "tokens.u64", directory / "words.jsonl"
    len_path, dates_path = directory / "lengths.u32", directory / "dates.i64"

    def fold(words_fh: Any, len_fh: Any, dates_fh: Any) -> None:
        """Add this slice's new words to the word file and their hashes to ``known``; write out its
        papers' lengths and dates."""
        nonlocal known
        lengths.tofile(len_fh)
        dates.tofile(dates_fh)
        del lengths[:], dates[:]
        if not seen:
            return
        hashes = np.fromiter(seen.values(), dtype=np.uint64, count=len(seen))
        if len(known):
            old = known[np.minimum(np.searchsorted(known, hashes), len(known) - 1)] == hashes
        else:
            old = np.zeros(len(hashes), dtype=bool)
        for word, is_old in zip(seen, old.tolist(), strict=True):
            if not is_old:
                words_fh.write(json.dumps(word, ensure_ascii=False) + "\n")
        known = np.concatenate((known, hashes[~old]))  # the new hashes are distinct: no unique pass
        known.sort()
        seen.clear()

    def word_hash(word: str) -> int:
        h = seen.get(word)
        if h is None:
            h = seen[word] = _word_hash(word)
        return h

    with tok_path.open("wb") as tok_fh, words_path.open("w", encoding="utf-8") as words_fh, \
            len_path.open("wb") as len_fh, dates_path.open("wb") as dates_fh, \
            (directory / "ids.json").open("w", encoding="utf-8") as ids_fh:
        ids_fh.write(json.dumps({"generation": generation, "tokenizer": TOKENIZER_VERSION})[:-1] + ', "ids": [')
        for p in papers:
            toks = content_tokens(LexicalIndex.document_text(p))
            if not toks:
                toks = ["_empty_"]
                placeholders += 1
            array("Q", map(word_hash, toks)).tofile(tok_fh)
            lengths.append(len(toks))
            dates.append(date_int(p.date) or 0)
            ids_fh.write((", " if n else "") + json.dumps(p.paper_id))
            n += 1
            n_tokens += len(toks)
            if n % _DOCS_PER_PASS == 0:
                fold(words_fh, len_fh, dates_fh)
        fold(words_fh, len_fh, dates_fh)
        ids_fh.write("]}")
    _raw_to_npy(dates_path, directory / "date_ints.npy", np.dtype(np.int64), n)
    if not n:
        (directory / "df.json").write_text(json.dumps({"n_docs": 0, "df": {}}), encoding="utf-8")
        for path in (tok_path, words_path, len_path):
            path.unlink()
        return
    n_vocab = len(known)
    avg_len = n_tokens / n
    ids_path = directory / "tokens.u32"

    def slice_lengths(fh: Any) -> Iterator[Any]:
        for d0 in range(0, n, _DOCS_PER_PASS):
            yield np.fromfile(fh, dtype=np.uint32, count=min(n, d0 + _DOCS_PER_PASS) - d0)

    def pairs(toks: Any, lens: Any) -> tuple[Any, Any, Any]:
        """(word id, slice-relative paper, term frequency) of a slice's distinct (word, paper) pairs,
        sorted by word, then paper: the CSC matrix's order, so this is the slice's only sort."""
        m = len(lens)
        keys, tf = np.unique(toks.astype(np.int64) * m + np.repeat(np.arange(m, dtype=np.int64), lens),
                             return_counts=True)
        return keys // m, keys % m, tf

    def runs(tok: Any) -> tuple[Any, Any, Any]:
        """Each word of a sorted word-id array, where its run starts and how long it is."""
        first = np.flatnonzero(np.concatenate(([True], tok[1:] != tok[:-1])))
        return tok[first], first, np.diff(np.append(first, len(tok)))

    # Document frequencies; the token file rewritten as word ids, so the hashes can go before the scores.
    df = np.zeros(n_vocab, dtype=np.int32)  # papers holding each word (< 2^31 papers)
    with tok_path.open("rb") as fh, len_path.open("rb") as lfh, ids_path.open("wb") as out:
        for lens in slice_lengths(lfh):
            hashes = np.fromfile(fh, dtype=np.uint64, count=int(lens.sum(dtype=np.int64)))
            ids = np.searchsorted(known, hashes).astype(np.uint32)
            ids.tofile(out)
            words, _, count = runs(pairs(ids, lens)[0])
            df[words] += count.astype(np.int32)
    tok_path.unlink()
    _write_vocabulary(directory, words_path, known, df, n, placeholders)
    del known
    nnz = int(df.sum(dtype=np.int64))
    # Where each word's next entry goes: its column's start, advanced as the slices fill it.
    cursor = np.zeros(n_vocab, dtype=np.int32 if nnz < 2**31 else np.int64)
    np.cumsum(df[:-1], out=cursor[1:])
    fmt = np.lib.format
    data = fmt.open_memmap(directory / "data.csc.index.npy", mode="w+", dtype=np.float32, shape=(nnz,))
    indices = fmt.open_memmap(directory / "indices.csc.index.npy", mode="w+", dtype=np.int32, shape=(nnz,))
    d0 = 0
    with ids_path.open("rb") as fh, len_path.open("rb") as lfh:
        for lens in slice_lengths(lfh):
            tok, doc, tf = pairs(np.fromfile(fh, dtype=np.uint32, count=int(lens.sum(dtype=np.int64))), lens)
            # bm25s.scoring._score_tfc_lucene times the idf (_score_idf_lucene), in float32 as bm25s stores it.
            tf32 = tf.astype(np.float32)
            tfc = tf32 / (k1 * ((1 - b) + b * lens[doc] / avg_len) + tf32)
            dft = df[tok].astype(np.int64)
            idf = np.log(1 + (n - dft + 0.5) / (dft + 0.5))
            scores = (idf.astype(np.float32) * tfc).astype(np.float32)
            words, first, count = runs(tok)  # by word, papers ascending within (CSC order)
            pos = cursor[tok] + (np.arange(len(tok)) - np.repeat(first, count))
            docs = (doc + d0).astype(np.int32)
            cursor[words] += count.astype(cursor.dtype)
            d0 += len(lens)
            # Positions ascend (by word, then paper), and each word's entries sit apart in the file: a
            # slice touches a page per word it holds. Written pages leave this process every
            # _PAGES_PER_RELEASE pages (they stay in the page cache and reach the file as any write).
            page = pos >> 10  # 1,024 four-byte entries a page (the .npy header shifts where pages start)
            new_page = np.flatnonzero(page[1:] != page[:-1]) + 1
            cuts = [0, *new_page[_PAGES_PER_RELEASE - 1::_PAGES_PER_RELEASE].tolist(), len(pos)]
            for s, e in zip(cuts, cuts[1:], strict=False):
                data[pos[s:e]] = scores[s:e]
                indices[pos[s:e]] = docs[s:e]
                _release(data)
                _release(indices)
    data.flush()
    indices.flush()
    del data, indices, cursor
    ids_path.unlink()
    len_path.unlink()
    indptr = np.zeros(n_vocab + 1, dtype=np.int64)
    np.cumsum(df, out=indptr[1:])
    np.save(directory / "indptr.csc.index.npy", indptr)
    r = bm25s.BM25(k1=k1, b=b)
    params = {"k1": r.k1, "b": r.b, "delta": r.delta, "method": r.method, "idf_method": r.idf_method,
              "dtype": r.dtype, "int_dtype": r.int_dtype, "num_docs": n, "version": bm25s.__version__,
              "backend": r.backend}
    if params["method"] != "lucene" or params["idf_method"] != "lucene":
        raise RuntimeError(f"bm25s defaults changed ({params['method']}/{params['idf_method']}); "
                           "the lexical index is written for 'lucene' scoring")
    (directory / "params.index.json").write_text(json.dumps(params), encoding="utf-8")


def _raw_to_npy(raw: Path, path: Path, dtype: Any, count: int) -> None:
    """A raw file of ``count`` values as an ``.npy`` file (header, then the bytes copied), without
    reading it into memory."""
    import numpy as np

    with path.open("wb") as out, raw.open("rb") as src:
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                   "fortran_order": False, "shape": (count,)})
        shutil.copyfileobj(src, out)
    raw.unlink()


def _word_hash(word: str) -> int:
    """A stable 64-bit hash (Python's own ``hash`` changes between processes)."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


_WORDS_PER_READ = 65536


def _write_vocabulary(directory: Path, words_path: Path, known: Any, df: Any, n: int, placeholders: int) -> None:
    """vocab.index.json (word -> id, for bm25s) and df.json (word -> papers holding it) in one pass
    over the word file, written as read (no second copy of a million-word vocabulary, or its JSON
    text, in memory); the placeholder bm25s gives a paper without words is not a word of df.json."""
    import numpy as np

    with words_path.open(encoding="utf-8") as words_fh, \
            (directory / "vocab.index.json").open("w", encoding="utf-8") as vocab, \
            (directory / "df.json").open("w", encoding="utf-8") as freq:
        vocab.write("{")
        freq.write(f'{{"n_docs": {n}, "df": {{')
        vsep = fsep = ""
        while lines := [line.rstrip("\n") for _, line in zip(range(_WORDS_PER_READ), words_fh, strict=False)]:
            words = [json.loads(line) for line in lines]
            ids = np.searchsorted(known, np.fromiter(map(_word_hash, words), dtype=np.uint64, count=len(words)))
            for key, word, i in zip(lines, words, ids.tolist(), strict=True):  # key: the word's JSON
                vocab.write(f"{vsep}{key}: {i}")
                vsep = ", "
                if c := int(df[i]) - (placeholders if word == "_empty_" else 0):
                    freq.write(f"{fsep}{key}: {c}")
                    fsep = ", "
        vocab.write("}")
        freq.write("}}")
    words_path.unlink()


def _release(arr: Any) -> None:
    """Drop a memory map's pages from this process: a shared file mapping's written pages stay in the
    page cache and reach the file as any write does."""
    import mmap

    m = getattr(arr, "_mmap", None)
    advise = getattr(m, "madvise", None)
    if advise is not None and hasattr(mmap, "MADV_DONTNEED"):
        advise(mmap.MADV_DONTNEED)
