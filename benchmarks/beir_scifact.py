"""BEIR SciFact: retrieval quality (nDCG@10, recall@100, MRR@10) and sentence-level
evidence (rationale precision / recall) of the project's retrieval and answerer.

Usage:
    python benchmarks/beir_scifact.py [--split dev|train] [--home DIR] [--limit N]

Ingests ../shared/scifact/corpus.jsonl (beside the checkout, or beside the main
checkout from a git worktree) into its own home (as a user would: `assistant ingest
corpus.jsonl`), then runs every claim of the split. Only the options decide: the
developer's ASSISTANT_* environment and config file are not read.
Relevance = the claim's cited_ids (identical to BEIR's qrels-test.tsv for dev).
A stdlib BM25 over title + abstract is measured in the same run as the floor.
Tune on --split train only; report dev.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import PlainBM25, pct  # noqa: E402

ANCHORS = [("BM25 (BEIR paper)", 0.665), ("all-MiniLM-L6-v2 (MTEB)", 0.645), ("TAS-B", 0.643),
           ("ColBERT", 0.671), ("BM25 + cross-encoder (BEIR)", 0.688),
           ("LlamaIndex vector + BM25 RRF (measured here by the issue)", 0.708)]


def ndcg_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int = 100) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr_at(ranked: list[str], relevant: set[str], k: int = 10) -> float:
    for i, d in enumerate(ranked[:k]):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


def spans_of(sentences: list[str]) -> list[tuple[int, int]]:
    """Character spans of the release's sentences inside the joined abstract."""
    out, pos = [], 0
    for s in sentences:
        s = s.strip()
        out.append((pos, pos + len(s)))
        pos += len(s) + 1
    return out


