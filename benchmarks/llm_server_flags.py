"""llama.cpp server settings for the small local model: prompt and generation speed, same run.

    python benchmarks/llm_server_flags.py                 # the Qwen 1.5B fixture, 2 threads
    python benchmarks/llm_server_flags.py --rounds 3 --questions 4

Starts llama.cpp's server (xllamacpp, tests/llm_server.py) once per setting in turn -- never two
at a time -- and sends each the same real openai-backend prompts (fit questions, evidence chosen as
the backend does) with ``cache_prompt`` off, so every prompt token is read, and a fixed 48-token
generation (``ignore_eos``). Speeds are the server's own timings. Settings alternate over several
rounds and each is reported as a ratio to the default in the same run: on a shared machine only the
ratios mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: name -> extra arguments of tests/llm_server.py (beside --threads and --n-ctx)
SETTINGS: dict[str, dict[str, Any]] = {
    "default (flash auto, ubatch 512)": {},
    "flash attention on": {"flash_attn": "on"},
    "flash attention off": {"flash_attn": "off"},
    "ubatch 128": {"ubatch": 128},
    "ubatch 1024, batch 1024": {"ubatch": 1024, "batch": 1024},
}


def prompts(n: int) -> list[list[dict[str, str]]]:
    """The openai backend's messages for the first ``n`` answerable fit questions."""
    from assistant.answering.features import question_view
    from assistant.answering.fitted import compose, score, shipped_model
    from assistant.answering.generative import build_messages, evidence_from_candidates
    from assistant.evaluation.questions import load_questions
    from assistant.settings import LLMSettings
    from benchmarks.answer_quality import CACHE, open_assistant
    from benchmarks.llm_path import default_home

    fit = REPO / "evals" / "questions" / "fit.jsonl"
    a = open_assistant(default_home(fit), CACHE)
    idf = a.index.lexical().idf
    cfg = LLMSettings()
    out = []
    for q in [q for q in load_questions(fit) if q.answerable][:n]:
        res = a.retriever.retrieve(q.question)
        view = question_view(q.question, idf)
        cands = score(shipped_model(), view, res.sources, res.chunk_sims, res.sentence_sims)
        ev = evidence_from_candidates(res.sources, cands, compose(shipped_model(), view, res.sources, cands).picked,
                                      max_papers=cfg.evidence_papers, per_paper=cfg.evidence_sentences,
                                      budget_chars=cfg.evidence_chars)
        out.append(build_messages(q.question, ev, structured=True))
    return out


def measure(base_url: str, messages: list[list[dict[str, str]]]) -> tuple[float, float]:
    """(prompt tokens/s, generation tokens/s) over all prompts, from the server's timings."""
    p_n = p_ms = g_n = g_ms = 0.0
    for msgs in messages:
        body = {"model": "m", "messages": msgs, "max_tokens": 48, "temperature": 0, "cache_prompt": False,
                "ignore_eos": True}
        req = urllib.request.Request(f"{base_url}/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            t = json.loads(resp.read())["timings"]
        p_n, p_ms = p_n + t["prompt_n"], p_ms + t["prompt_ms"]
        g_n, g_ms = g_n + t["predicted_n"], g_ms + t["predicted_ms"]
    return p_n / (p_ms / 1000), g_n / (g_ms / 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each setting is measured (alternating)")
    parser.add_argument("--questions", type=int, default=3, help="fit questions whose prompts are sent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated words: measure only settings naming one"
                        " (the default is always measured)")
    args = parser.parse_args(argv)
    words = [w.strip() for w in args.only.split(",") if w.strip()]
    chosen = {name: extra for i, (name, extra) in enumerate(SETTINGS.items())
              if i == 0 or not words or any(w in name for w in words)}
    from tests.llm_server import find_gguf, start_llama_server

    gguf = find_gguf("qwen")
    if gguf is None:
        print("error: no Qwen GGUF; run python .ci/fetch_test_model.py", file=sys.stderr)
        return 1
    messages = prompts(args.questions)
    tmp = Path(tempfile.mkdtemp(prefix="llm_flags_"))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in chosen}
    for r in range(args.rounds):
        for name, extra in chosen.items():
            server = start_llama_server(gguf, tmp, n_ctx=2048, threads=args.threads, ready_timeout=300, **extra)
            try:
                results[name].append(measure(server.base_url, messages))
            finally:
                server.stop()
            print(f"round {r + 1} {name}: prompt {results[name][-1][0]:.1f} tok/s, "
                  f"generation {results[name][-1][1]:.1f} tok/s", file=sys.stderr)
    base = list(SETTINGS)[0]
    bp = statistics.median(p for p, _ in results[base])
    bg = statistics.median(g for _, g in results[base])
    print(f"\n{len(messages)} prompts x {args.rounds} rounds, {args.threads} threads; cpu count {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%H:%M')}")
    print(f"{'setting':<34} {'prompt tok/s':>12} {'ratio':>6} {'gen tok/s':>10} {'ratio':>6}")
    for name, vals in results.items():
        p = statistics.median(v for v, _ in vals)
        g = statistics.median(v for _, v in vals)
        print(f"{name:<34} {p:>12.1f} {p / bp:>6.2f} {g:>10.1f} {g / bg:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
