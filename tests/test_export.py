"""References out: BibTeX (round trips through bibtexparser and our own reader), RIS, CSL-JSON, Markdown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.errors import AssistantError
from assistant.export import bibtex_keys, export, format_for, latex_escape, to_bibtex, to_csl_items, to_ris
from assistant.readers import bibtex as bib_reader
from assistant.records import Paper, clean_text

ARXIV = Paper(paper_id="2401.01234", title="Token-Level {DPO} for $\\sigma$-models: 100% better -- ``really''",
              abstract="We study Müller & Co.'s ~x_1 #tags, {braces} and a \\ backslash; Zürich é ñ ø.",
              authors=["José Müller", "Research and Development Team", "Ada Lovelace"], date="2024-01-03",
              url="https://arxiv.org/abs/2401.01234v2", arxiv_id="2401.01234",
              extra={"doi": "10.1000/x_y", "primary_category": "cs.CL", "version": "v2"})
PLAIN = Paper(paper_id="t-abc", title="The Art of Alignment", abstract="An abstract.", authors=["Smith, John"],
              date="2023", url="https://doi.org/10.5555/abc.def")


def _paper(pid: str, title: str, author: str, date: str | None = "2024-05-01") -> Paper:
    return Paper(paper_id=pid, title=title, abstract="Some abstract.", authors=[author], date=date)


def test_keys_are_stable_unique_and_readable() -> None:
    a = _paper("1", "Direct Preference Optimization", "Rafael Rafailov", "2023-05-29")
    b = _paper("2", "Direct preference optimisation again", "Rafael Rafailov", "2023-06-01")
    c = _paper("3", "The Alignment Problem", "Brian Christian", None)
    d = _paper("4", "Ça marche: Élan", "Émile Zola", "1880")
    keys = bibtex_keys([a, b, c, d])
    assert keys == {"1": "rafailov2023directa", "2": "rafailov2023directb", "3": "christiannd" + "alignment",
                    "4": "zola1880ca"}
    assert bibtex_keys([d, c, b, a]) == keys  # independent of order
    assert len(set(bibtex_keys([_paper(str(i), "Same Title", "A Writer") for i in range(30)]).values())) == 30


def test_arxiv_papers_carry_eprint_and_dois_are_kept() -> None:
    text = to_bibtex([ARXIV, PLAIN])
    assert "eprint        = {2401.01234}" in text
    assert "archivePrefix = {arXiv}" in text and "primaryClass  = {cs.CL}" in text
    assert "doi           = {10.1000/x_y}" in text  # verbatim, as biblatex reads url and doi
    assert "doi      = {10.5555/abc.def}" in text  # read from a doi.org URL
    assert "@misc{muller2024tokenlevel," in text and "@misc{smith2023art," in text


def test_round_trip_through_bibtexparser() -> None:
    import bibtexparser
    from bibtexparser import middlewares

    lib = bibtexparser.parse_string(to_bibtex([ARXIV]), append_middleware=[middlewares.LatexDecodingMiddleware()])
    assert not lib.failed_blocks
    fields = {f.key: f.value for f in lib.entries[0].fields}
    assert fields["title"] == ARXIV.title
    assert fields["abstract"] == ARXIV.abstract
    assert fields["doi"] == "10.1000/x_y" and fields["eprint"] == "2401.01234"
    assert fields["date"] == "2024-01-03" and fields["month"] == "jan"
    assert lib.entries[0].key == "muller2024tokenlevel"


def test_round_trip_through_our_reader(tmp_path: Path) -> None:
    path = tmp_path / "refs.bib"
    path.write_text(to_bibtex([ARXIV, PLAIN]), encoding="utf-8")
    res = bib_reader.read(path)
    assert not res.problems and not res.warnings
    back = {p.paper_id: p for p in res.papers}
    got = back["2401.01234"]
    assert (got.title, got.abstract, got.authors) == (ARXIV.title, ARXIV.abstract, ARXIV.authors)
    assert (got.date, got.url, got.arxiv_id, got.extra["doi"]) == (ARXIV.date, ARXIV.url, "2401.01234", "10.1000/x_y")
    plain = next(p for p in res.papers if p.title == PLAIN.title)
    assert plain.authors == ["Smith, John"] and plain.date == "2023" and plain.extra["doi"] == "10.5555/abc.def"


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn")), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(title=_TEXT.map(clean_text).filter(bool), abstract=_TEXT.map(clean_text).filter(bool),
       authors=st.lists(_TEXT.map(clean_text).filter(bool), min_size=1, max_size=3))
def test_any_text_survives_bibtex_round_trip(tmp_path_factory: pytest.TempPathFactory, title: str, abstract: str,
                                             authors: list[str]) -> None:
    paper = Paper(paper_id="2402.00001", title=title, abstract=abstract, authors=authors, arxiv_id="2402.00001",
                  date="2024-02-01")
    path = tmp_path_factory.mktemp("rt") / "x.bib"
    path.write_text(to_bibtex([paper]), encoding="utf-8")
    res = bib_reader.read(path)
    assert not res.problems, (res.problems, path.read_text(encoding="utf-8"))
    (got,) = res.papers
    assert got.title == title
    assert got.abstract == abstract
    assert got.authors == authors


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_escaped_text_decodes_back_with_bibtexparser(text: str) -> None:
    import bibtexparser
    from bibtexparser import middlewares

    lib = bibtexparser.parse_string("@misc{k, note = {" + latex_escape(text) + "}}",
                                    append_middleware=[middlewares.LatexDecodingMiddleware()])
    assert not lib.failed_blocks
    assert clean_text(lib.entries[0].fields[0].value) == clean_text(text)


def test_ris_csl_and_markdown() -> None:
    ris = to_ris([ARXIV, PLAIN])
    first = ris.split("\n\n")[0].splitlines()
    assert first[0] == "TY  - UNPB" and first[-1] == "ER  -"
    assert "AU  - Müller, José" in first and "DO  - 10.1000/x_y" in first and "DA  - 2024/01/03/" in first
    assert "AN  - arXiv:2401.01234" in first
    items = json.loads(export([ARXIV, PLAIN], "csl-json"))
    assert items == to_csl_items([ARXIV, PLAIN])
    assert items[0]["id"] == "muller2024tokenlevel" and items[0]["DOI"] == "10.1000/x_y"
    assert items[0]["author"][0] == {"family": "Müller", "given": "José"}
    assert items[0]["issued"] == {"date-parts": [[2024, 1, 3]]} and items[0]["number"] == "arXiv:2401.01234"
    assert items[1]["author"] == [{"family": "Smith", "given": "John"}]
    md = export([ARXIV, PLAIN], "markdown")
    assert md.splitlines()[0].startswith("1. José Müller, Research and Development Team, Ada Lovelace (2024).")
    assert "[arXiv:2401.01234](https://arxiv.org/abs/2401.01234)" in md and "(https://doi.org/10.5555/abc.def)" in md


def test_formats_and_file_suffixes() -> None:
    with pytest.raises(AssistantError, match="unknown reference format 'word'"):
        export([PLAIN], "word")
    assert [format_for(n) for n in ("a.bib", "a.RIS", "a.json", "a.md", "a.txt")] == [
        "bibtex", "ris", "csl-json", "markdown", "bibtex"]
    assert export([], "bibtex") == "" and json.loads(export([], "csl-json")) == []


def test_urls_dois_carets_and_prices_as_latex_reads_them(tmp_path: Path) -> None:
    """url and doi are verbatim fields for biblatex (a LaTeX-escaped a\\_b came out with its backslash);
    `^` outside math was left bare ("Missing $ inserted"); "$5 and $10" was kept as math."""
    paper = Paper(paper_id="x1", title="Fast O(n^2) sorting costs $5 and $10 with $\\alpha$", abstract="An abstract.",
                  url="https://example.org/a_b%20c?x=1&y=2#frag", extra={"doi": "10.1000/a_b%(c)"})
    text = to_bibtex([paper])
    assert "url      = {https://example.org/a_b%20c?x=1&y=2#frag}" in text
    assert "doi      = {10.1000/a_b%(c)}" in text
    assert "O(n{\\string^}2) sorting costs \\$5 and \\$10 with $\\alpha$" in text
    path = tmp_path / "x.bib"
    path.write_text(text, encoding="utf-8")
    (got,) = bib_reader.read(path).papers
    assert (got.title, got.url, got.extra["doi"]) == (paper.title, paper.url, "10.1000/a_b%(c)")
    # Other tools' escapes and \\url{} are read as the address they mean.
    path.write_text("@misc{k, title={T}, abstract={An abstract.}, url={\\url{https://x.org/a\\_b\\%20}}, "
                    "doi={10.1/a\\_b}}", encoding="utf-8")
    (got,) = bib_reader.read(path).papers
    assert (got.url, got.extra["doi"]) == ("https://x.org/a_b%20", "10.1/a_b")


def test_urls_this_tool_wrote_before_read_back_as_written(tmp_path: Path) -> None:
    """The previous export LaTeX-escaped urls (~ as \\textasciitilde{}): such files still read back right."""
    path = tmp_path / "old.bib"
    path.write_text("@misc{k, title={T}, abstract={An abstract.}, "
                    "url={https://x.org/\\textasciitilde{}user/a\\_b\\%20c}}", encoding="utf-8")
    (got,) = bib_reader.read(path).papers
    assert got.url == "https://x.org/~user/a_b%20c"
