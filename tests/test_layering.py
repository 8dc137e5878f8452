"""Who may import whom: the data plane's users name no backend, and the SQLite modules import only downwards."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
BACKEND_MODULES = (
    "cortex.sqlitedb",
    "cortex.sqlitetables",
    "cortex.redisdb",
    "cortex.postgresdb",
    *(f"cortex.{role}.{name}" for role in ("queue", "store", "dataplane") for name in ("sqlite", "redis", "postgres")),
)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


def test_the_gateway_and_the_dequeuer_import_no_backend() -> None:
    offenders = {
        _module(path): sorted(_imports(path) & set(BACKEND_MODULES))
        for package in ("gateway", "dequeuer")
        for path in (SRC / "cortex" / package).rglob("*.py")
    }
    assert {module: found for module, found in offenders.items() if found} == {}


def test_the_sqlite_modules_import_no_circle() -> None:
    names = ("cortex.queue.sqlite", "cortex.store.sqlite", "cortex.sqlitedb", "cortex.sqlitetables")
    paths = {name: SRC.joinpath(*name.split(".")).with_suffix(".py") for name in names}
    graph = {name: _imports(path) & set(names) for name, path in paths.items()}
    # a circle would need some module reachable from itself
    for start in names:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            current = todo.pop()
            assert current != start, f"{start} imports itself through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                todo += graph[current]
    assert graph["cortex.queue.sqlite"].isdisjoint({"cortex.store.sqlite"})
    assert graph["cortex.store.sqlite"].isdisjoint({"cortex.queue.sqlite"})
