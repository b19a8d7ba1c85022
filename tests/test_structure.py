"""The apps depend on each other one way: no import cycle between apps (README, Architecture).

An app is a top-level package with an apps.py; app A depends on app B when a module of A imports
B (at any level of the module: a function-local import is a dependency too).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _apps() -> set[str]:
    return {path.parent.name for path in ROOT.glob("*/apps.py")}


def _imported(tree: ast.AST) -> set[str]:
    """Top-level package names of the absolute imports in `tree`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def app_graph() -> dict[str, set[str]]:
    apps = _apps()
    graph: dict[str, set[str]] = {app: set() for app in apps}
    for app in apps:
        for path in (ROOT / app).rglob("*.py"):
            graph[app] |= (_imported(ast.parse(path.read_text(), str(path))) & apps) - {app}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for successor in sorted(graph[node]):
            cycle = visit(successor, [*path, node])
            if cycle is not None:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle is not None:
            return cycle
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_apps() -> None:
    graph = app_graph()
    assert {"sessions_app", "environments", "billing"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle between apps: {' -> '.join(cycle)}"
