"""The fitted extractive answerer: shipped weights, the fitting script, and answers shaped by the question."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assistant.answering import fit
from assistant.answering.features import QUESTION_FEATURES, SENTENCE_FEATURES, question_view
from assistant.answering.fitted import Decisions, FittedModel, LogReg, compose, shipped_model
from assistant.errors import AssistantError
from assistant.index.vectors import DateFilter
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[1]


def test_shipped_weights_load_and_round_trip() -> None:
    m = shipped_model()
    assert m.sentence.features == SENTENCE_FEATURES and m.answerable.features == QUESTION_FEATURES
    assert 0.0 < m.decisions.answer_threshold < 1.0
    # what the script writes is what the loader reads, field for field
    again = FittedModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    assert m.meta["fit"] == "fit.jsonl" and m.meta["validation"] == "validation.jsonl"
    assert m.meta["scifact_train_claims"] > 0


def test_a_model_file_for_other_features_is_refused_with_a_hint() -> None:
    d = shipped_model().to_dict()
    d["sentence"]["features"] = d["sentence"]["features"][:-1]
    with pytest.raises(AssistantError, match="re-run python -m assistant.answering.fit"):
        FittedModel.from_dict(d)


def test_logistic_regression_is_deterministic_and_learns_the_sign() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.1 * rng.normal(size=400) > 0).astype(float)
    w = np.ones(400)
    a = fit.fit_logreg(x, y, w, 1.0, ("a", "b", "c"))
    b = fit.fit_logreg(x, y, w, 1.0, ("a", "b", "c"))
    assert a == b
    assert a.coef[0] > 0 > a.coef[1] and abs(a.coef[2]) < abs(a.coef[1])
    # more regularisation, smaller weights
    strong = fit.fit_logreg(x, y, w, 10.0, ("a", "b", "c"))
    assert abs(strong.coef[0]) < abs(a.coef[0])
    assert a.prob([2.0, -1.0, 0.0]) > 0.9 > 0.1 > a.prob([-2.0, 1.0, 0.0])


def test_question_shapes() -> None:
    idf = lambda toks: {t: 2.0 for t in toks}  # noqa: E731
    q = question_view("How many attention heads does LoFiT modify?", idf)
    assert q is not None and q.quantity and not q.multi
    assert question_view("Which papers drop the reference model from preference optimisation?", idf).multi
    assert question_view("How does KTO compare with DPO?", idf).compare
    assert question_view("What is direct preference optimisation?", idf).what_is
    assert question_view("the of and", idf) is None


def test_fit_on_a_small_real_slice_is_reproducible(sample_home: Path, embed_cache: Path, tmp_path: Path) -> None:
    """The script's pipeline on real retrieval: labelled sentences, two fits, the same file twice."""
    from assistant.readers import read_paths

    asker = fit.Asker(make_settings(sample_home, embed_cache))
    by_title = {p.title: p.paper_id for p in read_paths([REPO / "assistant" / "data" / "sample"]).papers}
    train = fit.question_examples(asker, REPO / "evals" / "questions" / "fit.jsonl", by_title, limit=12)
    val = fit.question_examples(asker, REPO / "evals" / "questions" / "validation.jsonl", by_title, limit=6)
    assert sum(sum(e.labels) for e in train) >= 5, "evidence sentences must be found among retrieved ones"
    assert any(not e.answerable for e in train + val) or all(e.answerable for e in train + val)
    grid = {"l2_grid": (1.0,), "scifact_weights": (1.0,), "thresholds": (0.3, 0.5), "paper_thresholds": (0.5,),
            "second_ratios": (0.9,)}
    m1, info1 = fit.choose(train, val, **grid)
    m2, info2 = fit.choose(train, val, **grid)
    assert m1.to_dict() == m2.to_dict() and info1 == info2
    # fitted on evidence sentences: they outscore the other retrieved sentences on the slice
    pos = [m1.sentence.prob(c.features) for e in train for c, y in zip(e.cands, e.labels, strict=True) if y]
    neg = [m1.sentence.prob(c.features) for e in train for c, y in zip(e.cands, e.labels, strict=True) if not y]
    assert np.mean(pos) > np.mean(neg) + 0.2
    out = tmp_path / "m.json"
    out.write_text(json.dumps(FittedModel(m1.sentence, m1.answerable, m1.paper, m1.decisions, info1).to_dict()))
    assert FittedModel.from_dict(json.loads(out.read_text())).sentence == m1.sentence


