"""Answer quality of `Assistant.ask` (issue 14's measures) beside a naive baseline, in one run.

Usage:
    python benchmarks/answer_quality.py                        # evals/questions/validation.jsonl
    python benchmarks/answer_quality.py --questions evals/questions/fit.jsonl [--limit N] [--json [OUT]]
    python benchmarks/answer_quality.py --scifact-dev [--limit N] [--json [OUT]]
    ASSISTANT_HOME=$(python benchmarks/answer_quality.py --print-home) assistant eval run evals/questions/fit.jsonl

Sample mode indexes the bundled sample MINUS evals/questions/holdout_papers.txt (so absent-study
questions must be refused) and runs each question through `Assistant.ask` with the default
(extractive) backend. SciFact mode asks the 300 SciFact dev claims over the 5,183 SciFact abstracts
(read from ../shared/scifact, never copied). Indexed homes are cached under
~/.cache/paper-assistant-bench/<kind>-<fingerprint> (fingerprint = the indexed records, the index
settings and the source of the index-building code), so only the first run after a change pays for ingest.

The naive baseline, measured in the same run on the same papers: stdlib BM25 over title + abstract,
then the abstract sentence with the largest word overlap with the question from each of the top 2
papers, cited; it never refuses.

The metric functions are self-contained (no project tokenizer), so the measuring stick does not move
when the code under test changes; tests/test_answer_quality_metrics.py checks them on hand-made cases.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import PlainBM25  # noqa: E402
from benchmarks.harness import pct as _pct  # noqa: E402

SAMPLE = REPO / "assistant" / "data" / "sample"
QUESTIONS = REPO / "evals" / "questions"
HOLDOUT = QUESTIONS / "holdout_papers.txt"
SCIFACT = Path(__import__("os").environ.get("ASSISTANT_SCIFACT_DIR", str(REPO.parent / "shared" / "scifact")))
CACHE = Path.home() / ".cache" / "paper-assistant-bench"
INDEX: dict[str, Any] = {}
"""Index settings besides the defaults (``--sentence-strategy``); part of a cached home's key."""

STOPWORDS = frozenset([
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "approach",
    "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by",
    "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further",
    "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into",
    "is", "it", "its", "itself", "just", "let", "many", "me", "method", "methods", "more", "most", "much",
    "my", "no", "nor", "not", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over",
    "own", "paper", "papers", "same", "she", "should", "so", "some", "study", "such", "than", "that", "the",
    "their", "theirs", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "use", "used", "uses", "using", "very", "was", "we", "were", "what", "when",
    "where", "which", "while", "who", "whom", "why", "will", "with", "work", "would", "you", "your", "yours",
])

# -- metrics (pure functions) ---------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """0.0 for no values: these figures go to JSON."""
    return _pct(values, q, empty=0.0)


def hit_at(ranked: Sequence[str], gold: Iterable[str], k: int = 5) -> float:
    """1.0 when a gold item is among the first k."""
    g = set(gold)
    return 1.0 if any(r in g for r in ranked[:k]) else 0.0


