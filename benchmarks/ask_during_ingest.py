"""Questions while an ingest runs in the same process: ask latency idle vs during an 80-paper ingest.

    python benchmarks/ask_during_ingest.py                  # both paths: the server (HTTP) and the Python API
    python benchmarks/ask_during_ingest.py --via http --papers 80 --idle 20

The server and its ingest share one embedding model; a question needs it for its one-text
query. Before issue 23 the bulk embedding held the model's lock for the whole upload, so a
question waited for all of it; now the lock is taken per turn (at most ``TURN_TEXTS`` texts).

Per path, in one run on one home (the sample corpus, indexed first): ``--idle`` questions one after
another with nothing else running (the baseline), then the same questions one after another while
``--papers`` new synthetic papers (real sample sentences, each tagged with a run nonce so the
embedding cache cannot serve them) are ingested: through ``POST /v1/ingest`` of a real
``assistant serve --allow-ingest`` (http), or ``Assistant.ingest`` in a thread beside
``Assistant.ask`` on the same object (api). Prints p50/p95/max ask latency of both phases and the
ingest's duration.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.harness import pct  # noqa: E402


def questions() -> list[str]:
    path = REPO / "evals" / "questions" / "dev.jsonl"
    return [json.loads(line)["question"] for line in path.open() if line.strip()]


def synthetic_body(n: int) -> bytes:
    """``n`` papers of 6-9 real sample sentences each, every sentence tagged with this run's nonce."""
    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.text import sentences

    papers = read_paths(sample_paths()).papers
    pool = [s for p in papers for s in sentences(p.abstract) if len(s) > 40]
    rng = random.Random()
    nonce = secrets.token_hex(4)
    rows = []
    for i in range(n):
        picked = rng.sample(pool, rng.randint(6, 9))
        sents = [f"In study {nonce}-{i}-{j}, {s[0].lower()}{s[1:]}" for j, s in enumerate(picked)]
        rows.append(json.dumps({"id": f"bench-{nonce}-{i}", "title": f"Synthetic study {nonce} number {i}",
                                "abstract": " ".join(sents), "date": f"2024-0{1 + i % 9}-1{i % 10}"}))
    return ("\n".join(rows) + "\n").encode()


def summary(label: str, ms: list[float]) -> str:
    return (f"{label:<42} n={len(ms):>3}  p50 {pct(ms, .5):8.0f} ms  p95 {pct(ms, .95):8.0f} ms  "
            f"max {max(ms, default=float('nan')):8.0f} ms  mean {statistics.fmean(ms) if ms else float('nan'):8.0f} ms")


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_", "CHROMA_"))}
    env.update({"ASSISTANT_HOME": str(home), "ASSISTANT_CONFIG": "", "PYTHONPATH": str(REPO)})
    return env


def ensure_home(home: Path) -> None:
    from assistant.api import Assistant
    from assistant.index.ingest import sample_paths
    from assistant.settings import Settings

    a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home))
    a.ingest(sample_paths())
    a.index.close()


EMBED_MS: list[float] = []
"""Time each question spent in its query embedding (waiting for the model included), api path."""


def via_api(home: Path, qs: list[str], idle: int, body: bytes) -> tuple[list[float], list[float], float]:
    from assistant.api import Assistant
    from assistant.settings import Settings

    a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home))
    a.auto_sample = False
    a.ask(qs[0])  # warm
    model = a.embedder
    embed_query = model.embed_query

    def timed(text: str) -> object:
        t = time.perf_counter()
        try:
            return embed_query(text)
        finally:
            EMBED_MS.append((time.perf_counter() - t) * 1000)

    model.embed_query = timed  # type: ignore[method-assign]
    quiet = []
    for i in range(idle):
        t = time.perf_counter()
        a.ask(qs[i % len(qs)])
        quiet.append((time.perf_counter() - t) * 1000)
    quiet_embed = EMBED_MS[:]
    EMBED_MS.clear()
    src = home / "bench-ingest.jsonl"
    src.write_bytes(body)
    done = threading.Event()
    took: list[float] = []

    def ingest() -> None:
        t = time.perf_counter()
        try:
            a.ingest([src], batch_papers=1000)
        finally:
            took.append(time.perf_counter() - t)
            done.set()

    worker = threading.Thread(target=ingest)
    worker.start()
    busy = []
    i = 0
    while not done.is_set():
        t = time.perf_counter()
        n = len(EMBED_MS)
        a.ask(qs[i % len(qs)])
        if not done.is_set():  # only questions answered entirely during the ingest count
            busy.append((time.perf_counter() - t) * 1000)
        else:
            del EMBED_MS[n:]
        i += 1
    worker.join()
    model.embed_query = embed_query  # type: ignore[method-assign]
    a.index.close()
    busy_embed = EMBED_MS[:]
    EMBED_MS[:] = [*quiet_embed, -1.0, *busy_embed]
    return quiet, busy, took[0]


