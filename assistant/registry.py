"""Backends by name: answerers and embedders.

Built-in backends register through the same hook a third-party plugin uses (the
way Simon Willison's ``llm`` registers its own models): a module that defines
``register_backends(registry)`` is either listed in ``BUILTIN_PLUGINS`` or exposed
by an installed package under the ``paper_assistant.plugins`` entry-point group.
Adding a backend is one class and one ``registry.answerers.register(...)`` call.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .errors import AssistantError

if TYPE_CHECKING:
    from .answering.base import Answerer
    from .index.embeddings import Embedder
    from .settings import Settings

BUILTIN_PLUGINS = ("assistant.answering.extractive", "assistant.answering.generative", "assistant.index.embeddings")
ENTRY_POINT_GROUP = "paper_assistant.plugins"

T = TypeVar("T")


@dataclass(frozen=True)
class Backend(Generic[T]):
    name: str
    factory: Callable[[Settings], T]
    default_model: str = ""
    description: str = ""


class Registry(Generic[T]):
    """Name -> factory. Names are checked when settings load, so a typo fails at once."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._backends: dict[str, Backend[T]] = {}

    def register(self, name: str, factory: Callable[[Settings], T], *, default_model: str = "",
                 description: str = "", replace: bool = False) -> None:
        if name in self._backends and not replace:
            raise AssistantError(f"{self.kind} '{name}' is registered twice")
        self._backends[name] = Backend(name, factory, default_model, description)

    def unregister(self, name: str) -> None:
        self._backends.pop(name, None)

    def names(self) -> list[str]:
        load_plugins()
        return list(self._backends)

    def get(self, name: str) -> Backend[T]:
        load_plugins()
        try:
            return self._backends[name]
        except KeyError:
            raise AssistantError(f"unknown {self.kind} '{name}' (one of {', '.join(self._backends)})") from None

    def create(self, name: str, settings: Settings) -> T:
        return self.get(name).factory(settings)

    def default_model(self, name: str) -> str:
        return self.get(name).default_model


answerers: Registry[Answerer] = Registry("answer backend")
embedders: Registry[Embedder] = Registry("embedding backend")

_loaded = False
_lock = threading.RLock()


def load_plugins() -> None:
    """Import the built-in backends and installed plugins once per process."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _loaded:
            return
        _loaded = True
        import sys

        this = sys.modules[__name__]
        for module in BUILTIN_PLUGINS:
            importlib.import_module(module).register_backends(this)
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                target: Any = ep.load()
                hook = getattr(target, "register_backends", target)
                hook(this)
            except Exception as exc:  # a broken plugin must not take the built-ins down
                raise AssistantError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from None
