"""Prompt templates live in prompts/ as files (packaged as ``assistant.prompts``)
so they can be edited and reviewed without touching code."""

from __future__ import annotations

from functools import cache
from importlib import resources

from ..errors import AssistantError


@cache
def load_prompt(name: str) -> str:
    """Text of ``prompts/<name>.txt``."""
    try:
        return (resources.files("assistant.prompts") / f"{name}.txt").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        raise AssistantError(f"prompt file prompts/{name}.txt is missing from the installation") from None


def render(name: str, **values: str) -> str:
    """Fill ``{placeholders}`` in one pass, so braces inside abstracts are never expanded."""
    import re

    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), load_prompt(name))
