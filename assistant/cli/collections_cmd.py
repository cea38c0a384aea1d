"""`assistant collections list|create|delete|rename|info`: thin calls to the Assistant's collection methods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

collections_app = typer.Typer(no_args_is_help=True,
                              help="Named collections: separate sets of papers in one home.")
ConfigOpt = typer.Option(None, "--config", help="TOML settings file (default: ASSISTANT_CONFIG).")


def _assistant(config: Path | None) -> Any:
    from ..api import Assistant
    from ..settings import Settings

    return Assistant(Settings.load(config_file=config))


def _print(infos: list[Any], json_out: bool, title: str) -> None:
    if json_out:
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("collection", "papers", "chunks", "vectors", "embedding model", "location"):
        t.add_column(col, overflow="fold")
    for i in infos:
        t.add_row(i.name + (" *" if i.default else ""), str(i.papers), str(i.chunks), str(i.vectors),
                  i.embedding_model or "-", i.location)
    Console(soft_wrap=False, markup=False).print(t)


@collections_app.command("list")
def list_cmd(json_out: bool = typer.Option(False, "--json"), config: Path | None = ConfigOpt) -> None:
    """Every collection with its paper count (* = the one commands use now)."""
    _print(_assistant(config).collections(), json_out, "Collections (* = selected)")


@collections_app.command("info")
def info_cmd(name: str | None = typer.Argument(None, help="Collection (default: the selected one)."),
             json_out: bool = typer.Option(False, "--json"), config: Path | None = ConfigOpt) -> None:
    """Papers, chunks, vectors and storage of one collection."""
    info = _assistant(config).collection_info(name)
    if json_out:
        print(json.dumps(info.to_dict(), indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(show_header=False, title=f"Collection {info.name}")
    for k, v in info.to_dict().items():
        t.add_row(k, str(v))
    Console(soft_wrap=False, markup=False).print(t)


@collections_app.command("create")
def create_cmd(name: str, config: Path | None = ConfigOpt) -> None:
    """An empty collection (`assistant ingest -c NAME SOURCES` also creates one)."""
    info = _assistant(config).create_collection(name)
    print(f"created collection '{info.name}' ({info.location})")


@collections_app.command("delete")
def delete_cmd(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
               config: Path | None = ConfigOpt) -> None:
    """Remove a collection's papers and vectors (other collections are not touched)."""
    a = _assistant(config)
    info = a.collection_info(name)
    if not yes and not typer.confirm(f"delete collection '{info.name}' and its {info.papers} papers?"):
        raise typer.Exit(1)
    a.delete_collection(info.name)
    print(f"deleted collection '{info.name}'")


@collections_app.command("rename")
def rename_cmd(old: str, new: str, config: Path | None = ConfigOpt) -> None:
    """Give a collection a new name; its papers and vectors stay as they are."""
    _assistant(config).rename_collection(old, new)
    print(f"renamed collection '{old}' to '{new}'")
