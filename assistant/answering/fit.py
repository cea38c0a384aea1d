"""Refit the extractive answerer's models: ``python -m assistant.answering.fit [--out FILE]``.

Labelled data (nothing else is read):
  * ``evals/questions/fit.jsonl`` asked over the bundled sample minus ``holdout_papers.txt``:
    a retrieved sentence is positive when it is a gold paper's evidence quote; answerable =
    has gold papers (unanswerable ones are near misses and absent studies);
  * SciFact TRAIN claims over the SciFact corpus (``../shared/scifact``): rationale sentences
    positive, the other retrieved sentences negative; claims without evidence unanswerable;
  * absent studies: every third SciFact train claim with evidence asked again over the corpus
    without the papers it cites (unanswerable; the claim models' data only).
Regularisation and the answer thresholds are chosen on ``evals/questions/validation.jsonl``
plus every 4th of the SciFact train claims, held out of fitting (never on heldout or SciFact dev).
The three logistic regressions (sentence, answerability, paper) are fitted with numpy (Newton
steps, fixed order, rounded output).
A refit from scratch writes the shipped file byte for byte (``--check`` verifies it): dense
retrieval here is an exact search over the stored chunk vectors (Chroma's HNSW graph is rebuilt
nondeterministically each time a collection below its sync threshold is opened, and differs
between index builds), and similarities are rounded before they become features.

Indexed homes are cached under ``~/.cache/paper-assistant-bench/<kind>-<fingerprint>`` with the
same key ``benchmarks/answer_quality.py`` uses (data, index settings, index code), so the two
share one home and only the first run after a change ingests.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..evaluation.scifact import default_dir
from ..records import Source
from ..retrieval import HybridRetriever
from .features import (
    PAPER_FEATURES,
    QUESTION_FEATURES,
    SENTENCE_FEATURES,
    Candidate,
    QuestionView,
    candidates,
    paper_features,
    question_features,
)
from .features import question_view as make_view
from .fitted import MODEL_FILE, Decisions, FittedModel, LogReg, compose, named_pool

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = REPO / "evals" / "questions"
SAMPLE = REPO / "assistant" / "data" / "sample"
SCIFACT = default_dir(REPO)
CACHE = Path.home() / ".cache" / "paper-assistant-bench"
OUT = Path(__file__).resolve().parent / "models" / MODEL_FILE
MAX_PAPERS = Decisions().max_papers
RETRIEVALS: dict[str, dict[str, Any]] = {}
"""Home -> question -> retrieval result (saved by ``--retrieval-cache``)."""


@dataclass
class Example:
    """One question's retrieved evidence, with labels."""

    qid: str
    source: str
    """'sample' or 'scifact'."""
    view: QuestionView | None
    sources: list[Source]
    cands: list[Candidate]
    labels: list[int]
    answerable: bool
    gold: list[str]
    evidence: dict[str, list[tuple[int, int]]]
    """Gold paper id -> evidence spans in its abstract."""


# -- labelled data ---------------------------------------------------------------------------


INDEX_CODE = ("assistant/index", "assistant/readers", "assistant/text.py")
"""Code that decides what an index holds (readers, chunking, embedding, store, tokenizer): part of the key."""


def home_fingerprint(*parts: bytes) -> str:
    """Key of a cached home: the indexed source bytes, the index settings (embedding model, chunking,
    sentence vectors...) and the source of the code that builds an index, so a change to any of them
    builds a fresh home. ``benchmarks/answer_quality.py`` uses this same key."""
    from ..settings import Settings

    index_settings = Settings.load(config_file="", env={}).public_dict().get("index", {})
    h = hashlib.sha256(json.dumps(index_settings, sort_keys=True, default=str).encode())
    for rel in INDEX_CODE:
        root = REPO / rel
        for f in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            h.update(f.relative_to(REPO).as_posix().encode() + b"\0" + f.read_bytes())
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def _settings(home: Path, cache: Path) -> Any:
    from ..settings import Settings

    return Settings.load(config_file="", env={}, home=home, cache_dir=cache / "embed-cache")


