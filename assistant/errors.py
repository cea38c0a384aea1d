"""Errors the user sees as one clear line (the CLI prints ``str(exc)``, never a traceback)."""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""


class InputError(AssistantError):
    """A source file or record cannot be read; the message names file and line/entry."""


class IndexStateError(AssistantError):
    """The index is missing, locked, built with another model, or cannot be written."""


class BackendError(AssistantError):
    """An LLM/embedding server failed (unreachable, bad key, timeout, broken stream)."""


def line_of_byte(data: bytes, offset: int) -> int:
    """The 1-based line holding byte ``offset``: every reader names the line of a byte that is not UTF-8."""
    return data.count(b"\n", 0, offset) + 1
