"""The sample-corpus question sets (pool -> fit / validation, with held-out papers; heldout-2, heldout-3) are sound.

Read with the real readers and the real question loader: every quote is verbatim in its paper's abstract,
held-out papers are in the sample but gold nowhere, the type mix meets issue 14's minimums, the
fit / validation files are exactly what evals/split_questions.py produces, and heldout-2 (the untouched
set of session 2026-11-30), heldout-3 (the untouched set of session 3 of 2026-11-30) and heldout-4 (the
untouched set of session 4 of 2026-11-30) meet their own minimums and restate no question of the other files.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from assistant.evaluation import load_questions
from assistant.readers import read_paths
from assistant.records import REFUSAL

REPO = Path(__file__).resolve().parents[1]
QDIR = REPO / "evals" / "questions"
SAMPLE = REPO / "assistant" / "data" / "sample"
SETS = ("pool", "fit", "validation")
MINIMUMS = {"lookup": 30, "detail": 30, "multi": 20, "compare": 12, "unanswerable": 40}
HELDOUT2 = "heldout-2"
HELDOUT2_MINIMUMS = {"lookup": 12, "detail": 14, "multi": 8, "compare": 6, "unanswerable": 20}
HELDOUT3 = "heldout-3"
HELDOUT4 = "heldout-4"
# (file, qid prefix, type minimums, minimum detail questions whose number is in both answer and a quote)
UNTOUCHED = [
    (HELDOUT2, "h2", HELDOUT2_MINIMUMS, 8),
    (HELDOUT3, "h3", HELDOUT2_MINIMUMS, 10),
    (HELDOUT4, "h4", HELDOUT2_MINIMUMS, 10),
]


@pytest.fixture(scope="module")
def abstracts() -> dict[str, str]:
    return {p.title: p.abstract for p in read_paths([SAMPLE]).papers}


@pytest.fixture(scope="module")
def held() -> list[str]:
    lines = (QDIR / "holdout_papers.txt").read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def rows(name: str) -> list[dict]:
    load_questions(QDIR / f"{name}.jsonl")  # the project's own validation (fields, types, duplicates)
    with (QDIR / f"{name}.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_module() -> object:
    spec = importlib.util.spec_from_file_location("split_questions", REPO / "evals" / "split_questions.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", [*SETS, HELDOUT2, HELDOUT3, HELDOUT4])
def test_quotes_are_exact_substrings_of_gold_abstracts(name: str, abstracts: dict[str, str]) -> None:
    for r in rows(name):
        for t in r["gold_titles"]:
            assert t in abstracts, f"{r['qid']}: gold title not in the sample: {t}"
        quoted = {e["title"] for e in r["evidence"]}
        assert quoted == set(r["gold_titles"]), f"{r['qid']}: every gold paper needs a quote, and only gold papers"
        for e in r["evidence"]:
            assert e["quote"] in abstracts[e["title"]], f"{r['qid']}: quote not verbatim in '{e['title']}'"
            assert len(e["quote"]) >= 30, f"{r['qid']}: quote too short to be the answering sentence"


def test_held_out_papers_exist_and_are_gold_for_nothing(held: list[str], abstracts: dict[str, str]) -> None:
    assert 12 <= len(held) == len(set(held))
    assert not set(held) - set(abstracts), "held-out titles must be exact sample titles"
    for path in sorted(QDIR.glob("*.jsonl")):
        for r in rows(path.stem):
            gold = set(r["gold_titles"]) | {e["title"] for e in r["evidence"]}
            assert not gold & set(held), f"{path.name} {r['qid']}: a held-out paper is gold"


def test_unanswerable_rows(held: list[str], abstracts: dict[str, str]) -> None:
    kinds: Counter[str] = Counter()
    for r in rows("pool"):
        if r["type"] != "unanswerable":
            assert r["gold_titles"] and r["evidence"], r["qid"]
            continue
        assert r["gold_titles"] == [] and r["evidence"] == [] and r["answer"] == REFUSAL, r["qid"]
        kinds[r["unanswerable_kind"]] += 1
        if r["unanswerable_kind"] == "absent_study":
            assert r["held_out_title"] in held, r["qid"]
        else:
            assert r["unanswerable_kind"] == "near_miss", r["qid"]
            assert r["about_title"] in abstracts and r["about_title"] not in held, r["qid"]
    assert kinds["absent_study"] >= 15 and kinds["near_miss"] >= 20
    # every held-out paper is what at least one absent-study question is about
    assert {r.get("held_out_title") for r in rows("pool")} >= set(held)


def test_counts_meet_the_minimums_and_multi_questions_have_several_papers() -> None:
    pool = rows("pool")
    counts = Counter(r["type"] for r in pool)
    assert len(pool) >= 150
    for t, n in MINIMUMS.items():
        assert counts[t] >= n, f"{t}: {counts[t]} < {n}"
    for r in pool:
        if r["type"] in ("multi", "compare"):
            assert len(r["gold_titles"]) >= 2, r["qid"]
    # detail questions are mostly about a stated quantity
    with_number = [r for r in pool if r["type"] == "detail" and re.search(r"\d", r["answer"])]
    assert len(with_number) >= 0.8 * counts["detail"]


def test_written_independently_of_dev_and_heldout() -> None:
    norm = lambda s: re.sub(r"\W+", " ", s.lower()).strip()  # noqa: E731
    old = {norm(r["question"]) for name in ("dev", "heldout") for r in rows(name)}
    pool = rows("pool")
    assert len({r["qid"] for r in pool}) == len(pool)
    assert len({norm(r["question"]) for r in pool}) == len(pool)
    assert not {norm(r["question"]) for r in pool} & old
    # the heldout split stays untouched: no pool question is about one of its gold papers
    heldout_gold = {t for r in rows("heldout") for t in r["gold_titles"]}
    for r in pool:
        about = set(r["gold_titles"]) | {r.get("about_title"), r.get("held_out_title")}
        assert not about & heldout_gold, r["qid"]


def test_fit_and_validation_are_the_seeded_stratified_split_of_the_pool() -> None:
    mod = split_module()
    pool, fit, val = rows("pool"), rows("fit"), rows("validation")
    ids_fit, ids_val = {r["qid"] for r in fit}, {r["qid"] for r in val}
    assert not ids_fit & ids_val
    assert ids_fit | ids_val == {r["qid"] for r in pool}
    assert not {r["question"] for r in fit} & {r["question"] for r in val}
    exp_fit, exp_val = mod.split(pool)  # type: ignore[attr-defined]
    assert fit == exp_fit and val == exp_val
    assert mod.main(["--check"]) == 0  # type: ignore[attr-defined]
    # stratified: each type is split about 60/40, and a different seed gives a different split
    for t in MINIMUMS:
        n_fit = sum(r["type"] == t for r in fit)
        n_all = sum(r["type"] == t for r in pool)
        assert abs(n_fit - 0.6 * n_all) <= 2, t
    other_fit, _ = mod.split(pool, seed=mod.SEED + 1)  # type: ignore[attr-defined]
    assert {r["qid"] for r in other_fit} != ids_fit


def test_split_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    mod = split_module()
    pool = tmp_path / "pool.jsonl"
    pool.write_text((QDIR / "pool.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    assert mod.main(["--pool", str(pool), "--out-dir", str(tmp_path)]) == 0  # type: ignore[attr-defined]
    assert mod.main(["--pool", str(pool), "--out-dir", str(tmp_path), "--check"]) == 0  # type: ignore[attr-defined]
    val = tmp_path / "validation.jsonl"
    val.write_text("".join(val.read_text(encoding="utf-8").splitlines(keepends=True)[1:]), encoding="utf-8")
    assert mod.main(["--pool", str(pool), "--out-dir", str(tmp_path), "--check"]) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "prefix", "minimums", "min_numeric"), UNTOUCHED)
def test_untouched_sets_unanswerable_kinds_and_type_mix(
    name: str, prefix: str, minimums: dict[str, int], min_numeric: int, held: list[str], abstracts: dict[str, str]
) -> None:
    """heldout-2 and heldout-3 encode unanswerable kinds as the pool does (plus ``off_topic``) and meet their
    briefs' mix."""
    h2 = rows(name)
    counts = Counter(r["type"] for r in h2)
    for t, n in minimums.items():
        assert counts[t] >= n, f"{t}: {counts[t]} < {n}"
    assert [r["qid"] for r in h2] == [f"{prefix}-{i:03d}" for i in range(1, len(h2) + 1)]
    kinds: Counter[str] = Counter()
    for r in h2:
        if r["type"] != "unanswerable":
            assert "unanswerable_kind" not in r, r["qid"]
            continue
        assert r["gold_titles"] == [] and r["evidence"] == [] and r["answer"] == REFUSAL, r["qid"]
        kind = r["unanswerable_kind"]
        kinds[kind] += 1
        if kind == "absent_study":
            assert r["held_out_title"] in held, r["qid"]
        elif kind == "near_miss":
            assert r["about_title"] in abstracts and r["about_title"] not in held, r["qid"]
        else:
            assert kind == "off_topic", r["qid"]
            assert "about_title" not in r and "held_out_title" not in r, r["qid"]
    assert kinds["near_miss"] >= 10 and kinds["absent_study"] >= 7 and kinds["off_topic"] <= 3
    for r in h2:
        if r["type"] == "multi":
            assert 2 <= len(r["gold_titles"]) <= 4, r["qid"]
        if r["type"] == "compare":
            assert len(r["gold_titles"]) == 2, r["qid"]
    # detail questions that ask for a number both the reference answer and the evidence quote carry
    numeric = [r for r in h2 if r["type"] == "detail"
               and any(n in e["quote"] for n in re.findall(r"\d+(?:\.\d+)?", r["answer"]) for e in r["evidence"])]
    assert len(numeric) >= min_numeric


