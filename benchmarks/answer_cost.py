"""Cost of the answer stage alone: the fitted `extractive` backend beside `extractive-rules`, same run.

Usage:
    python benchmarks/answer_cost.py [--questions evals/questions/validation.jsonl] [--rounds 5]

Retrieval runs once per question (over the cached sample-minus-held-out index of answer_quality.py);
then each backend answers every question from the same sources, the two alternating round by round,
so machine load hits both alike. Prints p50 / p95 ms per question for each and the ratio. Add the
retrieval p50 of `query_latency.py` to get the warm `ask` figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import answer_quality as aq  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=Path, default=aq.QUESTIONS / "validation.jsonl")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=aq.CACHE)
    args = ap.parse_args(argv)
    from assistant.answering.base import AnswerContext

    records = aq.sample_minus_holdout(aq.holdout_titles())
    a = aq.open_assistant(aq.prepared_home("sample", records, args.cache), args.cache)
    questions = [json.loads(x)["question"] for x in args.questions.read_text(encoding="utf-8").splitlines()
                 if x.strip()]
    idf = a.index.lexical().idf
    retrieved = [(q, a.retriever.retrieve(q)) for q in questions]
    backends = {name: a.answerer(name) for name in ("extractive", "extractive-rules")}
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.rounds):
        for name, b in backends.items():
            for q, r in retrieved:
                t = time.perf_counter()
                b.answer(q, r.sources, AnswerContext(idf=idf, chunk_sims=r.chunk_sims, sentence_sims=r.sentence_sims))
                times[name].append((time.perf_counter() - t) * 1000)
    print(f"{args.questions.name}: {len(questions)} questions x {args.rounds} rounds, answer stage only "
          f"({len(records)} papers)")
    for name, ts in times.items():
        print(f"{name:18} p50 {aq.percentile(ts, 0.5):7.2f} ms   p95 {aq.percentile(ts, 0.95):7.2f} ms")
    ratio = aq.percentile(times["extractive"], 0.5) / max(1e-9, aq.percentile(times["extractive-rules"], 0.5))
    print(f"ratio fitted / rules (p50): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
