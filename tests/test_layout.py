"""The layout holds: the layers point one way, no import cycle, no module over 450 lines.

Layers (ARCHITECTURE.md): service → indexer → models, and inside indexer adaptation → ranking →
retrieval. benchmarks/ and scripts/ sit on top: nothing in the packages or the tests imports them.
The CLI's command modules import nothing of `service.cli` but its `common` module (its __init__
assembles the app from them). Read from the source with `ast`, so nothing is imported here.
"""
from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("service", "indexer", "models")
PROJECT = (*PACKAGES, "benchmarks", "scripts", "tests")
MAX_LINES = 450

# (importer prefix, forbidden import prefixes): checked on every import, at module level or not.
FORBIDDEN = [
    ("models", ("service", "indexer", "benchmarks", "scripts")),
    ("indexer", ("service", "benchmarks", "scripts")),
    ("indexer.retrieval", ("indexer.ranking", "indexer.adaptation")),
    ("indexer.ranking", ("indexer.adaptation",)),
    ("service", ("benchmarks", "scripts")),
    ("tests", ("benchmarks", "scripts")),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(tops: tuple[str, ...]) -> dict[str, Path]:
    return {module_name(p): p for top in tops for p in sorted((ROOT / top).rglob("*.py"))
            if "__pycache__" not in p.parts}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements run when the module is imported: not in functions or classes, nor under
    `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from module_level(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    yield from module_level(child.body if isinstance(child, ast.ExceptHandler) else [child])
        else:
            yield node


def imported(name: str, path: Path, known: set[str], *, everywhere: bool) -> set[str]:
    """The project modules `name` imports: `from a import b` counts `a`, and `a.b` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree) if everywhere else module_level(tree.body):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known)
    return {m for m in out if m.split(".")[0] in PROJECT and m != name}


@functools.cache
def graph(*, everywhere: bool) -> dict[str, set[str]]:
    modules = project_modules(PROJECT)
    return {name: imported(name, path, set(modules), everywhere=everywhere) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt in edges and nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_is_read() -> None:
    """Guard against a check that passes because it saw nothing."""
    edges = graph(everywhere=False)
    assert "indexer.retrieval.engine" in edges["indexer.ranking.matching"]
    assert "service.cli.adapt" in edges["service.cli"]
    assert "indexer.adaptation.data" in edges["indexer.adaptation.adapt"]  # from indexer.adaptation import data
    assert "service.search" in graph(everywhere=True)["service.cli.index"]  # imported inside a function


def test_no_import_cycle_among_module_level_imports() -> None:
    edges = {m: {t for t in targets if t.split(".")[0] in PACKAGES}
             for m, targets in graph(everywhere=False).items() if m.split(".")[0] in PACKAGES}
    cycle = find_cycle(edges)
    assert cycle is None, " → ".join(cycle or [])


@pytest.mark.parametrize(("importer", "forbidden"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_layers_point_one_way(importer: str, forbidden: tuple[str, ...]) -> None:
    wrong = sorted(f"{m} imports {t}" for m, targets in graph(everywhere=True).items() if under(m, importer)
                   for t in targets if any(under(t, f) for f in forbidden))
    assert not wrong, wrong


def test_cli_command_modules_do_not_import_the_app() -> None:
    wrong = sorted(f"{m} imports {t}" for m, targets in graph(everywhere=True).items()
                   if under(m, "service.cli") and m not in ("service.cli", "service.cli.__main__")
                   for t in targets if under(t, "service.cli") and t != "service.cli.common")
    assert not wrong, wrong


def test_no_module_over_450_lines() -> None:
    long = {name: n for name, path in project_modules(PROJECT).items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long
