"""A synthetic index grown to 10k, 100k and 1M papers on a real `chroma run` server, measured at each size.

    nice -n 15 python benchmarks/scale_1m.py --sizes 10000,100000,1000000 > benchmarks/out/scale-1m.log 2>&1

**Vectors are not computed by the embedding model.** The real model embeds the sample's
~2,000 distinct abstract sentences once; every chunk (and sentence) text then gets one of those
real vectors, picked by a hash of the text, perturbed by Gaussian noise (cosine ~0.8 to its base)
and re-normalised. So the run costs what the index costs (Chroma's HNSW and metadata, the
catalogue, BM25, ingest's own work) and not embedding time; the vectors keep the clustered
shape of real sentence embeddings. Chunking uses the real tokenizer (same chunks as a real run).
Embedding throughput is measured separately (benchmarks/embed_vs_ingest.py).

Papers are synthetic (benchmarks/make_synthetic.py's recipe: recombined sample sentences,
unique titles, dates 2019-2025), written in JSONL shards of 10k. One index grows through the
sizes: each step ingests the shards added since the last (a fresh `assistant ingest` process,
whose peak RSS is the client's), then a fresh query process measures cold start and warm
retrieval (dense, BM25, fused; with and without a date filter) over the dev questions, with
query vectors made the same way. Sentence vectors are off (chunks only) unless --sentences.

Prints one block per size and the growth between the last two sizes as ratios; each step's
figures are also appended to OUT/results.jsonl, so a run cut short keeps what it measured.
The step's ingest is resumable like any ingest: re-running the command continues.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import free_port, pct, start_chroma  # noqa: E402

SHARD = 10_000
NOISE = 0.75
PREFILTER_QUESTIONS = 10
"""Questions timed with Chroma's own date filter (retrieval.date_post_filter_max = 0): seconds each at 1M."""
"""Norm of the perturbation relative to the unit base vector: cosine(perturbed, base) ~ 0.8."""


# -- synthetic corpus ------------------------------------------------------------------------
def _pools() -> tuple[list[str], list[str]]:
    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.text import sentences

    papers = read_paths(sample_paths()).papers
    pool = sorted({s for p in papers for s in sentences(p.abstract) if len(s) > 40})
    words = sorted({w for p in papers for w in p.title.replace(":", " ").split() if len(w) > 3})
    return pool, words


def write_shards(corpus: Path, n: int) -> list[Path]:
    """Shards 0 .. n/SHARD-1 (each deterministic by its number; existing ones are kept)."""
    corpus.mkdir(parents=True, exist_ok=True)
    pool: list[str] | None = None
    words: list[str] = []
    paths = []
    for k in range((n + SHARD - 1) // SHARD):
        path = corpus / f"shard-{k:04d}.jsonl"
        paths.append(path)
        if path.exists():
            continue
        if pool is None:
            pool, words = _pools()
        rng = random.Random(1000 + k)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for i in range(k * SHARD, (k + 1) * SHARD):
                title = " ".join(rng.sample(words, 6)) + f" ({i})"
                abstract = " ".join(rng.sample(pool, rng.randint(6, 10)))
                date = f"{rng.randint(2019, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                fh.write(json.dumps({"id": f"synth-{i}", "title": title, "abstract": abstract, "date": date}) + "\n")
        tmp.rename(path)
    return paths


# -- vectors -------------------------------------------------------------------------------
def base_vectors(out: Path) -> Path:
    """Real vectors of the sample's sentences, embedded once by the configured model."""
    path = out / "base-vectors.npy"
    if not path.exists():
        import numpy as np

        from assistant.index.embeddings import get_embedder
        from assistant.settings import Settings

        pool, _ = _pools()
        vecs = get_embedder(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=out / "embed-home")).embed(pool)
        np.save(path, np.asarray(vecs, dtype=np.float32))
    return path


