"""llama.cpp server settings for the small local model: prompt and generation speed, same run.

    python benchmarks/llm_server_flags.py                 # the Qwen 1.5B fixture, 2 threads
    python benchmarks/llm_server_flags.py --rounds 3 --questions 4
    python benchmarks/llm_server_flags.py --only lookup --server-bin ~/llama.cpp/build/bin/llama-server

Starts llama.cpp's server (xllamacpp, tests/llm_server.py) once per setting in turn -- never two
at a time -- and sends each the same real openai-backend prompts (fit questions, evidence chosen as
the backend does) with ``cache_prompt`` off, so every prompt token is read, and lets it write its
real answer (greedy, the backend's JSON schema, at most 256 tokens), so prompt-lookup decoding drafts
what it would in use. Speeds are the server's own timings; the seconds column is prompt plus
generation time for all prompts. ``--server-bin`` adds the same settings on llama.cpp's own
``llama-server`` executable (e.g. built for this CPU). Settings alternate over several rounds and
each is reported as a ratio to the default in the same run: on a shared machine only the ratios mean
anything.
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
    "prompt lookup, drafts of 8": {"lookup": 8},
    "prompt lookup, drafts of 16": {"lookup": 16},
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


def measure(base_url: str, messages: list[list[dict[str, str]]]) -> tuple[float, float, float, float]:
    """(prompt tokens/s, generation tokens/s, seconds, share of drafted tokens accepted) over all
    prompts, from the server's timings."""
    from assistant.answering.generative import ANSWER_FORMAT

    p_n = p_ms = g_n = g_ms = drafted = accepted = 0.0
    for msgs in messages:
        body = {"model": "m", "messages": msgs, "max_tokens": 256, "temperature": 0, "cache_prompt": False,
                "response_format": ANSWER_FORMAT}
        req = urllib.request.Request(f"{base_url}/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as resp:
            t = json.loads(resp.read())["timings"]
        p_n, p_ms = p_n + t["prompt_n"], p_ms + t["prompt_ms"]
        g_n, g_ms = g_n + t["predicted_n"], g_ms + t["predicted_ms"]
        drafted, accepted = drafted + t.get("draft_n", 0), accepted + t.get("draft_n_accepted", 0)
    return p_n / (p_ms / 1000), g_n / (g_ms / 1000), (p_ms + g_ms) / 1000, accepted / drafted if drafted else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times each setting is measured (alternating)")
    parser.add_argument("--questions", type=int, default=3, help="fit questions whose prompts are sent")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated words: measure only settings naming one"
                        " (the default is always measured)")
    parser.add_argument("--server-bin", type=Path, default=None, metavar="PATH",
                        help="also measure each chosen setting on this llama.cpp llama-server executable")
    args = parser.parse_args(argv)
    words = [w.strip() for w in args.only.split(",") if w.strip()]
    chosen = {name: extra for i, (name, extra) in enumerate(SETTINGS.items())
              if i == 0 or not words or any(w in name for w in words)}
    if args.server_bin:
        if not args.server_bin.is_file():
            print(f"error: --server-bin {args.server_bin}: no such file", file=sys.stderr)
            return 2
        chosen |= {f"llama-server: {name}": {**extra, "binary": args.server_bin} for name, extra in chosen.items()}
    from tests.llm_server import find_gguf, start_llama_server

    gguf = find_gguf("qwen")
    if gguf is None:
        print("error: no Qwen GGUF; run python .ci/fetch_test_model.py", file=sys.stderr)
        return 1
    messages = prompts(args.questions)
    tmp = Path(tempfile.mkdtemp(prefix="llm_flags_"))
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in chosen}
    for r in range(args.rounds):
        for name, extra in chosen.items():
            server = start_llama_server(gguf, tmp, n_ctx=2048, threads=args.threads, ready_timeout=300, **extra)
            try:
                results[name].append(measure(server.base_url, messages))
            finally:
                server.stop()
            p, g, sec, acc = results[name][-1]
            print(f"round {r + 1} {name}: prompt {p:.1f} tok/s, generation {g:.1f} tok/s, {sec:.1f} s, "
                  f"drafts accepted {acc:.2f}", file=sys.stderr)
    base = list(SETTINGS)[0]
    med = {name: [statistics.median(v[i] for v in vals) for i in range(4)] for name, vals in results.items()}
    bp, bg, bs, _ = med[base]
    print(f"\n{len(messages)} prompts x {args.rounds} rounds, {args.threads} threads; cpu count {os.cpu_count()}; "
          f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%H:%M')}")
    print(f"{'setting':<48} {'prompt tok/s':>12} {'ratio':>6} {'gen tok/s':>10} {'ratio':>6} {'seconds':>8} "
          f"{'ratio':>6} {'accepted':>8}")
    for name, (p, g, sec, acc) in med.items():
        print(f"{name:<48} {p:>12.1f} {p / bp:>6.2f} {g:>10.1f} {g / bg:>6.2f} {sec:>8.1f} {sec / bs:>6.2f} "
              f"{acc:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
