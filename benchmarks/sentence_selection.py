"""Which of a paper's sentences to keep vectors for (``index.sentence_strategy = top``), chosen on
SciFact **train** claims only, before any dev run.

    python benchmarks/sentence_selection.py [--home DIR] [--split train] [--ks 1,2,3,4,6]

Reads the stored vectors of every abstract sentence of a SciFact home built with all sentence vectors
(default: the newest cached ``~/.cache/paper-assistant-bench/scifact-*`` home) and, for each selection
rule and k, ranks the papers by their best *kept* sentence (the sentence signal retrieval fuses), exact
search: nDCG@10 of that signal alone, and recall@100 (the signal's share in fusion is a top-100 list).
Rules must be computable before embedding (so they save ingest time), except ``central``, a reference
that needs every vector (it saves storage only).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = Path.home() / ".cache" / "paper-assistant-bench"
SCIFACT = Path(os.environ.get("ASSISTANT_SCIFACT_DIR") or REPO.parent / "shared" / "scifact")


def ndcg(ranked: list[str], rel: set[str], k: int = 10) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, p in enumerate(ranked[:k]) if p in rel)
    idcg = sum(1 / math.log2(i + 2) for i in range(min(len(rel), k)))
    return dcg / idcg if idcg else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--split", default="train", choices=["train", "dev"])
    ap.add_argument("--ks", default="1,2,3,4,6")
    args = ap.parse_args()

    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from assistant.index.embeddings import LOCAL_MODELS, OnnxEmbedder
    from assistant.index.sentences import RULES, select_spans

    home = args.home or max((p for p in CACHE.glob("scifact-*") if (p / "READY").exists() and "absent" not in p.name),
                            key=lambda p: p.stat().st_mtime)
    client = chromadb.PersistentClient(path=str(home / "index" / "chroma"),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_collection("papers.sentences")
    t = time.perf_counter()
    parts, metas = [], []
    for offset in range(0, col.count(), 5000):
        got = col.get(include=["embeddings", "metadatas"], limit=5000, offset=offset)
        parts.append(np.asarray(got["embeddings"], dtype=np.float32))
        metas.extend(got["metadatas"])
    vecs = np.vstack(parts)
    print(f"{home}: {len(metas)} sentence vectors loaded in {time.perf_counter() - t:.1f} s")

    corpus = {}
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            corpus[str(d["id"])] = d["abstract"]
    with (SCIFACT / "claims.jsonl").open(encoding="utf-8") as fh:
        claims = [c for c in map(json.loads, fh) if c["split"] == args.split and c["cited_ids"]]
    emb = OnnxEmbedder(LOCAL_MODELS["all-MiniLM-L6-v2-int8"])
    q = emb.embed([c["claim"] for c in claims])
    sims = q @ vecs.T  # claims x sentences
    pid = np.asarray([m["paper_id"] for m in metas])
    span = [(int(m["start"]), int(m["end"])) for m in metas]

    by_paper: dict[str, list[int]] = {}
    for i, p in enumerate(pid):
        by_paper.setdefault(str(p), []).append(i)

    def kept_mask(rule: str, k: int) -> np.ndarray:
        mask = np.zeros(len(metas), dtype=bool)
        for p, rows in by_paper.items():
            rows = sorted(rows, key=lambda i: span[i][0])
            spans = [span[i] for i in rows]
            if rule == "central":
                m = vecs[rows]
                c = m.mean(axis=0)
                keep = set(np.argsort(-(m @ c))[:k].tolist())
            else:
                chosen = set(select_spans(corpus.get(p, ""), spans, rule, k))
                keep = {j for j, s in enumerate(spans) if s in chosen}
            for j in keep:
                mask[rows[j]] = True
        return mask

    def score(mask: np.ndarray) -> tuple[float, float]:
        nd, rc = [], []
        sub = sims[:, mask]
        sub_pid = pid[mask]
        for ci, c in enumerate(claims):
            order = np.argsort(-sub[ci])
            ranked: list[str] = []
            seen: set[str] = set()
            for j in order[:2000]:
                p = str(sub_pid[j])
                if p not in seen:
                    seen.add(p)
                    ranked.append(p)
                if len(ranked) == 100:
                    break
            rel = set(c["cited_ids"])
            nd.append(ndcg(ranked, rel))
            rc.append(len(rel & set(ranked)) / len(rel))
        return float(np.mean(nd)), float(np.mean(rc))

    full = score(np.ones(len(metas), dtype=bool))
    print(f"\nSciFact {args.split}, {len(claims)} claims; sentence signal alone (best kept sentence per paper)")
    print(f"{'rule':10} {'k':>3} {'vectors':>8} {'share':>6} {'nDCG@10':>8} {'R@100':>6}")
    print(f"{'all':10} {'-':>3} {len(metas):8d} {1.0:6.2f} {full[0]:8.3f} {full[1]:6.3f}")
    for k in [int(x) for x in args.ks.split(",")]:
        for rule in [*RULES, "central"]:
            mask = kept_mask(rule, k)
            nd, rc = score(mask)
            print(f"{rule:10} {k:3d} {int(mask.sum()):8d} {mask.mean():6.2f} {nd:8.3f} {rc:6.3f}")


if __name__ == "__main__":
    main()
