"""Options shared by several command groups (``add``, ``verify`` and the rest take the same ``-c``)."""

from __future__ import annotations

import typer

CollectionOpt = typer.Option(
    None, "--collection", "-c", metavar="NAME",
    help="Collection to use (default: ASSISTANT_COLLECTION, else 'default'); see `assistant collections list`.")
"""``collection: str | None = CollectionOpt``: pass the value on as the ``collection`` setting
(``Settings.load(..., collection=collection)``); None keeps the environment's or config file's."""