def via_http(home: Path, qs: list[str], idle: int, body: bytes) -> tuple[list[float], list[float], float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log = Path(tempfile.mkstemp(prefix="ask-during-ingest-", suffix=".log")[1]).open("wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "assistant", "serve", "--port", str(port), "--allow-ingest"],
                            stdout=log, stderr=subprocess.STDOUT, env=env_for(home))
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"assistant serve did not start; log: {log.name}")
            time.sleep(0.3)

        def ask(q: str) -> float:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            t = time.perf_counter()
            c.request("POST", "/v1/ask", json.dumps({"question": q}), {"Content-Type": "application/json"})
            resp = c.getresponse()
            resp.read()
            if resp.status != 200:
                raise SystemExit(f"/v1/ask answered {resp.status}")
            return (time.perf_counter() - t) * 1000

        ask(qs[0])  # warm
        quiet = [ask(qs[i % len(qs)]) for i in range(idle)]
        done = threading.Event()
        took: list[float] = []
        status: list[int] = []

        def ingest() -> None:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
            t = time.perf_counter()
            try:
                c.request("POST", "/v1/ingest?format=jsonl", body, {"Content-Type": "application/x-ndjson"})
                resp = c.getresponse()
                resp.read()
                status.append(resp.status)
            finally:
                took.append(time.perf_counter() - t)
                done.set()

        worker = threading.Thread(target=ingest)
        worker.start()
        time.sleep(0.2)  # the upload reaches the server before the first question
        busy = []
        i = 0
        while not done.is_set():
            ms = ask(qs[i % len(qs)])
            if not done.is_set():
                busy.append(ms)
            i += 1
        worker.join()
        if status != [200]:
            raise SystemExit(f"POST /v1/ingest answered {status}; log: {log.name}")
        return quiet, busy, took[0]
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def turn_cost(n: int) -> None:
    """The embedding alone, with nothing else running: turns vs the whole call under one lock
    (alternated twice, so drift in the machine's load hits both)."""
    from assistant.index import embeddings
    from assistant.index.ingest import sample_paths
    from assistant.readers import read_paths
    from assistant.settings import Settings

    model = embeddings.get_embedder(Settings.load(env={"ASSISTANT_CONFIG": ""}))
    texts = [p.abstract for p in read_paths(sample_paths()).papers][:n]
    model.embed(texts[:8])
    turn = embeddings.TURN_TEXTS
    took: dict[str, list[float]] = {"turns": [], "whole": []}
    for rnd in range(2):
        for label, size in (("turns", turn), ("whole", 10**9)):
            embeddings.TURN_TEXTS = size
            tagged = [f"{t} ({label} {rnd} {secrets.token_hex(3)})" for t in texts]
            t = time.perf_counter()
            model.embed(tagged)
            took[label].append(time.perf_counter() - t)
    embeddings.TURN_TEXTS = turn
    print(f"embedding {len(texts)} abstracts alone: {statistics.fmean(took['turns']):.1f} s in turns of {turn}, "
          f"{statistics.fmean(took['whole']):.1f} s under one lock (mean of 2 each)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--via", choices=["http", "api", "api-before", "all"], default="all",
                    help="api-before: the api path with the model lock held for a whole embed call, as before "
                         "issue 23 (the same-run comparison)")
    ap.add_argument("--papers", type=int, default=80)
    ap.add_argument("--idle", type=int, default=20, help="questions in the idle phase")
    ap.add_argument("--home", type=Path, help="a home to reuse (default: a fresh one, the sample indexed)")
    args = ap.parse_args()

    from assistant.index import embeddings

    qs = questions()
    with tempfile.TemporaryDirectory(prefix="ask-during-ingest-") as tmp:
        home = args.home or Path(tmp) / "home"
        t = time.perf_counter()
        ensure_home(home)
        print(f"home {home}: sample indexed in {time.perf_counter() - t:.1f} s; model lock turn = "
              f"{embeddings.TURN_TEXTS} texts; load average {os.getloadavg()[0]:.1f}")
        turn_cost(200)
        turn = embeddings.TURN_TEXTS
        for via in (["http", "api", "api-before"] if args.via == "all" else [args.via]):
            body = synthetic_body(args.papers)
            embeddings.TURN_TEXTS = 10**9 if via == "api-before" else turn
            run = via_http if via == "http" else via_api
            quiet, busy, took = run(home, qs, args.idle, body)
            print(f"[{via}] {args.papers}-paper ingest took {took:.1f} s", flush=True)
            print(summary(f"[{via}] ask, idle", quiet))
            print(summary(f"[{via}] ask, during the ingest", busy))
            if via != "http":
                cut = EMBED_MS.index(-1.0)
                print(summary(f"[{via}] its query embedding, idle", EMBED_MS[:cut]))
                print(summary(f"[{via}] its query embedding, during", EMBED_MS[cut + 1:]), flush=True)
                EMBED_MS.clear()


if __name__ == "__main__":
    main()