def reciprocal_rank(ranked: Sequence[str], gold: Iterable[str]) -> float:
    """1 / rank of the first gold item (0 when absent)."""
    g = set(gold)
    for i, r in enumerate(ranked):
        if r in g:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at(ranked: Sequence[str], gold: Iterable[str], k: int = 10) -> float:
    """Binary-relevance nDCG@k."""
    g = set(gold)
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(ranked[:k]) if r in g)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(g), k)))
    return dcg / idcg if idcg else 0.0


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Share of the distinct cited papers that are gold; None when nothing is cited."""
    c = set(cited)
    return len(c & set(gold)) / len(c) if c else None


_NUM = re.compile(r"(?<![\w.])[-+]?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|\.\d+)")


def numbers_in(text: str) -> set[str]:
    """Numbers as canonical strings: '1,317' -> '1317', '5.0' -> '5', '0.90' -> '0.9', '3.3\\%' -> '3.3'.

    Numbers glued to letters count too ('17.7x', '15M', '8B', '9times'); a digit inside a word
    ('Llama2', 'GPT4o') does not start a number.
    """
    out = set()
    for m in _NUM.finditer(text):
        raw = m.group(1).replace(",", "")
        try:
            value = float(raw)
        except ValueError:
            continue
        out.add(f"{value:.6f}".rstrip("0").rstrip("."))
    return out


def gold_numbers(answer: str, evidence_quotes: Iterable[str]) -> set[str]:
    """Numbers of the reference answer that the evidence states: the ones an answer can quote."""
    stated: set[str] = set()
    for q in evidence_quotes:
        stated |= numbers_in(q)
    return numbers_in(answer) & stated


def number_recall(gold: set[str], answer_text: str) -> float | None:
    """Share of the gold numbers present in the answer text; None when there are none."""
    if not gold:
        return None
    return len(gold & numbers_in(answer_text)) / len(gold)


def content_words(text: str) -> set[str]:
    """Lower-case words of 3+ characters and numbers ('77.8' whole), stopwords out, a plural 's' stripped."""
    out = set()
    for w in re.findall(r"\d+(?:[.,]\d+)*|[a-z][a-z0-9]*(?:[-'][a-z0-9]+)*", text.lower()):
        if w in STOPWORDS or (len(w) < 3 and not w.isdigit()):
            continue
        if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return out


def content_recall(reference: str, answer_text: str) -> float | None:
    """Share of the reference answer's content words that the answer contains."""
    ref = content_words(reference)
    if not ref:
        return None
    return len(ref & content_words(answer_text)) / len(ref)


def _span(quote: str, abstract: str) -> tuple[int, int] | None:
    start = abstract.find(quote)
    return (start, start + len(quote)) if start >= 0 and quote else None


def _sentence_bounds(span: tuple[int, int], abstract: str) -> tuple[int, int]:
    """Widen a span to the whole sentence(s) it touches (evidence quotes are sometimes a clause)."""
    cuts = [0] + [m.end() for m in _SENT.finditer(abstract)] + [len(abstract)]
    start = max(c for c in cuts if c <= span[0])
    end = min((c for c in cuts if c >= span[1]), default=len(abstract))
    return start, len(abstract[:end].rstrip())


def quote_matches(quote: str, evidence: Iterable[str], abstract: str) -> bool:
    """Is the quote the evidence sentence? Both are located in the abstract (the evidence widened to the
    whole sentence it is part of); they match when the quote covers at least half of that sentence and at
    least a third of the quote is that sentence. So a quote trimmed to its main clause, or the sentence
    plus a neighbour, counts; a paragraph that merely contains the sentence, or a few words of it, does
    not. Text not found in the abstract falls back to containment of the normalised text, same proportions."""
    norm = lambda s: " ".join(re.findall(r"\w+", s.lower()))  # noqa: E731
    q = _span(quote, abstract)
    for ev in evidence:
        e = _span(ev, abstract)
        if e:
            e = _sentence_bounds(e, abstract)
        if q and e:
            overlap = min(q[1], e[1]) - max(q[0], e[0])
            qlen, elen = q[1] - q[0], e[1] - e[0]
        else:
            a, b = norm(quote), norm(ev)
            if not (a and b and (a in b or b in a)):
                continue
            overlap, qlen, elen = min(len(a), len(b)), len(a), len(b)
        if overlap > 0 and overlap >= 0.5 * elen and overlap >= qlen / 3:
            return True
    return False


def mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


# -- the naive baseline ---------------------------------------------------------------------

_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def split_sentences(text: str) -> list[str]:
    """Plain regex sentence split; each piece is an exact substring of ``text``."""
    return [s for s in _SENT.split(text) if s.strip()]


def best_overlap_sentence(question: str, abstract: str) -> str:
    """The abstract sentence sharing the most content words with the question (first on ties)."""
    qw = content_words(question)
    sents = split_sentences(abstract) or [abstract]
    return max(sents, key=lambda s: len(qw & content_words(s)))


@dataclass
class Reply:
    """What both systems hand to the metrics: ranked ids, cited (id, quote) pairs, text, refusal."""

    ranked: list[str]
    citations: list[tuple[str, str | None]]
    text: str
    refused: bool
    ms: float
    extra: dict[str, Any] = field(default_factory=dict)


