"""Convert SciFact claims to an eval question set (and optionally a small corpus slice).

    python evals/scifact_to_questions.py ../shared/scifact/claims.jsonl ../shared/scifact/corpus.jsonl \
        --split dev --limit 50 --out /tmp/scifact-dev.jsonl [--corpus-out /tmp/slice.jsonl --others 200]

Writes outside the repository: SciFact is never copied into the project.
The conversion logic lives in assistant/evaluation/scifact.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.errors import AssistantError  # noqa: E402
from assistant.evaluation.scifact import convert, corpus_slice, write_jsonl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("claims", type=Path, help="SciFact claims.jsonl (derived file)")
    ap.add_argument("corpus", type=Path, help="SciFact corpus.jsonl (derived file)")
    ap.add_argument("--split", choices=("train", "dev"), default="dev")
    ap.add_argument("--limit", type=int, default=None, help="keep a seeded sample of N claims (file order kept)")
    ap.add_argument("--evidence-only", action="store_true", help="skip claims without rationale sentences")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--out", type=Path, required=True, help="question-set JSONL to write")
    ap.add_argument("--corpus-out", type=Path, default=None,
                    help="also write the cited docs plus --others distractors as corpus JSONL")
    ap.add_argument("--others", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        questions, corpus = convert(args.claims, args.corpus, split=args.split, limit=args.limit, seed=args.seed,
                                    evidence_only=args.evidence_only)
        write_jsonl(questions, args.out)
        print(f"wrote {len(questions)} questions to {args.out}")
        if args.corpus_out:
            docs = corpus_slice(questions, corpus, others=args.others, seed=args.seed)
            write_jsonl(docs, args.corpus_out)
            print(f"wrote {len(docs)} documents to {args.corpus_out}")
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
