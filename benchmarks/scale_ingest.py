"""Ingest throughput and peak memory at 10k / 100k synthetic papers.

    python benchmarks/scale_ingest.py --n 10000
    nohup python benchmarks/scale_ingest.py --n 100000 > benchmarks/out/scale-100k.log 2>&1 &
    python benchmarks/scale_ingest.py --n 10000 --sentences both --uncached   # sentence vectors off, then on
    nice -n 15 python benchmarks/scale_ingest.py --n 10000,100000 --fake-vectors --sentences off   # index work only

``--sentences both`` ingests the corpus twice in one run into two fresh homes, with
``index.sentence_vectors`` off and then on, and prints the ratio. Synthetic abstracts
recombine the sample's ~2,000 sentences, so the embedding cache would hide the cost of
sentence vectors; ``--uncached`` embeds every text (as a corpus with no repeated
sentence would).

``--fake-vectors`` skips the embedding model: each text gets a perturbed real sentence vector
(benchmarks/scale_1m.py's stand-in), so the run measures the index's own work and memory. Each size
ingests into a fresh home in its own process; the peak RSS is then shown with the vector index's
share apart, two ways: its HNSW files (which embedded Chroma loads whole), and what the loaded
index takes in a fresh process that opens the collection and runs one query (the files plus
Chroma's in-memory id maps and locks). With two sizes or more, the growth per paper between the
last two is printed beside it.

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
    ap.add_argument("--n", default="10000", help="papers; with --fake-vectors a comma-separated list of sizes")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--sentences", choices=["on", "off", "both"], default="on",
                    help="index.sentence_vectors; both = off then on, fresh homes, same run")
    ap.add_argument("--uncached", action="store_true", help="embed every text (no embedding cache)")
    ap.add_argument("--fake-vectors", action="store_true",
                    help="perturbed real sentence vectors instead of the model (measures index work, not embedding)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--vector-memory", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.vector_memory:
        return vector_memory(Path(args.vector_memory))
    if args.fake_vectors and not args.one:
        return fake_sizes(args)
    args.n = int(args.n)
    if args.fake_vectors:
        home = OUT / f"home-{args.n}-fake-sent-{args.sentences}"
        run(corpus_for(args.n), home, args.sentences == "on", False, args.batch, fake=True)
        return

    corpus = corpus_for(args.n)
    if args.sentences != "both":
        home = OUT / f"home-{args.n}" if args.sentences == "on" and not args.uncached else \
            OUT / f"home-{args.n}-sent-{args.sentences}{'-uncached' if args.uncached else ''}"
        run(corpus, home, args.sentences == "on", args.uncached, args.batch)
        return
    import shutil

    rates = {}
    for on in (False, True):
        home = OUT / f"home-{args.n}-sent-{'on' if on else 'off'}{'-uncached' if args.uncached else ''}"
        shutil.rmtree(home, ignore_errors=True)  # fresh homes: both runs embed everything
        rates[on] = run(corpus, home, on, args.uncached, args.batch)
    print(f"sentence vectors on / off: {rates[True] / rates[False]:.2f}x the papers/s "
          f"({rates[True]:.1f} vs {rates[False]:.1f})")


def _vm_hwm() -> float:
    """This process's peak resident memory, MB (VmHWM: exec resets it, ru_maxrss carries the parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def vector_memory(home: Path) -> None:
    """What the home's chunk-vector index takes in memory once loaded: RSS after opening the
    collection and one query, minus RSS with chromadb imported."""
    import json

    import chromadb  # noqa: F401  (its import is not the index's memory)
    import numpy as np

    from assistant.index.paper_index import PaperIndex
    from assistant.settings import Settings

    r0 = _rss()
    col = PaperIndex(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home)).vectors.collection()
    v = np.random.default_rng(0).standard_normal(384).astype(np.float32)
    col.query(query_embeddings=[(v / np.linalg.norm(v)).tolist()], n_results=10)
    print("RESULT " + json.dumps({"vectors": col.count(), "loaded_mb": _rss() - r0}), flush=True)


def _child(args: list[str]) -> dict:
    import json

    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode or not lines:
        raise SystemExit(f"{args} failed (exit {out.returncode}):\n{out.stdout[-1500:]}{out.stderr[-1500:]}")
    return dict(json.loads(lines[-1][7:]))


