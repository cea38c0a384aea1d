"""`assistant chat` driven as a person would: through a pseudo-terminal, keystrokes in, screen out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from assistant.api import Assistant
from assistant.errors import AssistantError
from tests.conftest import cli_env

pexpect = pytest.importorskip("pexpect")


def _spawn(home: Path, cache: Path) -> object:
    env = cli_env(home, cache, TERM="xterm", PYTHONUNBUFFERED="1")
    child = pexpect.spawn(sys.executable, ["-m", "assistant", "chat"], env=env, encoding="utf-8",
                          timeout=120, dimensions=(50, 200), use_poll=True)
    child.expect("you>")
    return child


def test_chat_session_commands_and_follow_up(sample_home: Path, embed_cache: Path) -> None:
    child = _spawn(sample_home, embed_cache)
    child.sendline("What does ARRA align LLM hidden states with?")
    child.expect("References")
    assert "visual" in child.before.lower() and "[1]" in child.before
    child.sendline("/quotes")
    child.expect("References")
    child.expect("(?i)visual")  # the supporting quote under the reference
    child.sendline("/sources")
    child.expect("Retrieved papers")
    child.sendline("/help")
    child.expect("/reset")
    child.sendline("/reset")
    child.expect("conversation reset")
    child.sendline("/nonsense")
    child.expect("unknown command")
    child.expect("you>")
    # Ctrl-C at the prompt does not end the session.
    child.sendcontrol("c")
    child.sendline("What is the capital of France?")
    child.expect("do not answer this")
    child.sendline("/quit")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_chat_ctrl_d_leaves(sample_home: Path, embed_cache: Path) -> None:
    child = _spawn(sample_home, embed_cache)
    child.sendeof()
    child.expect("bye")
    child.expect(pexpect.EOF)


def test_extractive_follow_up_carries_topic(sample_assistant: Assistant) -> None:
    with sample_assistant.chat() as s:
        first = s.ask("What does ARRA align LLM hidden states with?")
        assert not first.refused
        follow = s.standalone("what loss does it use?")
        assert first.citations[0].title in follow
        second = s.ask("what loss does it use?")
        assert second.sources[0].paper.paper_id == first.citations[0].paper_id
        assert len(s.history) == 2
        for empty in ("", "   ", "\x00", "\u200b\ufeff"):  # a follow-up form made an empty question look like one
            with pytest.raises(AssistantError, match="the question is empty"):
                s.ask(empty)
        for call in (lambda: sample_assistant.ask("\u200b"), lambda: sample_assistant.verify("\x00 \u200c"),
                     lambda: sample_assistant.search("\u2028")):
            with pytest.raises(AssistantError, match="is empty"):  # answered as if they asked something
                call()
        with pytest.raises(AssistantError, match="the question must be text"):
            s.ask(None)  # type: ignore[arg-type]
        assert len(s.history) == 2
    assert s.history == []
