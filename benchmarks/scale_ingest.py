"""Ingest throughput and peak memory at 10k / 100k synthetic papers.

    python benchmarks/scale_ingest.py --n 10000
    nohup python benchmarks/scale_ingest.py --n 100000 > benchmarks/out/scale-100k.log 2>&1 &

Resumable: ingest commits in batches and skips papers already indexed, so a
killed or interrupted run continues where it stopped when started again (the
figures then cover only the remaining part; the log says how many were new).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()

    from assistant.api import Assistant
    from assistant.settings import Settings

    corpus = OUT / f"synth-{args.n}.jsonl"
    if not corpus.exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_synthetic.py"), "--n", str(args.n),
                        "--out", str(corpus)], check=True)
    a = Assistant(Settings.load(home=OUT / f"home-{args.n}"))
    a.auto_sample = False
    t = time.perf_counter()
    from assistant.cli.progress import reporter

    with reporter() as progress:
        rep = a.ingest([corpus], progress=progress, batch_papers=args.batch)
    secs = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    done = rep.new + rep.updated
    print(f"papers: {rep.papers_total} in index ({done} embedded this run, {rep.unchanged} already there)")
    print(f"chunks written: {rep.chunks_written}; time {secs:.0f} s (embedding {rep.embed_seconds:.0f} s)")
    print(f"throughput: {done / secs:.1f} papers/s, {rep.chunks_written / secs:.1f} chunks/s; peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
