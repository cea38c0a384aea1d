"""A question asked while the same Assistant ingests (the server's POST /v1/ingest, or another
thread) shares the one embedding model: it waits for at most one turn of the bulk embedding,
not for the whole of it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from assistant.api import Assistant
from assistant.index.embeddings import TURN_TEXTS, OnnxEmbedder, TurnLock
from tests.conftest import make_settings


def _papers(path: Path, start: int, n: int) -> Path:
    path.write_text("".join(json.dumps({
        "id": f"q{i}", "title": f"Reward model ensemble {i} against over-optimisation",
        "abstract": f"Ensemble {i} of reward models reduces over-optimisation by {i % 7} points on benchmark E{i}. "
                    f"It uses {i % 5 + 2} members trained from seeds {i} and {i + 1}. "
                    f"Conservative aggregation {i} lowers the reward hacking rate. We release code for run {i}."})
        + "\n" for i in range(start, start + n)))
    return path


def test_question_is_answered_between_turns_of_a_bulk_embedding(tmp_path: Path, embed_cache: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a = Assistant(make_settings(tmp_path / "home", embed_cache))
    a.auto_sample = False
    a.ingest([_papers(tmp_path / "first.jsonl", 0, 4)])
    question = "Which ensemble of reward models reduces over-optimisation?"
    assert a.ask(question).citations  # warm: retriever and answerer loaded before the race
    model = a.embedder
    assert isinstance(model, OnnxEmbedder)
    # Record every batch the shared model encodes, in order, and which thread asked for it
    # (the real encoder still does the work: this only watches).
    log: list[str] = []
    log_lock = threading.Lock()
    bulk_started = threading.Event()
    encode = model._encode_batch
    me = threading.get_ident()

    def watched(texts: list[str], session: Any = None) -> Any:
        out = encode(texts, session)
        with log_lock:
            log.append("question" if threading.get_ident() == me else "bulk")
        if threading.get_ident() != me:
            bulk_started.set()
        return out

    monkeypatch.setattr(model, "_encode_batch", watched)
    # 40 new papers = 40 chunks + 160 sentences: one embed call of several turns (batch_papers
    # keeps them in one call, as the server's ingest of an upload does).
    big = _papers(tmp_path / "big.jsonl", 100, 40)
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            a.ingest([big], batch_papers=1000)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=ingest)
    worker.start()
    try:
        assert bulk_started.wait(600), "the ingest never started embedding"
        answer = a.ask(question)
    finally:
        worker.join(900)
    assert not errors, errors
    assert answer.citations
    assert log.count("bulk") >= 200 > 3 * TURN_TEXTS
    # The question's query was encoded while the bulk embedding still had batches to go (one
    # embed call: before, it held the model for all of them and the question came after).
    assert "bulk" in log[log.index("question"):], log.count("bulk")
    assert a.status()["papers"] == 44


def test_turn_lock_serves_in_arrival_order_and_survives_an_abandoned_waiter() -> None:
    lock = TurnLock()
    order: list[int] = []
    lock.__enter__()
    waiting = []
    for n in range(4):
        ready = threading.Event()

        def take(n: int = n, ready: threading.Event = ready) -> None:
            ready.set()
            with lock:
                order.append(n)

        t = threading.Thread(target=take)
        t.start()
        ready.wait()
        # Wait until the thread holds its ticket (queued) before starting the next.
        while lock._issued != n + 2:
            threading.Event().wait(0.001)
        waiting.append(t)
    lock.__exit__()
    for t in waiting:
        t.join(10)
    assert order == [0, 1, 2, 3]
    # A waiter that gives up (Ctrl-C while queued) does not block the ones behind it.
    lock.__enter__()
    lock._abandoned.add(lock._issued)
    lock._issued += 1
    lock.__exit__()
    with lock:
        pass
