"""Load on `assistant serve`: concurrent clients on loopback for a fixed time at 1, 8 and 32.

    python benchmarks/serve_load.py                          # 20 s per level, /v1/ask, sample corpus
    python benchmarks/serve_load.py --seconds 10 --levels 1,8,32 --endpoint chat   # streamed chat completions
    python benchmarks/serve_load.py --max-concurrent 1 --queue 4                   # a smaller server

Each client sends one request after another (a new question each time, from the dev set)
on its own keep-alive connection. Per level: requests, 200s, 503s (over capacity, with
Retry-After), other errors, p50/p95 latency of the answered ones, and throughput. The
baseline, measured in the same run, is the in-process ``Assistant.ask`` on the same
questions one after another: the ratio shows what HTTP, JSON and the queue add.
Every request ends as an answer, a 503 or a counted error; none is left unaccounted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
sys.path.insert(0, str(REPO))
from benchmarks.harness import free_port, pct  # noqa: E402


def questions() -> list[str]:
    path = REPO / "evals" / "questions" / "dev.jsonl"
    return [json.loads(line)["question"] for line in path.open() if line.strip()]


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_", "CHROMA_"))}
    env.update({"ASSISTANT_HOME": str(home), "ASSISTANT_CONFIG": ""})
    return env


def ensure_home(home: Path) -> None:
    from assistant.api import Assistant
    from assistant.index.ingest import sample_paths
    from assistant.settings import Settings

    a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home))
    a.ingest(sample_paths())
    a.index.close()


def baseline(home: Path, qs: list[str], seconds: float) -> list[float]:
    """In-process answers one after another (warm), ms each."""
    from assistant.api import Assistant
    from assistant.settings import Settings

    a = Assistant(Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home))
    a.auto_sample = False
    a.ask(qs[0])
    out: list[float] = []
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        t = time.perf_counter()
        a.ask(qs[i % len(qs)])
        out.append((time.perf_counter() - t) * 1000)
        i += 1
    a.index.close()
    return out


def request_body(endpoint: str, q: str) -> tuple[str, bytes]:
    if endpoint == "chat":
        return "/v1/chat/completions", json.dumps({"messages": [{"role": "user", "content": q}],
                                                   "stream": True}).encode()
    return "/v1/ask", json.dumps({"question": q}).encode()


def run_level(port: int, clients: int, seconds: float, qs: list[str], endpoint: str) -> dict[str, Any]:
    lat: list[float] = []
    counts = {"requests": 0, "ok": 0, "busy": 0, "errors": 0}
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    start_gate = threading.Barrier(clients)

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        i = n
        start_gate.wait()
        while time.monotonic() < stop:
            path, body = request_body(endpoint, qs[i % len(qs)])
            i += clients
            t = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                ms = (time.perf_counter() - t) * 1000
                ok = resp.status == 200 and (b"[DONE]" in data if endpoint == "chat" else b'"answer"' in data)
                kind = "ok" if ok else "busy" if resp.status == 503 and resp.getheader("Retry-After") else "errors"
            except (OSError, http.client.HTTPException):
                ms, kind = 0.0, "errors"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            with lock:
                counts["requests"] += 1
                counts[kind] += 1
                if kind == "ok":
                    lat.append(ms)
            if kind == "busy":
                time.sleep(0.05)  # a real client would honour Retry-After; keep the pressure on instead
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, **counts, "p50_ms": pct(lat, 0.5), "p95_ms": pct(lat, 0.95),
            "answers_per_s": counts["ok"] / wall, "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="load time per level")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--endpoint", choices=["ask", "chat"], default="ask")
    ap.add_argument("--max-concurrent", type=int, default=None, help="server answer slots (default: settings)")
    ap.add_argument("--queue", type=int, default=None, help="server queue length (default: settings)")
    ap.add_argument("--home", type=Path, default=OUT / "home-sample")
    args = ap.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    ensure_home(args.home)
    qs = questions()
    base = baseline(args.home, qs, min(args.seconds, 10.0))
    port = free_port()
    cmd = [sys.executable, "-m", "assistant", "serve", "--port", str(port)]
    if args.max_concurrent:
        cmd += ["--max-concurrent", str(args.max_concurrent)]
    if args.queue is not None:
        cmd += ["--queue", str(args.queue)]
    log = (OUT / "serve_load.log").open("wb")
    proc = subprocess.Popen(cmd, env=env_for(args.home), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/healthz")
                health = json.loads(c.getresponse().read())
                break
            except (OSError, ValueError):
                time.sleep(0.3)
        else:
            raise SystemExit("the server did not start; see benchmarks/out/serve_load.log")
        slots = health["answers"]
        print(f"server: {health['papers']} papers, {slots['max_running']} answer slots, queue {slots['max_waiting']};"
              f" endpoint {args.endpoint}; {args.seconds:g} s per level; load average "
              f"{os.getloadavg()[0]:.1f} at start")
        print(f"baseline (in-process Assistant.ask, sequential): {len(base)} answers, p50 {pct(base, .5):.1f} ms, "
              f"p95 {pct(base, .95):.1f} ms, {1000 / statistics.fmean(base):.1f} answers/s")
        print()
        print("| clients | requests | 200 | 503 | errors | p50 ms | p95 ms | answers/s | p50 / baseline p50 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for level in (int(x) for x in args.levels.split(",")):
            r = run_level(port, level, args.seconds, qs, args.endpoint)
            lost = r["requests"] - r["ok"] - r["busy"] - r["errors"]
            assert lost == 0, r
            print(f"| {level} | {r['requests']} | {r['ok']} | {r['busy']} | {r['errors']} | {r['p50_ms']:.0f} | "
                  f"{r['p95_ms']:.0f} | {r['answers_per_s']:.1f} | {r['p50_ms'] / pct(base, .5):.2f} |", flush=True)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    main()
