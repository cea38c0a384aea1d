"""Raw embedding throughput vs end-to-end ingest throughput, measured in one run.

    python benchmarks/embed_vs_ingest.py [--batch-sizes 1,2,4,8]

Raw = the ONNX embedder alone on exactly the texts ingest embeds (title + chunk
of each sample paper). Ingest = `Assistant.ingest` of the sample into a fresh
home with an empty embedding cache (reading, chunking, embedding, Chroma, BM25).
Overhead = 1 - ingest texts/s / raw texts/s; the target is under 10%.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="1,4,16")
    args = ap.parse_args()

    from assistant.api import Assistant
    from assistant.index.chunking import chunk_paper, embed_text
    from assistant.index.embeddings import LOCAL_MODELS, OnnxEmbedder
    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.settings import Settings

    settings = Settings.load()
    papers = read_paths(sample_paths()).papers
    texts = [embed_text(p, c) for p in papers for c in chunk_paper(p, settings.chunk_size, settings.chunk_overlap)]
    print(f"{len(papers)} papers -> {len(texts)} chunks to embed")

    raw_rates = {}
    for bs in [int(x) for x in args.batch_sizes.split(",")]:
        emb = OnnxEmbedder(LOCAL_MODELS[settings.embedding_model_name], threads=settings.threads, batch_size=bs)
        emb.embed(texts[:8])
        t = time.perf_counter()
        emb.embed(texts)
        raw_rates[bs] = len(texts) / (time.perf_counter() - t)
        print(f"raw embedding, batch {bs:>3}: {raw_rates[bs]:7.1f} texts/s "
              f"({emb.workers} single-threaded session(s) in parallel)")
        if bs == settings.embed_batch_size and emb.workers > 1:
            emb.workers = 1  # the baseline: one session using all cores
            t = time.perf_counter()
            emb.embed(texts)
            one = len(texts) / (time.perf_counter() - t)
            print(f"raw embedding, batch {bs:>3}: {one:7.1f} texts/s (one session on all cores; "
                  f"parallel sessions are {raw_rates[bs] / one:.2f}x)")

    with tempfile.TemporaryDirectory() as tmp:
        a = Assistant(Settings.load(home=Path(tmp) / "home"))
        _ = a.embedder  # load the model outside the timed region, as raw embedding did
        t = time.perf_counter()
        rep = a.ingest(sample_paths())
        secs = time.perf_counter() - t
    rate = rep.chunks_written / secs
    raw = raw_rates.get(settings.embed_batch_size, max(raw_rates.values()))
    print(f"ingest end to end       : {rate:7.1f} texts/s  ({rep.papers_total} papers, {rep.chunks_written} chunks, "
          f"{secs:.1f} s, of which embedding {rep.embed_seconds:.1f} s)")
    print(f"ratio ingest/raw (batch {settings.embed_batch_size}): {rate / raw:.3f}  -> pipeline overhead "
          f"{(1 - rate / raw) * 100:.1f}%")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