class PerturbedEmbedder:
    """Stands in for the embedder in this benchmark only: a real base vector per text (by a
    hash of the text) plus noise, normalised. ``fits`` is the real tokenizer's answer."""

    def __init__(self, base: Path, model_name: str) -> None:
        import numpy as np
        from tokenizers import Tokenizer

        from assistant.index import embeddings as emb

        self.base = np.load(base)
        self.dim = self.base.shape[1]
        spec = emb.LOCAL_MODELS[model_name]
        tok = (emb._package_file(spec.package, spec.tokenizer[4:]) if spec.tokenizer.startswith("pkg:")
               else REPO / "assistant" / "data" / "models" / spec.tokenizer)
        self.tokenizer = Tokenizer.from_file(str(tok))
        self.tokenizer.enable_truncation(max_length=spec.max_length)
        self.prefix = spec.doc_prefix

    def _one(self, text: str) -> Any:
        import numpy as np

        h = zlib.crc32(text.encode("utf-8"))
        rng = np.random.default_rng(h)
        v = self.base[h % len(self.base)] + rng.standard_normal(self.dim).astype(np.float32) * (NOISE / self.dim ** 0.5)
        return v / np.linalg.norm(v)

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        return np.stack([self._one(t) for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def embed_query(self, text: str) -> Any:
        return self._one(text)

    def fits(self, text: str) -> bool:
        return not self.tokenizer.encode(self.prefix + text).overflowing


# -- processes -----------------------------------------------------------------------------
def peak_rss_mb() -> float:
    """This process's peak resident memory, MB: VmHWM, which exec resets. (``ru_maxrss`` does not: a
    child started by a 500 MB parent reports at least 500 MB.)"""
    return proc_mem(os.getpid()).get("VmHWM", 0.0)


def reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: ``5`` to /proc/self/clear_refs), so one phase's peak
    can be read apart from the ones before it."""
    Path("/proc/self/clear_refs").write_text("5")


def proc_mem(pid: int) -> dict[str, float]:
    """Current and peak resident memory of a process, MB (Linux /proc)."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def settings_for(home: Path, port: int, sentences: bool) -> Any:
    from assistant.settings import Settings

    # A generous timeout: on a loaded machine the server's compaction can stall a request for > 30 s.
    return Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home, cache_dir=home / "cache",
                         chroma_host="127.0.0.1", chroma_port=port, sentence_vectors=sentences, chroma_timeout=900)