def test_decisions_default_and_logreg_clamps() -> None:
    lr = LogReg(("x",), (0.0,), (1.0,), (100.0,), 0.0)
    assert lr.prob([1e6]) == pytest.approx(1.0) and lr.prob([-1e6]) == pytest.approx(0.0, abs=1e-12)
    assert Decisions().max_papers == 5


QUANTITY = ("With full KV cache only for retrieval heads and a constant-length cache for the rest, plus "
            "quantization, how long a context can Llama-3-8B decode on one A100?")


def test_fitted_answers_on_the_sample(sample_assistant) -> None:  # type: ignore[no-untyped-def]
    a = sample_assistant
    ans = a.ask(QUANTITY, backend="extractive")
    assert not ans.refused, ans.checks
    assert "3.3 million" in ans.text and ans.checks["answer_shape"] == "quantity"
    # a neighbouring paper's fact is no answer to a detail about a named method
    kto = a.ask("What GPU did the KTO paper use?", backend="extractive")
    assert kto.refused and kto.checks["refusal_reason"]
    assert "A800" not in kto.text
    multi = a.ask("Which papers drop the reference model from preference optimisation?", backend="extractive")
    assert not multi.refused and multi.checks["answer_shape"] == "multi"
    assert len({c.paper_id for c in multi.citations}) >= 2
    off = a.ask("What is the boiling point of the sauce in a carbonara recipe?", backend="extractive")
    assert off.refused and "refusal_reason" in off.checks and off.checks["answer_shape"] == "refused"


def test_model_file_setting_loads_a_refit_or_fails_in_one_line(tmp_path: Path) -> None:
    from assistant.answering.fitted import FittedAnswerer
    from assistant.settings import Settings

    d = shipped_model().to_dict()
    d["decisions"]["answer_threshold"] = 0.99
    good = tmp_path / "m.json"
    good.write_text(json.dumps(d))
    s = Settings.load(config_file="", env={}, home=tmp_path / "h")
    assert FittedAnswerer(s).model == shipped_model()
    assert FittedAnswerer(s.with_(extractive={"model_file": str(good)})).model.decisions.answer_threshold == 0.99
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    old = tmp_path / "old.json"
    d_old = shipped_model().to_dict()
    del d_old["paper"]
    old.write_text(json.dumps(d_old))
    for path, msg in ((bad, "not an extractive model file"), (tmp_path / "none.json", "cannot read"),
                      (old, "no paper model .written by an older version.; re-run")):
        with pytest.raises(AssistantError, match=msg) as err:
            FittedAnswerer(s.with_(extractive={"model_file": str(path)}))
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_to_dict_is_a_copy_the_cached_model_cannot_be_changed_through() -> None:
    d = shipped_model().to_dict()
    before = shipped_model().decisions.answer_threshold
    d["decisions"]["answer_threshold"] = 0.999
    d["meta"]["fit"] = "changed"
    assert shipped_model().decisions.answer_threshold == before and shipped_model().meta["fit"] == "fit.jsonl"


def test_cached_home_key_names_the_schema_and_the_data() -> None:
    a, b = fit.home_fingerprint(b"one"), fit.home_fingerprint(b"two")
    assert a != b and len(a) == 16 and a == fit.home_fingerprint(b"one")


SLICE_GRID = {"l2_grid": (1.0,), "scifact_weights": (1.0,), "thresholds": (0.3, 0.5), "paper_thresholds": (0.5,),
              "second_ratios": (0.9,)}


def _slice_model_text(home: Path, embed_cache: Path) -> str:
    """A fresh Asker (own PaperIndex, own Chroma client) on ``home``, a fit on a slice, the file's bytes."""
    from assistant.readers import read_paths

    asker = fit.Asker(make_settings(home, embed_cache))
    by_title = {p.title: p.paper_id for p in read_paths([REPO / "assistant" / "data" / "sample"]).papers}
    train = fit.question_examples(asker, REPO / "evals" / "questions" / "fit.jsonl", by_title, limit=16)
    val = fit.question_examples(asker, REPO / "evals" / "questions" / "validation.jsonl", by_title, limit=8)
    model, info = fit.choose(train, val, **SLICE_GRID)
    asker.index.close()
    return fit.model_text(FittedModel(model.sentence, model.answerable, model.paper, model.decisions, info))


