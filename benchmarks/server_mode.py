"""What the shared index costs a query: embedded vs Chroma server mode on the sample corpus.

    python benchmarks/server_mode.py            # starts `chroma run` on a free loopback port

Both modes index the same sample (one embedding cache); questions alternate between the
two so machine load hits both alike. Prints warm retrieval and `ask` p50/p95 per mode with
the server/embedded ratio, and what the BM25 cache costs in server mode: a query while the
generation is unchanged (one request) vs the first query after another client wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import free_port, pct, start_chroma  # noqa: E402


def main() -> None:
    from assistant.api import Assistant
    from assistant.index.ingest import sample_paths
    from assistant.settings import Settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2, help="passes over the dev questions")
    args = ap.parse_args()
    qs = [json.loads(line)["question"] for line in (REPO / "evals/questions/dev.jsonl").open() if line.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="bench-server-mode-"))
    port = free_port()
    proc = start_chroma(tmp / "chroma", port)
    try:
        def settings(home: str, **kw: object) -> Settings:
            return Settings.load(env={"ASSISTANT_CONFIG": ""}, home=tmp / home, cache_dir=tmp / "cache", **kw)

        embedded = Assistant(settings("embedded"))
        writer = Assistant(settings("writer", chroma_host="127.0.0.1", chroma_port=port))
        paths = sample_paths()
        for a in (embedded, writer):
            a.auto_sample = False
            a.ingest(paths)
        server = Assistant(settings("reader", chroma_host="127.0.0.1", chroma_port=port))  # another home
        server.auto_sample = False
        for a in (embedded, server):  # warm: models loaded, BM25 cached
            a.ask(qs[0])
        times: dict[str, dict[str, list[float]]] = {m: {"search": [], "ask": []} for m in ("embedded", "server")}
        for _ in range(args.rounds):
            for q in qs:
                for mode, a in (("embedded", embedded), ("server", server)):
                    t = time.perf_counter()
                    a.search(q)
                    times[mode]["search"].append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    a.ask(q)
                    times[mode]["ask"].append((time.perf_counter() - t) * 1000)
        print(f"sample corpus ({server.status()['papers']} papers), {len(qs)} questions x {args.rounds} rounds, "
              f"chroma run on loopback")
        for what in ("search", "ask"):
            e, s = times["embedded"][what], times["server"][what]
            e50, s50 = statistics.median(e), statistics.median(s)
            print(f"  {what:6s} p50 embedded {e50:6.1f} ms  server {s50:6.1f} ms  (x{s50 / e50:.2f});  "
                  f"p95 {pct(e, 0.95):6.1f} / {pct(s, 0.95):6.1f} ms")
        # The BM25 cache: unchanged generation vs after another client wrote.
        same = []
        for _ in range(20):
            t = time.perf_counter()
            server.index.lexical()
            same.append((time.perf_counter() - t) * 1000)
        writer.index.catalogue.set_meta("generation", "1")  # what every write ends with: a new token
        t = time.perf_counter()
        server.index.lexical()
        rebuilt = (time.perf_counter() - t) * 1000
        print(f"  BM25 cache check (generation unchanged) p50 {statistics.median(same):.1f} ms; "
              f"rebuild from the server after a write {rebuilt:.0f} ms")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