class _Phases:
    """Reporter recording when reading ended and the BM25 build began (the ingest's phases)."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.done = 0
        self.last = time.monotonic()
        self.peak_before_bm25 = float("nan")

    def start(self, task: str, total: int | None) -> None:
        self.t.setdefault(f"start:{task}", time.perf_counter())

    def advance(self, task: str, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.last > 60:
            self.last = time.monotonic()
            print(f"  ... {task}: {self.done} papers ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)

    def batch(self, written: int) -> None:
        """Progress of the write phase (the reporter only counts files read)."""
        if time.monotonic() - self.last > 60:
            self.last = time.monotonic()
            print(f"  ... written: {written} ({time.strftime('%H:%M:%S')})", file=sys.stderr, flush=True)

    def message(self, text: str) -> None:
        if text.startswith("building the BM25"):
            self.t["bm25"] = time.perf_counter()
            self.peak_before_bm25 = peak_rss_mb()
            reset_peak_rss()  # what VmHWM says at the end is then the BM25 build's and the report's own

    def finish(self, task: str) -> None:
        self.t[f"finish:{task}"] = time.perf_counter()


def child_ingest(args: argparse.Namespace) -> None:
    from assistant.index.ingest import ingest
    from assistant.index.paper_index import PaperIndex

    settings = settings_for(Path(args.home), args.port, args.sentences)
    embedder = PerturbedEmbedder(Path(args.base), settings.embedding_model_name)
    rss0 = peak_rss_mb()
    index = PaperIndex(settings)
    phases = _Phases()
    t0 = time.perf_counter()
    rep = ingest(index, [Path(p) for p in args.paths], embedder=embedder, reporter=phases, batch_papers=256,
                 after_batch=phases.batch)
    end = time.perf_counter()
    read_end = phases.t.get("finish:read", t0)
    bm25_start = phases.t.get("bm25", end)
    print("RESULT " + json.dumps({
        "new": rep.new, "unchanged": rep.unchanged, "papers_total": rep.papers_total, "chunks_total": rep.chunks_total,
        "chunks_written": rep.chunks_written, "sentences_written": rep.sentences_written,
        "seconds": end - t0, "embed_seconds": rep.embed_seconds, "read_seconds": read_end - t0,
        "write_seconds": bm25_start - read_end, "bm25_seconds": end - bm25_start,
        "peak_rss_mb": max(peak_rss_mb(), phases.peak_before_bm25), "rss_after_imports_mb": rss0,
        "peak_before_bm25_mb": phases.peak_before_bm25, "bm25_and_report_peak_mb": peak_rss_mb(),
        "problems": rep.problems[:3]}), flush=True)


def child_bm25(args: argparse.Namespace) -> None:
    """Build the BM25 index over what the server holds (after an ingest stopped at the deadline)."""
    from assistant.index.paper_index import PaperIndex

    settings = settings_for(Path(args.home), args.port, args.sentences)
    index = PaperIndex(settings)
    t = time.perf_counter()
    index.refresh_lexical()
    secs = time.perf_counter() - t
    papers, chunks = index.catalogue.count()
    print("RESULT " + json.dumps({"bm25_seconds": secs, "papers_total": papers, "chunks_total": chunks,
                                 "peak_rss_mb": peak_rss_mb()}),
          flush=True)


def child_count(args: argparse.Namespace) -> None:
    """Papers and chunk vectors on the server: two count requests (no scan of the records)."""
    from assistant.index.paper_index import PaperIndex

    index = PaperIndex(settings_for(Path(args.home), args.port, args.sentences))
    papers, chunks = index.catalogue.count()
    print("RESULT " + json.dumps({"papers_total": papers, "chunks_total": chunks}), flush=True)


def child_query(args: argparse.Namespace) -> None:
    from assistant.index.paper_index import PaperIndex
    from assistant.retrieval import HybridRetriever

    started = float(args.started)
    settings = settings_for(Path(args.home), args.port, args.sentences)
    embedder = PerturbedEmbedder(Path(args.base), settings.embedding_model_name)
    qs = [json.loads(line)["question"] for line in (REPO / "evals/questions/dev.jsonl").open() if line.strip()]
    qs = qs[:args.questions]
    index = PaperIndex(settings)
    retriever = HybridRetriever(index, embedder)
    retriever.retrieve(qs[0])
    cold = time.time() - started
    times: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for q in qs:
            for mode in ("dense", "bm25", "hybrid"):
                for label, since, until in (("", None, None), (" +date", "2023", "2024")):
                    t = time.perf_counter()
                    r = retriever.retrieve(q, mode=mode, since=since, until=until)
                    ms = (time.perf_counter() - t) * 1000 - r.timings_ms.get("embed_query", 0.0)
                    times.setdefault(mode + label, []).append(ms)
    # The date filter as before retrieval.date_post_filter_max: Chroma filters first (slow at scale,
    # so the first PREFILTER_QUESTIONS only), and whether it finds the same papers.
    chroma_filters = HybridRetriever(index, embedder)
    chroma_filters.settings = settings.with_(retrieval={"date_post_filter_max": 0})
    same = 0
    for q in qs[:PREFILTER_QUESTIONS]:
        for mode in ("dense", "hybrid"):
            t = time.perf_counter()
            r = chroma_filters.retrieve(q, mode=mode, since="2023", until="2024")
            ms = (time.perf_counter() - t) * 1000 - r.timings_ms.get("embed_query", 0.0)
            times.setdefault(mode + " +date, Chroma filters", []).append(ms)
            here = retriever.retrieve(q, mode=mode, since="2023", until="2024")
            same += [x.paper.paper_id for x in r.sources] == [x.paper.paper_id for x in here.sources]
    print("RESULT " + json.dumps({
        "cold_start_s": cold, "queries": len(qs) * args.rounds,
        "latency_ms": {k: {"p50": statistics.median(v), "p95": pct(v, 0.95)} for k, v in times.items()},
        "date_filter_same_papers": f"{same} of {2 * len(qs[:PREFILTER_QUESTIONS])}",
        "peak_rss_mb": peak_rss_mb()}), flush=True)


def run_child(kind: str, extra: list[str], log: Any, deadline: float | None = None) -> dict[str, Any] | None:
    """Run one measured step in a fresh process; None when it was stopped at ``deadline`` (epoch s)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--child={kind}", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ})
    try:
        out, _ = proc.communicate(timeout=None if deadline is None else max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()  # as a SIGKILL mid-ingest: what is committed stays, the rest is redone by the next run
        proc.communicate()
        return None
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return dict(json.loads(line[7:]))
    raise SystemExit(f"{kind} step failed (exit {proc.returncode}):\n{out[-2000:]}")


# -- disk ----------------------------------------------------------------------------------
def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def disk(chroma: Path, home: Path, prefix: str, port: int | str = "*") -> dict[str, float]:
    """MB per component. Chroma keeps every collection's metadata in one chroma.sqlite3: its tables
    and indexes are measured with SQLite's dbstat and shared out by each collection's bytes of
    metadata (ids, keys, values) and number of records; HNSW folders are per collection. What is
    left in the file (the write-ahead log of vectors not yet compacted, free pages) is shown apart."""
    mb = 1024 * 1024
    db = sqlite3.connect(f"file:{chroma / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        seg_rows = db.execute("SELECT s.id, s.scope, c.name FROM segments s "
                              "JOIN collections c ON s.collection = c.id").fetchall()
        meta_bytes: dict[str, int] = {}
        records: dict[str, int] = {}
        for seg_id, scope, name in seg_rows:
            if scope == "METADATA":
                row = db.execute(
                    "SELECT COALESCE(SUM(LENGTH(m.key) + COALESCE(LENGTH(m.string_value), 8)), 0) "
                    "FROM embedding_metadata m JOIN embeddings e ON m.id = e.id WHERE e.segment_id = ?",
                    (seg_id,)).fetchone()
                ids = db.execute("SELECT COALESCE(SUM(LENGTH(embedding_id)), 0), COUNT(*) FROM embeddings "
                                 "WHERE segment_id = ?", (seg_id,)).fetchone()
                meta_bytes[name] = int(row[0]) + int(ids[0])
                records[name] = int(ids[1])
        sizes = dict(db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
    finally:
        db.close()
    meta_tables = sum(v for k, v in sizes.items() if k.startswith(("embedding_metadata",
                                                                   "sqlite_autoindex_embedding_metadata")))
    emb_tables = sum(v for k, v in sizes.items() if k in ("embeddings", "sqlite_autoindex_embeddings_1"))
    hnsw: dict[str, int] = {}
    for seg_id, scope, name in seg_rows:
        if scope == "VECTOR":
            hnsw[name] = hnsw.get(name, 0) + du(chroma / seg_id)
    all_meta, all_records = sum(meta_bytes.values()) or 1, sum(records.values()) or 1

    def part(name: str) -> float:
        return (hnsw.get(name, 0) + meta_tables * meta_bytes.get(name, 0) / all_meta
                + emb_tables * records.get(name, 0) / all_records)

    sqlite_total = du(chroma / "chroma.sqlite3") + du(chroma / "chroma.sqlite3-wal")
    out = {
        "chroma_chunk_vectors": part(prefix) / mb,
        "chroma_chunk_hnsw_only": hnsw.get(prefix, 0) / mb,
        "catalogue": (part(f"{prefix}.papers") + part(f"{prefix}.meta")) / mb,
        "sentence_vectors": part(f"{prefix}.sentences") / mb,
        "chroma_wal_and_free": (sqlite_total - meta_tables - emb_tables) / mb,
        "chroma_total": du(chroma) / mb,
        "bm25": sum(du(p) for p in home.glob(f"index-server-*_{port}_*/bm25")) / mb,
    }
    return out


def child_disk(args: argparse.Namespace) -> None:
    from assistant.collection_names import chroma_name

    print("RESULT " + json.dumps(disk(Path(args.chroma), Path(args.home), chroma_name("default"))), flush=True)


# -- capacity plan ---------------------------------------------------------------------------
def plan(out: Path, target: int, sizes: set[int] | None = None) -> None:
    """Fit y = a + b*N (least squares) to the measured points in OUT/results.jsonl (those of ``sizes``,
    default all) and print the value at ``target`` papers, with the fit: the capacity plan in
    benchmarks/README.md."""
    rows: dict[int, dict[str, Any]] = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        row = json.loads(line)
        if sizes is None or int(row["ingest"]["papers_total"]) in sizes:
            rows[int(row["ingest"]["papers_total"])] = row  # the last measurement of a size wins
    if len(rows) < 2:
        raise SystemExit("need two measured sizes")
    pts = sorted(rows.items())

    def metric(get: Any) -> list[tuple[int, float]]:
        got = []
        for n, row in pts:
            try:
                v = float(get(row))
            except (KeyError, TypeError, ValueError):
                continue
            if v == v:  # not NaN
                got.append((n, v))
        return got

    def fit(xy: list[tuple[int, float]]) -> tuple[float, float]:
        xs, ys = [x for x, _ in xy], [y for _, y in xy]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mx) ** 2 for x in xs)
        b = sum((x - mx) * (y - my) for x, y in xy) / var if var else 0.0
        return my - b * mx, b

    def index_rate(r: dict[str, Any]) -> float:
        i = r["ingest"]
        return float(i["seconds"] - i["embed_seconds"]) / max(1, int(i["new"])) * 1000

    measures = {
        "server RSS (MB)": lambda r: r["server_mb"]["after_queries"]["VmRSS"],
        "client ingest peak RSS (MB)": lambda r: r["ingest"]["peak_rss_mb"],
        "query process peak RSS (MB)": lambda r: r["query"]["peak_rss_mb"],
        "ingest ms per paper, embedder excluded": index_rate,
        "BM25 build (s)": lambda r: r["ingest"]["bm25_seconds"],
        "cold start (s)": lambda r: r["query"]["cold_start_s"],
        "disk: Chroma total (MB)": lambda r: r["disk_mb"]["chroma_total"],
        "disk: chunk HNSW files (MB)": lambda r: r["disk_mb"].get("chroma_chunk_hnsw_only",
                                                                 r["disk_mb"].get("chroma_chunk_hnsw")),
        "disk: BM25 (MB)": lambda r: r["disk_mb"]["bm25"],
    }
    for mode in ("dense", "dense +date", "bm25", "bm25 +date", "hybrid", "hybrid +date"):
        for q in ("p50", "p95"):
            measures[f"retrieval {mode} {q} (ms)"] = (lambda r, m=mode, q=q: r["query"]["latency_ms"][m][q])
    print(f"measured sizes: {', '.join(f'{n:,}' for n, _ in pts)}; fit y = a + b*N by least squares; at {target:,}:")
    for name, get in measures.items():
        xy = metric(get)
        if len(xy) < 2:
            continue
        a, b = fit(xy)
        shown = "; ".join(f"{n:,}: {y:.1f}" for n, y in xy)
        print(f"  {name:38s} a={a:10.2f} b={b * 1e6:10.2f}/M papers -> {a + b * target:10.1f}   (measured {shown})")


