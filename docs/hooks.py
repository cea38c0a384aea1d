"""MkDocs hook: adds the pages generated from the code (docs/gen_reference.py) and the benchmarks page
(benchmarks/README.md, included as it is) to the site at build time, so none of them can drift."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # document this checkout's code, not another installed copy
    spec = importlib.util.spec_from_file_location("gen_reference", Path(__file__).with_name("gen_reference.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmarks_page() -> str:
    text = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    note = ("!!! note\n    This page is `benchmarks/README.md`, included as it is; the scripts it names are in "
            "`benchmarks/` and print the figures.\n\n")
    head, _, rest = text.partition("\n")
    return f"{head}\n\n{note}{rest}" if head.startswith("# ") else note + text


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    pages = dict(_generator().pages())
    pages["benchmarks.md"] = benchmarks_page()
    for rel, content in pages.items():
        files.append(File.generated(config, rel, content=content))
    return files