def naive_reply(bm25: PlainBM25, abstracts: dict[str, str], question: str, top: int = 2) -> Reply:
    t = time.perf_counter()
    ranked = bm25.search(question, 10)
    cites = [(pid, best_overlap_sentence(question, abstracts[pid])) for pid in ranked[:top]]
    text = " ".join(f"{q} [{n}]" for n, (_, q) in enumerate(cites, 1))
    return Reply(ranked, cites, text, False, (time.perf_counter() - t) * 1000)


def assistant_reply(a: Any, question: str, backend: str | None = None) -> Reply:
    t = time.perf_counter()
    ans = a.ask(question, backend=backend)
    ms = (time.perf_counter() - t) * 1000
    return Reply([s.paper.paper_id for s in ans.sources], [(c.paper_id, c.quote) for c in ans.citations],
                 ans.text, bool(ans.refused), ms, {"refusal_reason": ans.checks.get("refusal_reason"),
                                                   "answer_ms": ans.timings_ms.get("answer")})


# -- scoring -------------------------------------------------------------------------------


@dataclass
class Item:
    """One question with gold as paper ids: evidence quotes per gold id, reference answer."""

    qid: str
    type: str
    question: str
    gold: list[str]
    evidence: dict[str, list[str]]
    answer: str
    kind: str | None = None
    """Unanswerable questions: near_miss or absent_study (pool rows say which)."""


def score_sample(items: list[Item], replies: list[Reply], abstracts: dict[str, str]) -> dict[str, Any]:
    """Issue 14's measures for a question set (answerable vs unanswerable by empty gold)."""
    ans = [(it, r) for it, r in zip(items, replies, strict=True) if it.gold]
    una = [(it, r) for it, r in zip(items, replies, strict=True) if not it.gold]
    q_pairs = q_hits = 0
    for it, r in ans:
        for pid in it.gold:
            quotes = [q for c, q in r.citations if c == pid and q]
            if quotes and not r.refused:
                q_pairs += 1
                q_hits += any(quote_matches(q, it.evidence.get(pid, []), abstracts[pid]) for q in quotes)
    out = {
        "questions": len(items), "answerable": len(ans), "unanswerable": len(una),
        "hit@5": mean(hit_at(r.ranked, it.gold, 5) for it, r in ans),
        "mrr": mean(reciprocal_rank(r.ranked, it.gold) for it, r in ans),
        "ndcg@10": mean(ndcg_at(r.ranked, it.gold, 10) for it, r in ans),
        "citation_precision": mean(citation_precision([c for c, _ in r.citations], it.gold)
                                   for it, r in ans if not r.refused),
        "citation_recall": mean(len({c for c, _ in r.citations} & set(it.gold)) / len(it.gold)
                                for it, r in ans if not r.refused),
        "multi_citation_recall": mean(len({c for c, _ in r.citations} & set(it.gold)) / len(it.gold)
                                      for it, r in ans if not r.refused and len(it.gold) > 1),
        "false_refusal_rate": mean(float(r.refused) for _, r in ans),
        "unanswerable_refused": mean(float(r.refused) for _, r in una),
        "quote_is_answering_sentence": q_hits / q_pairs if q_pairs else None,
        "quote_pairs": q_pairs,
        "gold_numbers_in_answer": mean(
            number_recall(gold_numbers(it.answer, [q for qs in it.evidence.values() for q in qs]), r.text)
            for it, r in ans),
        "questions_with_gold_numbers": sum(
            bool(gold_numbers(it.answer, [q for qs in it.evidence.values() for q in qs])) for it, _ in ans),
        "gold_content_words_in_answer": mean(content_recall(it.answer, r.text) for it, r in ans),
        "p50_ms": pct([r.ms for r in replies], 0.5),
        "p95_ms": pct([r.ms for r in replies], 0.95),
        "answer_p50_ms": pct([r.extra["answer_ms"] for r in replies if r.extra.get("answer_ms") is not None],
                                    0.5) or None,
    }
    by_type = {}
    for t in sorted({it.type for it in items}):
        sub = [(it, r) for it, r in zip(items, replies, strict=True) if it.type == t]
        by_type[t] = {"n": len(sub), "refused": mean(float(r.refused) for _, r in sub)}
    out["refused_by_type"] = by_type
    kinds = sorted({it.kind for it, _ in una if it.kind})
    out["unanswerable_refused_by_kind"] = {
        k: {"n": sum(it.kind == k for it, _ in una), "refused": mean(float(r.refused) for it, r in una if it.kind == k)}
        for k in kinds}
    return out


