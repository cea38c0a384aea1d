"""Shared fixtures: real Chroma in temp dirs, the real ONNX embedder, the real sample corpus.

The sample index is built once per session; tests that write get their own home
but share one embedding cache, so each text is embedded once per run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.evaluation.scifact import default_dir
from assistant.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "assistant" / "data" / "sample"
SHARED = REPO.parent / "shared"
#: From a git worktree too (shared/scifact beside the main checkout): tests needing it would otherwise skip there.
SCIFACT = Path(os.environ.get("ASSISTANT_SCIFACT_DIR") or default_dir(REPO))
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("embcache")


def make_settings(home: Path, cache: Path | None = None, **kw: object) -> Settings:
    """Settings isolated from the developer's environment and config file."""
    return Settings.load(env={"ASSISTANT_CONFIG": ""}, home=home, cache_dir=cache, **kw)


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory: pytest.TempPathFactory, embed_cache: Path) -> Path:
    """A home with the sample corpus indexed (built once; treat as read-only)."""
    from assistant.api import Assistant

    home = tmp_path_factory.mktemp("sample_home")
    a = Assistant(make_settings(home, embed_cache))
    report = a.ingest([SAMPLE_DIR])
    assert report.papers_total == 247, report
    a.index.close()
    return home


@pytest.fixture()
def sample_assistant(sample_home: Path, embed_cache: Path) -> Iterator[object]:
    from assistant.api import Assistant

    a = Assistant(make_settings(sample_home, embed_cache))
    a.auto_sample = False
    yield a
    a.index.close()


@pytest.fixture()
def fresh_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture()
def copied_sample_home(sample_home: Path, tmp_path: Path) -> Path:
    """A writable copy of the sample index (cheaper than re-ingesting)."""
    dst = tmp_path / "home"
    shutil.copytree(sample_home, dst)
    return dst


def cli_env(home: Path, cache: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for running the real `assistant` command in a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASSISTANT_", "OPENAI_", "CHROMA_"))}
    env.update({"ASSISTANT_HOME": str(home), "ASSISTANT_CONFIG": "", "COLUMNS": "200", "NO_COLOR": "1"})
    if cache is not None:
        env["ASSISTANT_CACHE_DIR"] = str(cache)
    env.update(extra)
    return env


@pytest.fixture()
def llm_assistant(sample_home: Path, embed_cache: Path) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """Assistants answering through a scripted OpenAI-compatible endpoint (closed after): on the sample
    index, or on ``home`` (another index, e.g. the sample with papers planted beside it)."""
    from assistant.api import Assistant
    from tests.scripted_chat import ScriptedChat

    made: list[tuple[Assistant, ScriptedChat]] = []

    def make(replies: list[Any], reject_schema: bool = False, home: Path | None = None,
             **kw: Any) -> tuple[Any, Any]:
        server = ScriptedChat(replies, reject_schema=reject_schema)
        a = Assistant(make_settings(home or sample_home, embed_cache, llm="openai", openai_base_url=server.url,
                                    llm_model="m", max_retries=0, **kw))
        a.auto_sample = False
        made.append((a, server))
        return a, server

    yield make
    for a, server in made:
        a.index.close()
        server.close()