def fake_sizes(args: argparse.Namespace) -> None:
    """Each size into a fresh home, in its own process; then the loaded vector index's memory."""
    import shutil

    rows = []
    for n in [int(x) for x in str(args.n).split(",")]:
        home = OUT / f"home-{n}-fake-sent-{args.sentences}"
        shutil.rmtree(home, ignore_errors=True)
        corpus_for(n)
        ing = _child(["--n", str(n), "--one", "--fake-vectors", "--sentences", args.sentences,
                      "--batch", str(args.batch)])
        vm = _child(["--vector-memory", str(home)])
        rest = ing["peak_mb"] - vm["loaded_mb"]
        rows.append({"n": n, **ing, **vm, "rest_mb": rest})
        print(f"{n:,} papers ({vm['vectors']:,} vectors): peak RSS {ing['peak_mb']:.0f} MB = vector index loaded "
              f"in memory {vm['loaded_mb']:.0f} MB (HNSW files {ing['hnsw_mb']:.0f} MB) + the rest {rest:.0f} MB; "
              f"{ing['papers_per_s']:.1f} papers/s", flush=True)
    if len(rows) >= 2:
        a, b = rows[-2], rows[-1]
        dn = b["n"] - a["n"]
        per = (b["rest_mb"] - a["rest_mb"]) * 1024 / dn
        per_files = (b["peak_mb"] - b["hnsw_mb"] - a["peak_mb"] + a["hnsw_mb"]) * 1024 / dn
        dv = (b["vectors"] - a["vectors"]) / 1024 / 1024
        print(f"growth {a['n']:,} -> {b['n']:,} papers beyond the vector index: {per:.2f} KB per paper "
              f"(beyond its HNSW files only: {per_files:.2f} KB per paper); vector index loaded: "
              f"{(b['loaded_mb'] - a['loaded_mb']) / dv:.0f} B per vector, HNSW files "
              f"{(b['hnsw_mb'] - a['hnsw_mb']) / dv:.0f} B per vector")


def corpus_for(n: int) -> Path:
    corpus = OUT / f"synth-{n}.jsonl"
    if not corpus.exists():
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_synthetic.py"), "--n", str(n),
                        "--out", str(corpus)], check=True)
    return corpus


def _cpu() -> float:
    """CPU seconds used by this process (all threads) so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(corpus: Path, home: Path, sentences: bool, uncached: bool, batch: int, fake: bool = False) -> float:
    """Ingest ``corpus`` into ``home``; print and return papers/s."""
    from assistant.api import Assistant
    from assistant.index.embeddings import get_embedder
    from assistant.index.ingest import ingest
    from assistant.settings import Settings

    a = Assistant(Settings.load(home=home, sentence_vectors=sentences))
    a.auto_sample = False
    embedder = get_embedder(a.settings) if uncached else None
    if embedder is not None:
        embedder.embed(["warm up"])  # model load outside the timing
    if fake:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from scale_1m import PerturbedEmbedder, base_vectors

        embedder = PerturbedEmbedder(base_vectors(OUT / "scale-1m"), a.settings.embedding_model_name)
    from assistant.cli.progress import reporter

    cpu0, t = _cpu(), time.perf_counter()
    with reporter() as progress:
        rep = ingest(a.index, [corpus], reporter=progress, batch_papers=batch, embedder=embedder)
    secs, cpu = time.perf_counter() - t, _cpu() - cpu0
    rss = _vm_hwm()
    done = rep.new + rep.updated
    print(f"[sentence_vectors={'on' if sentences else 'off'}{', uncached' if uncached else ''}] {home}")
    print(f"papers: {rep.papers_total} in index ({done} embedded this run, {rep.unchanged} already there)")
    print(f"texts: {rep.chunks_written} chunks + {rep.sentences_written} sentences; time {secs:.0f} s "
          f"(embedding {rep.embed_seconds:.0f} s)")
    print(f"throughput: {done / secs:.1f} papers/s, {(rep.chunks_written + rep.sentences_written) / secs:.1f} "
          f"texts/s; peak RSS {rss:.0f} MB; CPU {cpu:.0f} s ({done / cpu if cpu else 0:.1f} papers per CPU-s: "
          "less sensitive than wall time to other work on the machine)", flush=True)
    if fake:
        hnsw = sum(f.stat().st_size for d in (home / "index" / "chroma").iterdir() if d.is_dir()
                   for f in d.rglob("*") if f.is_file()) / 1024 / 1024
        print(f"[stand-in vectors: perturbed real sentence vectors, no embedding model] peak RSS {rss:.0f} MB = "
              f"vector index (HNSW files, loaded whole) {hnsw:.0f} MB + the rest {rss - hnsw:.0f} MB; "
              f"catalogue {(home / 'index' / 'catalogue.sqlite').stat().st_size / 1024 / 1024:.0f} MB, "
              f"BM25 {sum(f.stat().st_size for f in (home / 'index' / 'bm25').iterdir()) / 1024 / 1024:.0f} MB "
              "on disk", flush=True)
        import json

        print("RESULT " + json.dumps({"peak_mb": rss, "hnsw_mb": hnsw, "papers_per_s": done / secs if secs else 0.0}),
              flush=True)
    return done / secs if secs else 0.0


if __name__ == "__main__":
    main()
