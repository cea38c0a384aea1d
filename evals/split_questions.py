"""Split the question pool into a fitting set and a validation set, reproducibly.

    python evals/split_questions.py            # rewrite evals/questions/fit.jsonl and validation.jsonl
    python evals/split_questions.py --check    # exit 1 if the files differ from what the split gives

Stratified by question type (and, for unanswerable questions, by kind: near miss or absent study) so
both files have the same mix; within each stratum the questions are shuffled with a fixed seed and the
first `round(share * n)` go to fit. Rows keep their pool order inside each file. Fit is for fitting
models and thresholds, validation for choosing between them; heldout.jsonl (already looked at once)
and heldout-2.jsonl (the untouched set) are never fitted or chosen on.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent / "questions"
SEED = 14
FIT_SHARE = 0.6


def stratum(row: dict) -> str:
    """Type, refined by the kind of unanswerable question, so both kinds land in both splits."""
    kind = row.get("unanswerable_kind") if row["type"] == "unanswerable" else None
    return f"{row['type']}/{kind}" if kind else row["type"]


def split(rows: list[dict], seed: int = SEED, share: float = FIT_SHARE) -> tuple[list[dict], list[dict]]:
    """(fit, validation): per stratum a seeded shuffle of qids, the first round(share * n) to fit."""
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(stratum(r), []).append(r["qid"])
    rng = random.Random(seed)
    fit_ids: set[str] = set()
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng.shuffle(ids)
        fit_ids.update(ids[: round(share * len(ids))])
    return [r for r in rows if r["qid"] in fit_ids], [r for r in rows if r["qid"] not in fit_ids]


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def render(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, default=HERE / "pool.jsonl")
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--share", type=float, default=FIT_SHARE, help="share of each stratum that goes to fit")
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args(argv)
    fit, val = split(read_jsonl(args.pool), args.seed, args.share)
    outputs = {args.out_dir / "fit.jsonl": render(fit), args.out_dir / "validation.jsonl": render(val)}
    if args.check:
        stale = [str(p) for p, text in outputs.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"error: {', '.join(stale)} differ from the split of {args.pool}; run "
                  f"python evals/split_questions.py", file=sys.stderr)
            return 1
        print(f"ok: fit {len(fit)}, validation {len(val)}")
        return 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
    print(f"wrote fit {len(fit)} and validation {len(val)} questions to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
