"""Backends are found by name: built-ins and plugins register the same way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from assistant import registry
from assistant.answering.base import AnswerContext, Answerer, Draft
from assistant.records import Source
from assistant.settings import Settings, SettingsError
from tests.conftest import cli_env, make_settings


class FirstSentence:
    """A third answer backend: the top paper's first sentence, cited. One class ..."""

    name = "first-sentence"
    streams = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def label(self) -> str:
        return self.name

    def answer(self, question: str, sources: Sequence[Source], context: AnswerContext) -> Draft:
        first = sources[0].paper.abstract.split(". ")[0].rstrip(".")
        return Draft(f"{first} [1]. Made up [99].", reason="")

    def condense(self, history: Sequence[tuple[str, str]], question: str) -> str | None:
        return None


@pytest.fixture()
def first_sentence() -> Iterator[None]:
    registry.answerers.register("first-sentence", FirstSentence)  # ... and one registration
    yield
    registry.answerers.unregister("first-sentence")


def test_builtins_are_registered_through_the_same_hook() -> None:
    assert {"extractive", "openai"} <= set(registry.answerers.names())
    assert {"local", "openai"} <= set(registry.embedders.names())
    assert registry.embedders.default_model("local") == "all-MiniLM-L6-v2-int8"


def test_a_third_backend_is_one_class_and_one_registration(first_sentence: None, sample_home: Path,
                                                           embed_cache: Path) -> None:
    from assistant.api import Assistant

    a = Assistant(make_settings(sample_home, embed_cache, llm="first-sentence"))
    a.auto_sample = False
    assert isinstance(a.answerer(), Answerer)
    ans = a.ask("What does ARRA align LLM hidden states with?")
    # The checker still runs on the new backend's text: [99] is not a given source, so it is removed.
    assert ans.backend["llm"] == "first-sentence" and not ans.refused
    assert [c.paper_id for c in ans.citations] == [ans.sources[0].paper.paper_id]
    assert ans.checks["unknown_markers"] == 1 and "[99]" not in ans.text
    assert ans.citations[0].quote and ans.citations[0].quote in ans.sources[0].paper.abstract


def test_unknown_backend_fails_when_settings_load() -> None:
    with pytest.raises(SettingsError, match="'first-sentence' is not a known answer backend"):
        Settings.load(env={"ASSISTANT_CONFIG": ""}, llm="first-sentence")


def test_installed_plugin_is_discovered_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "shout_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "shout_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\n"
                                                                  "Version: 0.1\n")
    (site / "shout_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[paper_assistant.plugins]\nshout = shout_plugin\n")
    (site / "shout_plugin.py").write_text(textwrap.dedent("""
        class Shout:
            name = "shout"
            streams = False
            def __init__(self, settings): pass
            def label(self): return "shout"
            def answer(self, question, sources, context): raise NotImplementedError
            def condense(self, history, question): return None

        def register_backends(registry):
            registry.answerers.register("shout", Shout, description="test plugin")
    """))
    env: dict[str, Any] = cli_env(tmp_path / "home", ASSISTANT_LLM="shout", PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-m", "assistant", "config", "show", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["llm"]["backend"] == "shout"
