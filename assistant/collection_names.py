"""Collection names: which are valid, the default one, and the Chroma and model names they map to.

Kept apart from :mod:`assistant.collections` (which creates, lists and deletes collections through
the index) so that settings, the lowest layer, can check a name.
"""

from __future__ import annotations

import re

from .errors import AssistantError

DEFAULT = "default"
"""The collection commands use when none is named."""
LEGACY_DEFAULT = "papers"
"""The default collection's Chroma name, and what ``ASSISTANT_COLLECTION`` defaulted to before."""
MODEL_PREFIX = "paper-assistant"
"""``/v1/models`` lists the served collection as this model and every other one as ``MODEL_PREFIX:NAME``."""
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,46}[a-z0-9])?")
FAMILY = ("", ".sentences", ".papers", ".meta")
"""The Chroma collections of one collection: chunk vectors, sentence vectors, and in server mode its
papers and metadata."""


def made_here(chroma: str, have: set[str]) -> bool:
    """Is the Chroma family ``chroma`` on a server this tool's? It has its ``.meta`` (written before anything
    else), or from before ``.meta``, its ``.sentences`` or ``.papers``: another application's collection of a
    fitting name has none of them."""
    return any(chroma + suffix in have for suffix in (".meta", ".papers", ".sentences"))


class CollectionError(AssistantError):
    """A collection name that cannot be used, or one that does not exist (or already does)."""


class NoSuchCollection(CollectionError):
    """A named collection that does not exist (HTTP 404 on the server)."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a collection, or None. Names become folder and Chroma collection
    names, so: 1-48 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit."""
    if not isinstance(name, str):
        return f"a collection name must be text, got {type(name).__name__}"
    if name in (DEFAULT, LEGACY_DEFAULT):
        return None
    if not _NAME.fullmatch(name):
        return (f"'{name}' is not a valid collection name: use 1 to 48 lowercase letters, digits, '-' or '_', "
                "starting and ending with a letter or digit")
    if name.startswith("server-"):
        return f"'{name}' is not a valid collection name: names starting with 'server-' are reserved"
    return None


def check_name(name: str) -> str:
    """The canonical name (``papers``, the old default, is ``default``); ValueError when unusable
    (settings turn it into a message naming the variable)."""
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return DEFAULT if name == LEGACY_DEFAULT else name


def canonical(name: str) -> str:
    """:func:`check_name` for API callers: a one-line CollectionError instead of ValueError."""
    try:
        return check_name(name)
    except ValueError as exc:
        raise CollectionError(str(exc)) from None


def chroma_name(name: str) -> str:
    """The Chroma collection (family prefix) of a collection: its name, as ``ASSISTANT_COLLECTION``
    was before. Chroma needs at least 3 characters: shorter names get an upper-case tail, which no
    collection name has, so it cannot clash with another collection's."""
    if name == DEFAULT:
        return LEGACY_DEFAULT
    return name if len(name) >= 3 else f"{name}-C"


def from_chroma(chroma: str) -> str | None:
    """The collection whose Chroma family prefix is ``chroma`` (None: not one of ours)."""
    if chroma == LEGACY_DEFAULT:
        return DEFAULT
    base = chroma[:-2] if chroma.endswith("-C") and len(chroma) <= 4 else chroma
    if name_problem(base) is not None or chroma_name(base) != chroma:
        return None
    return base


def model_id(name: str, served: str = DEFAULT) -> str:
    """The OpenAI model id of a collection on a server that serves ``served`` by default."""
    return MODEL_PREFIX if name == served else f"{MODEL_PREFIX}:{name}"


def from_model(model: str | None, served: str = DEFAULT) -> str:
    """The collection an OpenAI model id selects: ``paper-assistant:NAME`` -> NAME; anything else
    (the bare name, or whatever model a front end sends by default) -> the served collection."""
    if model and model.startswith(MODEL_PREFIX + ":"):
        return canonical(model[len(MODEL_PREFIX) + 1:])
    return served
