"""SciFact -> question set: hand-made claims (including two papers titled "Summary"), then the
real files when ../shared/scifact is present."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.evaluation import load_questions
from assistant.evaluation.metrics import GoldMatcher, retrieval_scores
from assistant.evaluation.scifact import (
    absent_corpus,
    absent_studies,
    convert,
    corpus_slice,
    without_documents,
    write_jsonl,
)
from tests.conftest import SCIFACT

REPO = Path(__file__).resolve().parents[1]

CORPUS = [
    {"id": "1", "title": "Summary", "abstract": "A. B. C.", "sentences": ["A.", "B.", "C."], "structured": False},
    {"id": "2", "title": "Summary", "abstract": "D. E.", "sentences": ["D.", "E."], "structured": False},
    {"id": "3", "title": "Aspirin and stroke", "abstract": "F. G.", "sentences": ["F.", "G."], "structured": False},
    {"id": "4", "title": "Distractor one", "abstract": "H.", "sentences": ["H."], "structured": False},
    {"id": "5", "title": "Distractor two", "abstract": "I.", "sentences": ["I."], "structured": False},
]
CLAIMS = [
    {"qid": "sf-dev-7", "split": "dev", "id": 7, "claim": "Claim seven.", "gold_ids": ["2"], "no_evidence": False,
     "labels": {"2": "SUPPORT"}, "rationales": {"2": [[1]]}, "cited_ids": ["2", "4"]},
    {"qid": "sf-dev-8", "split": "dev", "id": 8, "claim": "Claim eight.", "gold_ids": ["1", "3"],
     "no_evidence": False, "labels": {"1": "CONTRADICT", "3": "SUPPORT"}, "rationales": {"1": [[2, 0], [0]],
                                                                                        "3": [[1]]},
     "cited_ids": ["1", "3"]},
    {"qid": "sf-dev-9", "split": "dev", "id": 9, "claim": "Claim nine.", "gold_ids": ["3"], "no_evidence": True,
     "labels": {}, "rationales": {}, "cited_ids": ["3"]},
    {"qid": "sf-train-1", "split": "train", "id": 1, "claim": "Train claim.", "gold_ids": ["1"],
     "no_evidence": False, "labels": {"1": "SUPPORT"}, "rationales": {"1": [[0]]}, "cited_ids": ["1"]},
]


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    claims, corpus = tmp_path / "claims.jsonl", tmp_path / "corpus.jsonl"
    write_jsonl(CLAIMS, claims)
    write_jsonl(CORPUS, corpus)
    return claims, corpus


def test_claims_become_questions(files: tuple[Path, Path], tmp_path: Path) -> None:
    qs, corpus = convert(*files, split="dev")
    assert [q["qid"] for q in qs] == ["sf-dev-7", "sf-dev-8", "sf-dev-9"]
    seven, eight, nine = qs
    assert seven["type"] == "lookup" and seven["question"] == "Claim seven."
    assert seven["gold_titles"] == ["Summary"] and seven["gold_ids"] == ["2"]
    assert seven["evidence"] == [{"title": "Summary", "quote": "E."}] and seven["answer"] == "E."
    assert eight["type"] == "multi" and eight["gold_titles"] == ["Summary", "Aspirin and stroke"]
    # Rationale sentences in document order, each once, exactly as in "sentences".
    assert [e["quote"] for e in eight["evidence"]] == ["A.", "C.", "G."]
    assert eight["scifact"]["labels"] == {"1": "CONTRADICT", "3": "SUPPORT"}
    assert nine["gold_ids"] == ["3"] and nine["evidence"] == [] and nine["answer"] == ""
    # The written set loads with the standard loader; gold_ids stay as an extra field.
    out = tmp_path / "q.jsonl"
    write_jsonl(qs, out)
    loaded = load_questions(out)
    assert loaded[0].gold_ids == ["2"] and loaded[1].extra["scifact"]["split"] == "dev"
    assert convert(*files, split="dev", evidence_only=True)[0][-1]["qid"] == "sf-dev-8"
    assert [q["qid"] for q in convert(*files, split="train")[0]] == ["sf-train-1"]


def test_ids_tell_the_two_summary_papers_apart(files: tuple[Path, Path]) -> None:
    qs, _ = convert(*files, split="dev")
    seven = qs[0]
    m = GoldMatcher(seven["gold_titles"], seven["gold_ids"])
    wrong_summary = [{"rank": 1, "paper_id": "1", "title": "Summary"}, {"rank": 2, "paper_id": "2", "title": "Summary"}]
    assert retrieval_scores(wrong_summary, m) == {"hit_at_1": 0.0, "hit_at_k": 1.0, "mrr": 0.5, "recall_at_k": 1.0}
    by_title = GoldMatcher(seven["gold_titles"])
    assert retrieval_scores(wrong_summary, by_title)["hit_at_1"] == 1.0  # what title matching would get wrong


def test_limit_is_a_seeded_sample_and_slice_is_deterministic(files: tuple[Path, Path]) -> None:
    a, corpus = convert(*files, split="dev", limit=2, seed=1)
    b, _ = convert(*files, split="dev", limit=2, seed=1)
    assert [q["qid"] for q in a] == [q["qid"] for q in b] and len(a) == 2
    assert [q["qid"] for q in a] == sorted((q["qid"] for q in a), key=lambda x: int(x.split("-")[-1]))
    docs = corpus_slice(a, corpus, others=1, seed=3)
    wanted = {g for q in a for g in q["gold_ids"] + q["scifact"]["cited_ids"]}
    ids = [d["id"] for d in docs]
    assert wanted <= set(ids) and len(ids) == len(wanted) + 1
    assert ids == [d["id"] for d in corpus_slice(a, corpus, others=1, seed=3)]
    assert ids == sorted(ids, key=[c["id"] for c in CORPUS].index)


def test_bad_inputs(files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match="test claims have no labels"):
        convert(*files, split="test")
    claims = tmp_path / "bad.jsonl"
    write_jsonl([dict(CLAIMS[0], gold_ids=["99"])], claims)
    with pytest.raises(InputError, match=r"bad\.jsonl:1: gold document\(s\) \['99'\] not in the corpus"):
        convert(claims, files[1], split="dev")
    write_jsonl([dict(CLAIMS[0], rationales={"2": [[5]]})], claims)
    with pytest.raises(InputError, match="rationale sentence 5 outside document 2"):
        convert(claims, files[1], split="dev")


def test_script_writes_questions_and_corpus_slice(files: tuple[Path, Path], tmp_path: Path) -> None:
    out, slice_out = tmp_path / "q.jsonl", tmp_path / "slice.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "evals" / "scifact_to_questions.py"), str(files[0]),
                           str(files[1]), "--split", "dev", "--out", str(out), "--corpus-out", str(slice_out),
                           "--others", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "wrote 3 questions" in proc.stdout
    assert len(load_questions(out)) == 3
    assert len(slice_out.read_text().splitlines()) == 5  # docs 1-4 cited, plus the one distractor left
    proc = subprocess.run([sys.executable, str(REPO / "evals" / "scifact_to_questions.py"), str(files[0]),
                           str(tmp_path / "none.jsonl"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and "none.jsonl: file not found" in proc.stderr


@pytest.mark.skipif(not (SCIFACT / "claims.jsonl").exists(), reason="../shared/scifact not present")
def test_real_scifact_dev_split() -> None:
    qs, corpus = convert(SCIFACT / "claims.jsonl", SCIFACT / "corpus.jsonl", split="dev")
    assert len(qs) == 300
    assert sum(q["type"] == "multi" for q in qs) > 0 and sum(q["type"] == "lookup" for q in qs) > 200
    with_evidence = [q for q in qs if not q["scifact"]["no_evidence"]]
    assert len(with_evidence) == 188
    by_title = {}
    for d in corpus.values():
        by_title.setdefault(d["title"], []).append(d)
    for q in with_evidence:
        assert q["evidence"]
        for e in q["evidence"]:
            assert any(e["quote"] in d["sentences"] for d in by_title[e["title"]])
    assert sum(len(v) > 1 for v in by_title.values()) >= 1  # duplicate titles exist: ids are needed
    sample = [json.loads(json.dumps(q)) for q in qs[:5]]
    assert all(q["gold_ids"] for q in sample)


def test_absent_studies_hold_out_every_paper_a_chosen_claim_cites(files: tuple[Path, Path]) -> None:
    claims, corpus = files
    # Every third claim WITH evidence of a split, in file order: sf-dev-7 (first), not sf-dev-8
    # (second); sf-dev-9 has no evidence. sf-train-1 is the first of train.
    dev, gone_dev = absent_studies(claims, "dev")
    train, gone_train = absent_studies(claims, "train")
    assert [c["qid"] for c in dev] == ["sf-dev-7"] and [c["qid"] for c in train] == ["sf-train-1"]
    assert gone_dev == {"2", "4"}  # sf-dev-7's gold and its cited-without-evidence paper
    assert gone_train == {"1"}  # the train index keeps every paper only dev claims cite
    chosen, data = absent_corpus(claims, corpus, "dev")
    kept = [json.loads(x) for x in data.decode().splitlines()]
    assert chosen == dev and [d["id"] for d in kept] == ["1", "3", "5"] and kept[1] == CORPUS[2]
    assert absent_corpus(claims, corpus, "dev")[1] == data  # same input, same bytes: one cached index
    with pytest.raises(InputError, match="split 'test'"):
        absent_studies(claims, "test")


@pytest.mark.parametrize(("record", "why"), [
    ({"qid": "x", "split": "dev"}, "needs 'qid' and 'claim'"),
    ({"claim": "C.", "split": "dev"}, "needs 'qid' and 'claim'"),
    ({"qid": "x", "claim": "C.", "split": "dev", "rationales": [[0]]}, "'rationales' must be an object"),
    ({"qid": "x", "claim": "C.", "split": "dev", "rationales": {"1": [[0]]}, "cited_ids": "1"},
     "'cited_ids' a list"),
])
def test_absent_studies_bad_input_names_the_line(tmp_path: Path, record: dict, why: str) -> None:
    claims = tmp_path / "claims.jsonl"
    claims.write_text(json.dumps(CLAIMS[0]) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(InputError, match=r"claims\.jsonl:2: .*" + re.escape(why)):
        absent_studies(claims, "dev")


def test_without_documents_bad_input_names_the_line(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(CORPUS[0]) + "\n{\"title\": \"no id\"}\n")
    with pytest.raises(InputError, match=r"corpus\.jsonl:2: a corpus record needs 'id'"):
        without_documents(corpus, {"1"})


@pytest.mark.skipif(not (SCIFACT / "claims.jsonl").exists(), reason="../shared/scifact not present")
def test_real_scifact_absent_studies() -> None:
    """Train claims teach the claim models to refuse absent studies, dev ones are only measured, each
    split over its own index: the one the models learn from keeps every paper only dev claims cite."""
    train, gone_train = absent_studies(SCIFACT / "claims.jsonl", "train")
    dev, gone_dev = absent_studies(SCIFACT / "claims.jsonl", "dev")
    assert len(train) == 169 and len(dev) == 63  # of 505 and 188 with evidence
    assert {c["split"] for c in train} == {"train"} and {c["split"] for c in dev} == {"dev"}
    all_claims = [json.loads(x) for x in (SCIFACT / "claims.jsonl").read_text().splitlines()]
    dev_only = {str(i) for c in all_claims if c["split"] == "dev" for i in c["cited_ids"]} - {
        str(i) for c in all_claims if c["split"] == "train" for i in c["cited_ids"]}
    assert dev_only and not gone_train & dev_only
    _, data = absent_corpus(SCIFACT / "claims.jsonl", SCIFACT / "corpus.jsonl", "dev")
    kept = {str(json.loads(x)["id"]) for x in data.decode().splitlines()}
    assert len(kept) == 5183 - len(gone_dev) and not kept & gone_dev
    for c in dev:  # no chosen claim's own paper is left to answer it
        assert not kept & {str(i) for i in [*c["cited_ids"], *c["rationales"]]}
