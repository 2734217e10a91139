"""The package's shape: the imports between benchmark's subpackages and top-level modules form
no cycle (imports under `TYPE_CHECKING` are for annotations only and do not count).

Not one module of benchmark/: the whole package, read with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"


def _unit(path: Path) -> str:
    """A file's subpackage or top-level module: benchmark/data/x.py -> "data"."""
    first = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    return "benchmark" if first in ("__init__", "__main__") else first


def _imported_units(tree: ast.Module) -> set[str]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for sub in ast.walk(node))
    units = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "benchmark":
                names = [f"benchmark.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        units.update(name.split(".")[1] for name in names if name.startswith("benchmark."))
    return units


def import_graph() -> dict[str, set[str]]:
    """Unit -> the other units it imports at run time."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = _unit(path)
        imported = _imported_units(ast.parse(path.read_text())) - {unit}
        graph.setdefault(unit, set()).update(imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The pairs of units that reach each other."""

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for target in graph.get(stack.pop(), set()):
                if target not in seen:
                    seen.add(target)
                    stack.append(target)
        return seen

    pairs = {(min(a, b), max(a, b)) for a in graph for b in graph[a] if a in reach(b)}
    return sorted(pairs)


def test_the_graph_finds_a_cycle() -> None:
    loop = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}  # d leads in, is not part of it
    assert cycles(loop) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_subpackages() -> None:
    graph = import_graph()
    assert {"cli", "evaluation", "reporting", "training", "tracking"} <= graph.keys()
    assert "reporting" not in graph["evaluation"] and "training" not in graph["evaluation"]
    listing = "\n".join(f"{unit} -> {', '.join(sorted(t))}" for unit, t in sorted(graph.items()))
    assert cycles(graph) == [], listing
