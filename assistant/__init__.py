"""Question answering over research-paper abstracts, every claim cited.

Heavy libraries (llama-index, chromadb, onnxruntime) load lazily, on first use,
so importing this package and ``assistant --help`` stay instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Answer", "Assistant", "Chunk", "Citation", "Paper", "Settings", "Source", "AssistantError"]

if TYPE_CHECKING:
    from .api import Assistant
    from .errors import AssistantError
    from .records import Answer, Chunk, Citation, Paper, Source
    from .settings import Settings


def __getattr__(name: str) -> Any:
    if name == "Assistant":
        from .api import Assistant

        return Assistant
    if name == "Settings":
        from .settings import Settings

        return Settings
    if name == "AssistantError":
        from .errors import AssistantError

        return AssistantError
    if name in {"Answer", "Chunk", "Citation", "Paper", "Source"}:
        from . import records

        return getattr(records, name)
    raise AttributeError(name)