# -- driver --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "out" / "scale-1m"))
    ap.add_argument("--rounds", type=int, default=1, help="passes over the dev questions per size")
    ap.add_argument("--questions", type=int, default=65, help="the first N dev questions (65 = all)")
    ap.add_argument("--sentences", action="store_true", help="index.sentence_vectors on (default: chunks only)")
    ap.add_argument("--deadline", default="", help="HH:MM UTC: stop the ingest then and measure the size reached")
    ap.add_argument("--plan", type=int, default=0, help="print fits of the measured sizes extrapolated to N papers")
    ap.add_argument("--plan-sizes", default="", help="fit only these measured sizes (e.g. 100000,1000000)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--chroma", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--started", help=argparse.SUPPRESS)
    ap.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "ingest":
        return child_ingest(args)
    if args.child == "query":
        return child_query(args)
    if args.child == "bm25":
        return child_bm25(args)
    if args.child == "count":
        return child_count(args)
    if args.child == "disk":
        return child_disk(args)
    if args.plan:
        return plan(Path(args.out), args.plan,
                    {int(x) for x in args.plan_sizes.split(",")} if args.plan_sizes else None)

    from assistant.collection_names import chroma_name

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"scale_1m: sizes {sizes}; vectors are perturbed real sentence vectors (no embedding model in the "
          "timed part, see the module docstring); chunks only" + (" + sentence vectors" if args.sentences else ""),
          flush=True)
    base = base_vectors(out)
    home = out / "home"
    port = free_port()
    server = start_chroma(out / "chroma", port, wait=120)  # a 1M index loads slowly
    log = (out / "children.log").open("a")
    common = ["--home", str(home), "--port", str(port), "--base", str(base)] + (["--sentences"] if args.sentences
                                                                                  else [])
    deadline = None
    if args.deadline:
        import datetime as dt

        hh, mm = (int(x) for x in args.deadline.split(":"))
        now = dt.datetime.now(dt.timezone.utc)
        deadline = now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
    results: list[dict[str, Any]] = []
    have = 0
    try:
        for n in sizes:
            shards = write_shards(out / "corpus", n)
            before = run_child("count", common, log)
            assert before is not None
            have = max(have, before["papers_total"] // SHARD * SHARD)  # a continued run skips what is indexed
            new = shards[have // SHARD:]
            print(f"\n== {n:,} papers: ingesting {len(new)} shard(s) ({time.strftime('%H:%M:%S', time.gmtime())} "
                  "UTC) ==", flush=True)
            t = time.perf_counter()
            ing = run_child("ingest", common + [str(p) for p in new], log, deadline)
            if ing is None:  # stopped at the deadline: measure the size reached
                secs = time.perf_counter() - t
                bm = run_child("bm25", common, log)
                assert bm is not None
                n = bm["papers_total"]
                ing = {"new": n - before["papers_total"], "unchanged": 0, "papers_total": n,
                       "chunks_total": bm["chunks_total"],
                       "chunks_written": bm["chunks_total"] - before["chunks_total"], "sentences_written": 0,
                       "seconds": secs, "embed_seconds": 0.0, "read_seconds": float("nan"),
                       "write_seconds": secs, "bm25_seconds": bm["bm25_seconds"], "peak_rss_mb": float("nan"),
                       "rss_after_imports_mb": float("nan"), "bm25_peak_rss_mb": bm["peak_rss_mb"],
                       "stopped_at_deadline": True}
                print(f"ingest stopped at the deadline ({args.deadline} UTC) with {n:,} papers indexed; "
                      "rate = papers written / time to the stop; stand-in vector time not separated (~1% at 10k); "
                      f"BM25 built after in a separate process: {bm['bm25_seconds']:.0f} s, peak RSS "
                      f"{bm['peak_rss_mb']:.0f} MB (the ingest's own peak is not known: it was killed)", flush=True)
            srv_after_ingest = proc_mem(server.pid)
            q = run_child("query", common + ["--rounds", str(args.rounds), "--questions", str(args.questions),
                                             "--started", str(time.time())], log)
            assert q is not None
            srv = proc_mem(server.pid)
            d = disk(out / "chroma", home, chroma_name("default"), port)
            row = {"papers": n, "ingest": ing, "query": q, "server_mb": {"after_ingest": srv_after_ingest,
                                                                           "after_queries": srv}, "disk_mb": d}
            results.append(row)
            with (out / "results.jsonl").open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            show(row)
            have = n
            if ing.get("stopped_at_deadline"):
                break
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    if len(results) >= 2:
        growth(results[-2], results[-1])


def show(row: dict[str, Any]) -> None:
    ing, q, d = row["ingest"], row["query"], row["disk_mb"]
    done = ing["new"]
    index_s = ing["seconds"] - ing["embed_seconds"]
    print(f"ingest: {done:,} new papers ({ing['chunks_written']:,} chunks) in {ing['seconds']:.0f} s, of which "
          f"{ing['embed_seconds']:.0f} s made the stand-in vectors -> {done / index_s if index_s else 0:.1f} papers/s "
          f"with the embedder excluded (read+stage {ing['read_seconds']:.0f} s, write {ing['write_seconds']:.0f} s, "
          f"BM25 build over the whole index {ing['bm25_seconds']:.0f} s)")
    print(f"client (ingest) peak RSS {ing['peak_rss_mb']:.0f} MB (after imports {ing['rss_after_imports_mb']:.0f} MB; "
          f"reading and writing {ing.get('peak_before_bm25_mb', float('nan')):.0f} MB, BM25 build and report "
          f"{ing.get('bm25_and_report_peak_mb', float('nan')):.0f} MB; the vector index lives in the server)")
    print(f"server RSS {row['server_mb']['after_queries'].get('VmRSS', 0):.0f} MB now, peak "
          f"{row['server_mb']['after_queries'].get('VmHWM', 0):.0f} MB")
    print(f"query process: cold start to first retrieval {q['cold_start_s']:.2f} s; peak RSS {q['peak_rss_mb']:.0f} MB")
    if "date_filter_same_papers" in q:
        print(f"  date filter applied here vs by Chroma: the same papers for {q['date_filter_same_papers']} questions")
    for k, v in q["latency_ms"].items():
        print(f"  retrieval {k:12s} p50 {v['p50']:7.1f} ms  p95 {v['p95']:7.1f} ms  (question embedding excluded)")
    print("disk MB: " + ", ".join(f"{k} {v:.1f}" for k, v in d.items()), flush=True)


def growth(a: dict[str, Any], b: dict[str, Any]) -> None:
    r = b["papers"] / a["papers"]
    print(f"\n== growth {b['papers']:,} / {a['papers']:,} papers (x{r:g}) ==")

    def ratio(x: float, y: float) -> str:
        return f"x{y / x:.2f}" if x else "n/a"

    ra = a["ingest"]["new"] / max(1e-9, a["ingest"]["seconds"] - a["ingest"]["embed_seconds"])
    rb = b["ingest"]["new"] / max(1e-9, b["ingest"]["seconds"] - b["ingest"]["embed_seconds"])
    print(f"ingest rate (embedder excluded) {ra:.1f} -> {rb:.1f} papers/s ({ratio(ra, rb)})")
    print(f"client ingest peak RSS {a['ingest']['peak_rss_mb']:.0f} -> {b['ingest']['peak_rss_mb']:.0f} MB "
          f"({ratio(a['ingest']['peak_rss_mb'], b['ingest']['peak_rss_mb'])})")
    sa, sb = a["server_mb"]["after_queries"].get("VmRSS", 0), b["server_mb"]["after_queries"].get("VmRSS", 0)
    print(f"server RSS {sa:.0f} -> {sb:.0f} MB ({ratio(sa, sb)})")
    print(f"cold start {a['query']['cold_start_s']:.2f} -> {b['query']['cold_start_s']:.2f} s "
          f"({ratio(a['query']['cold_start_s'], b['query']['cold_start_s'])})")
    for k in a["query"]["latency_ms"]:
        x, y = a["query"]["latency_ms"][k]["p50"], b["query"]["latency_ms"][k]["p50"]
        print(f"retrieval {k:12s} p50 {x:.1f} -> {y:.1f} ms ({ratio(x, y)})")
    for k in a["disk_mb"]:
        x, y = a["disk_mb"][k], b["disk_mb"][k]
        print(f"disk {k:28s} {x:9.1f} -> {y:9.1f} MB ({ratio(x, y)})")


if __name__ == "__main__":
    main()
