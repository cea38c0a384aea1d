"""Integrity under bad input (issue 12): a bad line costs that line only, partial reads never
prune, merging never loses known metadata, the sample never lands in a user's index, odd field
types and bytes are warnings, never crashes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import AssistantError, IndexStateError
from assistant.index.ingest import SilentReporter
from assistant.readers import read_paths
from tests.conftest import cli_env, make_settings

# Root without the capabilities that bypass file permissions: chmod 000 really denies.
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search"]


def _rows(n: int, start: int = 0, tag: str = "") -> list[dict]:
    return [{"id": f"p{i}", "title": f"Integrity paper {i} on reward model calibration {tag}",
             "abstract": f"We calibrate reward model {i} for preference learning. It gains {i} points on "
                         f"benchmark C{i}. {tag}", "date": f"202{i % 5}-0{1 + i % 9}-11"}
            for i in range(start, start + n)]


def _lines(rows: list[dict]) -> list[str]:
    return [json.dumps(r) for r in rows]


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


DEEP = "[" * 100_000 + "]" * 100_000
BIGNUM = '{"title": "x", "abstract": "y", "n": ' + "9" * 5000 + "}"


@pytest.fixture()
def locked_tree(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, with permissions restored afterwards so pytest can clean it up."""
    yield tmp_path
    for root, dirs, files in os.walk(tmp_path):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755)