def _home(kind: str, data: bytes, src: Path | None, cache: Path) -> Path:
    """A home with ``data`` indexed (reused while its fingerprint holds)."""
    from ..index.ingest import ingest
    from ..index.paper_index import PaperIndex

    home = cache / f"{kind}-{home_fingerprint(data)}"
    if (home / "READY").exists():
        return home
    home.mkdir(parents=True, exist_ok=True)
    if src is None:
        src = home / "corpus.jsonl"
        src.write_bytes(data)
    t = time.perf_counter()
    ingest(PaperIndex(_settings(home, cache)), [src])
    print(f"indexed {kind} into {home} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    (home / "READY").write_text("ok\n")
    return home


EXACT_ALL = 10**12
"""``retrieval.exact_search_max`` for fitting: every collection (SciFact's too) is searched exactly."""


class Asker:
    """Retrieval over one home as ``Assistant.ask`` runs it (same settings, same index), every dense
    step exact whatever the collection's size (``ask`` is exact up to ``retrieval.exact_search_max``;
    HNSW answers differ between opens of a collection and between index builds, which made refits differ)."""

    def __init__(self, settings: Any) -> None:
        from ..index.embeddings import get_embedder
        from ..index.paper_index import PaperIndex

        self.index = PaperIndex(settings.with_(retrieval={"exact_search_max": EXACT_ALL}))
        self.retriever = HybridRetriever(self.index, get_embedder(self.index.settings))
        self.idf = self.index.lexical().idf
        self.memo: dict[str, Any] = RETRIEVALS.setdefault(str(settings.home), {})
        """Question -> retrieval result, kept by ``--retrieval-cache`` so a feature change refits fast."""

    def example(self, qid: str, kind: str, question: str, gold: list[str],
                evidence: dict[str, list[str]], answerable: bool) -> Example:
        res = self.memo.get(question)
        if res is None:
            res = self.memo[question] = self.retriever.retrieve(question)
        view = make_view(question, self.idf)
        cands = (candidates(view, res.sources, res.chunk_sims, MAX_PAPERS, getattr(res, "sentence_sims", None))
                 if view and res.sources else [])
        spans: dict[str, list[tuple[int, int]]] = {}
        abstracts = {s.paper.paper_id: s.paper.abstract for s in res.sources}
        for pid, quotes in evidence.items():
            if pid in abstracts:
                spans[pid] = [sp for q in quotes if (sp := _locate(q, abstracts[pid])) is not None]
        labels = []
        for c in cands:
            pid = res.sources[c.source_index].paper.paper_id
            labels.append(int(any(_overlaps((c.start, c.end), sp) for sp in spans.get(pid, []))))
        return Example(qid, kind, view, list(res.sources), cands, labels, answerable, gold, spans)


def _locate(quote: str, abstract: str) -> tuple[int, int] | None:
    i = abstract.find(quote.strip())
    if i >= 0:
        return i, i + len(quote.strip())
    # Whitespace may differ: match on the first 40 characters' words.
    head = re.escape(" ".join(quote.split()[:8])).replace(r"\ ", r"\s+")
    m = re.search(head, abstract)
    return (m.start(), min(len(abstract), m.start() + len(quote))) if m else None


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Spans overlap by at least half of the shorter one (the benchmark's quote rule)."""
    ov = min(a[1], b[1]) - max(a[0], b[0])
    return ov > 0 and ov >= 0.5 * min(a[1] - a[0], b[1] - b[0])


def _holdout_titles() -> set[str]:
    lines = (QUESTIONS / "holdout_papers.txt").read_text(encoding="utf-8").splitlines()
    return {s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")}


def sample_examples(paths: Sequence[Path], cache: Path, limit: int = 0) -> dict[str, list[Example]]:
    """Question files over the sample minus the held-out papers -> examples per file name."""
    from ..readers import read_paths

    gone = _holdout_titles()
    papers = [p for p in read_paths([SAMPLE]).papers if p.title not in gone]
    records = [{"id": p.paper_id, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
                "date": p.date or None} for p in papers]
    data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
    home = _home("sample", data, None, cache)
    asker = Asker(_settings(home, cache))
    return {path.name: question_examples(asker, path, {p.title: p.paper_id for p in papers}, limit) for path in paths}


def question_examples(asker: Asker, path: Path, by_title: dict[str, str], limit: int = 0) -> list[Example]:
    """A question file (evals/questions format) asked over ``asker``'s index, labelled."""
    from ..evaluation.files import jsonl_records

    exs = []
    for _, where, r in jsonl_records(path, "question file"):
        if limit and len(exs) >= limit:
            break
        if not isinstance(r, dict):
            raise InputError(f"{where}: a question record must be a JSON object")
        missing = [k for k in ("qid", "question", "gold_titles", "evidence") if k not in r]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        unknown = sorted({str(t) for t in [*r["gold_titles"], *(e.get("title") for e in r["evidence"])]
                          if t not in by_title})
        if unknown:
            raise InputError(f"{where}: title(s) not in the indexed sample: {unknown}")
        ev: dict[str, list[str]] = {}
        for e in r["evidence"]:
            ev.setdefault(by_title[e["title"]], []).append(e["quote"])
        gold = [by_title[t] for t in r["gold_titles"]]
        exs.append(asker.example(r["qid"], "sample", r["question"], gold, ev, bool(gold)))
    return exs


def scifact_examples(cache: Path, limit: int) -> list[Example]:
    """SciFact TRAIN claims with cited documents (every ``len // limit``-th when limited)."""
    corpus_path = SCIFACT / "corpus.jsonl"
    if not corpus_path.is_file():
        raise SystemExit(f"error: SciFact not found: no {corpus_path} (read from shared/scifact beside the checkout)")
    docs = {}
    with corpus_path.open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            docs[str(d["id"])] = d
    with (SCIFACT / "claims.jsonl").open(encoding="utf-8") as fh:
        claims = [c for c in map(json.loads, fh) if c.get("split") == "train" and c.get("cited_ids")]
    if limit and len(claims) > limit:
        step = len(claims) / limit
        claims = [claims[int(i * step)] for i in range(limit)]
    asker = Asker(_settings(_home("scifact", corpus_path.read_bytes(), corpus_path, cache), cache))
    out = []
    for c in claims:
        ev = {pid: [docs[pid]["sentences"][i] for g in groups for i in g]
              for pid, groups in (c.get("rationales") or {}).items()}
        out.append(asker.example(c["qid"], "scifact", c["claim"], list(ev), ev, bool(ev)))
    return out


ABSENT_SUFFIX = ":absent"
"""qid suffix of an absent-study example (the claim's own qid, then this)."""


def absent_examples(cache: Path, qids: set[str]) -> list[Example]:
    """Absent studies on SciFact TRAIN: the claims of ``evaluation.scifact.absent_studies`` among
    ``qids`` (the train claims in use), asked over the corpus without the papers they cite; they must be
    refused. Only the claim models learn from them. The index drops train-chosen papers only: which
    papers dev claims cite is never read here."""
    from ..evaluation.scifact import absent_corpus

    chosen, data = absent_corpus(SCIFACT / "claims.jsonl", SCIFACT / "corpus.jsonl", "train")
    chosen = [c for c in chosen if c["qid"] in qids]
    if not chosen:
        return []
    asker = Asker(_settings(_home("scifact-absent-train", data, None, cache), cache))
    return [asker.example(f"{c['qid']}{ABSENT_SUFFIX}", "scifact", c["claim"], [], {}, False) for c in chosen]


# -- fitting ---------------------------------------------------------------------------------


def fit_logreg(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, names: Sequence[str]) -> LogReg:
    """Weighted, L2-regularised logistic regression by Newton steps on standardised features."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    beta = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[0] = 0.0
    wn = w / w.sum() * len(w)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (wn * (p - y)) + reg * beta * len(w) / 100.0
        hess = (z * (wn * p * (1 - p))[:, None]).T @ z + np.diag(reg * len(w) / 100.0 + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    r = lambda v: tuple(round(float(t), 6) for t in v)  # noqa: E731
    return LogReg(tuple(names), r(mean), r(scale), r(beta[1:]), round(float(beta[0]), 6))


def _balanced(y: np.ndarray, groups: np.ndarray, domain_weight: dict[str, float]) -> np.ndarray:
    """Positives and negatives weigh the same within each source; sources by ``domain_weight``."""
    w = np.zeros(len(y))
    for g, dw in domain_weight.items():
        for label in (0, 1):
            m = (groups == g) & (y == label)
            if m.any():
                w[m] = dw / (2 * m.sum())
    return w


def fit_sentence(train: list[Example], l2: float, scifact_weight: float) -> LogReg:
    """The sentence scorer: evidence sentences against the other retrieved sentences."""
    xs, ys, gs = [], [], []
    for ex in train:
        for c, label in zip(ex.cands, ex.labels, strict=True):
            xs.append(c.features)
            ys.append(label)
            gs.append(ex.source)
    x, y, g = np.array(xs, float), np.array(ys, float), np.array(gs)
    return fit_logreg(x, y, _balanced(y, g, {"sample": 1.0, "scifact": scifact_weight}), l2, SENTENCE_FEATURES)


def answerability_data(train: list[Example], sent: LogReg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Question features (with ``sent``'s scores) and answerable labels; rule-refused questions left out."""
    qx, qy, qg = [], [], []
    for ex in train:
        if ex.view is None or not ex.cands:
            continue
        for c in ex.cands:
            c.score = sent.prob(c.features)
        pool = named_pool(ex.view, ex.cands)
        if pool is None:
            continue
        qx.append(question_features(ex.view, pool, ex.sources))
        qy.append(float(ex.answerable))
        qg.append(ex.source)
    return np.array(qx, float), np.array(qy), np.array(qg)


PAPER_L2 = 1.0
"""The paper model's regularisation: validation AUC (0.996 sample, 0.955 SciFact train) did not move over 0.1-10."""


def fit_paper(train: list[Example], scifact_weight: float) -> LogReg:
    """The paper model: a retrieved paper of an answerable question is positive when it is a gold paper.
    Needs the candidates scored (``answerability_data`` leaves them so)."""
    px, py, pg = [], [], []
    for ex in train:
        if not ex.answerable or ex.view is None or not ex.cands:
            continue
        for i, row in enumerate(paper_features(ex.view, ex.cands, ex.sources)):
            px.append(row)
            py.append(float(ex.sources[i].paper.paper_id in ex.gold))
            pg.append(ex.source)
    x, y, g = np.array(px, float), np.array(py), np.array(pg)
    return fit_logreg(x, y, _balanced(y, g, {"sample": 1.0, "scifact": scifact_weight}), PAPER_L2, PAPER_FEATURES)


def fit_models(train: list[Example], l2_sent: float, l2_ans: float, scifact_weight: float,
               decisions: Decisions) -> FittedModel:
    sent = fit_sentence(train, l2_sent, scifact_weight)
    qx, qy, qg = answerability_data(train, sent)
    ans = fit_logreg(qx, qy, _balanced(qy, qg, {"sample": 1.0, "scifact": scifact_weight}), l2_ans, QUESTION_FEATURES)
    paper = fit_paper(train, scifact_weight)
    claims = claim_examples(train)
    if not claims:
        return FittedModel(sent, ans, paper, decisions, {})
    claim_sent, claim_ans = fit_claim_models(claims, l2_sent, l2_ans)
    return FittedModel(sent, ans, paper, decisions, {}, claim_sent, claim_ans)


def claim_examples(exs: Sequence[Example]) -> list[Example]:
    """SciFact claims that read as claims (``is_claim``): what the claim models learn from. A labelled
    question that happens to read as a statement stays with the question models' data."""
    return [e for e in exs if e.source == "scifact" and e.view is not None and e.view.claim]


def fit_claim_models(claims: list[Example], l2_sent: float, l2_ans: float) -> tuple[LogReg, LogReg]:
    """Sentence scorer and answerability for statements to check, on claims alone (SciFact train):
    fitted jointly with questions, claims got the question-shaped weights (held-out SciFact train claims:
    quote = rationale 0.63 joint, 0.68 on claims alone)."""
    sent = fit_sentence(claims, l2_sent, 1.0)
    qx, qy, qg = answerability_data(claims, sent)
    return sent, fit_logreg(qx, qy, _balanced(qy, qg, {"scifact": 1.0}), l2_ans, QUESTION_FEATURES)


def evaluate(model: FittedModel, exs: list[Example], decisions: Decisions | None = None,
             rescore: bool = True) -> dict[str, float]:
    """The benchmark's headline measures on examples (answers composed exactly as at run time)."""
    fr = un = n_ans = n_un = pairs = hits = 0
    precs: list[float] = []
    recalls: list[float] = []
    for ex in exs:
        lr = model.sentence_for(ex.view) if ex.view is not None else model.sentence
        for c in ex.cands if rescore else ():
            c.score = lr.prob(c.features)
        res = compose(model, ex.view, ex.sources, ex.cands, decisions)
        if ex.answerable:
            n_ans += 1
            fr += res.refused
        else:
            n_un += 1
            un += res.refused
        if res.refused or not ex.answerable:
            continue
        # A citation quotes its paper's first cited sentence (as the citation checker does).
        cited: dict[str, tuple[int, int]] = {}
        for p in res.picked:
            cited.setdefault(ex.sources[p.source_index].paper.paper_id, (p.start, p.end))
        gold = set(ex.gold)
        precs.append(len(set(cited) & gold) / len(cited))
        recalls.append(len(set(cited) & gold) / len(gold))
        for pid, span in cited.items():
            if pid in gold and pid in ex.evidence:
                pairs += 1
                hits += any(_overlaps(span, e) for e in ex.evidence[pid])
    return {"false_refusals": fr / n_ans if n_ans else 0.0, "unanswerable_refused": un / n_un if n_un else 1.0,
            "quote": hits / pairs if pairs else 0.0, "citation_precision": sum(precs) / len(precs) if precs else 1.0,
            "citation_recall": sum(recalls) / len(recalls) if recalls else 1.0}


def objective(m: dict[str, float], precision: bool = True) -> float:
    """What validation maximises: quotes right, unanswerable refused, answerable answered, gold papers
    cited; below the bars (citation precision 0.95, false refusals 0.10) every point costs five.
    SciFact claims pass ``precision=False``: their gold is the evidence papers only, a cited related
    paper is no error."""
    return (m["quote"] + m["unanswerable_refused"] + (1 - m["false_refusals"]) + m["citation_recall"]
            - (5 * max(0.0, 0.95 - m["citation_precision"]) if precision else 0.0)
            - 5 * max(0.0, m["false_refusals"] - 0.10))


L2_GRID = (0.1, 1.0, 10.0)
SCIFACT_WEIGHTS = (0.5, 1.0)
THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(11))
PAPER_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8)
SECOND_RATIOS = (0.8, 1.01)


def choose(train: list[Example], validation: list[Example], log: Any = None, l2_grid: Sequence[float] = L2_GRID,
           scifact_weights: Sequence[float] = SCIFACT_WEIGHTS, thresholds: Sequence[float] = THRESHOLDS,
           paper_thresholds: Sequence[float] = PAPER_THRESHOLDS, second_ratios: Sequence[float] = SECOND_RATIOS,
           scifact_validation: Sequence[Example] = (), claim_models: bool = True,
           absent: Sequence[Example] = ()) -> tuple[FittedModel, dict[str, Any]]:
    """Grid over regularisation and decisions, chosen by ``objective`` on validation (ties: first),
    plus ``objective`` on held-out SciFact TRAIN claims when given (SciFact dev is never used).
    Questions are refused by ``answer_threshold`` and claims by ``claim_threshold`` (chosen on the claims).
    ``absent`` (absent-study claims, see ``absent_examples``) join the claim stage only."""
    best: tuple[float, FittedModel, dict[str, Any]] | None = None
    for l2_sent, sw in itertools.product(l2_grid, scifact_weights):
        sent = fit_sentence(train, l2_sent, sw)
        qx, qy, qg = answerability_data(train, sent)
        paper = fit_paper(train, sw)
        for ex in [*validation, *scifact_validation]:
            for c in ex.cands:
                c.score = sent.prob(c.features)
        for l2_ans in l2_grid:
            ans = fit_logreg(qx, qy, _balanced(qy, qg, {"sample": 1.0, "scifact": sw}), l2_ans, QUESTION_FEATURES)
            model = FittedModel(sent, ans, paper, Decisions(), {})
            best = _best_decisions(model, validation, best, thresholds, paper_thresholds, second_ratios,
                                   {"l2_sentence": l2_sent, "l2_answerable": l2_ans, "scifact_weight": sw},
                                   list(scifact_validation))
            if log and best:
                log(f"l2 {l2_sent}/{l2_ans} scifact {sw}: best so far {best[2]}")
    assert best is not None
    claims = claim_examples(train)
    claims_val = claim_examples([*validation, *scifact_validation])
    if not claim_models or not claims or not claims_val:
        return best[1], best[2]
    return _choose_claim_models(best[1], best[2], claims, claims_val, l2_grid, thresholds, log,
                                claim_examples(absent))


CLAIM_FOLDS = 4


def _choose_claim_models(model: FittedModel, info: dict[str, Any], claims: list[Example], claims_val: list[Example],
                         l2_grid: Sequence[float], thresholds: Sequence[float], log: Any = None,
                         absent: Sequence[Example] = ()) -> tuple[FittedModel, dict[str, Any]]:
    """Second stage: the question models and their decisions stay as chosen. The claim models'
    regularisation and ``claim_threshold`` are chosen by ``CLAIM_FOLDS``-fold cross-validation over
    every SciFact train claim (training and held-out alike: 200 held-out claims, 130 with evidence,
    are few to place a threshold by), then fitted on all of them, absent studies included.
    SciFact dev stays unseen."""
    d = model.decisions
    pool = [*claims, *claims_val, *absent]
    fold_of = claim_folds([*claims, *claims_val], absent)
    folds = [[e for e in pool if fold_of[e.qid] == k] for k in range(CLAIM_FOLDS)]
    best: tuple[float, float, float, float, dict[str, float]] | None = None
    for l2_sent, l2_ans in itertools.product(l2_grid, l2_grid):
        per_thr: dict[float, list[dict[str, float]]] = {t: [] for t in thresholds}
        for k in range(CLAIM_FOLDS):
            train_k = [e for e in pool if fold_of[e.qid] != k]
            cs, ca = fit_claim_models(train_k, l2_sent, l2_ans)
            for ex in folds[k]:
                for c in ex.cands:
                    c.score = cs.prob(c.features)
            trial = FittedModel(model.sentence, model.answerable, model.paper, d, {}, cs, ca)
            for thr in thresholds:
                dk = Decisions(**{**asdict(d), "claim_threshold": thr})
                per_thr[thr].append(_claim_measures(trial, folds[k], dk))
        for thr, ms in per_thr.items():
            m = mean_measures(ms)
            o = objective(m, precision=False)
            if best is None or o > best[0] + 1e-12:
                best = (o, l2_sent, l2_ans, thr, m)
        if log and best:
            log(f"claims l2 {l2_sent}/{l2_ans}: best so far l2 {best[1]}/{best[2]} threshold {best[3]} {best[4]}")
    assert best is not None
    _, l2_sent, l2_ans, thr, m = best
    cs, ca = fit_claim_models(pool, l2_sent, l2_ans)
    chosen = FittedModel(model.sentence, model.answerable, model.paper,
                         Decisions(**{**asdict(d), "claim_threshold": thr}), {}, cs, ca)
    stage1 = info.get("scifact_train_validation_measures")
    info = {k: v for k, v in info.items() if k != "scifact_train_validation_measures"}
    if stage1 is not None:
        info["held_out_claims_under_question_models"] = stage1
    return chosen, {**info, "claims_l2_sentence": l2_sent, "claims_l2_answerable": l2_ans,
                    "claims": len(pool) - len(absent), "absent_claims": len(absent),
                    "claims_cross_validation_measures": {k: round(v, 4) for k, v in m.items()}}


def mean_measures(per_fold: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each measure averaged over the folds that have it (a fold may hold no claim of a kind)."""
    out: dict[str, list[float]] = {}
    for m in per_fold:
        for key, v in m.items():
            out.setdefault(key, []).append(v)
    return {key: sum(vs) / len(vs) for key, vs in out.items()}


def claim_folds(claims: Sequence[Example], absent: Sequence[Example]) -> dict[str, int]:
    """qid -> cross-validation fold: claims in turn, and an absent-study claim with its own claim
    (fitting on a claim's words and judging the same words over another index would leak)."""
    fold_of = {e.qid: j % CLAIM_FOLDS for j, e in enumerate(claims)}
    for j, e in enumerate(absent):
        fold_of[e.qid] = fold_of.get(e.qid.removesuffix(ABSENT_SUFFIX), j % CLAIM_FOLDS)
    return fold_of


def _claim_measures(model: FittedModel, exs: list[Example], d: Decisions) -> dict[str, float]:
    """``evaluate`` on claims, plus the refusals of the two kinds of unanswerable claim apart: absent
    studies (their papers held out) and claims whose cited papers are indexed but hold no evidence."""
    m = evaluate(model, exs, d, rescore=False)
    absent = [e for e in exs if e.qid.endswith(ABSENT_SUFFIX)]
    no_evidence = [e for e in exs if not e.answerable and not e.qid.endswith(ABSENT_SUFFIX)]
    for key, sub in (("absent_refused", absent), ("no_evidence_refused", no_evidence)):
        if sub:
            m[key] = evaluate(model, sub, d, rescore=False)["unanswerable_refused"]
    return m


def _best_decisions(model: FittedModel, validation: list[Example], best: Any, thresholds: Sequence[float],
                    paper_thresholds: Sequence[float], second_ratios: Sequence[float], info: dict[str, Any],
                    scifact_validation: list[Example] | None = None) -> Any:
    """The decisions grid for one fitted set of models (validation candidates already scored).
    ``answer_threshold`` acts on questions only and ``claim_threshold`` on claims only, so each is
    chosen on its own examples for every (paper_threshold, second_ratio)."""
    questions = [e for e in [*validation, *(scifact_validation or [])] if not (e.view and e.view.claim)]
    claims = [e for e in [*validation, *(scifact_validation or [])] if e.view and e.view.claim]
    for pt, sr in itertools.product(paper_thresholds, second_ratios):
        oq, at, mq = _pick_threshold(model, questions, "answer_threshold", thresholds, pt, sr)
        oc, ct, mc = _pick_threshold(model, claims, "claim_threshold", thresholds, pt, sr)
        o = oq + oc
        if best is None or o > best[0] + 1e-12:
            d = Decisions(answer_threshold=at, claim_threshold=ct, paper_threshold=pt, second_ratio=sr)
            extra = {f"{'scifact_train_' if k == 'scifact' else ''}validation_measures": {
                key: round(val, 4) for key, val in v.items()} for k, v in {**mq, **mc}.items()}
            best = (o, FittedModel(model.sentence, model.answerable, model.paper, d, {}), {**info, **extra})
    return best


Measures = dict[str, dict[str, float]]


def _pick_threshold(model: FittedModel, exs: list[Example], field: str, thresholds: Sequence[float],
                    paper_threshold: float, second_ratio: float) -> tuple[float, float, Measures]:
    """The best value of one refusal threshold on its examples (ties: the first)."""
    out: tuple[float, float, Measures] | None = None
    for thr in thresholds if exs else thresholds[:1]:
        d = Decisions(**{field: thr}, paper_threshold=paper_threshold, second_ratio=second_ratio)
        m = _split_measures(model, exs, d)
        o = sum(objective(v, precision=k == "sample") for k, v in m.items())
        if out is None or o > out[0] + 1e-12:
            out = (o, thr, m)
    assert out is not None
    return out


def _split_measures(model: FittedModel, exs: list[Example], d: Decisions) -> Measures:
    """``evaluate`` per source ('sample', 'scifact') of the examples."""
    by: dict[str, list[Example]] = {}
    for e in exs:
        by.setdefault(e.source, []).append(e)
    return {k: evaluate(model, v, d, rescore=False) for k, v in sorted(by.items())}


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except InputError as exc:  # a bad line of a data file: one line naming it, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"where the model file goes (default: {OUT})")
    ap.add_argument("--fit", type=Path, default=QUESTIONS / "fit.jsonl")
    ap.add_argument("--validation", type=Path, default=QUESTIONS / "validation.jsonl")
    ap.add_argument("--scifact-train", type=int, default=800, metavar="N",
                    help="SciFact train claims used (evenly spaced; 0 = none)")
    ap.add_argument("--limit", type=int, default=0, help="first N questions of each file only (quick runs)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where indexed homes are cached")
    ap.add_argument("--retrieval-cache", type=Path, default=None, metavar="FILE",
                    help="keep retrieval results in FILE (pickle) so a refit after a feature change skips retrieval")
    ap.add_argument("--check", action="store_true",
                    help="refit in memory and compare with --out (default: the shipped file) instead of writing; "
                         "exit 1 with a one-line summary when they differ")
    args = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    if args.retrieval_cache and args.retrieval_cache.is_file():
        import pickle

        RETRIEVALS.update(pickle.loads(args.retrieval_cache.read_bytes()))
    t = time.perf_counter()
    sample = sample_examples([args.fit, args.validation], args.cache, args.limit)
    train = sample[args.fit.name]
    validation = sample[args.validation.name]
    sci = scifact_examples(args.cache, args.scifact_train) if args.scifact_train else []
    absent = absent_examples(args.cache, {e.qid for e in sci}) if sci else []
    if args.retrieval_cache:
        import pickle

        args.retrieval_cache.write_bytes(pickle.dumps(RETRIEVALS))
    log(f"labelled data: {len(train)} fit questions, {len(sci)} SciFact train claims "
        f"(and {len(absent)} of them as absent studies), "
        f"{len(validation)} validation questions ({time.perf_counter() - t:.0f} s)")
    # Every 4th SciFact train claim is held out of fitting and joins validation (SciFact-like claims
    # then count when thresholds are chosen); SciFact dev stays unseen.
    sci_fit = [e for i, e in enumerate(sci) if i % 4 != 3]
    sci_val = [e for i, e in enumerate(sci) if i % 4 == 3]
    model, info = choose(train + sci_fit, validation, log, scifact_validation=sci_val, absent=absent)
    meta = {"fit": args.fit.name, "validation": args.validation.name, "scifact_train_claims": len(sci_fit),
            "scifact_train_validation_claims": len(sci_val),
            "sentences": sum(len(e.cands) for e in train + sci_fit),
            "positives": sum(sum(e.labels) for e in train + sci_fit), **info}
    out = FittedModel(model.sentence, model.answerable, model.paper, model.decisions, meta, model.claim_sentence,
                      model.claim_answerable)
    text = model_text(out)
    if args.check:
        diff = compare_model_text(text, args.out)
        print(f"{args.out}: {diff or 'reproduced byte for byte'} ({time.perf_counter() - t:.0f} s)")
        return 1 if diff else 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    log(f"wrote {args.out}: validation {info['validation_measures']}")
    return 0


def model_text(model: FittedModel) -> str:
    """The model file's exact bytes (sorted keys, one space indent)."""
    return json.dumps(model.to_dict(), indent=1, sort_keys=True) + "\n"


def compare_model_text(text: str, path: Path) -> str:
    """'' when ``path`` holds exactly ``text``, else one line saying what differs."""
    try:
        shipped = path.read_text(encoding="utf-8")
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    if shipped == text:
        return ""
    try:
        old = _leaves(json.loads(shipped))
    except ValueError as exc:
        return f"not JSON ({exc})"
    new = _leaves(json.loads(text))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if not changed:
        return "same values, different formatting (rewrite it with the script)"
    deltas = [(abs(float(new[k]) - float(old[k])), k) for k in changed
              if isinstance(old.get(k), (int, float)) and isinstance(new.get(k), (int, float))]
    where = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
    big = f"; largest change {max(deltas)[0]:.3g} at {max(deltas)[1]}" if deltas else ""
    return f"differs from a refit in {len(changed)} of {len(old.keys() | new.keys())} values ({where}){big}"


def _leaves(d: Any, prefix: str = "") -> dict[str, Any]:
    """A JSON value flattened to path -> scalar ('sentence.coef[3]')."""
    if isinstance(d, dict):
        return {k: v for key, val in d.items() for k, v in _leaves(val, f"{prefix}.{key}" if prefix else key).items()}
    if isinstance(d, list):
        return {k: v for i, val in enumerate(d) for k, v in _leaves(val, f"{prefix}[{i}]").items()}
    return {prefix: d}


if __name__ == "__main__":
    raise SystemExit(main())
