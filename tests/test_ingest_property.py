"""Property test (issue 12): JSONL, BibTeX and CSV files with random bad lines among good records.

Every good record is indexed, and `--prune` never removes a paper whose source was not read
completely. Real readers, real embedder and Chroma, so few examples; texts come from a small
vocabulary and the session's embedding cache is shared.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assistant.api import Assistant
from tests.conftest import make_settings

WORDS = ("reward", "model", "preference", "alignment", "token", "policy", "margin", "critic", "safety", "data")

BAD = {
    ".jsonl": ["{not json", "[" * 50_000 + "]" * 50_000, '{"title": "x", "abstract": "y", "n": ' + "9" * 5000 + "}",
               '{"title": ["a", "list"], "abstract": "text"}', '"just a string"', '{"abstract": "no title"}',
               '{"title": "T", "abstract": {"not": "text"}}', '{"title": "T", "abstract": "A", "id": [1]}'],
    ".bib": ["@article{broken, title = {never closed", "@article{noabs, title = {No abstract here}}",
             "@article{, title = {x}, abstract = {y}", "@misc{q, title = \"unterminated, abstract = {z}}"],
    # A row whose every cell is empty ("," or ",,") is a blank row, skipped like a blank line
    # (tests/test_readers.py); an id with neither title nor abstract is a bad record.
    ".csv": [",only an abstract", "only a title,", "x9,,"],
}


def _record(n: int, seed: list[int]) -> dict[str, str]:
    words = [WORDS[(s + i) % len(WORDS)] for i, s in enumerate(seed)]
    return {"id": f"r{n}", "title": f"Record {n} on {' '.join(words[:3])}",
            "abstract": f"Record {n} studies {' '.join(words)}. It reports {n} points on benchmark B{n}."}


def _render(ext: str, items: list[tuple[str, object]]) -> str:
    """items: ('good', record) or ('bad', raw line)."""
    if ext == ".jsonl":
        return "".join((json.dumps(x) if kind == "good" else str(x)) + "\n" for kind, x in items)
    if ext == ".bib":
        out = []
        for kind, x in items:
            if kind == "good":
                r = x  # type: ignore[assignment]
                out.append(f"@article{{{r['id']},\n  title = {{{r['title']}}},\n"
                           f"  abstract = {{{r['abstract']}}},\n}}\n")
            else:
                out.append(f"{x}\n")
        return "".join(out)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "title", "abstract"])
    for kind, x in items:
        if kind == "good":
            w.writerow([x["id"], x["title"], x["abstract"]])  # type: ignore[index]
        else:
            buf.write(f"{x}\n")
    return buf.getvalue()


# A bad BibTeX block swallows text up to the next '@' line, so it is never followed by a good record
# on the same line; each bad item is its own line(s) between records, as in a real file.
@st.composite
def corpus(draw: st.DrawFn) -> dict[str, list[tuple[str, object]]]:
    files: dict[str, list[tuple[str, object]]] = {}
    n = 0
    for ext in (".jsonl", ".bib", ".csv"):
        items: list[tuple[str, object]] = []
        for _ in range(draw(st.integers(1, 3))):
            items.append(("good", _record(n, draw(st.lists(st.integers(0, 9), min_size=4, max_size=6)))))
            n += 1
        for _ in range(draw(st.integers(0, 2))):
            items.insert(draw(st.integers(0, len(items))), ("bad", draw(st.sampled_from(BAD[ext]))))
        files[ext] = items
    return files


def _titles(a: Assistant) -> set[str]:
    return {p.title for p in a.index.catalogue.iter_papers()}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(files=corpus(), doomed=st.lists(st.integers(0, 8), max_size=3))
# Found by hypothesis: the only record of a file is dropped, leaving the file empty.
@example(files={ext: [("good", _record(n, [n, 1, 2, 3]))] for n, ext in enumerate((".jsonl", ".bib", ".csv"))},
         doomed=[0])
# Found by hypothesis: every record of the CSV is dropped, leaving its header line alone.
@example(files={".jsonl": [("good", _record(0, [0, 1, 2, 3]))],
                ".csv": [("good", _record(n, [n, 1, 2, 3])) for n in (1, 2)]}, doomed=[1, 2])
def test_good_records_indexed_and_partial_reads_never_prune(files: dict[str, list[tuple[str, object]]],
                                                            doomed: list[int], embed_cache: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a = Assistant(make_settings(root / "home", embed_cache))
        a.auto_sample = False
        paths = {ext: root / f"papers{ext}" for ext in files}
        good = {x["title"] for items in files.values() for kind, x in items if kind == "good"}  # type: ignore[index]
        any_bad = any(kind == "bad" for items in files.values() for kind, _ in items)

        # 1. Clean files first: all records indexed. Then some good records are removed from the files
        #    ("doomed": prune should drop them, but only when every source reads completely).
        for ext, items in files.items():
            paths[ext].write_text(_render(ext, [(k, x) for k, x in items if k == "good"]), encoding="utf-8")
        a.ingest(list(paths.values()))
        assert _titles(a) == good
        flat = [(ext, i) for ext, items in files.items() for i, (k, _) in enumerate(items) if k == "good"]
        drop = {flat[d % len(flat)] for d in doomed}
        dropped = {files[ext][i][1]["title"] for ext, i in drop}  # type: ignore[index]

        # 2. The same files with bad lines mixed in and the doomed records gone, ingested with --prune.
        for ext, items in files.items():
            kept = [(k, x) for i, (k, x) in enumerate(items) if (ext, i) not in drop]
            paths[ext].write_text(_render(ext, kept), encoding="utf-8")
        rep = a.ingest(list(paths.values()), prune=True)
        assert good - dropped <= _titles(a), rep.problems  # every good record still read is indexed
        # A file left with no line at all is reported as empty (it may be a truncated file), which
        # makes its source incomplete like a bad line does: nothing may be pruned then either.
        emptied = any(not [1 for i, _ in enumerate(items) if (ext, i) not in drop] for ext, items in files.items())
        if any_bad or emptied:
            assert rep.prune_skipped and rep.removed == 0 and _titles(a) == good
        else:
            assert not rep.prune_skipped and _titles(a) == good - dropped and rep.removed == len(dropped)
        assert all("\n" not in p for p in rep.problems)
        a.index.close()