def _unprivileged() -> list[str]:
    """A prefix that runs a command where chmod 000 is honoured."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root ignores permissions and setpriv is missing to drop that")
    return NO_DAC


# -- 12.1: a bad line costs that line; partial reads never prune -------------------------------

def test_jsonl_deep_nesting_and_huge_number_cost_one_line_each(tmp_path: Path) -> None:
    good = _lines(_rows(4))
    f = _write(tmp_path / "bad.jsonl", [good[0], DEEP, good[1], BIGNUM, good[2], good[3]])
    res = read_paths([f])
    assert [p.paper_id for p in res.papers] == ["p0", "p1", "p2", "p3"]
    text = "\n".join(str(p) for p in res.problems)
    assert f"{f}:line 2:" in text and "nested too deeply" in text
    assert f"{f}:line 4:" in text and "digits" in text
    assert all("\n" not in str(p) and len(str(p)) < 400 for p in res.problems)
    assert res.incomplete == [str(f)]


def test_json_array_too_deep_is_one_problem(tmp_path: Path) -> None:
    f = tmp_path / "deep.json"
    f.write_text(DEEP)
    res = read_paths([f])
    assert res.papers == [] and len(res.problems) == 1 and "deep.json" in str(res.problems[0])
    assert res.incomplete == [str(f)]


def _csv_quote_left_open(folder: Path) -> tuple[list[Path], list[str]]:
    rows = [f'"Open quote paper {i}","We study open quotes {i} in CSV exports. It is {i}."' for i in range(4)]
    src = folder / "refs.csv"
    src.write_text("title,abstract\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return [src], [r.replace('."', ".", 1) if i == 1 else r for i, r in enumerate(rows)]


def _dangling_link_in_folder(folder: Path) -> tuple[list[Path], list[str]]:
    (folder / "store").mkdir()
    (folder / "store" / "p.jsonl").write_text("\n".join(_lines(_rows(3))) + "\n", encoding="utf-8")
    (folder / "d").mkdir()
    (folder / "d" / "p.jsonl").symlink_to(folder / "store" / "p.jsonl")
    (folder / "d" / "other.jsonl").write_text(json.dumps(_rows(1, start=50)[0]) + "\n", encoding="utf-8")
    return [folder / "d"], []


def _hf_short_abstract(folder: Path) -> tuple[list[Path], list[str]]:
    long = "We study long abstracts of listing pages. " * 6
    page = "".join(f"Listing paper {i}\n\n{long if i != 1 else 'A short abstract of paper one is still an abstract.'}"
                   f"\n\n\u2022 3 authors\nMay 2{i}, 2024 4\n\n" for i in range(3))
    src = folder / "page.txt"
    src.write_text(page, encoding="utf-8")
    return [src], [page.replace("A short abstract of paper one is still an abstract.", "A shorter abstract now.")]


@pytest.mark.parametrize("case", [_csv_quote_left_open, _dangling_link_in_folder, _hf_short_abstract],
                         ids=["csv-quote-left-open", "dangling-link-in-folder", "hf-page-short-abstract"])
def test_inputs_that_used_to_lose_papers_without_a_word(case: object, fresh_home: Path, embed_cache: Path,
                                                        tmp_path: Path) -> None:
    """Each once read "completely" while dropping records, so `ingest --prune` deleted their papers."""
    sources, change = case(tmp_path)  # type: ignore[operator]
    a = Assistant(make_settings(fresh_home, embed_cache))
    rep = a.ingest(sources)
    before = a.status()["papers"]
    assert before >= 3 and not rep.problems, rep.problems
    if case is _dangling_link_in_folder:
        shutil.move(str(tmp_path / "store"), str(tmp_path / "store-gone"))
    elif case is _csv_quote_left_open:
        sources[0].write_text("title,abstract\n" + "\n".join(change) + "\n", encoding="utf-8")
    else:
        sources[0].write_text(change[0], encoding="utf-8")
    rep = a.ingest(sources, prune=True)
    if case is _hf_short_abstract:  # the short abstract is read (an authors / date line follows it)
        assert rep.removed == 0 and not rep.problems and rep.updated == 1, rep
    else:  # a problem naming the file (and line), and nothing pruned
        assert rep.removed == 0 and rep.prune_skipped and rep.problems, rep
        assert all("\n" not in p for p in rep.problems)
        assert any(("refs.csv:line 3" if case is _csv_quote_left_open else "p.jsonl: a link to nothing") in p
                   for p in rep.problems), rep.problems
    assert a.status()["papers"] == before


def test_another_abstract_in_a_later_ingest_is_said(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    a_file = _write(tmp_path / "a.jsonl", [json.dumps({"id": "X", "title": "Same", "abstract": "From file A.",
                                                       "date": "2024-01-01"})])
    b_file = _write(tmp_path / "b.jsonl", [json.dumps({"id": "X", "title": "Same", "abstract": "From file B."})])
    a = Assistant(make_settings(fresh_home, embed_cache))
    assert not a.ingest([a_file]).warnings
    rep = a.ingest([b_file])
    assert rep.updated == 1 and [w for w in rep.warnings if "another abstract" in w] == [
        f"{b_file}:line 1: paper 'X' has another abstract in {a_file}; the one read now replaces it, with its "
        "fields (the last ingested wins)"], rep.warnings
    assert a.get_paper("X").abstract == "From file B."  # type: ignore[union-attr]
    assert not a.ingest([b_file]).warnings  # the same file again: nothing to say


def test_prune_after_a_partial_read_removes_nothing(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    rows = _rows(12)
    src = _write(tmp_path / "a.jsonl", _lines(rows))
    a = Assistant(make_settings(fresh_home, embed_cache))
    assert a.ingest([src]).new == 12
    # Line 3 (p2) becomes unreadable and line 6 (p5) a 5000-digit number: the file is not read completely.
    lines = _lines(rows)
    lines[2], lines[5] = DEEP, BIGNUM
    _write(src, lines)
    rep = a.ingest([src], prune=True)
    assert rep.removed == 0 and rep.prune_skipped
    assert any("--prune" in m and "a.jsonl" in m for m in rep.warnings)
    assert a.status()["papers"] == 12 and a.get_paper("p2") is not None
    # Once the file reads completely, prune does its job.
    del lines[5]
    lines[2] = json.dumps(rows[2])
    _write(src, lines)
    rep = a.ingest([src], prune=True)
    assert rep.removed == 1 and not rep.prune_skipped and a.get_paper("p5") is None


def test_unreadable_subfolder_and_file_are_reported(locked_tree: Path) -> None:
    src = locked_tree / "src"
    _write(src / "top.jsonl", _lines(_rows(2)))
    _write(src / "sub" / "inner.jsonl", _lines(_rows(2, start=2)))
    _write(src / "locked.jsonl", _lines(_rows(1, start=9)))
    (src / "locked.jsonl").chmod(0o000)
    (src / "sub").chmod(0o000)
    code = ("import json, sys\nfrom assistant.readers import read_paths\nr = read_paths([sys.argv[1]])\n"
            "print(json.dumps({'ids': [p.paper_id for p in r.papers], 'problems': [str(p) for p in r.problems],"
            " 'incomplete': r.incomplete}))")
    r = subprocess.run([*_unprivileged(), sys.executable, "-c", code, str(src)], capture_output=True, text=True,
                       env=cli_env(locked_tree))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ids"] == ["p0", "p1"]
    assert sorted(out["incomplete"]) == sorted([str(src / "locked.jsonl"), str(src / "sub")])
    text = "\n".join(out["problems"])
    assert f"{src / 'sub'}: cannot read folder" in text and f"{src / 'locked.jsonl'}: cannot read file" in text
    assert len(out["problems"]) == 2


def test_prune_with_an_unreadable_subfolder_keeps_its_papers(locked_tree: Path, embed_cache: Path) -> None:
    src, home, cache = locked_tree / "src", locked_tree / "home", embed_cache
    _write(src / "top.jsonl", _lines(_rows(3)))
    _write(src / "sub" / "inner.jsonl", _lines(_rows(4, start=3)))
    r = subprocess.run(["assistant", "ingest", str(src)], capture_output=True, text=True, env=cli_env(home, cache))
    assert r.returncode == 0, r.stderr
    (src / "sub").chmod(0o000)
    r = subprocess.run([*_unprivileged(), "assistant", "ingest", str(src), "--prune"], capture_output=True,
                       text=True, env=cli_env(home, cache))
    assert "Traceback" not in r.stderr
    assert f"{src / 'sub'}: cannot read folder" in r.stderr and "--prune" in r.stderr
    (src / "sub").chmod(0o755)
    a = Assistant(make_settings(home, cache))
    a.auto_sample = False
    assert a.status()["papers"] == 7


# -- 12.2: merging never loses known metadata and does not depend on order ---------------------

def _catalogue(home: Path, cache: Path) -> list[dict]:
    a = Assistant(make_settings(home, cache))
    a.auto_sample = False
    out = [p.to_dict() for p in a.index.catalogue.iter_papers(order="id")]
    a.index.close()
    return out


def _overlapping(tmp_path: Path) -> tuple[Path, Path]:
    """Two files about the same papers: a has dates, b has authors and an extra paper; p3's dates conflict."""
    rows = _rows(6)
    a_rows = [dict(r, authors=[]) for r in rows[:4]]
    b_rows = [{k: v for k, v in r.items() if k != "date"} | {"authors": [f"Author {i}", "Second Author"]}
              for i, r in enumerate(rows[2:], start=2)]
    b_rows[1]["date"] = "2019-05"  # p3: a says 2023-04-11, b says 2019-05
    return _write(tmp_path / "a.jsonl", _lines(a_rows)), _write(tmp_path / "b.jsonl", _lines(b_rows))


