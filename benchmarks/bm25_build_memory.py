"""Peak memory of the streamed BM25 build alone, at several corpus sizes, each in a fresh process.

The ingesting client's peak is the BM25 build's (scale_1m.py splits it out); this measures the build
by itself, from a synthetic JSONL corpus read a line at a time, so its growth with the corpus is
seen without a Chroma server or an ingest around it. Each size runs in its own process: imports
first, then the peak (``VmHWM``) reset, so the figure is the build's own; the largest RSS seen in
each pass (tokenising; frequencies and word ids; scores) is sampled every 50 ms. Growth is a ratio
against the smallest size measured in the same run.

    python benchmarks/make_synthetic.py --n 1000000 --out benchmarks/out/synth-1000000.jsonl
    python benchmarks/bm25_build_memory.py --corpus benchmarks/out/synth-1000000.jsonl \\
        --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _mem() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def child(corpus: Path, n: int, keep: Path | None) -> None:
    import bm25s  # noqa: F401  (imported before the reset: the figure is the build's own)
    import numpy as np

    from assistant.index import lexical
    from assistant.records import Paper

    def papers() -> Any:
        with corpus.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= n:
                    return
                r = json.loads(line)
                yield Paper(paper_id=r["id"], title=r["title"], abstract=r["abstract"], date=r.get("date"))

    # Pass boundaries: the build calls these two between its passes.
    marks: list[tuple[str, float]] = []
    for name in ("_raw_to_npy", "_write_vocabulary"):
        def wrap(f: Any, name: str = name) -> Any:
            def g(*a: Any, **k: Any) -> Any:
                marks.append((name, time.time()))
                return f(*a, **k)
            return g
        setattr(lexical, name, wrap(getattr(lexical, name)))
    samples: list[tuple[float, float]] = []

    def sampler() -> None:
        while True:
            samples.append((time.time(), _mem()["VmRSS"]))
            time.sleep(0.05)

    out = Path(tempfile.mkdtemp(prefix="bm25-build-"))
    before = _mem()["VmRSS"]
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM from here
    threading.Thread(target=sampler, daemon=True).start()
    t0 = time.time()
    lexical._build_into(out, papers(), 1, 1.2, 0.75)
    t1 = time.time()
    peak = _mem()["VmHWM"]
    starts = [t0] + [t for _, t in marks[:2]] + [t1]
    passes = [max((r for t, r in samples if a <= t < b), default=0.0) for a, b in zip(starts, starts[1:], strict=False)]
    words = len(np.load(out / "indptr.csc.index.npy")) - 1
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(str(out), keep)
    else:
        shutil.rmtree(out)
    print("RESULT " + json.dumps({"papers": n, "words": words, "rss_before_mb": before, "peak_mb": peak,
                                  "pass_peaks_mb": passes, "seconds": t1 - t0}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=str(REPO / "benchmarks" / "out" / "synth-1000000.jsonl"))
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--keep", default="", help="keep each size's index in this folder (to compare builds)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    corpus = Path(args.corpus)
    if args.child:
        child(corpus, args.child, Path(args.keep) / f"bm25-{args.child}" if args.keep else None)
        return
    if not corpus.exists():
        sys.exit(f"{corpus}: no such corpus; make one with benchmarks/make_synthetic.py (see --help)")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--corpus", str(corpus), "--child", str(n), "--keep", args.keep]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"size {n}: the build failed:\n{res.stderr[-2000:]}")
        row = json.loads(line[7:])
        rows.append(row)
        base = rows[0]
        print(f"{row['papers']:>9,} papers {row['words']:>9,} words  peak {row['peak_mb']:6.1f} MB "
              f"(x{row['peak_mb'] / base['peak_mb']:.2f} against {base['papers']:,}; "
              f"{row['peak_mb'] - row['rss_before_mb']:.1f} MB above the imports)  passes "
              + " / ".join(f"{p:.0f}" for p in row["pass_peaks_mb"]) + f" MB  {row['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