def test_refit_from_scratch_is_byte_identical_even_on_a_rebuilt_index(sample_home: Path, embed_cache: Path,
                                                                       tmp_path: Path) -> None:
    """Fresh retrievals, and a second index built from the same papers (its HNSW graph differs):
    the fitted file is the same bytes."""
    from assistant.api import Assistant

    rebuilt = tmp_path / "rebuilt"
    a = Assistant(make_settings(rebuilt, embed_cache))
    a.auto_sample = False
    assert a.ingest([REPO / "assistant" / "data" / "sample"]).papers_total == 247
    a.index.close()
    first = _slice_model_text(sample_home, embed_cache)
    assert _slice_model_text(sample_home, embed_cache) == first
    assert _slice_model_text(rebuilt, embed_cache) == first


def test_exact_dense_search_is_the_brute_force_ranking(sample_home: Path, embed_cache: Path) -> None:
    asker = fit.Asker(make_settings(sample_home, embed_cache))
    r = asker.retriever
    qvec = r.embedder.embed_query("preference optimisation without a reference model")
    hits = r.dense_hits(qvec, 40, None)
    col = asker.index.vectors.collection()
    got = col.get(include=["embeddings"])
    mat = np.asarray(got["embeddings"], dtype=np.float64)
    sims = (mat / np.linalg.norm(mat, axis=1, keepdims=True)) @ (np.asarray(qvec, float) / np.linalg.norm(qvec))
    best = sorted(zip(got["ids"], sims, strict=True), key=lambda t: (-round(t[1], 6), t[0]))[:40]
    assert [h[0] for h in hits] == [cid for cid, _ in best]
    assert all(abs(h[2] - s) < 1e-6 for h, (_, s) in zip(hits, best, strict=True))
    # HNSW (what `ask` uses above retrieval.exact_search_max) finds the same best chunks; exact search
    # fixes the order of the tail
    assert [h[0] for h in asker.index.vectors.query(qvec, 40)][:5] == [h[0] for h in hits][:5]
    # a date filter keeps exactly the rows Chroma's filter keeps, in the exact order
    dates = DateFilter(20240101, 20240630)
    dated = set(col.get(where=dates.where())["ids"])
    assert 0 < len(dated) < len(got["ids"])
    filtered = r.dense_hits(qvec, 40, dates)
    assert [h[0] for h in filtered] == [cid for cid, _ in sorted(
        ((c, s) for c, s in zip(got["ids"], sims, strict=True) if c in dated),
        key=lambda t: (-round(t[1], 6), t[0]))][:40]
    asker.index.close()


def test_exact_sentence_search_is_the_brute_force_ranking(sample_home: Path, embed_cache: Path) -> None:
    """The fusion's third signal (each paper's best sentence) is exact in the fitting script too."""
    asker = fit.Asker(make_settings(sample_home, embed_cache))
    r = asker.retriever
    qvec = r.embedder.embed_query("how many attention heads does the method modify")
    hits = r.sentence_hits(qvec, 60, None)
    got = asker.index.vectors.sentences.collection().get(include=["embeddings", "metadatas"])
    assert len(got["ids"]) > 2000
    mat = np.asarray(got["embeddings"], dtype=np.float64)
    sims = (mat / np.linalg.norm(mat, axis=1, keepdims=True)) @ (np.asarray(qvec, float) / np.linalg.norm(qvec))
    best = sorted(zip(got["ids"], got["metadatas"], sims, strict=True), key=lambda t: (-round(t[2], 6), t[0]))[:60]
    assert [(h[0], h[1], h[2]) for h in hits] == [(m["paper_id"], m["start"], m["end"]) for _, m, _ in best]
    assert all(abs(h[3] - s) < 1e-6 for h, (_, _, s) in zip(hits, best, strict=True))
    assert [h[:3] for h in asker.index.vectors.sentences.query(qvec, 60)][:5] == [h[:3] for h in hits][:5]
    asker.index.close()


