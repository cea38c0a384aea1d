"""Process-wide switches that keep every run offline and quiet.

Libraries phone home or download on first use unless told otherwise; these must
be set before onnxruntime, tiktoken or chromadb load, so every entry point that
touches them calls :func:`ensure_offline` first.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def ensure_offline() -> None:
    # onnxruntime otherwise writes files and resolves a telemetry host.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # chromadb's product telemetry (posthog); we also pass anonymized_telemetry=False.
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    # Hugging Face libraries, should any be present, must never try the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tiktoken_cache = tiktoken_cache_dir()
    if tiktoken_cache is not None:
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_cache))


def tiktoken_cache_dir() -> Path | None:
    """llama-index-core ships cl100k_base/o200k_base here; tiktoken downloads them otherwise."""
    import importlib.util

    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return path if path.is_dir() else None
