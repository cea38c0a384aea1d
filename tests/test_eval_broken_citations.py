"""Real corpus abstracts: answers whose citations are shuffled across papers must score clearly
worse on citation precision and offline faithfulness than the same answers cited correctly.

Measured (the figures docs/evaluation.md states): on the fixed sample below (40 abstracts, seed 11, shift 7)
precision and faithfulness go from 1.0 to 0.0 with both judge modes; over 30 shuffles (seeds 0-9,
shifts 1/7/13) the lexical judge's worst is precision 0.05 and faithfulness 0.025 (mean precision
0.0175), the semantic judge's worst 0.025 / 0.0125."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from assistant.evaluation.judging import passage_text
from assistant.evaluation.offline_judge import OfflineJudge
from assistant.evaluation.questions import Question
from assistant.evaluation.scoring import score_answer, summarise_rows
from assistant.records import Paper, title_id
from assistant.settings import Settings
from assistant.text import sentences
from tests.conftest import SHARED

CORPUS = SHARED / "corpus" / "hf-papers-alignment"


def read_corpus() -> list[Paper]:
    """Simple parse of the HF Papers saves: an abstract is one long line, its title the line before."""
    found: dict[str, Paper] = {}
    for path in sorted(CORPUS.glob("*.txt")):
        lines = [x.strip() for x in path.read_text(encoding="utf-8").splitlines()]
        for i, line in enumerate(lines):
            if len(line) >= 300:
                title = next(x for x in reversed(lines[:i]) if x)
                found.setdefault(title_id(title), Paper(title_id(title), title, line))
    return sorted(found.values(), key=lambda p: p.paper_id)


@pytest.fixture(scope="module")
def papers() -> list[Paper]:
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present")
    found = read_corpus()
    assert len(found) == 247  # the corpus README's count of unique titles
    return random.Random(11).sample(found, 40)


def answer(paper: Paper, cited: Paper) -> dict[str, Any]:
    """Two sentences of the paper's abstract (one whole, one shortened), both citing ``cited``."""
    ss = sentences(paper.abstract)
    first = ss[1].rstrip(".")
    words = ss[-1].rstrip(".").split()
    second = " ".join(words[: max(8, int(len(words) * 0.7))])
    return {"answer": f"{first} [1]. {second} [1].", "refused": False,
            "citations": [{"marker": 1, "paper_id": cited.paper_id, "title": cited.title, "quote": None}],
            "sources": [{"rank": 1, "paper_id": cited.paper_id, "title": cited.title, "score": 1.0}],
            "timings_ms": {"total": 1.0}}


def run(papers: list[Paper], judge: OfflineJudge, shift: int) -> dict[str, Any]:
    passages = {p.paper_id: passage_text(p.title, p.abstract) for p in papers}
    rows = []
    for i, p in enumerate(papers):
        cited = papers[(i + shift) % len(papers)]
        q = Question(f"q{i}", "lookup", "?", [p.title], "", [])
        rows.append(score_answer(q, answer(p, cited), passages, judge))
    return summarise_rows(rows)


@pytest.mark.parametrize("mode", ["lexical", pytest.param("semantic", marks=pytest.mark.slow)])
def test_shuffled_citations_score_clearly_worse(papers: list[Paper], mode: str) -> None:
    embedder = None
    if mode == "semantic":
        from assistant.index.embeddings import get_embedder

        embedder = get_embedder(Settings.load(env={"ASSISTANT_CONFIG": ""}))
    judge = OfflineJudge(embedder=embedder)
    good = run(papers, judge, shift=0)
    broken = run(papers, judge, shift=7)  # every answer cites another question's paper
    assert good["citation_precision"] == 1.0 and good["faithfulness"] == 1.0
    assert broken["citation_precision"] == 0.0 and broken["faithfulness"] == 0.0
    assert good["support_score"] - broken["support_score"] >= 0.5
    assert broken["failed"] == len(papers) and good["failed"] == 0


@pytest.mark.slow
def test_broken_citations_stay_near_zero_over_many_shuffles() -> None:
    """The README's bound: over 30 shuffles no run keeps more than 0.05 precision / 0.025 faithfulness."""
    if not CORPUS.is_dir():
        pytest.skip(f"{CORPUS} not present")
    corpus = read_corpus()
    judge = OfflineJudge()
    precision, faithful = [], []
    for seed in range(10):
        sample = random.Random(seed).sample(corpus, 40)
        for shift in (1, 7, 13):
            s = run(sample, judge, shift)
            precision.append(s["citation_precision"])
            faithful.append(s["faithfulness"])
    assert len(precision) == 30
    assert max(precision) <= 0.05 and max(faithful) <= 0.025
    assert sum(precision) / len(precision) <= 0.02


def test_docs_state_the_tested_figures() -> None:
    page_path = Path(__file__).resolve().parents[1] / "docs" / "evaluation.md"
    page = " ".join(page_path.read_text(encoding="utf-8").split())
    assert "drops citation precision and faithfulness from 1.0 to 0.0 on the tested sample" in page
    assert "the worst run keeps precision 0.05 and faithfulness 0.025 with the lexical judge" in page