def test_check_passes_on_the_refit_and_fails_in_one_line_when_the_file_is_perturbed(
        embed_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "bench-cache"
    cache.mkdir()
    (cache / "embed-cache").symlink_to(embed_cache, target_is_directory=True)
    out = tmp_path / "extractive.json"
    args = ["--limit", "10", "--scifact-train", "0", "--cache", str(cache), "--out", str(out)]
    assert fit.main(args) == 0
    capsys.readouterr()
    assert fit.main([*args, "--check"]) == 0
    assert "reproduced byte for byte" in capsys.readouterr().out
    good = out.read_text()
    d = json.loads(good)
    d["answerable"]["coef"][2] += 0.001
    out.write_text(json.dumps(d, indent=1, sort_keys=True) + "\n")
    assert fit.main([*args, "--check"]) == 1
    msg = capsys.readouterr().out.strip()
    assert "\n" not in msg and "1 of" in msg and "answerable.coef[2]" in msg and "0.001" in msg
    out.write_text(good.replace(" ", "  "))
    assert fit.main([*args, "--check"]) == 1
    assert "formatting" in capsys.readouterr().out
    # A bad line in a question file: one line naming the file, the line and what is wrong; nothing written.
    rows = (REPO / "evals" / "questions" / "fit.jsonl").read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    for broken, why in ((json.dumps({"qid": "x", "question": "q?"}), "missing field(s) gold_titles"),
                        (rows[1].replace(json.loads(rows[1])["gold_titles"][0], "No Such Paper"),
                         "not in the indexed sample: ['No Such Paper']"),
                        ("{not json", "not valid JSON")):
        bad.write_text(rows[0] + "\n" + broken + "\n")
        assert fit.main([*args, "--fit", str(bad)]) == 2, why
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {bad}:2: ") and why in err and "\n" not in err
    assert out.read_text() == good.replace(" ", "  ")


def test_statements_are_checked_as_claims_with_their_own_threshold() -> None:
    """A claim is a sentence ending with a full stop that asks nothing; everything else is a question."""
    from assistant.answering.features import is_claim, question_view

    idf = lambda toks: {t: 2.0 for t in toks}  # noqa: E731
    for text in ("Aspirin lowers the risk of colorectal cancer.", "Linear attention matches softmax attention.",
                 "JMJD6 slows the hydroxylation of C-terminal lysine (Smith et al.)"):
        v = question_view(text, idf)
        assert v is not None and v.claim and is_claim(text), text
    for text in ("Does aspirin lower the risk of colorectal cancer", "Which papers use DPO?",
                 "aspirin and colorectal cancer?", "List papers on linear attention.", "I'm looking for LoRA work.",
                 # chat appends the topic after a follow-up's question mark
                 "and what loss does it use? (ARRA: LLM-based text-to-image generation)",
                 "It uses an MSE loss. (ARRA)",
                 # keyword queries, requests after a filler, a claim typed without its full stop
                 "ARRA loss", "Papers on token-level DPO", "Please list papers on DPO.", "Ok, so what is DPO.",
                 "In which paper is token-level DPO proposed", "Linear attention matches softmax attention"):
        v = question_view(text, idf)
        assert v is not None and not v.claim and not is_claim(text), text


def test_no_sample_question_reads_as_a_claim() -> None:
    """The claim models (and a refit of them alone) cannot change any sample set's answers: none of the
    questions over the sample, in any file, reads as a claim. SciFact's claims do (1,362 of 1,409)."""
    from assistant.answering.features import is_claim

    files = sorted((REPO / "evals" / "questions").glob("*.jsonl"))
    questions = [json.loads(x)["question"] for f in files for x in f.read_text().splitlines() if x.strip()]
    assert len(files) >= 8 and len(questions) >= 450
    assert [q for q in questions if is_claim(q)] == []


def test_claim_threshold_decides_for_claims_only(sample_assistant) -> None:  # type: ignore[no-untyped-def]
    from assistant.answering.fitted import answer

    m = shipped_model()
    asst = sample_assistant
    claim = "DuoAttention decodes 3.3 million tokens of context with Llama-3-8B on a single A100 GPU."
    question = "How long a context can Llama-3-8B decode on one A100 with DuoAttention?"
    r_c, r_q = asst.retriever.retrieve(claim), asst.retriever.retrieve(question)
    idf = asst.index.lexical().idf
    shut_claims = dataclasses.replace(m, decisions=dataclasses.replace(m.decisions, claim_threshold=1.0))
    shut_questions = dataclasses.replace(m, decisions=dataclasses.replace(m.decisions, answer_threshold=1.0))
    c_open = answer(claim, r_c.sources, idf, r_c.chunk_sims, shut_questions, r_c.sentence_sims)
    assert not c_open.refused and c_open.checks["checked_as"] == "claim" and "3.3 million" in c_open.text
    c_shut = answer(claim, r_c.sources, idf, r_c.chunk_sims, shut_claims, r_c.sentence_sims)
    assert c_shut.refused and "< 1.00" in c_shut.reason
    q_open = answer(question, r_q.sources, idf, r_q.chunk_sims, shut_claims, r_q.sentence_sims)
    assert not q_open.refused and "checked_as" not in q_open.checks
    assert answer(question, r_q.sources, idf, r_q.chunk_sims, shut_questions, r_q.sentence_sims).refused


def test_evaluate_reports_citation_recall_of_which_papers_answers(sample_assistant) -> None:  # type: ignore[no-untyped-def]
    """``evaluate`` (what the fitting script chooses by) counts gold papers cited, so a list that names
    one of three gold papers scores 1/3 however precise it is."""
    from assistant.answering.features import candidates
    from assistant.answering.features import question_view as view_of

    asst = sample_assistant
    q = "Which papers propose linear attention methods?"
    r = asst.retriever.retrieve(q)
    view = view_of(q, asst.index.lexical().idf)
    m = shipped_model()
    cands = candidates(view, r.sources, r.chunk_sims, m.decisions.max_papers, r.sentence_sims)
    ids = [s.paper.paper_id for s in r.sources]
    ex = fit.Example("t", "sample", view, list(r.sources), cands, [0] * len(cands), True, ids[:3], {})
    only_best = dataclasses.replace(m.decisions, paper_threshold=1.01)
    got = fit.evaluate(m, [ex], only_best)
    assert got["citation_recall"] == pytest.approx(1 / 3) and got["citation_precision"] == 1.0



def test_claim_models_are_a_second_stage_that_leaves_questions_alone(sample_home: Path, embed_cache: Path) -> None:
    """Statements in the training data get their own sentence and answerability models in a second
    stage; the question models and the question decisions are exactly what the first stage chose."""
    from assistant.readers import read_paths

    asker = fit.Asker(make_settings(sample_home, embed_cache))
    by_title = {p.title: p.paper_id for p in read_paths([REPO / "assistant" / "data" / "sample"]).papers}
    train = fit.question_examples(asker, REPO / "evals" / "questions" / "fit.jsonl", by_title, limit=12)
    val = fit.question_examples(asker, REPO / "evals" / "questions" / "validation.jsonl", by_title, limit=6)
    rows = [json.loads(x) for x in (REPO / "evals" / "questions" / "fit.jsonl").read_text().splitlines()[12:40]]

    def claims(rs: list[dict]) -> list[fit.Example]:
        out = []
        for r in rs:
            if r["evidence"]:  # the evidence sentence itself, stated: answerable by its paper
                e = r["evidence"][0]
                if e["quote"].lower().startswith(("when", "how", "what", "which")) or not e["quote"].endswith("."):
                    continue  # reads as a question (a claim ends with a full stop and opens with no question word)
                out.append(asker.example(r["qid"], "scifact", e["quote"], [by_title[e["title"]]],
                                         {by_title[e["title"]]: [e["quote"]]}, True))
            else:  # the unanswerable question turned into a statement
                out.append(asker.example(r["qid"], "scifact", "It is reported that " + r["question"].rstrip("?") + ".",
                                         [], {}, False))
        return out

    made = claims(rows)
    assert all(e.view is not None and e.view.claim for e in made)
    assert all(e.view is not None and not e.view.claim for e in train + val)
    grid = {"l2_grid": (1.0,), "scifact_weights": (1.0,), "thresholds": (0.3, 0.5), "paper_thresholds": (0.5,),
            "second_ratios": (0.9,)}
    assert fit.choose(train, val, **grid)[0].claim_sentence is None  # no statements, no claim models
    plain, _ = fit.choose(train + made[:18], val, scifact_validation=made[18:], claim_models=False, **grid)
    assert plain.claim_sentence is None and plain.claim_answerable is None
    both, info = fit.choose(train + made[:18], val, scifact_validation=made[18:], **grid)
    assert both.claim_sentence is not None and both.claim_answerable is not None
    assert both.claim_sentence != both.sentence
    assert (both.sentence, both.answerable, both.paper) == (plain.sentence, plain.answerable, plain.paper)
    d1, d2 = dataclasses.asdict(plain.decisions), dataclasses.asdict(both.decisions)
    assert {k: v for k, v in d1.items() if k != "claim_threshold"} == {k: v for k, v in d2.items()
                                                                         if k != "claim_threshold"}
    assert both.decisions.claim_threshold in grid["thresholds"] and "claims_l2_sentence" in info
    again = FittedModel.from_dict(json.loads(fit.model_text(both)))
    assert again.claim_sentence == both.claim_sentence and again.claim_answerable == both.claim_answerable
    # Absent studies (here: unanswerable questions of the fit set stated as claims, which must be refused)
    # join the claim stage alone, and are measured apart.
    every = [json.loads(x) for x in (REPO / "evals" / "questions" / "fit.jsonl").read_text().splitlines()]
    absent = [dataclasses.replace(e, qid=e.qid + fit.ABSENT_SUFFIX)
              for e in claims([r for r in every if not r["evidence"]][:12])]
    assert len(absent) == 12 and not any(e.answerable for e in absent)
    more, info2 = fit.choose(train + made[:18], val, scifact_validation=made[18:], absent=absent, **grid)
    assert (more.sentence, more.answerable, more.paper) == (plain.sentence, plain.answerable, plain.paper)
    d3 = dataclasses.asdict(more.decisions)
    assert {k: v for k, v in d1.items() if k != "claim_threshold"} == {k: v for k, v in d3.items()
                                                                         if k != "claim_threshold"}
    assert more.claim_answerable != both.claim_answerable
    assert info2["absent_claims"] == len(absent) and info2["claims"] == info["claims"]
    assert "absent_refused" in info2["claims_cross_validation_measures"]  # (made claims all have evidence)

    # The two kinds of claim to refuse are counted apart: absent studies by their qid, the rest of the
    # unanswerable claims as "no evidence" (here: answerable statements relabelled, mostly answered).
    no_evidence = [dataclasses.replace(e, answerable=False) for e in made if e.answerable][:8]
    mixed = [*absent, *no_evidence, *[e for e in made if e.answerable][8:12]]
    d = more.decisions
    for ex in mixed:
        for c in ex.cands:
            c.score = more.claim_sentence.prob(c.features)  # type: ignore[union-attr]

    def refused(exs: list[fit.Example]) -> float:
        return sum(compose(more, e.view, e.sources, e.cands, d).refused for e in exs) / len(exs)

    m = fit._claim_measures(more, mixed, d)
    assert m["absent_refused"] == pytest.approx(refused(absent))
    assert m["no_evidence_refused"] == pytest.approx(refused(no_evidence))
    assert m["absent_refused"] != m["no_evidence_refused"]  # else a mix-up would go unseen
    assert m["unanswerable_refused"] == pytest.approx(refused([*absent, *no_evidence]))


def test_mean_measures_skip_folds_without_a_kind() -> None:
    per_fold = [{"quote": 0.5, "absent_refused": 1.0}, {"quote": 0.7}, {"quote": 0.6, "absent_refused": 0.5}]
    assert fit.mean_measures(per_fold) == pytest.approx({"quote": 0.6, "absent_refused": 0.75})


def test_claim_folds_keep_an_absent_study_with_its_claim() -> None:
    """The same claim asked with and without its paper indexed is judged in one fold, never fitted on
    one index and judged on the other."""
    def ex(qid: str) -> fit.Example:
        return fit.Example(qid, "scifact", None, [], [], [], True, [], {})

    claims = [ex(f"sf-train-{i}") for i in range(10)]
    absent = [ex("sf-train-7" + fit.ABSENT_SUFFIX), ex("sf-train-2" + fit.ABSENT_SUFFIX),
              ex("sf-train-99" + fit.ABSENT_SUFFIX)]
    folds = fit.claim_folds(claims, absent)
    assert [folds[f"sf-train-{i}"] for i in range(10)] == [i % fit.CLAIM_FOLDS for i in range(10)]
    assert folds["sf-train-7:absent"] == folds["sf-train-7"] and folds["sf-train-2:absent"] == folds["sf-train-2"]
    assert folds["sf-train-99:absent"] == 2 % fit.CLAIM_FOLDS  # its claim is not in the pool: its own turn


def test_claims_are_scored_by_the_claim_models(sample_assistant) -> None:  # type: ignore[no-untyped-def]
    from assistant.answering.features import question_view
    from assistant.answering.fitted import score

    m = shipped_model()
    assert m.claim_sentence is not None and m.claim_answerable is not None  # the shipped file has them
    asst = sample_assistant
    idf = asst.index.lexical().idf
    claim = "DuoAttention decodes 3.3 million tokens of context with Llama-3-8B on a single A100 GPU."
    r = asst.retriever.retrieve(claim)
    view = question_view(claim, idf)
    assert view is not None and view.claim
    cands = score(m, view, r.sources, r.chunk_sims, r.sentence_sims)
    assert [c.score for c in cands] == [m.claim_sentence.prob(c.features) for c in cands]
    assert any(c.score != m.sentence.prob(c.features) for c in cands)
    no_claims = dataclasses.replace(m, claim_sentence=None, claim_answerable=None)
    assert [c.score for c in score(no_claims, view, r.sources, r.chunk_sims, r.sentence_sims)] == \
        [m.sentence.prob(c.features) for c in cands]


def _first_logreg(d: dict[str, Any]) -> dict[str, Any] | None:
    """The first logistic model (a dict with ``features``) in a model file, depth first."""
    if "features" in d:
        return d
    return next((f for v in d.values() if isinstance(v, dict) and (f := _first_logreg(v)) is not None), None)


SHIPPED_MODELS = [("extractive.json", "python -m assistant.answering.fit"),
                  ("verify.json", "python -m assistant.answering.fit_verify"),
                  *[(f"profiles/{p.name}", "assistant eval calibrate-llm")
                    for p in sorted((REPO / "assistant" / "answering" / "models" / "profiles").glob("*.json"))]]


@pytest.mark.parametrize("corruption", ["renamed feature", "missing intercept"])
@pytest.mark.parametrize(("name", "refit"), SHIPPED_MODELS)
def test_a_corrupted_model_file_names_itself_and_the_command_that_refits_it(tmp_path: Path, name: str, refit: str,
                                                                            corruption: str) -> None:
    """Each shipped model JSON comes from its own fitting command; a bad copy's error names the file and
    that command (it used to send every file, verify.json and profiles too, to ``answering.fit``)."""
    from assistant.answering.calibration import find_profile
    from assistant.answering.fitted import load_model
    from assistant.answering.stance import load_verify_model

    assert len(SHIPPED_MODELS) >= 4
    if refit.startswith("python -m "):
        assert importlib.util.find_spec(refit.removeprefix("python -m ")) is not None  # the command exists
    data = json.loads((REPO / "assistant" / "answering" / "models" / name).read_text(encoding="utf-8"))
    lr = _first_logreg(data)
    assert lr is not None
    if corruption == "renamed feature":
        lr["features"] = [*lr["features"][:-1], "renamed"]
    else:
        del lr["intercept"]
    path = tmp_path / Path(name).name
    path.write_text(json.dumps(data), encoding="utf-8")
    load = {"extractive.json": load_model, "verify.json": load_verify_model}.get(
        name, lambda p: find_profile("any-model", str(p)))
    with pytest.raises(AssistantError) as err:
        load(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert msg.endswith(f"; re-run {refit}"), msg
