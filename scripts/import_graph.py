#!/usr/bin/env python3
"""Print the import graph of src/alfcache and check that it runs one way.

Usage: ``python scripts/import_graph.py [SRC]`` (SRC defaults to this repository's ``src``).

Every ``import`` and ``from ... import`` of a module of the package counts, wherever it stands:
at the top, inside a function (imported on first use) or under ``if TYPE_CHECKING``; a lazy
import is still a dependency of the design. Prints the graph by layer (package) and by module,
then one line per problem: a cycle between modules or between layers, and an import that goes
up the intended order (``LAYERS``, lowest first; a layer never imports a higher one). Exits 1
when there is a problem, 0 otherwise. The standard library only: it reads the code with ``ast``,
it never imports it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

PACKAGE = "alfcache"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    (
        "leaf",
        frozenset(
            {
                "_exceptions",
                "_paths",
                "_progress",
                "_processes",
                "_records",
                "_options",
                "_version",
                "_synth",
                "synth",
            }
        ),
    ),
    ("_alf", frozenset({"_alf"})),
    ("_tables", frozenset({"_tables"})),
    ("_digest", frozenset({"_digest"})),
    ("_walk", frozenset({"_walk"})),
    ("_maintain", frozenset({"_maintain"})),
    ("_index", frozenset({"_index"})),
    ("api", frozenset({""})),  # alfcache/__init__.py, the public face
    ("_cli", frozenset({"_cli"})),
    ("__main__", frozenset({"__main__"})),
)
"""The intended order of docs (notes/layout.md), lowest first: the first name below the package
(``_walk`` of ``alfcache._walk.scan``) places a module in its layer."""


def layer_of(module: str) -> str:
    """The layer of ``alfcache.x.y`` (by ``x``); raises KeyError for a module with no place."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for name, members in LAYERS:
        if top in members:
            return name
    raise KeyError(f"{module} has no layer: add {top!r} to LAYERS in {__file__}")


RANK = {name: rank for rank, (name, _) in enumerate(LAYERS)}


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports (a name imported from a package is its
    submodule when one has that name, else the package itself)."""
    found: set[str] = set()
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    found.discard(module)
    return {name for name in found if name in known}


def graph(src: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    files = {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}
    known = set(files)
    return {
        name: imports_of(
            ast.parse(path.read_text(), str(path)), name, path.stem == "__init__", known
        )
        for name, path in files.items()
    }


def cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def _short(module: str) -> str:
    """``_walk.scan`` for ``alfcache._walk.scan``; ``alfcache`` stays."""
    return module.removeprefix(f"{PACKAGE}.")


def problems(modules: Mapping[str, set[str]]) -> list[str]:
    """One line per cycle (of modules, of layers) and per import up the order."""
    out = [f"cycle of modules: {' <-> '.join(map(_short, c))}" for c in cycles(modules)]
    layers: dict[str, set[str]] = {}
    for module, imported in modules.items():
        mine = layer_of(module)
        for other in imported:
            theirs = layer_of(other)
            if theirs != mine:
                layers.setdefault(mine, set()).add(theirs)
            if RANK[theirs] > RANK[mine]:
                up = f"{_short(module)} -> {_short(other)} ({mine} < {theirs})"
                out.append(f"import up the order: {up}")
    out += [f"cycle of layers: {' <-> '.join(c)}" for c in cycles(layers)]
    return out


def main(argv: list[str]) -> int:
    src = Path(argv[0]) if argv else Path(__file__).resolve().parent.parent / "src"
    modules = graph(src)
    by_layer: dict[str, set[str]] = {name: set() for name, _ in LAYERS}
    for module, imported in modules.items():
        by_layer[layer_of(module)].update(
            layer_of(o) for o in imported if layer_of(o) != layer_of(module)
        )
    print("Layers, lowest first (a layer may import only the ones before it):")
    for name, _ in LAYERS:
        print(f"  {name} -> {', '.join(sorted(by_layer[name], key=RANK.get)) or '(nothing)'}")
    print("Modules:")
    for module in sorted(modules, key=lambda m: (RANK[layer_of(m)], m)):
        imported = sorted(map(_short, modules[module]))
        print(f"  {_short(module)} -> {', '.join(imported) or '(nothing)'}")
    found = problems(modules)
    print(f"Problems: {len(found)}")
    for line in found:
        print(f"  {line}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