def test_merge_is_order_independent_and_never_drops_a_known_field(tmp_path: Path) -> None:
    a, b = _overlapping(tmp_path)
    ab, ba = read_paths([a, b]), read_paths([b, a])
    key = lambda r: sorted((p.to_dict() for p in r.papers), key=lambda d: d["paper_id"])  # noqa: E731
    assert key(ab) == key(ba)
    by_id = {p.paper_id: p for p in ab.papers}
    assert by_id["p2"].date == "2022-03-11" and by_id["p2"].authors == ["Author 2", "Second Author"]
    assert by_id["p3"].date == "2023-04-11"  # the more specific date wins, whichever file came first


def test_prune_forgets_what_files_no_longer_given_said(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """A date and authors only a deleted (or moved) file gave stayed in the paper after --prune for good;
    only --rebuild cleared them. Without --prune they stay (another file's say is kept)."""
    a = Assistant(make_settings(fresh_home, embed_cache))
    rec = {"id": "x", "title": "Shared paper on reward models", "abstract": "Reward models drift. We measure it."}
    one = _write(tmp_path / "one.jsonl", [json.dumps(rec)])
    two = _write(tmp_path / "two.jsonl", [json.dumps({**rec, "date": "2021-05-01", "authors": ["Roe, R."]})])
    a.ingest([one, two])
    assert (a.get_paper("x").date, a.get_paper("x").authors) == ("2021-05-01", ["Roe, R."])
    a.ingest([one])
    assert a.get_paper("x").date == "2021-05-01"
    moved = tmp_path / "moved.jsonl"
    two.rename(moved)
    a.ingest([one, moved], prune=True)
    assert set(a.get_paper("x").provenance) == {str(one), str(moved)}
    assert a.get_paper("x").date == "2021-05-01"
    rep = a.ingest([one], prune=True)
    assert (rep.removed, rep.updated) == (0, 1)
    x = a.get_paper("x")
    assert x is not None and (x.date, x.authors, set(x.provenance)) == (None, [], {str(one)})
    assert a.search("reward models drift", k=1)[0].paper.date is None


def test_reingesting_one_sample_page_keeps_metadata_from_the_others(copied_sample_home: Path,
                                                                   embed_cache: Path) -> None:
    from tests.conftest import SAMPLE_DIR

    a = Assistant(make_settings(copied_sample_home, embed_cache))
    a.auto_sample = False
    before = {p.paper_id: p.to_dict() for p in a.index.catalogue.iter_papers()}
    page = sorted(SAMPLE_DIR.glob("000_*.txt"))[0]
    rep = a.ingest([page])
    assert (rep.new, rep.updated) == (0, 0), rep
    survey = next(p for p in a.papers() if p.title == "Large Language Model Alignment: A Survey")
    assert (survey.date, survey.n_authors) == ("2023-09-26", 9)
    hits = a.search("Large Language Model Alignment: A Survey", since="2023-09", until="2023-09-30", k=5)
    assert survey.paper_id in [h.paper.paper_id for h in hits]
    assert {p.paper_id: p.to_dict() for p in a.index.catalogue.iter_papers()} == before


def test_separate_and_concurrent_ingests_of_overlapping_files_equal_one_ingest(tmp_path: Path,
                                                                              embed_cache: Path) -> None:
    a_src, b_src = _overlapping(tmp_path)
    clean = tmp_path / "clean"
    Assistant(make_settings(clean, embed_cache)).ingest([a_src, b_src])
    want = _catalogue(clean, embed_cache)
    assert {d["paper_id"]: d["date"] for d in want}["p2"] == "2022-03-11"
    for order in ([a_src, b_src], [b_src, a_src]):
        home = tmp_path / f"seq-{order[0].stem}"
        for src in order:
            Assistant(make_settings(home, embed_cache)).ingest([src])
        assert _catalogue(home, embed_cache) == want, order
    home = tmp_path / "together"
    procs = [subprocess.Popen(["assistant", "ingest", str(s)], env=cli_env(home, embed_cache),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in (a_src, b_src)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _catalogue(home, embed_cache) == want


# -- 12.3: the sample only goes into a never-written home; read-only homes can be queried -------

def test_ask_while_the_first_ingest_holds_the_lock_does_not_add_the_sample(fresh_home: Path,
                                                                         embed_cache: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    with a.index.write_lock():  # a user's first ingest, still reading its sources
        r = subprocess.run(["assistant", "ask", "What is direct preference optimization?"],
                           env=cli_env(fresh_home, embed_cache), capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no papers are indexed" in r.stderr and "sample" not in r.stdout
    assert a.status()["papers"] == 0


def test_a_home_written_before_never_gets_the_sample(fresh_home: Path, embed_cache: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    with a.index.write_lock():  # an ingest that was killed before its first batch
        pass
    b = Assistant(make_settings(fresh_home, embed_cache))
    with pytest.raises(AssistantError, match="no papers are indexed"):
        b.ask("What is direct preference optimization?")
    assert b.status()["papers"] == 0
    # `papers list` there said `ask` builds the sample, which `ask` then refused to do.
    hint = b.empty_index_hint()
    assert hint is not None and "`ask` does not add the bundled sample" in hint and "builds" not in hint


def test_ask_on_a_never_written_home_builds_the_sample_and_says_so(fresh_home: Path, embed_cache: Path) -> None:
    said: list[str] = []
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.ensure_index(progress=SilentReporter(said.append))
    assert any("bundled sample" in m for m in said) and a.status()["papers"] == 247


def test_papers_search_and_status_on_an_empty_home_do_not_build_the_sample(fresh_home: Path,
                                                                          embed_cache: Path) -> None:
    a = Assistant(make_settings(fresh_home, embed_cache))
    assert a.papers() == [] and a.search("direct preference optimization") == []
    assert a.status()["papers"] == 0 and a.get_paper("x") is None
    assert not (fresh_home / "index" / "catalogue.sqlite").exists()
    for cmd in (["papers", "list"], ["papers", "search", "dpo"], ["status"]):
        r = subprocess.run(["assistant", *cmd], env=cli_env(fresh_home, embed_cache), capture_output=True, text=True)
        # One line naming the next command (which may mention the sample), but nothing embedded or built.
        assert r.returncode == 0 and "Traceback" not in r.stderr and "Embedding" not in r.stderr, (cmd, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 1, (cmd, r.stderr)
    assert Assistant(make_settings(fresh_home, embed_cache)).status()["papers"] == 0


def test_read_only_home_can_be_queried(copied_sample_home: Path, embed_cache: Path) -> None:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare for a read-only bind mount")
    code = textwrap.dedent(f"""
        import json
        from pathlib import Path
        from assistant.api import Assistant
        from assistant.settings import Settings
        a = Assistant(Settings.load(env={{"ASSISTANT_CONFIG": ""}}, home=Path({str(copied_sample_home)!r}),
                                    cache_dir=Path({str(embed_cache)!r})))
        ans = a.ask("What does ARRA align LLM hidden states with?")
        print(json.dumps({{"papers": len(a.papers()), "status": a.status()["papers"], "cited": len(ans.citations),
                          "hits": len(a.search("token-level DPO", k=3))}}))
    """)
    home = str(copied_sample_home)
    cmd = ["unshare", "-m", "bash", "-c", f"mount --bind {home} {home} && mount -o remount,ro,bind {home} && "
                                          f"{sys.executable} -c \"$0\"", code]
    r = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(copied_sample_home, embed_cache))
    if "mount" in r.stderr and r.returncode != 0 and "Traceback" not in r.stderr:
        pytest.skip(f"cannot make a read-only mount here: {r.stderr.strip()[:200]}")
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"papers": 247, "status": 247, "cited": out["cited"], "hits": 3} and out["cited"] >= 1


def test_orphan_only_rerun_clears_the_writing_flag(fresh_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", _lines(_rows(3)))
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.ingest([src])
    with a.index.write_lock():
        a.index.catalogue.set_meta("writing", "1")  # as a killed run leaves it
        a.index.catalogue.db.commit()
    rep = a.ingest([src])
    assert rep.unchanged == 3 and a.index.catalogue.get_meta("writing") == "0"


def test_nothing_read_reports_the_papers_the_index_still_holds(fresh_home: Path, embed_cache: Path,
                                                              tmp_path: Path) -> None:
    src = _write(tmp_path / "a.jsonl", _lines(_rows(3)))
    a = Assistant(make_settings(fresh_home, embed_cache))
    first = a.ingest([src])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    rep = a.ingest([empty])
    assert not rep.ok and (rep.papers_total, rep.chunks_total) == (3, first.chunks_total)


# -- 12.4 / 12.7: odd field types, lone surrogates, invalid UTF-8 and impossible dates ---------

def _warned(res: object) -> str:
    return "\n".join(str(w) for w in res.warnings + res.problems)  # type: ignore[attr-defined]


def test_wrong_field_types_drop_the_field_or_skip_the_record_never_crash(tmp_path: Path) -> None:
    good = _rows(8)
    odd = [dict(good[0], url=["https://a", "https://b"]), dict(good[1], url=5), dict(good[2], date=["2024"]),
           dict(good[3], authors={"name": 3}), dict(good[4], authors=["Ann", ["nested"], 7, {"name": "Bo"}]),
           dict(good[5], arxiv_id={"x": 1}), dict(good[6], title=["a", "list"]), dict(good[7], id=[1, 2]),
           {"title": "Fine", "abstract": {"text": "not a string"}}]
    f = _write(tmp_path / "odd.jsonl", _lines(odd))
    res = read_paths([f])
    by_id = {p.paper_id: p for p in res.papers}
    assert set(by_id) == {"p0", "p1", "p2", "p3", "p4", "p5"}
    assert by_id["p0"].url is None and by_id["p1"].url is None and by_id["p2"].date is None
    assert by_id["p3"].authors == [] and by_id["p4"].authors == ["Ann", "Bo"]
    text = _warned(res)
    for line, field in ((1, "url"), (2, "url"), (3, "date"), (4, "authors"), (5, "authors"), (6, "arxiv_id")):
        assert f"{f}:line {line}: field '{field}'" in text, (line, field, text)
    for line, field in ((7, "title"), (8, "id"), (9, "abstract")):
        assert f"{f}:line {line}: field '{field}'" in text and "skipped" in text
    assert all("\n" not in str(w) for w in res.warnings + res.problems)


def test_lone_surrogates_are_replaced_with_a_warning_and_ingest(fresh_home: Path, embed_cache: Path,
                                                                tmp_path: Path) -> None:
    rows = _rows(2)
    rows[0]["title"] += " \ud800"
    rows[0]["abstract"] += " Broken \udfff character."
    rows[1]["authors"] = ["Ann \ud83d"]
    f = _write(tmp_path / "surrogate.jsonl", _lines(rows))  # json.dumps writes them as \\ud800 escapes
    res = read_paths([f])
    assert len(res.papers) == 2
    for p in res.papers:
        for text in (p.title, p.abstract, *p.authors):
            text.encode("utf-8")  # no lone surrogate left
    text = _warned(res)
    assert f"{f}:line 1: field 'title'" in text and f"{f}:line 1: field 'abstract'" in text
    assert f"{f}:line 2: field 'authors'" in text and "surrogate" in text
    rep = Assistant(make_settings(fresh_home, embed_cache)).ingest([f])
    assert rep.new == 2


def test_invalid_utf8_in_files_is_named_with_its_line(tmp_path: Path) -> None:
    good = _lines(_rows(3))
    j = tmp_path / "bad.jsonl"
    j.write_bytes((good[0] + "\n" + good[1][:-2] + ' \xff"}\n' + good[2] + "\n").encode("utf-8", "surrogateescape")
                  .replace(b"\xc3\xbf", b"\xff"))
    txt_ok = (Path(__file__).parent.parent / "assistant" / "data" / "sample").glob("001_*.txt")
    page = next(iter(txt_ok)).read_bytes()
    t = tmp_path / "page.txt"
    lines = page.split(b"\n")
    lines[2] = lines[2] + b" \xfe\xff"
    t.write_bytes(b"\n".join(lines))
    b = tmp_path / "refs.bib"
    b.write_bytes(b"@article{k1,\n  title = {Caf\xe9 paper},\n  abstract = {An abstract.},\n}\n")
    res = read_paths([j, t, b])
    text = _warned(res)
    assert f"{j}:line 2: invalid UTF-8" in text
    assert f"{t}:line 3: invalid UTF-8" in text
    assert f"{b}:line 2: invalid UTF-8" in text
    assert len([p for p in res.papers if p.source.startswith(str(j))]) == 3


@pytest.mark.parametrize("bad", ["2024-13-45", "99999-01-01", "2023-02-30", "20240", "someday"])
def test_impossible_dates_are_dropped_with_a_warning(tmp_path: Path, bad: str) -> None:
    rows = _rows(2)
    rows[1]["date"] = bad
    j = _write(tmp_path / "d.jsonl", _lines(rows))
    c = tmp_path / "d.csv"
    c.write_text(f"title,abstract,date\nCSV paper,An abstract about rewards.,{bad}\n")
    res = read_paths([j, c])
    assert len(res.papers) == 3 and all(p.date is None for p in res.papers if p.paper_id != "p0")
    text = _warned(res)
    assert f"{j}:line 2: field 'date'" in text and f"{c}:line 2: field 'date'" in text and bad in text


def test_possible_dates_still_read(tmp_path: Path) -> None:
    rows = _rows(4)
    for r, d in zip(rows, ["2024-02-29", "2023", 2021, "2022-07-01T10:00:00Z"], strict=True):
        r["date"] = d
    res = read_paths([_write(tmp_path / "ok.jsonl", _lines(rows))])
    assert [p.date for p in res.papers] == ["2024-02-29", "2023", "2021", "2022-07-01"] and res.warnings == []


def test_a_reader_opened_on_an_empty_home_sees_a_later_ingest(fresh_home: Path, embed_cache: Path,
                                                              tmp_path: Path) -> None:
    reader = Assistant(make_settings(fresh_home, embed_cache))
    reader.auto_sample = False
    assert reader.index.catalogue.count() == (0, 0)  # an empty stand-in: nothing is created
    assert not (fresh_home / "index").exists()
    Assistant(make_settings(fresh_home, embed_cache)).ingest([_write(tmp_path / "a.jsonl", _lines(_rows(2)))])
    assert {p.paper_id for p in reader.papers()} == {"p0", "p1"}
    assert reader.search("reward model 1 calibration", k=1)[0].paper.paper_id == "p1"


def test_a_long_running_process_follows_a_rebuild_by_another(fresh_home: Path, embed_cache: Path) -> None:
    """`assistant serve` (or any open Assistant) on a home another shell rebuilds: it answered from
    the replaced catalogue, citing papers no longer indexed, until restarted. Now the rebuild empties
    the catalogue in place under a new generation, and the open process follows it."""
    from tests.conftest import SAMPLE_DIR

    pages = sorted(SAMPLE_DIR.glob("*.txt"))
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.auto_sample = False
    a.ingest(pages[:2])
    question = "Which papers drop the reference model from preference optimisation?"
    before = a.ask(question)
    old_ids = {p.paper_id for p in a.papers()}
    run = subprocess.run(["assistant", "ingest", "--rebuild", str(pages[3])], env=cli_env(fresh_home, embed_cache),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    fresh = Assistant(make_settings(fresh_home, embed_cache))
    now_ids = {p.paper_id for p in fresh.papers()}
    gone = old_ids - now_ids
    assert gone & {c.paper_id for c in before.citations}  # the answer before cited a paper the rebuild drops

    after = a.ask(question)
    assert {c.paper_id for c in after.citations} <= now_ids
    assert {p.paper_id for p in a.papers()} == now_ids
    assert a.status()["papers"] == len(now_ids) == fresh.status()["papers"]
    assert {h.paper.paper_id for h in a.search("preference optimization", k=50)} <= now_ids
    assert a.index.catalogue.generation > 1  # a new generation, never a restarted counter


def test_a_long_running_process_answers_from_papers_another_process_adds(fresh_home: Path,
                                                                         embed_cache: Path) -> None:
    """Embedded Chroma loads a collection into a process once. After an ingest by another process,
    an open one (`assistant serve`) failed every question that reached a new paper ("Chroma failed:
    ... Error finding id") until restarted; now it reopens the store at the next question."""
    from tests.conftest import SAMPLE_DIR

    pages = sorted(SAMPLE_DIR.glob("*.txt"))
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.auto_sample = False
    a.ingest(pages[:2])
    assert a.ask("What is DPO?").citations  # the store is open and loaded
    old_ids = {p.paper_id for p in a.papers()}
    run = subprocess.run(["assistant", "ingest", str(pages[3])], env=cli_env(fresh_home, embed_cache),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    new = [p for p in a.papers() if p.paper_id not in old_ids]
    assert len(new) >= 3
    for paper in new[:3]:
        ans = a.ask(f"What does the paper '{paper.title}' propose?")
        assert paper.paper_id in {c.paper_id for c in ans.citations}
    st = a.status()
    assert st["vectors"] == st["chunks"] and st["sentence_vectors"] > 0


def test_questions_during_a_rebuild_by_another_process_never_fail(fresh_home: Path, embed_cache: Path,
                                                                 tmp_path: Path) -> None:
    """An open process keeps asking while another process rebuilds the home in small batches: each
    question gets an answer, a refusal or, in the instant the old vectors are gone and the new not yet
    made, "being rebuilt ... try again" (never another error), and once the rebuild is done it
    answers from the rebuilt index."""

    from tests.conftest import SAMPLE_DIR

    pages = sorted(SAMPLE_DIR.glob("*.txt"))
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.auto_sample = False
    a.ingest(pages[:2])
    question = "Which papers drop the reference model from preference optimisation?"
    assert a.ask(question).citations
    script = tmp_path / "rebuild.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from assistant.api import Assistant
        from assistant.settings import Settings
        a = Assistant(Settings.load())
        a.auto_sample = False
        a.ingest([{str(pages[3])!r}], rebuild=True, batch_papers=3, after_batch=lambda n: time.sleep(0.05))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], env=cli_env(fresh_home, embed_cache),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    asked = 0
    try:
        while proc.poll() is None and asked < 400:
            try:
                a.ask(question)
            except IndexStateError as exc:
                assert "is being rebuilt by another client" in str(exc), exc
            asked += 1
    finally:
        _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert asked >= 3  # the rebuild was asked through
    now = Assistant(make_settings(fresh_home, embed_cache)).papers()
    assert {c.paper_id for c in a.ask(question).citations} <= {p.paper_id for p in now}
    for paper in now[:3]:
        assert paper.paper_id in {c.paper_id for c in a.ask(f"What does the paper '{paper.title}' propose?").citations}


def _one_page_home(fresh_home: Path, embed_cache: Path) -> tuple[Assistant, Path, int]:
    from tests.conftest import SAMPLE_DIR

    page = sorted(SAMPLE_DIR.glob("*.txt"))[0]
    a = Assistant(make_settings(fresh_home, embed_cache))
    a.auto_sample = False
    a.ingest([page])
    n = a.status()["papers"]
    a.index.release()
    return a, page, n


def _cli_error(home: Path, cache: Path, *argv: str) -> str:
    run = subprocess.run(["assistant", *argv], env=cli_env(home, cache), capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    return run.stderr.strip().splitlines()[-1]


def test_an_unreadable_catalogue_is_one_line_until_rebuild_replaces_it(fresh_home: Path, embed_cache: Path) -> None:
    a, page, n = _one_page_home(fresh_home, embed_cache)
    cat = a.index.catalogue_path
    for extra in (cat.with_name(cat.name + "-wal"), cat.with_name(cat.name + "-shm")):
        extra.unlink(missing_ok=True)
    cat.write_bytes(b"not a database" * 100)
    for argv in (["status"], ["ask", "What is DPO?"], ["ingest", str(page)]):
        assert _cli_error(fresh_home, embed_cache, *argv) == (
            f"error: {cat}: cannot read the index catalogue (file is not a database); "
            "rebuild the index with `assistant ingest --rebuild SOURCES`")
    assert cat.read_bytes() == b"not a database" * 100  # nothing but --rebuild touches it
    b = Assistant(make_settings(fresh_home, embed_cache))
    b.auto_sample = False
    rep = b.ingest([page], rebuild=True)
    assert rep.papers_total == n == b.status()["papers"]


def test_an_emptied_or_deleted_catalogue_is_never_taken_for_a_new_index(fresh_home: Path, embed_cache: Path) -> None:
    """A catalogue truncated to 0 bytes read as "cannot write the index" (the folder was writable), and a
    plain ingest then made a new index of its own papers beside the old vectors: the others were gone
    without a word. Deleted: the same."""
    a, page, n = _one_page_home(fresh_home, embed_cache)
    cat = a.index.catalogue_path
    for name in (cat.name + "-wal", cat.name + "-shm"):
        cat.with_name(name).unlink(missing_ok=True)
    cat.write_bytes(b"")
    assert _cli_error(fresh_home, embed_cache, "status") == (
        f"error: {cat}: the index catalogue holds no papers table (emptied or damaged); "
        "rebuild the index with `assistant ingest --rebuild SOURCES`")
    for damage in ("emptied", "deleted"):
        if damage == "deleted":
            cat.unlink()
        for _ in range(2):  # a refused ingest leaves the damage as it found it (no empty catalogue made)
            err = _cli_error(fresh_home, embed_cache, "ingest", str(page))
            assert err.startswith(f"error: {cat}: the index catalogue is missing or empty, but the vector store "
                                  "beside it holds "), err
            assert err.endswith("rebuild the index from your sources with `assistant ingest --rebuild SOURCES`")
            assert cat.exists() == (damage == "emptied") and (not cat.exists() or cat.stat().st_size == 0)
    for argv in (["status"], ["ask", "What is DPO?"]):  # deleted: status showed 0 papers and 0 vectors
        err = _cli_error(fresh_home, embed_cache, *argv)
        assert err.startswith(f"error: {cat}: the index catalogue is missing or empty, but the vector store "), err
    b = Assistant(make_settings(fresh_home, embed_cache))
    b.auto_sample = False
    assert b.ingest([page], rebuild=True).papers_total == n
    st = b.status()
    assert st["papers"] == n and st["vectors"] == st["chunks"] > 0


def test_a_damaged_vector_store_is_named_and_rebuild_replaces_it(fresh_home: Path, embed_cache: Path) -> None:
    """SQLite's "database disk image is malformed" read as a disk problem ("check the disk has space"),
    and --rebuild, the way out, failed the same way: it needed the store to open to drop it."""
    a, page, n = _one_page_home(fresh_home, embed_cache)
    store = a.index.dir / "chroma" / "chroma.sqlite3"
    store.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    for argv in (["status"], ["ask", "What is direct preference optimization?"]):
        err = _cli_error(fresh_home, embed_cache, *argv)
        assert "the vector store is damaged (" in err and "`assistant ingest --rebuild SOURCES`" in err, err
        assert "disk has space" not in err
    b = Assistant(make_settings(fresh_home, embed_cache))
    b.auto_sample = False
    assert b.ingest([page], rebuild=True).papers_total == n
    st = b.status()
    assert st["papers"] == n and st["vectors"] == st["chunks"] > 0
    assert b.ask("What is direct preference optimization?").citations


def test_a_vector_store_gone_from_beside_the_catalogue_is_named(fresh_home: Path, embed_cache: Path) -> None:
    """With the chroma folder deleted, `status` showed 0 vectors without a word and every question was
    refused as if the papers did not answer it."""
    a, page, n = _one_page_home(fresh_home, embed_cache)
    shutil.rmtree(a.index.dir / "chroma")
    for argv in (["status"], ["ask", "What is direct preference optimization?"]):
        err = _cli_error(fresh_home, embed_cache, *argv)
        assert err.startswith(f"error: {a.index.dir / 'chroma'}: the vector store holds none of the "), err
        assert f"of the {n} indexed papers (deleted or moved?); rebuild the index with" in err
    # While another process holds the ingest lock (a --rebuild drops the vectors before it clears the
    # catalogue), the same state is that rebuild's, not damage.
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from filelock import FileLock; "
                               f"l = FileLock({str(a.index.lock_path)!r}); l.acquire(); print('held', flush=True); "
                               "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert _cli_error(fresh_home, embed_cache, "status") == (
            f"error: the index in {a.index.dir} is being rebuilt by another process; try again when it finishes")
    finally:
        holder.communicate("", timeout=30)
    b = Assistant(make_settings(fresh_home, embed_cache))
    b.auto_sample = False
    assert b.ingest([page], rebuild=True).papers_total == n
    assert b.status()["vectors"] > 0 and b.ask("What is direct preference optimization?").citations


def test_damaged_side_files_cost_a_rebuild_or_one_line_never_a_traceback(fresh_home: Path, embed_cache: Path,
                                                                         tmp_path: Path) -> None:
    """Bytes that are not UTF-8 at the head of the BM25 index's ids.json (a traceback from `status`):
    rebuilt like a missing index. A damaged embedding cache (a traceback from `ingest`): one line
    naming the file, which only saves embedding a text twice."""
    a, page, n = _one_page_home(fresh_home, embed_cache)
    ids = a.index.dir / "bm25" / "ids.json"
    ids.write_bytes(b"\x82\xff" * 100)
    from assistant.index.lexical import LexicalIndex

    assert LexicalIndex(a.index.dir / "bm25").saved_generation() == -1
    run = subprocess.run(["assistant", "status"], env=cli_env(fresh_home, embed_cache), capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert a.search("direct preference optimization", 3)  # rebuilt on read
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings.sqlite").write_bytes(b"\x00\x13garbage" * 600)
    run = subprocess.run(["assistant", "ingest", str(page)], env=cli_env(fresh_home, cache), capture_output=True,
                         text=True, timeout=300)
    if run.returncode == 0:  # nothing new to embed: the cache is not opened
        run = subprocess.run(["assistant", "ingest", "--rebuild", str(page)], env=cli_env(fresh_home, cache),
                             capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"error: {cache / 'embeddings.sqlite'}: the embedding cache is damaged (file is not a database); delete "
        "that file (it only saves embedding a text twice; the index is not in it) and run again")


def test_rebuild_replaces_a_catalogue_damaged_past_its_first_page(tmp_path: Path) -> None:
    """SQLite opens a file whose damage lies in a later page; the rebuild's in-place clear then hits
    it. The rebuild must still end with a usable, empty catalogue, never a traceback."""
    from assistant.index.catalogue import Catalogue
    from assistant.index.ingest import _clear_catalogue
    from assistant.records import Paper

    path = tmp_path / "catalogue.sqlite"
    cat = Catalogue(path)
    cat.commit_papers([Paper(f"p{i}", f"Paper {i}", "An abstract sentence. " * 40) for i in range(600)], [])
    cat.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cat.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 60 * page
    data[50 * page:51 * page] = b"\xff" * page
    path.write_bytes(bytes(data))
    Catalogue(path).close()  # opens fine: the damage is further in
    _clear_catalogue(path)
    fresh = Catalogue(path)
    assert fresh.count() == (0, 0)
    fresh.close()


def test_a_rebuild_clear_that_fails_midway_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalogue's tables are dropped and made anew in one transaction: a failure in between
    leaves every paper and the generation as they were."""
    from assistant.index import catalogue as catalogue_mod
    from assistant.index.catalogue import Catalogue
    from assistant.records import Paper

    path = tmp_path / "catalogue.sqlite"
    cat = Catalogue(path)
    cat.commit_papers([Paper(f"p{i}", f"Paper {i}", "An abstract.") for i in range(5)], [])
    gen = cat.generation
    monkeypatch.setattr(catalogue_mod, "_SCHEMA", catalogue_mod._SCHEMA + "; CREATE TABLE broken (")
    with pytest.raises(AssistantError):
        cat.clear()
    cat.close()
    monkeypatch.undo()
    again = Catalogue(path)
    assert again.count() == (5, 0) and again.generation == gen
    again.close()


def test_the_servers_own_ingest_leaves_it_following_other_processes(fresh_home: Path, embed_cache: Path,
                                                                    tmp_path: Path) -> None:
    """`POST /v1/ingest` writes through a second index in the server's process. Its Chroma client,
    left open, kept the serving index on the old loaded copy after any later ingest by another
    process (questions reaching the new papers failed with "Error finding id")."""
    from assistant.server.app import Shared
    from assistant.server.options import ServeOptions

    def rows(path: Path, lo: int, hi: int) -> Path:
        path.write_text("".join(json.dumps({"id": f"p{i}", "title": f"Synthetic paper {i} topic{i}",
                                            "abstract": f"We study widget{i} gadgets for zebra{i} alignment. "
                                                        f"It improves score by {i} points.",
                                            "date": "2024-05-01"}) + "\n" for i in range(lo, hi)), encoding="utf-8")
        return path

    a = Assistant(make_settings(fresh_home, embed_cache, retrieval={"exact_search_max": 0}))
    a.auto_sample = False
    a.ingest([rows(tmp_path / "a.jsonl", 0, 4)])
    a.retriever.retrieve("widget1")
    Shared(a, ServeOptions()).ingest(rows(tmp_path / "b.jsonl", 4, 6))
    assert "p5" in {s.paper.paper_id for s in a.retriever.retrieve("widget5 zebra5").sources}
    run = subprocess.run(["assistant", "ingest", str(rows(tmp_path / "c.jsonl", 6, 9))],
                         env=cli_env(fresh_home, embed_cache), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    hits = a.retriever.retrieve("We study widget7 gadgets for zebra7 alignment.", mode="dense").sources
    assert hits and hits[0].paper.paper_id == "p7"


def test_an_unreadable_file_named_on_the_command_line_costs_one_line(locked_tree: Path, embed_cache: Path) -> None:
    """`ingest a.jsonl b.jsonl` with b unreadable: one line naming b, every record of a ingested, exit 0
    (documented: non-zero only when nothing could be read). Before, a usage box and nothing ingested."""
    a_src = _write(locked_tree / "a.jsonl", _lines(_rows(3)))
    b_src = _write(locked_tree / "b.jsonl", _lines(_rows(2, start=3)))
    b_src.chmod(0o000)
    fifo = locked_tree / "c.jsonl"
    os.mkfifo(fifo)  # opening it would block: it is named, never opened
    home = locked_tree / "home"
    r = subprocess.run([*_unprivileged(), sys.executable, "-m", "assistant", "ingest", str(a_src), str(b_src),
                        str(fifo)], capture_output=True, text=True, env=cli_env(home, embed_cache), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Usage" not in r.stderr and "Traceback" not in r.stderr
    about_b = [line for line in r.stderr.splitlines() if str(b_src) in line]
    assert about_b == [f"{b_src}: cannot read file: Permission denied"], r.stderr
    assert [line for line in r.stderr.splitlines() if str(fifo) in line] == [
        f"{fifo}: not a regular file or folder (a pipe, socket or device); save it to a file first"]
    a = Assistant(make_settings(home, embed_cache))
    a.auto_sample = False
    assert sorted(p.paper_id for p in a.papers()) == ["p0", "p1", "p2"]


def test_a_problem_line_is_not_wrapped_when_stderr_is_not_a_terminal(tmp_path: Path, embed_cache: Path) -> None:
    """In a log or pipe (no terminal, no COLUMNS) rich would wrap at 80 columns: the problem naming a
    missing file must still be one line, whole (found by the adversarial review of issue 23)."""
    a_src = _write(tmp_path / "a.jsonl", _lines(_rows(2)))
    missing = tmp_path / ("a-missing-file-with-a-name-long-enough-to-pass-eighty-columns" + "-x" * 10 + ".jsonl")
    env = cli_env(tmp_path / "home", embed_cache)
    env.pop("COLUMNS")
    r = subprocess.run([sys.executable, "-m", "assistant", "ingest", str(a_src), str(missing)], capture_output=True,
                       text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    about = [line for line in r.stderr.splitlines() if str(missing) in line]
    assert about == [f"{missing}: no such file or folder; check the path and run `assistant ingest PATH` again "
                     "(files or folders)"], r.stderr
