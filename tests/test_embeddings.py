"""The packaged ONNX embedder: parallel bulk sessions give the same vectors as one session."""

from __future__ import annotations

import numpy as np

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
    q = e.embed_query("token-level reward for preference optimisation")
    assert e._bulk == []
    assert q.shape == (384,) and abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
