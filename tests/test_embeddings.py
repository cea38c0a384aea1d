"""The packaged ONNX embedder: parallel bulk sessions give the same vectors as one session."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.index.embeddings import LOCAL_MODELS, OnnxEmbedder
from assistant.readers import read_paths
from tests.conftest import SAMPLE_DIR


def _texts(n: int) -> list[str]:
    papers = read_paths([SAMPLE_DIR]).papers
    return [f"{p.title}\n{p.abstract}" for p in papers[:n]]


def test_parallel_bulk_embedding_equals_one_session() -> None:
    texts = _texts(24)
    spec = LOCAL_MODELS["all-MiniLM-L6-v2-int8"]
    parallel = OnnxEmbedder(spec, threads=2, batch_size=2)
    assert parallel.workers == 2
    got = parallel.embed(texts)
    assert len(parallel._bulk) == 2  # the bulk path really ran
    single = OnnxEmbedder(spec, threads=1, batch_size=2)
    want = single.embed(texts)
    assert got.shape == (24, 384)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Each row is its own text's vector, not a neighbour's (order survives the worker pool).
    assert np.allclose(got[5], single.embed([texts[5]])[0], atol=1e-5)


def test_query_embedding_uses_one_session_and_matches_bulk() -> None:
    spec = LOCAL_MODELS["all-MiniLM-L6-v2-int8"]
    e = OnnxEmbedder(spec, threads=2, batch_size=1)
    text = "token-level reward for preference optimisation"
    q = e.embed_query(text)
    assert e._bulk == []
    assert q.shape == (384,) and abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    bulk = e.embed([text] + _texts(7))  # 8 texts, batch 1: the parallel path
    assert len(e._bulk) == 2
    np.testing.assert_allclose(bulk[0], q, atol=1e-5)


def test_worker_failure_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    e = OnnxEmbedder(LOCAL_MODELS["all-MiniLM-L6-v2-int8"], threads=2, batch_size=1)
    real = e._encode_batch

    def flaky(texts: list[str], session: object = None) -> np.ndarray:
        if any("poison" in t for t in texts):
            raise RuntimeError("onnx failed on this batch")
        return real(texts, session)

    monkeypatch.setattr(e, "_encode_batch", flaky)
    with pytest.raises(RuntimeError, match="onnx failed"):
        e.embed(_texts(6) + ["poison pill"])