def score_scifact(claims: list[dict], replies: list[Reply], corpus: dict[str, dict]) -> dict[str, Any]:
    """nDCG@10 (relevance = cited_ids), refused share, and quotes against rationale sentences."""
    cite_total = cite_hits = pairs = pairs_quoted = cited_pairs = cited_pairs_hit = 0
    for c, r in zip(claims, replies, strict=True):
        for pid, groups in (c.get("rationales") or {}).items():
            doc = corpus[pid]
            rats = [doc["sentences"][i].strip() for g in groups for i in g]
            abstract = doc["abstract"]
            quotes = [q for cp, q in r.citations if cp == pid and q] if not r.refused else []
            hits = [quote_matches(q, rats, abstract) for q in quotes]
            cite_total += len(hits)
            cite_hits += sum(hits)
            pairs += 1
            pairs_quoted += any(hits)
            if quotes:
                cited_pairs += 1
                cited_pairs_hit += any(hits)
    return {
        "claims": len(claims),
        "ndcg@10": mean(ndcg_at(r.ranked, c["cited_ids"], 10) for c, r in zip(claims, replies, strict=True)),
        "refused_share": mean(float(r.refused) for r in replies),
        "refused_with_evidence": mean(float(r.refused) for c, r in zip(claims, replies, strict=True)
                                      if c.get("rationales")),
        "refused_without_evidence": mean(float(r.refused) for c, r in zip(claims, replies, strict=True)
                                         if not c.get("rationales")),
        "rationale_precision": cite_hits / cite_total if cite_total else None,
        "rationale_citations": cite_total,
        "rationale_recall": pairs_quoted / pairs if pairs else None,
        "rationale_pairs": pairs,
        "quote_is_rationale": cited_pairs_hit / cited_pairs if cited_pairs else None,
        "cited_rationale_pairs": cited_pairs,
        "p50_ms": pct([r.ms for r in replies], 0.5),
        "p95_ms": pct([r.ms for r in replies], 0.95),
        "answer_p50_ms": pct([r.extra["answer_ms"] for r in replies if r.extra.get("answer_ms") is not None],
                                    0.5) or None,
    }


# -- corpora and cached homes ---------------------------------------------------------------