def quote_hits_rationale(quote: str, abstract: str, rationale_spans: list[tuple[int, int]]) -> bool:
    """A quote counts when it overlaps a rationale sentence by at least half of the shorter one."""
    start = abstract.find(quote)
    if start < 0:
        return False
    end = start + len(quote)
    for a, b in rationale_spans:
        overlap = min(end, b) - max(start, a)
        if overlap > 0 and overlap >= 0.5 * min(end - start, b - a):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scifact", default="", help="SciFact directory (default: shared/scifact beside the checkout)")
    ap.add_argument("--split", default="dev", choices=["dev", "train"])
    ap.add_argument("--home", default=str(REPO / "benchmarks" / "out" / "scifact_home"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--modes", default="bm25,dense,hybrid")
    ap.add_argument("--no-evidence", action="store_true", help="skip the rationale (answerer) part")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = ap.parse_args()

    from assistant.answering.citations import best_quote
    from assistant.api import Assistant
    from assistant.evaluation.scifact import default_dir
    from assistant.settings import Settings

    sf = Path(args.scifact) if args.scifact else default_dir(REPO)
    for name in ("corpus.jsonl", "claims.jsonl"):
        if not (sf / name).is_file():
            sys.exit(f"error: SciFact not found: no {sf / name} (pass --scifact DIR)")
    corpus = {}
    with open(sf / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            corpus[str(d["id"])] = d
    with open(sf / "claims.jsonl", encoding="utf-8") as fh:
        claims = [json.loads(line) for line in fh]
    claims = [c for c in claims if c["split"] == args.split and c["cited_ids"]]
    if args.limit:
        claims = claims[: args.limit]

    # Isolated from the developer's environment and config file: only the options above decide.
    settings = Settings.load(env={"ASSISTANT_CONFIG": ""}, home=Path(args.home), candidates=100)
    a = Assistant(settings)
    a.auto_sample = False
    t0 = time.perf_counter()
    rep = a.ingest([sf / "corpus.jsonl"], progress=sys.stderr.isatty())
    ingest_s = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ingest: {rep.papers_total} papers, {rep.chunks_total} chunks; new {rep.new}, unchanged "
          f"{rep.unchanged}; {ingest_s:.1f} s (embedding {rep.embed_seconds:.1f} s); peak RSS {rss_mb:.0f} MB")

    rows: list[tuple[str, float, float, float, float, float]] = []
    floor = PlainBM25({i: f"{d['title']} {d['abstract']}" for i, d in corpus.items()})
    res = {"ndcg": [], "rec": [], "mrr": [], "lat": []}
    for c in claims:
        t = time.perf_counter()
        ranked = floor.search(c["claim"], 100)
        res["lat"].append((time.perf_counter() - t) * 1000)
        rel = set(c["cited_ids"])
        res["ndcg"].append(ndcg_at(ranked, rel))
        res["rec"].append(recall_at(ranked, rel))
        res["mrr"].append(mrr_at(ranked, rel))
    rows.append(("stdlib BM25 (floor, this run)", statistics.mean(res["ndcg"]), statistics.mean(res["rec"]),
                 statistics.mean(res["mrr"]), pct(res["lat"], 0.5), pct(res["lat"], 0.95)))

    a.search("warm up", 5)
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        res = {"ndcg": [], "rec": [], "mrr": [], "lat": []}
        for c in claims:
            t = time.perf_counter()
            ranked = [s.paper.paper_id for s in a.search(c["claim"], 100, mode=mode)]
            res["lat"].append((time.perf_counter() - t) * 1000)
            rel = set(c["cited_ids"])
            res["ndcg"].append(ndcg_at(ranked, rel))
            res["rec"].append(recall_at(ranked, rel))
            res["mrr"].append(mrr_at(ranked, rel))
        rows.append((f"assistant {mode}", statistics.mean(res["ndcg"]), statistics.mean(res["rec"]),
                     statistics.mean(res["mrr"]), pct(res["lat"], 0.5), pct(res["lat"], 0.95)))

    print(f"\nBEIR SciFact, {args.split} claims: {len(claims)}  (relevance = cited_ids)")
    print(f"{'system':58} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'p50 ms':>8} {'p95 ms':>8}")
    for name, nd, rc, mr, p50, p95 in rows:
        print(f"{name:58} {nd:8.3f} {rc:7.3f} {mr:7.3f} {p50:8.1f} {p95:8.1f}")
    for name, nd in ANCHORS:
        print(f"{name + ' [published]':58} {nd:8.3f}")

    figures: dict[str, object] = {"split": args.split, "claims": len(claims), "ingest_seconds": ingest_s,
                                  "peak_rss_mb": rss_mb, "rows": rows}
    if not args.no_evidence:
        figures.update(evidence(a, claims, corpus, best_quote))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def evidence(a: object, claims: list[dict], corpus: dict[str, dict], best_quote: object) -> dict[str, float]:
    """Rationale precision/recall of quotes: (1) quote selection given the gold paper,
    (2) end to end, the citations of `ask(claim)`."""
    sel_hits = sel_total = 0
    cite_hits = cite_total = 0
    gold_pairs = gold_quoted = 0
    refused = 0
    ask_ms: list[float] = []
    for c in claims:
        if c.get("no_evidence"):
            continue
        for doc_id, sets in c["rationales"].items():
            doc = corpus[doc_id]
            spans = spans_of(doc["sentences"])
            rat = [spans[i] for s in sets for i in s]
            q = best_quote(c["claim"], doc["abstract"], a.index.lexical().idf)  # type: ignore[attr-defined]
            sel_total += 1
            sel_hits += bool(q and quote_hits_rationale(q, doc["abstract"], rat))
        t = time.perf_counter()
        ans = a.ask(c["claim"])  # type: ignore[attr-defined]
        ask_ms.append((time.perf_counter() - t) * 1000)
        refused += ans.refused
        quoted: set[str] = set()
        for cit in ans.citations:
            if cit.paper_id in c["rationales"] and cit.quote:
                doc = corpus[cit.paper_id]
                spans = spans_of(doc["sentences"])
                rat = [spans[i] for s in c["rationales"][cit.paper_id] for i in s]
                cite_total += 1
                hit = quote_hits_rationale(cit.quote, doc["abstract"], rat)
                cite_hits += hit
                if hit:
                    quoted.add(cit.paper_id)
        gold_pairs += len(c["rationales"])
        gold_quoted += len(quoted)
    out = {
        "quote_selection_precision": sel_hits / sel_total if sel_total else 0.0,
        "rationale_precision": cite_hits / cite_total if cite_total else 0.0,
        "rationale_recall": gold_quoted / gold_pairs if gold_pairs else 0.0,
        "answers_refused": refused,
        "ask_p50_ms": pct(ask_ms, 0.5) if ask_ms else 0.0,
        "ask_p95_ms": pct(ask_ms, 0.95) if ask_ms else 0.0,
    }
    print("\nEvidence at sentence level (claims with evidence):")
    print(f"  quote selection given the gold paper: {out['quote_selection_precision']:.3f} "
          f"of {sel_total} (claim, paper) pairs quote a rationale sentence")
    print(f"  rationale precision (cited quotes of gold papers that are rationale sentences): "
          f"{out['rationale_precision']:.3f} of {cite_total}")
    print(f"  rationale recall (gold papers whose rationale is quoted): {out['rationale_recall']:.3f} "
          f"of {gold_pairs}; refused answers: {refused}; ask p50 {out['ask_p50_ms']:.1f} ms, "
          f"p95 {out['ask_p95_ms']:.1f} ms")
    return out


if __name__ == "__main__":
    main()
