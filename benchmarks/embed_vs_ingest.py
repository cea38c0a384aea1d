"""Raw embedding throughput vs end-to-end ingest throughput, measured in one run, for the local ONNX
model and (optionally) an OpenAI-compatible embeddings endpoint.

    python benchmarks/embed_vs_ingest.py [--batch-sizes 1,4,16] [--rounds 3]
    python benchmarks/embed_vs_ingest.py --llama-server [--endpoint-papers 40]   # + llama.cpp /v1/embeddings
    python benchmarks/embed_vs_ingest.py --endpoint http://gpu-box:8080/v1 --endpoint-model NAME

Raw = the embedder alone on exactly the texts ingest embeds (title + chunk of each sample paper, and
the abstract sentences ``index.sentence_strategy`` stores: every one at the sample's size). Ingest =
`Assistant.ingest` of the same papers into a fresh home with an empty embedding cache (reading,
chunking, embedding, Chroma, catalogue, BM25). Overhead = 1 - ingest papers/s / raw papers/s; the
target is under 10%.

Local model, first: how best to use the cores. One single-threaded ONNX session per core in parallel
(the default) against one session whose intra-op threads span every core, at each batch size.

Endpoint: ``--llama-server`` starts llama.cpp's server (xllamacpp, tests/llm_server.py) with SmolLM2-135M
and embeddings on, ONE thread (the machine is shared), and measures the openai backend against it on
the first ``--endpoint-papers`` sample papers (a 135M model on one thread is slow; a GPU server is the
use case). ``--endpoint URL`` measures a server already running.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def texts_of(papers: list[Any], settings: Any, fits: Any) -> list[str]:
    """Every text ingest embeds for ``papers``: chunks (title + chunk), then stored sentences."""
    from assistant.index.chunking import chunk_paper, embed_text
    from assistant.index.sentences import resolve, rows

    ix = settings.index
    out = [embed_text(p, c) for p in papers for c in chunk_paper(p, ix.chunk_size, ix.chunk_overlap, fits=fits)]
    out += [p.abstract[a:b] for p, a, b in rows(papers, resolve(settings, len(papers)), ix.sentence_top)]
    return out


def alternate(label: str, papers: list[Any], texts: list[str], embed: Any, make_settings: Any, src: list[Path],
              rounds: int) -> None:
    """Raw and ingest alternate for ``rounds`` rounds (medians): on a 2-core machine back-to-back runs of
    the same work differ by several percent."""
    from assistant.api import Assistant

    raws, rates, ratios = [], [], []
    for r in range(rounds):
        t = time.perf_counter()
        embed(texts)
        raw_s = time.perf_counter() - t
        raw = len(papers) / raw_s
        with tempfile.TemporaryDirectory() as tmp:
            a = Assistant(make_settings(Path(tmp) / "home"))  # fresh index and embedding cache
            a.auto_sample = False
            t = time.perf_counter()
            rep = a.ingest(src)
            secs = time.perf_counter() - t
            a.index.close()
        assert rep.papers_total == len(papers), rep
        assert rep.chunks_written + rep.sentences_written == len(texts), (rep, len(texts))
        rate = rep.papers_total / secs
        raws.append(raw)
        rates.append(rate)
        ratios.append(rate / raw)
        print(f"{label} round {r + 1}: raw {raw:6.2f} papers/s ({len(texts) / raw_s:6.1f} texts/s), ingest "
              f"{rate:6.2f} papers/s ({rep.papers_total} papers, {rep.chunks_written} chunks + "
              f"{rep.sentences_written} sentences, {secs:.1f} s, embedding {rep.embed_seconds:.1f} s), "
              f"ratio {rate / raw:.3f}", flush=True)
    ratio = statistics.median(ratios)
    print(f"{label} median: raw {statistics.median(raws):.2f} papers/s, ingest end to end "
          f"{statistics.median(rates):.2f} papers/s, ratio ingest/raw {ratio:.3f} -> pipeline overhead "
          f"{(1 - ratio) * 100:.1f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", default="1,4,16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-local", action="store_true", help="endpoint only")
    ap.add_argument("--local-papers", type=int, default=0, help="first N sample papers for the local run (0 = all)")
    ap.add_argument("--llama-server", action="store_true",
                    help="start llama.cpp's server (SmolLM2, embeddings on, 1 thread) and measure it too")
    ap.add_argument("--endpoint", default="", help="an OpenAI-compatible base URL to measure (e.g. .../v1)")
    ap.add_argument("--endpoint-model", default="smollm2")
    ap.add_argument("--endpoint-papers", type=int, default=40, help="sample papers for the endpoint run")
    ap.add_argument("--endpoint-texts", type=int, default=64, help="index.embedding_request_texts")
    ap.add_argument("--endpoint-concurrency", type=int, default=2, help="index.embedding_concurrency")
    ap.add_argument("--endpoint-timeout", type=float, default=600.0,
                    help="index.embedding_timeout (a 1-thread server on a loaded machine is slow)")
    args = ap.parse_args()

    from assistant.index.chunking import chunk_paper
    from assistant.index.embeddings import LOCAL_MODELS, OnnxEmbedder, _usable_cores
    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.settings import Settings

    settings = Settings.load(config_file="", env={})
    t = time.perf_counter()
    papers = read_paths(sample_paths()).papers
    chunk_paper(papers[0], settings.index.chunk_size, settings.index.chunk_overlap)
    import bm25s  # noqa: F401
    import chromadb  # noqa: F401
    print(f"one-time imports (llama-index chunker, nltk, tiktoken, chromadb, bm25s): {time.perf_counter() - t:.1f} s "
          "(paid once per process; kept outside the timed ingest, like the model load)")
    print(f"cores usable: {_usable_cores()}; load average {os.getloadavg()[0]:.1f}")

    if not args.skip_local:
        spec = LOCAL_MODELS[settings.embedding_model_name]
        probe = OnnxEmbedder(spec)
        src = sample_paths()
        if args.local_papers:
            papers = papers[: args.local_papers]
            src = [jsonl_of(papers, Path(tempfile.mkdtemp()) / "papers.jsonl")]
        texts = texts_of(papers, settings, probe.fits)
        print(f"{len(papers)} papers -> {len(texts)} texts to embed ({len(texts) / len(papers):.1f} per paper)")
        for bs in [int(x) for x in args.batch_sizes.split(",")]:
            emb = OnnxEmbedder(spec, threads=settings.index.threads, batch_size=bs)
            emb.embed(texts[:8])
            for workers, how in ((emb.workers, f"{emb.workers} single-threaded session(s) in parallel (default)"),
                                 (1, f"one session, {_usable_cores()} intra-op threads")):
                emb.workers = workers
                t = time.perf_counter()
                emb.embed(texts)
                secs = time.perf_counter() - t
                print(f"raw local, batch {bs:>3}: {len(texts) / secs:7.1f} texts/s, {len(papers) / secs:6.2f} papers/s "
                      f"({how})", flush=True)

        local = OnnxEmbedder(spec, threads=settings.index.threads, batch_size=settings.index.embed_batch_size)
        local.embed(["warm-up text"] * 8)  # model and bulk sessions loaded outside the timed region
        alternate("local", papers, texts, local.embed,
                  lambda home: Settings.load(config_file="", env={}, home=home), src, args.rounds)

    url = args.endpoint
    server = None
    if args.llama_server and not url:
        from tests.llm_server import find_gguf, llama_server_skip_reason, start_llama_server

        reason = llama_server_skip_reason()
        gguf = find_gguf()
        if reason or gguf is None:
            raise SystemExit(f"error: cannot start the llama.cpp server: {reason}")
        server = start_llama_server(gguf, Path(tempfile.mkdtemp()), threads=1, embedding=True)
        url = server.base_url
        print(f"llama.cpp server (xllamacpp, SmolLM2-135M Q4_1, 1 thread, embeddings on) at {url}")
    try:
        if url:
            measure_endpoint(args, url, papers[: args.endpoint_papers])
    finally:
        if server is not None:
            server.stop()
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


def measure_endpoint(args: argparse.Namespace, url: str, papers: list[Any]) -> None:
    from assistant.index.embeddings import OpenAIEmbedder
    from assistant.settings import Settings

    index = {"embedding": "openai", "embedding_model": args.endpoint_model, "embedding_base_url": url,
             "embedding_request_texts": args.endpoint_texts, "embedding_concurrency": args.endpoint_concurrency,
             "embedding_timeout": args.endpoint_timeout}

    def settings(home: Path | None = None) -> Settings:
        kw: dict[str, Any] = {"home": home} if home else {}
        return Settings.load(config_file="", env={}, index=index, **kw)

    emb = OpenAIEmbedder(settings())
    texts = texts_of(papers, settings(), emb.fits)
    emb.embed(texts[:4])
    print(f"endpoint: {len(papers)} papers -> {len(texts)} texts, {args.endpoint_texts} texts a request, "
          f"{args.endpoint_concurrency} in flight; vectors of {emb.embed(['x']).shape[1]} dimensions")
    with tempfile.TemporaryDirectory() as tmp:
        src = jsonl_of(papers, Path(tmp) / "papers.jsonl")
        alternate("endpoint", papers, texts, emb.embed, settings, [src], args.rounds)


def jsonl_of(papers: list[Any], path: Path) -> Path:
    """``papers`` as a JSONL file ingest reads back to the same papers (ids, titles, abstracts, dates)."""
    import json

    path.write_text("".join(json.dumps({"id": p.paper_id, "title": p.title, "abstract": p.abstract,
                                        "date": p.date or None}) + "\n" for p in papers), encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
