"""Data flows one way: readers -> index -> retrieval -> answering -> api -> (cli | server | evaluation).

Every import in the package, lazy ones inside functions included, goes to the same layer
or a lower one. A change that makes a lower layer reach up (say, the API importing the CLI's
progress bars) fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "assistant"

# Lower number = lower layer. Modules not listed take their package's layer.
LAYERS: dict[str, int] = {
    "assistant.errors": 0, "assistant.records": 0, "assistant.text": 0, "assistant.runtime": 0,
    "assistant.contracts": 0,
    "assistant.settings": 0, "assistant.registry": 0, "assistant.data": 0, "assistant.prompts": 0,
    "assistant.collection_names": 0,
    "assistant.display": 0,  # paper text as other programs render it: records only
    "assistant.scratch": 0,  # scratch files named for their process, swept once it is gone
    "assistant.llm": 1,  # the OpenAI-compatible transport, used by embeddings and answerers alike
    "assistant.readers": 2,
    "assistant.index": 3,
    "assistant.retrieval": 4, "assistant.exact_search": 4, "assistant.collections": 4,
    "assistant.answering": 5,
    "assistant.api": 6, "assistant.integrations": 6, "assistant": 6,
    "assistant.evaluation": 7, "assistant.server": 7,
    # The fitting script reads labelled evaluation data (question files, SciFact absent studies) the way
    # the evaluation package does; nothing at run time imports it.
    "assistant.answering.fit": 7, "assistant.answering.fit_verify": 7,
    "assistant.cli": 8, "assistant.__main__": 8,
}
# The registry finds backends by module name at run time (importlib strings, not imports),
# and settings checks backend names through it: neither is an arrow in the code.


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module}: not placed in a layer (add it to LAYERS)")


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # Type-only imports (under `if TYPE_CHECKING:`) are not arrows at run time.
    typing_only = {id(n) for blk in ast.walk(tree) if isinstance(blk, ast.If)
                   and isinstance(blk.test, ast.Name) and blk.test.id == "TYPE_CHECKING"
                   for stmt in blk.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("assistant"):
                names = [f"{target}.{a.name}" for a in node.names]
                # "from .. import x" may name a submodule: judge by the most specific layer found.
                out.extend((node.lineno, n if _is_module(n) else target) for n in names)
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name) for a in node.names if a.name.startswith("assistant"))
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).is_dir() or (PACKAGE / rel).with_suffix(".py").is_file()


def test_no_module_imports_from_a_higher_layer() -> None:
    bad: list[str] = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    for path in files:
        me = module_name(path)
        mine = layer(me)
        for line, target in imports(path):
            if layer(target) > mine:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {me} (layer {mine}) imports {target} "
                           f"(layer {layer(target)})")
    assert not bad, "\n".join(bad)


def test_the_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The walker finds an import inside a function body (a check that cannot see them would pass
    on anything)."""
    src = PACKAGE / "api.py"
    found = {t for _, t in imports(src)}
    assert "assistant.answering.citations" in found  # imported inside Assistant.ask
