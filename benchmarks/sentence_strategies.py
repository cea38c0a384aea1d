"""Sentence vectors at scale (issue 27 item 3): what each ``index.sentence_strategy`` costs in answer
quality, and what it saves in stored vectors, disk, embedding work and ingest time, in one run.

    python benchmarks/sentence_strategies.py [--strategies all,top,query-time,off] [--slice 300] [--skip-quality]

For each strategy (``off`` = ``index.sentence_vectors = false``):

- quality: ``benchmarks/beir_scifact.py --split dev --modes hybrid`` (SciFact dev retrieval and sentence
  evidence, its own home per strategy, embeddings served by the shared bench cache so only Chroma and
  BM25 work is redone) and ``benchmarks/answer_quality.py --sentence-strategy S`` (validation questions);
- storage: vectors stored (chunks + sentences) and the Chroma folder's bytes of that SciFact home;
- embedding work at ingest: texts and tokens the strategy embeds for the whole SciFact corpus;
- ingest time: a fresh home *and a fresh embedding cache* per strategy on the first ``--slice`` SciFact
  abstracts (every text really embedded), strategies alternating in one process.

The subprocesses run at this process's priority (start it under ``nice -n 15`` on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = Path.home() / ".cache" / "paper-assistant-bench"
SCIFACT = Path(os.environ.get("ASSISTANT_SCIFACT_DIR", str(REPO.parent / "shared" / "scifact")))


def index_env(strategy: str) -> dict[str, str]:
    if strategy == "off":
        return {"ASSISTANT_SENTENCE_VECTORS": "false"}
    return {"ASSISTANT_SENTENCE_STRATEGY": strategy}


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_json(cmd: list[str], env: dict[str, str], out: Path, log: Path) -> dict:
    with log.open("w") as fh:
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=True, cwd=REPO)
    return json.loads(out.read_text())


def embedding_work(strategy: str, k: int) -> tuple[int, int, int, int]:
    """(chunks, sentences, chunk tokens, sentence tokens) the strategy embeds for the SciFact corpus."""
    from assistant.index.chunking import chunk_paper, count_tokens, embed_text
    from assistant.index.embeddings import LOCAL_MODELS, OnnxEmbedder
    from assistant.index.sentences import stored_spans
    from assistant.readers import read_paths
    from assistant.settings import Settings

    s = Settings.load(config_file="", env={})
    emb = OnnxEmbedder(LOCAL_MODELS[s.embedding_model_name])
    papers = read_paths([SCIFACT / "corpus.jsonl"]).papers
    nc = ns = tc = ts = 0
    for p in papers:
        for c in chunk_paper(p, s.index.chunk_size, s.index.chunk_overlap, fits=emb.fits):
            nc += 1
            tc += count_tokens(embed_text(p, c))
        for a, b in stored_spans(p, "off" if strategy == "off" else strategy, k):
            ns += 1
            ts += count_tokens(p.abstract[a:b])
    return nc, ns, tc, ts


def timed_ingest(strategies: list[str], n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Uncached ingest of the first ``n`` SciFact abstracts per strategy, alternating, medians."""
    from assistant.api import Assistant
    from assistant.settings import Settings

    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    out: dict[str, list[tuple[float, float, int]]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "slice.jsonl"
        src.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for r in range(rounds):
            for strat in strategies:
                index: dict[str, object] = ({"sentence_vectors": False} if strat == "off"
                                            else {"sentence_strategy": strat})
                home = Path(tmp) / f"{strat}-{r}"
                a = Assistant(Settings.load(config_file="", env={}, home=home, cache_dir=home / "cache",
                                            index=index))
                a.auto_sample = False
                c0 = time.process_time()
                t0 = time.perf_counter()
                rep = a.ingest([src])
                wall = time.perf_counter() - t0
                cpu = time.process_time() - c0
                out[strat].append((wall, cpu, rep.sentences_written))
                a.index.close()
                print(f"  round {r + 1} {strat:10} {wall:6.1f} s wall, {cpu:6.1f} CPU-s, "
                      f"{rep.chunks_written} chunks + {rep.sentences_written} sentences", flush=True)
    return {s: {"wall": statistics.median(w for w, _, _ in v), "cpu": statistics.median(c for _, c, _ in v),
                "sentences": v[0][2]} for s, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strategies", default="all,top,query-time,off")
    ap.add_argument("--slice", type=int, default=300, help="SciFact abstracts ingested uncached per strategy")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-work", action="store_true", help="do not count the texts and tokens each strategy embeds")
    ap.add_argument("--reuse-home", type=Path, default=None,
                    help="for query-time and off, a copy of this SciFact home built with all (the papers, chunks and "
                         "BM25 are the same; query-time is recorded in the copy and its sentence vectors ignored, "
                         "off reads none) instead of a new build: saves a whole ingest")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "sentence_strategies")
    args = ap.parse_args()
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)

    from assistant.settings import Settings

    k = Settings.load(config_file="", env={}).index.sentence_top
    results: dict[str, dict] = {s: {} for s in strategies}
    base_env = {key: v for key, v in os.environ.items() if not key.startswith(("ASSISTANT_", "OPENAI_", "CHROMA_"))}
    base_env.update({"ASSISTANT_CONFIG": "", "ASSISTANT_CACHE_DIR": str(CACHE / "embed-cache"),
                     "ASSISTANT_SCIFACT_DIR": str(SCIFACT), "PYTHONPATH": str(REPO)})

    for strat in strategies:
        r = results[strat]
        r["chunks"], r["sentences"], r["chunk_tokens"], r["sentence_tokens"] = (
            (0, 0, 0, 0) if args.skip_work else embedding_work(strat, k))
        print(f"{strat}: embeds {r['chunks']} chunks ({r['chunk_tokens']} tokens) + {r['sentences']} sentences "
              f"({r['sentence_tokens']} tokens) for the SciFact corpus", flush=True)
        if args.skip_quality:
            continue
        home = args.out / f"scifact-{strat}"
        env = dict(base_env, **index_env(strat))
        if args.reuse_home and strat in ("query-time", "off") and not home.exists():
            import shutil
            import sqlite3

            shutil.copytree(args.reuse_home, home)
            if strat == "query-time":
                db = sqlite3.connect(home / "index" / "catalogue.sqlite")
                db.execute("UPDATE meta SET value = 'query-time' WHERE key = 'sentence_strategy'")
                db.commit()
                db.close()
            r["reused_home"] = str(args.reuse_home)
        t = time.perf_counter()
        out = args.out / f"beir-{strat}.json"
        beir = run_json([sys.executable, "benchmarks/beir_scifact.py", "--split", "dev", "--modes", "hybrid",
                         "--scifact", str(SCIFACT), "--home", str(home), "--json", str(out)],
                        env, out, args.out / f"beir-{strat}.log")
        r["beir"] = beir
        chroma = home / "index" / "chroma"
        r["chroma_bytes"] = None if "reused_home" in r else dir_bytes(chroma)
        from assistant.api import Assistant

        a = Assistant(Settings.load(config_file="", env={}, home=home, index={"sentence_vectors": strat != "off"}))
        r["stored_chunks"] = a.index.vectors.count()
        r["stored_sentences"] = 0 if strat in ("query-time", "off") else a.index.vectors.sentences.count()
        a.index.close()
        print(f"{strat}: SciFact dev done in {time.perf_counter() - t:.0f} s: {beir['rows'][-1]}", flush=True)
        aq = args.out / f"validation-{strat}.json"
        aq_strat = "off" if strat == "off" else strat
        run_json([sys.executable, "benchmarks/answer_quality.py", "--sentence-strategy", aq_strat,
                  "--json", str(aq)], dict(base_env), aq, args.out / f"validation-{strat}.log")
        r["validation"] = json.loads(aq.read_text())["assistant"]
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    if not args.skip_ingest:
        print(f"uncached ingest of the first {args.slice} SciFact abstracts, {args.rounds} round(s):", flush=True)
        for strat, v in timed_ingest(strategies, args.slice, args.rounds).items():
            results[strat]["ingest"] = v
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nSentence strategies (k = {k} for top); figures in {args.out}")
    head = ["strategy", "sentence vecs", "stored vecs", "chroma MB", "embed tokens", "ingest s", "ingest CPU-s",
            "dev nDCG@10", "dev R@100", "quote sel.", "rat. prec", "rat. rec", "SciFact ask p50",
            "val quote", "val cit.prec", "val FR", "val unans.", "val p50 ms"]
    print(" | ".join(head))
    for strat in strategies:
        r = results[strat]
        b = r.get("beir", {})
        hyb = b.get("rows", [[None] * 6])[-1]
        v = r.get("validation", {})
        ing = r.get("ingest", {})

        def f(x: object, nd: int = 3) -> str:
            return "–" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

        print(" | ".join([strat, f(r.get("stored_sentences")),
                          f(None if "stored_chunks" not in r else r["stored_chunks"] + r["stored_sentences"]),
                          f(r["chroma_bytes"] / 1e6 if r.get("chroma_bytes") else None, 1),
                          str(r["chunk_tokens"] + r["sentence_tokens"]), f(ing.get("wall"), 1), f(ing.get("cpu"), 1),
                          f(hyb[1]), f(hyb[2]), f(b.get("quote_selection_precision")),
                          f(b.get("rationale_precision")), f(b.get("rationale_recall")), f(b.get("ask_p50_ms"), 1),
                          f(v.get("quote_is_answering_sentence")), f(v.get("citation_precision")),
                          f(v.get("false_refusal_rate")), f(v.get("unanswerable_refused")), f(v.get("p50_ms"), 1)]))
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
