"""Warm `ask` and retrieval latency, cold CLI start and peak memory, at several corpus sizes.

    python benchmarks/query_latency.py                      # sample corpus (247 papers)
    python benchmarks/query_latency.py --sizes 250,10000    # + synthetic 10k (built if missing)
    python benchmarks/query_latency.py --sizes 100000       # after scale_ingest.py built it
    python benchmarks/query_latency.py --sizes 250 --baseline sentences-off   # + same-run baseline
    python benchmarks/query_latency.py --sizes 250 --baseline hnsw            # exact search vs HNSW

``--baseline sentences-off`` also times the same home with ``index.sentence_vectors`` off
at question time (no sentence fetch, no sentence ranking signal), alternating with the
default round by round, and prints the ratio. ``--baseline hnsw`` does the same with
``retrieval.exact_search_max = 0`` (Chroma's HNSW instead of the exact search small indexes get).

Synthetic corpora come from make_synthetic.py and are ingested into
benchmarks/out/home-<N>/ (resumable: ingest skips what is already there).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO))
from benchmarks.harness import pct  # noqa: E402


def questions() -> list[str]:
    path = REPO / "evals" / "questions" / "dev.jsonl"
    if path.exists():
        return [json.loads(line)["question"] for line in path.open() if line.strip()]
    return ["Which papers drop the reference model from preference optimisation?",
            "What does ARRA align LLM hidden states with?", "How is alignment evaluated for multimodal models?"]


def home_for(size: int) -> tuple[Path, list[Path]]:
    from assistant.index.ingest import sample_paths

    if size <= 250:
        return OUT / "home-sample", sample_paths()
    corpus = OUT / f"synth-{size}.jsonl"
    if not corpus.exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_synthetic.py"), "--n", str(size),
                        "--out", str(corpus)], check=True)
    return OUT / f"home-{size}", [corpus]


def cold(cmd: list[str], env: dict[str, str], runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="250")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", choices=["", "sentences-off", "hnsw"], default="",
                    help="also time this variant of the settings on the same home, alternating")
    args = ap.parse_args()

    from assistant.api import Assistant
    from assistant.settings import Settings

    qs = questions()
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        home, sources = home_for(size)
        a = Assistant(Settings.load(home=home))
        a.auto_sample = False
        t = time.perf_counter()
        rep = a.ingest(sources, progress=sys.stderr.isatty())
        print(f"[{size}] index ready: {rep.papers_total} papers ({rep.new} new, {time.perf_counter() - t:.1f} s)")
        a.ask(qs[0])
        base = None
        if args.baseline:
            variant = {"sentences-off": {"index": {"sentence_vectors": False}},
                       "hnsw": {"retrieval": {"exact_search_max": 0}}}[args.baseline]
            base = Assistant(Settings.load(home=home).with_(**variant))
            base.auto_sample = False
            base.ask(qs[0])
        ask_ms, ret_ms = [], []
        base_ask: list[float] = []
        for _ in range(args.repeat):
            for q in qs:
                t = time.perf_counter()
                a.search(q)
                ret_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                a.ask(q)
                ask_ms.append((time.perf_counter() - t) * 1000)
            if base is not None:
                for q in qs:
                    t = time.perf_counter()
                    base.ask(q)
                    base_ask.append((time.perf_counter() - t) * 1000)
        if base is not None:
            print(f"[{size}] warm ask p50 {pct(ask_ms, .5):.1f} ms (p95 {pct(ask_ms, .95):.1f}); "
                  f"{args.baseline}: p50 {pct(base_ask, .5):.1f} ms (p95 {pct(base_ask, .95):.1f}); "
                  f"ratio {pct(ask_ms, .5) / pct(base_ask, .5):.2f}")
            base.index.close()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
        env["ASSISTANT_HOME"] = str(home)
        help_ms = cold(["assistant", "--help"], env)
        ask_cold_ms = cold(["assistant", "ask", "--json", qs[0]], env)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((rep.papers_total, pct(ask_ms, .5), pct(ask_ms, .95), pct(ret_ms, .5), pct(ret_ms, .95),
                     help_ms, ask_cold_ms, rss))
        a.index.close()
    print(f"\n{'papers':>7} {'ask p50':>8} {'ask p95':>8} {'ret p50':>8} {'ret p95':>8} {'--help':>8} "
          f"{'cold ask':>9} {'peak RSS':>9}")
    for r in rows:
        print(f"{r[0]:>7} {r[1]:7.1f}ms {r[2]:7.1f}ms {r[3]:7.1f}ms {r[4]:7.1f}ms {r[5]:7.0f}ms {r[6]:8.0f}ms "
              f"{r[7]:7.0f}MB")


if __name__ == "__main__":
    main()
