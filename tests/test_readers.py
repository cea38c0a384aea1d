"""Every reader on real or hand-made files, and every bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.readers import read_paths
from assistant.records import title_id
from tests.conftest import FIXTURES, SAMPLE_DIR, SCIFACT

R = FIXTURES / "readers"


def _problems(res: object) -> str:
    return "\n".join(str(p) for p in res.problems)  # type: ignore[attr-defined]


def test_sample_pages_counts_and_merge() -> None:
    res = read_paths([SAMPLE_DIR])
    assert res.files == 5 and res.entries == 344
    assert len(res.papers) == 247
    assert res.duplicate_papers == 65 and res.duplicates_merged == 97
    assert res.problems == [] and res.warnings == []
    again = read_paths([SAMPLE_DIR])
    assert [p.paper_id for p in again.papers] == [p.paper_id for p in res.papers]
    by_title = {p.title: p for p in res.papers}
    # Metadata blocks of page 001: "• 3 authors", "·", "Sep 10 2" (no year: page year inferred) ...
    magpie = next(p for t, p in by_title.items() if t.startswith("Magpie: Alignment Data Synthesis"))
    assert (magpie.date, magpie.upvotes, magpie.n_authors) == ("2024-06-12", 5, 7)
    modality = by_title["Modality Alignment with Multi-scale Bilateral Attention for Multimodal Recommendation"]
    assert (modality.n_authors, modality.date, modality.upvotes) == (3, "2025-09-10", 2)
    adpa = by_title["Advantage-Guided Distillation for Preference Alignment in Small Language Models"]
    assert (adpa.n_authors, adpa.date, adpa.upvotes) == (5, "2025-02-25", None)
    assert all(p.abstract and p.title and len(p.abstract) >= 1000 for p in res.papers)
    assert sum(1 for p in res.papers if p.date) >= 45


def test_sample_counts_have_an_independent_witness() -> None:
    """344 entries / 97 merged / 65 papers seen twice / 247 papers, counted from the raw pages
    without the reader: every abstract is a line of 200+ characters whose title sits two lines up."""
    import collections
    import re

    entries = []
    for page in sorted(SAMPLE_DIR.glob("*.txt")):
        lines = page.read_text(encoding="utf-8").split("\n")
        entries += [(lines[i - 2].strip(), line.strip()) for i, line in enumerate(lines) if len(line.strip()) >= 200]
    norm = collections.Counter((re.sub(r"[^0-9a-z]+", " ", t.lower()).strip(), a) for t, a in entries)
    witness = (len(entries), sum(n - 1 for n in norm.values()), sum(1 for n in norm.values() if n > 1), len(norm))
    res = read_paths([SAMPLE_DIR])
    assert witness == (res.entries, res.duplicates_merged, res.duplicate_papers, len(res.papers)) == (344, 97, 65, 247)


def test_bibtex_accents_and_latex_survive(tmp_path: Path) -> None:
    f = tmp_path / "accents.bib"
    f.write_text(r"""@article{mueller2024,
  title = {M{\"u}ller's {DPO} for Caf{\'e} Chatbots},
  author = {M{\"u}ller, J{\"o}rg and Garc{\'i}a, Ana and {\O}stergaard, S{\o}ren},
  abstract = {We align models at {\"U}nterwelt scale: 10\% better \& cheaper, see $\alpha$.},
  year = 2024, month = mar,
}
@article{broken2024,
  title = {Never closed,
""", encoding="utf-8")
    res = read_paths([f])
    assert len(res.papers) == 1
    p = res.papers[0]
    assert p.title == "Müller's DPO for Café Chatbots"
    assert p.authors == ["Müller, Jörg", "García, Ana", "Østergaard, Søren"]
    assert p.abstract.startswith("We align models at Ünterwelt scale: 10% better & cheaper")
    assert p.date == "2024-03"
    assert len(res.problems) == 1 and f"{f}:line 7" in str(res.problems[0]) and "\n" not in str(res.problems[0])


def test_page_year_setting_overrides_inference() -> None:
    res = read_paths([SAMPLE_DIR / "001_71d732b7da70b2d3.txt"], hf_page_year=2030)
    dates = {p.title: p.date for p in res.papers}
    assert dates["Modality Alignment with Multi-scale Bilateral Attention for Multimodal Recommendation"] == \
        "2030-09-10"


@pytest.mark.parametrize(("cell", "authors"), [
    ("Roe, R.", ["Roe, R."]),  # was two authors, "Roe" and "R."
    ("Roe, R. J., Doe, A.", ["Roe, R. J.", "Doe, A."]),
    ("Müller, Ö., Smith, J.-P.", ["Müller, Ö.", "Smith, J.-P."]),  # initials in any script
    ("Curie, M, Bohr, N", ["Curie, M", "Bohr, N"]),
    ("Alice Smith, Bob Jones", ["Alice Smith", "Bob Jones"]),
    ("A. Smith, B. Jones", ["A. Smith", "B. Jones"]),
    ("Ng, A., Li, B., Wu", ["Ng", "A.", "Li", "B.", "Wu"]),  # not pairs throughout: split as written
    ("Roe, R.; Doe, A.", ["Roe, R.", "Doe, A."]),
])
def test_csv_author_cells_keep_family_names_with_their_initials(tmp_path: Path, cell: str,
                                                                  authors: list[str]) -> None:
    f = tmp_path / "a.csv"
    f.write_text('title,abstract,authors\nT,A.,"' + cell + '"\n', encoding="utf-8")
    assert read_paths([f]).papers[0].authors == authors


def test_invisible_characters_do_not_make_another_id(tmp_path: Path) -> None:
    """'p\u200b1' displayed as 'p1' but was a second paper of that id; an id of a zero-width space alone
    was an id; a zero-width space in an arXiv id lost it."""
    f = tmp_path / "zw.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "p1", "title": "First", "abstract": "Alpha text."},
        {"id": "p\u200b1\ufeff", "title": "First", "abstract": "Alpha text."},
        {"id": "\u200b\u00ad", "title": "Second", "abstract": "Beta text."},
        {"arxiv_id": "2401.0\u20601234", "title": "Third", "abstract": "Gamma text."},
        {"id": "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "title": "Fourth", "abstract": "Delta."}]),
        encoding="utf-8")
    res = read_paths([f])
    # (a zero-width non-joiner shapes Persian text: it stays)
    assert [p.paper_id for p in res.papers] == ["p1", title_id("Second"), "2401.01234",
                                                "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"]
    assert res.duplicate_papers == 1 and not res.papers[1].extra.get("explicit_id")


def test_feed_authors_and_categories_are_cleaned_like_titles(tmp_path: Path) -> None:
    """Authors and category terms kept a CSI (U+009B), a right-to-left override and U+2028: `papers show`
    wrote them to the terminal as they were."""
    f = tmp_path / "feed.xml"
    f.write_text('<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">'
                 "<entry><id>http://arxiv.org/abs/2401.01234v1</id><title>T</title><summary>S.</summary>"
                 "<author><name>Ada\u009b31m \u202eLovelace\u2028</name></author><author><name>\u202e</name>"
                 '</author><category term="cs.\u009bCL"/><arxiv:primary_category term="\u202ecs.LG"/>'
                 "</entry></feed>", encoding="utf-8")
    p = read_paths([f]).papers[0]
    assert p.authors == ["Ada31m Lovelace"]
    assert (p.extra["categories"], p.extra["primary_category"]) == (["cs.CL"], "cs.LG")


def test_arxiv_atom() -> None:
    res = read_paths([R / "arxiv.xml"])
    assert res.problems == []
    ids = [p.paper_id for p in res.papers]
    assert ids == ["2401.01234", "hep-th/9901001", "2402.05678"]
    p = res.papers[0]
    assert p.title == "Token-Level Direct Preference Optimization for Fine-Grained Alignment"
    assert p.authors == ["Ada Lovelace", "Alan Turing"] and p.date == "2024-01-03"
    assert p.abstract.startswith("We study token-level") and "\n" not in p.abstract
    assert res.papers[2].title == "Reward Models & Their Discontents"


def test_bibtex_with_missing_abstract_named_by_key() -> None:
    res = read_paths([R / "refs.bib"])
    assert [p.title for p in res.papers] == ["Token-Level DPO: Fine-Grained Alignment of Language Models",
                                             "Reward Shaping for Safe Chatbots"]
    dpo, shaping = res.papers
    assert dpo.paper_id == "2401.01234" and dpo.date == "2024-01" and dpo.authors == ["Lovelace, Ada", "Turing, Alan"]
    assert "direct preference optimization" in dpo.abstract
    assert shaping.authors == ["Hopper, Grace"] and shaping.url == "https://doi.org/10.1000/xyz123"
    assert len(res.problems) == 1
    assert "refs.bib:entry noabstract2022 (line 25): no abstract field" in _problems(res)


def test_csv_zotero_export() -> None:
    res = read_paths([R / "zotero.csv"])
    assert [p.title for p in res.papers] == ["Preference Data, Cleaned", "Sparse Reward Models"]
    assert res.papers[0].authors == ["Liskov, Barbara", "Hopper, Grace"] and res.papers[0].date == "2023"
    assert "zotero.csv:line 3: record has no title" in _problems(res)


def test_csv_blank_rows_skipped_bad_rows_named(tmp_path: Path) -> None:
    """Spreadsheets export empty rows as bare separators: skipped like a blank line, not a problem
    (which would make the source incomplete and stop --prune); a row with content but no title is one."""
    f = tmp_path / "sheet.csv"
    f.write_text("id,title,abstract\n,\n,,\n\nr1,A title,An abstract.\nx9,,\n", encoding="utf-8")
    res = read_paths([f])
    assert [p.title for p in res.papers] == ["A title"]
    assert len(res.problems) == 1 and "sheet.csv:line 6: record has no title" in _problems(res)


def test_json_array_ids_and_same_title_papers() -> None:
    res = read_paths([R / "papers.json"])
    assert [p.paper_id for p in res.papers] == ["doc-1", "doc-2", "2403.00001"]
    assert res.papers[2].authors == ["A. One", "B. Two"] and res.papers[2].date == "2024-03-05"


def test_same_title_different_abstract_without_ids_are_two_papers(tmp_path: Path) -> None:
    f = tmp_path / "two.jsonl"
    f.write_text(json.dumps({"title": "Summary", "abstract": "About kinases."}) + "\n" +
                 json.dumps({"title": "Summary", "abstract": "About T cells."}) + "\n" +
                 json.dumps({"title": "summary!", "abstract": "About kinases."}) + "\n")
    res = read_paths([f])
    assert len(res.papers) == 2 and len({p.paper_id for p in res.papers}) == 2
    assert res.duplicates_merged == 1
    assert [str(w) for w in res.warnings] == [
        f"{f}:line 2: another paper ({f}:line 1) has the same title 'Summary'; kept as a separate paper "
        f"({res.papers[1].paper_id})"]


def test_same_id_different_abstract_keeps_the_later_and_names_both_lines(tmp_path: Path) -> None:
    f = tmp_path / "ids.jsonl"
    f.write_text("\n".join(json.dumps({"id": "p1", "title": "A", "abstract": a})
                           for a in ("About kinases.", "About T cells.")) + "\n")
    res = read_paths([f])
    assert [p.abstract for p in res.papers] == ["About T cells."]
    assert [str(w) for w in res.warnings] == [
        f"{f}:line 2: id 'p1' seen twice with different abstracts (first at {f}:line 1); keeping the later record"]


def test_jsonl_bad_lines_named_and_good_lines_kept() -> None:
    res = read_paths([R / "mixed.jsonl"])
    assert [p.title for p in res.papers] == ["Good Paper One", "Good Paper Two"]
    text = _problems(res)
    assert "mixed.jsonl:line 2: malformed JSON" in text
    assert "mixed.jsonl:line 3: record has no title" in text


@pytest.mark.parametrize(("name", "content", "needle"), [
    ("empty.jsonl", b"", "file is empty"),
    ("blank.bib", b"\n\n  \n", "file is empty"),
    ("blob.csv", b"\x00\x01PK\x03\x04" * 100, "binary file"),
    ("blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary file"),
    ("broken.xml", b"<feed><entry><title>x</entry>", "malformed XML"),
    ("bomb.xml", b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><feed>&lol;</feed>', "DOCTYPE"),
    ("notes.txt", b"just some notes\nwithout any paper structure\n", "no papers found"),
    ("table.csv", b"name,body\na,b\n", "needs 'title' and 'abstract'"),
    # A header alone (a truncated export?) read as a complete file: --prune dropped every paper it gave.
    ("header.csv", b"id,title,abstract\n,,\n", "no records after the header line"),
    # Excel's "Unicode Text" and UTF-16 CSV: was "binary file (NUL bytes)".
    ("excel.csv", "title,abstract\nA,B\n".encode("utf-16"), "UTF-16 text; save it as UTF-8"),
    ("excel.tsv", "title\tabstract\nA\tB\n".encode("utf-16-le"), "UTF-16 text; save it as UTF-8"),
    # A saved arXiv API error counted as an empty, completely read feed: --prune emptied the index.
    ("error.xml", b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/api/errors#bad_id'
                  b'</id><title>Error</title><summary>incorrect id format for 1234.12345</summary></entry></feed>',
     "the arXiv API answered with an error: incorrect id format for 1234.12345"),
    # An indented document with one comma missing: was one error per line (204 here), none at its line.
    ("wrapper.json", json.dumps({"papers": [{"title": f"T{i}", "abstract": "A."} for i in range(40)]},
                                indent=2).replace('"A."\n    },', '"A."\n    }', 1).encode(),
     "line 7: malformed JSON (Expecting ',' delimiter)"),
    ("jq.json", b"\n".join(json.dumps({"title": f"T{i}", "abstract": "A."}, indent=2).encode() for i in range(3)),
     "malformed JSON (Extra data); several JSON documents one after another?"),
    ("wrong.json", b'{\n  "papers": {"title": "T"}\n}', "'papers' should be a list of records"),
])
def test_bad_files_are_one_problem_each(tmp_path: Path, name: str, content: bytes, needle: str) -> None:
    f = tmp_path / name
    f.write_bytes(content)
    res = read_paths([f])
    assert res.papers == []
    assert len(res.problems) == 1 and needle in str(res.problems[0]) and name in str(res.problems[0])


def test_an_empty_papers_list_is_a_complete_read(tmp_path: Path) -> None:
    f = tmp_path / "none.json"
    f.write_text('{"papers": []}')
    res = read_paths([f])
    assert res.papers == [] and res.problems == [] and res.incomplete == []  # was "record has no title"


def test_xml_declared_encoding_is_honoured(tmp_path: Path) -> None:
    f = tmp_path / "latin.xml"
    f.write_bytes('<?xml version="1.0" encoding="ISO-8859-1"?><feed xmlns="http://www.w3.org/2005/Atom"><entry>'
                  '<id>http://arxiv.org/abs/2401.01234v1</id><title>Caf\xe9 title</title><summary>An abstract, '
                  'd\xe9j\xe0 vu.</summary></entry></feed>'.encode("latin-1"))
    res = read_paths([f])
    assert [p.title for p in res.papers] == ["Café title"] and res.warnings == [] and res.problems == []
    f.write_bytes('<?xml version="1.0" encoding="UTF-16"?><feed xmlns="http://www.w3.org/2005/Atom"><entry>'
                  '<id>http://arxiv.org/abs/2401.01234v1</id><title>Café title</title><summary>An abstract.'
                  '</summary></entry></feed>'.encode("utf-16"))  # refused as "UTF-16 text" before its declaration
    assert [p.title for p in read_paths([f]).papers] == ["Café title"]
    f.write_bytes(b'<?xml version="1.0" encoding="klingon-8"?><feed/>')
    assert "unknown encoding 'klingon-8' in the XML declaration" in _problems(read_paths([f]))


def test_linked_folders_are_followed_once_and_links_up_the_tree_are_not(tmp_path: Path) -> None:
    """A link to a folder was skipped without a word (and --prune then removed its papers)."""
    top, other = tmp_path / "top", tmp_path / "other"
    top.mkdir()
    other.mkdir()
    (other / "x.jsonl").write_text(json.dumps({"id": "x", "title": "Linked", "abstract": "Linked text."}) + "\n")
    (top / "y.jsonl").write_text(json.dumps({"id": "y", "title": "Direct", "abstract": "Direct text."}) + "\n")
    (top / "linked").symlink_to(other)
    (top / "linked-again").symlink_to(other)
    (top / "up").symlink_to(tmp_path)  # a loop: the folder above holds top itself
    res = read_paths([top])
    assert sorted(p.paper_id for p in res.papers) == ["x", "y"] and res.files == 2
    assert res.problems == [] and res.duplicates_merged == 0


def test_missing_and_unsupported_paths(tmp_path: Path) -> None:
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.4")
    res = read_paths([tmp_path / "nope.jsonl", tmp_path / "paper.pdf"])
    text = _problems(res)
    assert "nope.jsonl: no such file or folder" in text and "unsupported file type '.pdf'" in text


def test_huge_fields_truncated_with_warning(tmp_path: Path) -> None:
    f = tmp_path / "huge.jsonl"
    big = "Alignment matters. " * 60_000  # ~1.1 MB abstract
    f.write_text(json.dumps({"title": "T" * 5000, "abstract": big}) + "\n")
    res = read_paths([f], max_abstract_chars=20_000)
    p = res.papers[0]
    assert len(p.abstract) == 20_000 and len(p.title) == 1000
    warnings = " ".join(str(w) for w in res.warnings)
    assert "abstract of" in warnings and "truncated to 20000" in warnings and "huge.jsonl:line 1" in warnings


def test_invalid_utf8_is_replaced_with_a_warning(tmp_path: Path) -> None:
    f = tmp_path / "latin1.csv"
    f.write_bytes("title,abstract\nCaf\xe9 paper,An abstract with a stray byte.\n".encode("latin-1"))
    res = read_paths([f])
    assert len(res.papers) == 1 and res.papers[0].title == "Caf\ufffd paper"
    assert len(res.warnings) == 1
    assert f"{f}:line 2: invalid UTF-8" in str(res.warnings[0]) and "replaced" in str(res.warnings[0])


def test_folder_walk_skips_hidden_and_unsupported(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "sub" / "a.jsonl").write_text(json.dumps({"title": "A", "abstract": "Alpha."}) + "\n")
    (tmp_path / ".hidden" / "b.jsonl").write_text(json.dumps({"title": "B", "abstract": "Beta."}) + "\n")
    (tmp_path / "readme.md").write_text("# not a source")
    res = read_paths([tmp_path])
    assert [p.title for p in res.papers] == ["A"] and res.files == 1 and res.problems == []


@pytest.mark.skipif(not (SCIFACT / "corpus.jsonl").exists(), reason="SciFact not present beside the project")
def test_scifact_corpus_ids_and_same_titles() -> None:
    res = read_paths([SCIFACT / "corpus.jsonl"])
    assert len(res.papers) == 5183 and res.problems == []
    summaries = [p for p in res.papers if p.title == "Summary"]
    assert len(summaries) >= 2 and len({p.abstract for p in summaries}) == len(summaries)
    assert all(p.paper_id.isdigit() for p in res.papers[:50])
    assert res.papers[0].paper_id == "4983"


def test_500k_line_jsonl_streams(tmp_path: Path) -> None:
    f = tmp_path / "big.jsonl"
    with f.open("w") as fh:
        for i in range(500_000):
            fh.write(json.dumps({"id": str(i), "title": f"Paper {i}", "abstract": "Short abstract."}) + "\n")
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = read_paths([f])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(res.papers) == 500_000 and res.problems == []
    assert grown_mb < 1500, f"reading grew RSS by {grown_mb:.0f} MB"


def test_bibtex_percent_signs_and_concatenations_are_read_as_bibtex_means_them(tmp_path: Path) -> None:
    """A bare % cut the field there (LaTeX's comment, not BibTeX's); `"a " # macro # {b}` was stored as
    written, quotes and # included. A braced title holding # is left as it is."""
    f = tmp_path / "t.bib"
    f.write_text(r'''@string{icml = "ICML"}
@article{a, title={Improving Things by 50% Over Baselines}, abstract = "Shown at " # icml # ". Accuracy
  rises by 50% over the baseline; see \url{http://a.b/c%20d}.", year={2024}, month=jan}
@article{b, title = {C # sharp and 10\% more}, abstract = "Gains of " # "10\%" # {, all } # jan # ".", year=2024}
''', encoding="utf-8")
    res = read_paths([f])
    assert res.problems == [] and res.warnings == []
    assert [(p.title, p.abstract) for p in res.papers] == [
        ("Improving Things by 50% Over Baselines",
         "Shown at ICML. Accuracy rises by 50% over the baseline; see http://a.b/c%20d."),
        ("C # sharp and 10% more", "Gains of 10%, all January.")]


def test_hf_pages_keep_short_abstracts_line_separators_and_only_possible_dates(tmp_path: Path) -> None:
    """A short abstract with no authors / date line after it was dropped (the file still read as complete,
    so --prune removed its paper); U+2028 in an abstract ended it there; "Feb 30" was stored as 2025-02-30."""
    long = "We study alignment of language models with preference data at scale. " * 4
    f = tmp_path / "page.txt"
    f.write_text("new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\n"
                 f"Paper long\n\n{long.strip()}\n\n"
                 "Paper short abstract\n\nWe propose a short method that works well on many benchmarks.\n\n"
                 f"Paper separated\n\nFirst part of the abstract\u2028 and the rest of it. {long.strip()}\n\n"
                 "  • 2 authors\n·\nFeb 30, 2025 4\n\n"
                 f"Paper three\n\n{long.strip()}\n", encoding="utf-8")
    res = read_paths([f])
    by_title = {p.title: p for p in res.papers}
    assert list(by_title) == ["Paper long", "Paper short abstract", "Paper separated", "Paper three"]
    assert by_title["Paper short abstract"].abstract == "We propose a short method that works well on many benchmarks."
    sep = by_title["Paper separated"]
    assert sep.abstract.startswith("First part of the abstract") and "the rest of it" in sep.abstract
    assert sep.date is None and sep.upvotes == 4 and sep.n_authors == 2
    assert [str(w) for w in res.warnings] == [f"{f}:line 21: date 'Feb 30, 2025 4' is not a possible date; dropped"]
    assert res.problems == []


def test_csv_takes_the_first_date_column_that_holds_a_date(tmp_path: Path) -> None:
    """Zotero's CSV has Date ("March 2023" as typed) and Publication Year: an unreadable Date dropped the
    year too."""
    f = tmp_path / "z.csv"
    f.write_text("Title,Abstract Note,Date,Publication Year\nA paper,An abstract.,March 2023,2023\n"
                 "B paper,Another abstract.,someday,\n", encoding="utf-8")
    res = read_paths([f])
    assert [(p.title, p.date) for p in res.papers] == [("A paper", "2023"), ("B paper", None)]
    assert [str(w) for w in res.warnings] == [f"{f}:line 3: field 'date' value 'someday' is not a possible date "
                                              "(expected YYYY[-MM[-DD]]); dropped"]
