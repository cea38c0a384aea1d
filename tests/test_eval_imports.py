"""The evaluation package's modules import each other one way only (no cycles), and never a higher layer.

Read from the source with ast, so imports inside functions (the lazy ones) count too: a lazy import
hides a cycle from Python at import time but not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import assistant.evaluation

PACKAGE = "assistant.evaluation"
ROOT = Path(assistant.evaluation.__file__).parent


def _module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names a ``from ... import ...`` statement can bring in (the module and module.name)."""
    if node.level:
        parts = current.split(".")
        base_parts = parts if is_package else parts[:-1]
        base_parts = base_parts[: len(base_parts) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.glob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(name, path.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_graph_sees_the_known_edges() -> None:
    """A witness that the parser resolves relative and lazy imports (else 'no cycle' proves nothing)."""
    g = import_graph()
    assert "assistant.evaluation.report" in g["assistant.evaluation.runner"]
    assert "assistant.evaluation.results" in g["assistant.evaluation.report"]
    assert "assistant.evaluation.offline_judge" in g["assistant.evaluation.runner"]  # lazy, inside make_judge


def test_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_evaluation() -> None:
    # __init__ re-exports the submodules; a submodule importing the package itself would be a cycle too.
    assert find_cycle(import_graph()) is None


def test_evaluation_never_imports_the_cli() -> None:
    for path in ROOT.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = _resolve(_module_name(path), path.name == "__init__.py", node)
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any(n == "assistant.cli" or n.startswith("assistant.cli.") for n in names), path.name
