"""Generate a synthetic corpus of N papers (JSONL) from the bundled sample abstracts.

Each synthetic abstract recombines real sentences of the sample (so text and
token statistics stay realistic), each title is unique, dates spread over
2019-2025. Deterministic for a given --seed.

    python benchmarks/make_synthetic.py --n 10000 --out benchmarks/out/synth-10k.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.text import sentences

    papers = read_paths(sample_paths()).papers
    pool = [s for p in papers for s in sentences(p.abstract) if len(s) > 40]
    words = sorted({w for p in papers for w in p.title.replace(":", " ").split() if len(w) > 3})
    rng = random.Random(args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for i in range(args.n):
            title = " ".join(rng.sample(words, 6)) + f" ({i})"
            n_sent = rng.randint(6, 10)
            abstract = " ".join(rng.sample(pool, n_sent))
            date = f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            fh.write(json.dumps({"id": f"synth-{i}", "title": title, "abstract": abstract, "date": date}) + "\n")
    print(f"wrote {args.n} papers to {out}")


if __name__ == "__main__":
    main()