def test_heldout2_written_independently_of_every_other_set() -> None:
    norm = lambda s: re.sub(r"\W+", " ", s.lower()).strip()  # noqa: E731
    h2 = rows(HELDOUT2)
    assert len({norm(r["question"]) for r in h2}) == len(h2)
    others = [r for name in ("dev", "heldout", "pool") for r in rows(name)]
    assert not {norm(r["question"]) for r in h2} & {norm(r["question"]) for r in others}
    assert not {r["qid"] for r in h2} & {r["qid"] for r in others}
    # mostly papers no other set asks about (a few multi questions reuse one, for a different fact)
    seen = {t for r in others for t in set(r["gold_titles"]) | {r.get("about_title"), r.get("held_out_title")}}
    answerable = [r for r in h2 if r["gold_titles"]]
    fresh = [r for r in answerable if not set(r["gold_titles"]) & seen]
    assert len(fresh) >= 0.8 * len(answerable)


@pytest.mark.parametrize(
    ("name", "earlier"),
    [(HELDOUT3, ("dev", "heldout", HELDOUT2, "pool")), (HELDOUT4, ("dev", "heldout", HELDOUT2, HELDOUT3, "pool"))],
)
def test_later_untouched_sets_written_independently_of_every_earlier_set(name: str, earlier: tuple[str, ...]) -> None:
    """heldout-3 restates no question of dev, heldout, heldout-2 or the pool; heldout-4 none of those nor of heldout-3.
    Every sample paper is already asked about somewhere, so they reuse papers, but each for a fact no earlier file
    asks for: no detail question quotes a sentence another file quotes, no lookup targets a paper another file looks
    up, no multi repeats another file's gold list, no compare repeats another file's pair, no absent-study question
    repeats one verbatim."""
    norm = lambda s: re.sub(r"\W+", " ", s.lower()).strip()  # noqa: E731
    h3 = rows(name)
    assert len({norm(r["question"]) for r in h3}) == len(h3)
    others = [r for other in earlier for r in rows(other)]
    assert not {norm(r["question"]) for r in h3} & {norm(r["question"]) for r in others}
    assert not {r["qid"] for r in h3} & {r["qid"] for r in others}
    quoted = {e["quote"] for r in others for e in r["evidence"]}
    looked_up = {t for r in others if r["type"] == "lookup" for t in r["gold_titles"]}
    gold_sets = {(r["type"], frozenset(r["gold_titles"])) for r in others if r["type"] in ("multi", "compare")}
    for r in h3:
        if r["type"] == "detail":
            assert not {e["quote"] for e in r["evidence"]} & quoted, r["qid"]
        if r["type"] == "lookup":
            assert not set(r["gold_titles"]) & looked_up, r["qid"]
        if r["type"] in ("multi", "compare"):
            assert (r["type"], frozenset(r["gold_titles"])) not in gold_sets, r["qid"]
    # every type and unanswerable kind is present, and held-out papers stay gold for nothing (checked above)
    assert {r["type"] for r in h3} == set(MINIMUMS)
    assert {r.get("unanswerable_kind") for r in h3 if r["type"] == "unanswerable"} == {
        "near_miss", "absent_study", "off_topic"}