def holdout_titles(path: Path = HOLDOUT) -> list[str]:
    """Titles held out of the index (one a line; '#' lines are comments)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def fingerprint(*parts: bytes) -> str:
    """Key of a cached home: the indexed source bytes, the index settings (embedding model, chunk size,
    sentence vectors...) and the source of the code that builds an index, so a change to any of them
    builds a fresh home. The fitting script keys its homes the same way, so both use one home."""
    from assistant.answering.fit import home_fingerprint

    return home_fingerprint(*parts)


def sample_minus_holdout(held: list[str]) -> list[dict[str, Any]]:
    """The bundled sample as JSON records (ids kept), without the held-out papers."""
    from assistant.readers import read_paths

    gone = set(held)
    papers = read_paths([SAMPLE]).papers
    missing = gone - {p.title for p in papers}
    if missing:
        raise SystemExit(f"error: {HOLDOUT}: titles not in the sample: {sorted(missing)}")
    return [{"id": p.paper_id, "title": p.title, "abstract": p.abstract, "authors": list(p.authors),
             "date": p.date or None} for p in papers if p.title not in gone]


def settings_for(home: Path, cache: Path) -> Any:
    """Default settings (no env, no config file) on this home, sharing one embedding cache."""
    from assistant.settings import Settings

    return Settings.load(config_file="", env={}, home=home, cache_dir=cache / "embed-cache",
                         **({"index": dict(INDEX)} if INDEX else {}))


def prepared_home(kind: str, records: list[dict[str, Any]] | None = None, cache: Path = CACHE) -> Path:
    """An ASSISTANT_HOME with the corpus indexed, reused while its fingerprint holds."""
    from assistant.api import Assistant

    if kind == "sample":
        src_bytes = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records or []).encode()
    elif kind == "scifact-absent-dev":
        from assistant.evaluation.scifact import absent_corpus

        src_bytes = absent_corpus(SCIFACT / "claims.jsonl", SCIFACT / "corpus.jsonl", "dev")[1]
    else:
        src_bytes = (SCIFACT / "corpus.jsonl").read_bytes()
    extra = [json.dumps(INDEX, sort_keys=True).encode()] if INDEX else []
    home = cache / f"{kind}-{fingerprint(src_bytes, *extra)}"
    if (home / "READY").exists():
        return home
    home.mkdir(parents=True, exist_ok=True)
    src = SCIFACT / "corpus.jsonl"
    if kind != "scifact":
        src = home / "corpus.jsonl"
        src.write_bytes(src_bytes)
    a = Assistant(settings_for(home, cache))
    a.auto_sample = False
    t = time.perf_counter()
    rep = a.ingest([src], progress=sys.stderr.isatty())
    print(f"indexed {rep.papers_total} papers into {home} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    (home / "READY").write_text("ok\n")
    return home


def open_assistant(home: Path, cache: Path = CACHE) -> Any:
    from assistant.api import Assistant

    a = Assistant(settings_for(home, cache))
    a.auto_sample = False
    return a


# -- runs ----------------------------------------------------------------------------------


def run_sample(qpath: Path, limit: int, cache: Path, records: list[dict[str, Any]] | None = None,
               backend: str | None = None) -> dict[str, Any]:
    """Ask every question of ``qpath``; ``records`` (default: the sample minus held-out papers) is the index."""
    from assistant.evaluation.files import jsonl_records

    rows = [r for _, _, r in jsonl_records(qpath, "question file")]  # a bad line fails before any indexing
    rows = rows[:limit] if limit else rows
    held = holdout_titles()
    records = records if records is not None else sample_minus_holdout(held)
    home = prepared_home("sample", records, cache)
    a = open_assistant(home, cache)
    by_title = {r["title"]: r["id"] for r in records}
    abstracts = {r["id"]: r["abstract"] for r in records}
    items = []
    for row in rows:
        missing = [t for t in row["gold_titles"] if t not in by_title]
        if missing:
            raise SystemExit(f"error: {qpath}: {row['qid']}: gold paper(s) not in the index: {missing}")
        ev: dict[str, list[str]] = {}
        for e in row["evidence"]:
            ev.setdefault(by_title[e["title"]], []).append(e["quote"])
        items.append(Item(row["qid"], row["type"], row["question"], [by_title[t] for t in row["gold_titles"]],
                          ev, row["answer"], row.get("unanswerable_kind")))
    bm25 = PlainBM25({r["id"]: f"{r['title']} {r['abstract']}" for r in records})
    a.ask("What is direct preference optimisation?", backend=backend)  # warm-up: model, index and caches loaded
    naive = [naive_reply(bm25, abstracts, it.question) for it in items]
    ours = [assistant_reply(a, it.question, backend) for it in items]
    return {"mode": "sample", "questions_file": str(qpath.relative_to(REPO) if qpath.is_relative_to(REPO) else qpath),
            "indexed_papers": len(records), "held_out_papers": len(held), "home": str(home),
            "assistant": score_sample(items, ours, abstracts), "naive": score_sample(items, naive, abstracts),
            "per_question": [{"qid": it.qid, "type": it.type, "refused": r.refused,
                              "refusal_reason": r.extra.get("refusal_reason"),
                              "cited": [c for c, _ in r.citations], "gold": it.gold}
                             for it, r in zip(items, ours, strict=True)]}


def run_scifact(limit: int, cache: Path, backend: str | None = None) -> dict[str, Any]:
    corpus = {}
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            corpus[str(d["id"])] = d
    with (SCIFACT / "claims.jsonl").open(encoding="utf-8") as fh:
        claims = [c for c in map(json.loads, fh) if c.get("split") == "dev" and c.get("cited_ids")]
    claims = claims[:limit] if limit else claims
    home = prepared_home("scifact", cache=cache)
    a = open_assistant(home, cache)
    bm25 = PlainBM25({i: f"{d['title']} {d['abstract']}" for i, d in corpus.items()})
    abstracts = {i: d["abstract"] for i, d in corpus.items()}
    a.ask("Aspirin reduces the risk of heart attack.", backend=backend)  # warm-up
    naive = [naive_reply(bm25, abstracts, c["claim"]) for c in claims]
    ours = [assistant_reply(a, c["claim"], backend) for c in claims]
    res = {"mode": "scifact-dev", "home": str(home), "assistant": score_scifact(claims, ours, corpus),
           "naive": score_scifact(claims, naive, corpus)}
    res["absent"] = run_scifact_absent(limit, cache, backend)
    for who in ("assistant", "naive"):
        res[who]["absent_refused"] = res["absent"][who]["refused"]
    return res


def _reason_kind(reply: Reply) -> str:
    """A refusal reason without its figures or names ("answerability 0.11 < 0.20 (...)" -> "answerability"),
    so reasons can be counted; "answered" when not refused."""
    if not reply.refused:
        return "answered"
    return re.split(r" \d| mentions ", reply.extra.get("refusal_reason") or "refused")[0]


def run_scifact_absent(limit: int, cache: Path, backend: str | None = None) -> dict[str, Any]:
    """Absent studies: the dev claims of ``absent_studies`` asked over SciFact without the papers they
    cite (an index of its own: the train ones, which teach the claim models, have theirs)."""
    from assistant.evaluation.scifact import absent_studies

    chosen, gone = absent_studies(SCIFACT / "claims.jsonl", "dev")
    claims = chosen[:limit] if limit else chosen
    home = prepared_home("scifact-absent-dev", cache=cache)
    a = open_assistant(home, cache)
    a.ask("Aspirin reduces the risk of heart attack.", backend=backend)  # warm-up
    ours = [assistant_reply(a, c["claim"], backend) for c in claims]
    return {"home": str(home), "claims": len(claims), "chosen": len(chosen), "held_out_papers": len(gone),
            "assistant": {"refused": mean(float(r.refused) for r in ours) if ours else None,
                          "outcomes": dict(Counter(_reason_kind(r) for r in ours))},
            "naive": {"refused": 0.0}}  # naive_reply never refuses


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


SAMPLE_ROWS = [("hit@5", "hit@5"), ("MRR", "mrr"), ("nDCG@10", "ndcg@10"),
               ("citation precision", "citation_precision"),
               ("gold papers cited (answered questions)", "citation_recall"),
               ("... of questions with 2+ gold papers", "multi_citation_recall"),
               ("false refusals (answerable refused)", "false_refusal_rate"),
               ("unanswerable refused", "unanswerable_refused"),
               ("quote = answering sentence", "quote_is_answering_sentence"),
               ("gold numbers in the answer", "gold_numbers_in_answer"),
               ("gold content words in the answer", "gold_content_words_in_answer"),
               ("warm p50 ms per question", "p50_ms"), ("warm p95 ms per question", "p95_ms"),
               ("p50 ms in the answer backend", "answer_p50_ms")]
SCIFACT_ROWS = [("nDCG@10", "ndcg@10"), ("refused claims", "refused_share"),
                ("... claims with evidence refused", "refused_with_evidence"),
                ("... claims without evidence refused", "refused_without_evidence"),
                ("absent-study claims refused (papers held out)", "absent_refused"),
                ("rationale precision", "rationale_precision"), ("rationale recall", "rationale_recall"),
                ("quote = rationale sentence (cited gold papers)", "quote_is_rationale"),
                ("warm p50 ms per claim", "p50_ms"), ("warm p95 ms per claim", "p95_ms"),
                ("p50 ms in the answer backend", "answer_p50_ms")]


def print_table(res: dict[str, Any]) -> None:
    rows = SAMPLE_ROWS if res["mode"] == "sample" else SCIFACT_ROWS
    a, n = res["assistant"], res["naive"]
    if res["mode"] == "sample":
        print(f"{res['questions_file']}: {a['questions']} questions ({a['answerable']} answerable, "
              f"{a['unanswerable']} unanswerable) over {res['indexed_papers']} papers "
              f"(sample minus {res['held_out_papers']} held out)")
    else:
        print(f"SciFact dev: {a['claims']} claims over the SciFact corpus; rationale pairs {a['rationale_pairs']}")
        if res.get("absent"):
            ab = res["absent"]
            print(f"absent studies: {ab['claims']} of the {ab['chosen']} chosen dev claims asked again over the "
                  f"corpus without the {ab['held_out_papers']} papers those claims cite")
    print(f"{'measure':48} {'assistant':>10} {'naive':>10}")
    for label, key in rows:
        print(f"{label:48} {fmt(a.get(key)):>10} {fmt(n.get(key)):>10}")
    if res.get("absent"):
        print("absent-study claims (assistant): " + ", ".join(
            f"{k} {v}" for k, v in sorted(res["absent"]["assistant"]["outcomes"].items())))
    if res["mode"] == "sample":
        print(f"(quote pairs: assistant {a['quote_pairs']}, naive {n['quote_pairs']}; questions with gold numbers: "
              f"{a['questions_with_gold_numbers']})")
        print("refused by type (assistant): " + ", ".join(
            f"{t} {fmt(v['refused'])} of {v['n']}" for t, v in a["refused_by_type"].items()))
        if a["unanswerable_refused_by_kind"]:
            print("unanswerable refused by kind (assistant): " + ", ".join(
                f"{k} {fmt(v['refused'])} of {v['n']}" for k, v in a["unanswerable_refused_by_kind"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=Path, default=QUESTIONS / "validation.jsonl")
    ap.add_argument("--scifact-dev", action="store_true", help="SciFact dev claims over the SciFact corpus")
    ap.add_argument("--backend", default=None, help="answer backend to measure (default: the settings' default)")
    ap.add_argument("--limit", type=int, default=0, help="first N questions only (quick runs)")
    ap.add_argument("--cache", type=Path, default=CACHE, help="where indexed homes are cached")
    ap.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                    help="also write the figures as JSON to OUT (or stdout with no OUT)")
    ap.add_argument("--print-home", action="store_true",
                    help="build (or reuse) the indexed home and print its path, e.g. for "
                         "ASSISTANT_HOME=... assistant eval run evals/questions/validation.jsonl")
    ap.add_argument("--sentence-strategy", choices=["auto", "all", "top", "query-time", "off"], default=None,
                    help="index.sentence_strategy of the indexed homes (off: index.sentence_vectors = false)")
    args = ap.parse_args(argv)
    INDEX.clear()
    if args.sentence_strategy == "off":
        INDEX["sentence_vectors"] = False
    elif args.sentence_strategy:
        INDEX["sentence_strategy"] = args.sentence_strategy
    if args.print_home:
        kind = "scifact" if args.scifact_dev else "sample"
        records = sample_minus_holdout(holdout_titles()) if kind == "sample" else None
        print(prepared_home(kind, records, args.cache))
        return 0
    if args.scifact_dev:
        if not (SCIFACT / "corpus.jsonl").is_file():
            print(f"error: {SCIFACT}/corpus.jsonl not found", file=sys.stderr)
            return 1
        res = run_scifact(args.limit, args.cache, args.backend)
    else:
        if not args.questions.is_file():
            print(f"error: {args.questions}: question file not found", file=sys.stderr)
            return 1
        res = run_sample(args.questions.resolve(), args.limit, args.cache, backend=args.backend)
    if args.json == "-":
        print(json.dumps(res, indent=2))
    else:
        print_table(res)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def run(argv: list[str] | None = None) -> int:
    """``main``, with a bad data record (``InputError``: file, line and field) as one line, no traceback."""
    from assistant.errors import InputError

    try:
        return main(argv)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(run())
