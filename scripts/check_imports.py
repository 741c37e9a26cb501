#!/usr/bin/env python
"""The import graph of ``fgpose/`` and ``tfds_builders/``; exits 1 when it has a cycle.

Reads the source with :mod:`ast` (nothing is imported, so it needs no dependencies) and
counts every ``import`` statement, also those inside functions (a lazy import is still an
import: a lower module must not reach a higher one at all). Nodes are the modules of the
packages (a package is its ``__init__``); an edge ``a -> b`` means module ``a`` imports ``b``:

* ``import a.b.c`` (also ``as x``) is an edge to ``a.b.c`` — or to its longest prefix that is a
  module of the packages;
* ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b`` (``c`` is
  a name defined there); relative imports are resolved against the importing module.

Imports of anything outside the packages are ignored. A cycle is a strongly connected
component with more than one module (or a module importing itself); each is printed with one
closed path through it and the ``file:line`` of each of its imports.

Usage::

    python scripts/check_imports.py              # summary; exit 1 listing every cycle
    python scripts/check_imports.py --graph      # also every module's imports
    python scripts/check_imports.py --root DIR --packages pkg_a pkg_b
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import pathlib
import sys
from typing import Iterable, Mapping, Sequence

PACKAGES = ("fgpose", "tfds_builders")
"""The packages checked by default (top-level directories of the repository)."""

REPO = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: pathlib.Path
    line: int


def find_modules(root: pathlib.Path, packages: Sequence[str] = PACKAGES) -> dict[str, pathlib.Path]:
    """``{dotted module name: file}`` of every ``.py`` file under ``root/<package>/``.

    ``pkg/sub/__init__.py`` is the module ``pkg.sub``. Directories without ``__init__.py``
    (namespace packages) count as packages too; ``__pycache__`` is skipped.
    """
    modules: dict[str, pathlib.Path] = {}
    for package in packages:
        base = root / package
        if not base.is_dir():
            raise FileNotFoundError(f"package directory {base} does not exist")
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: Mapping[str, pathlib.Path]) -> bool:
    return modules[name].name == "__init__.py"


def _longest_module_prefix(name: str, modules: Mapping[str, pathlib.Path]) -> str | None:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _resolve_relative(module: str, level: int, target: str | None, modules: Mapping[str, pathlib.Path]) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def module_imports(module: str, path: pathlib.Path, modules: Mapping[str, pathlib.Path]) -> list[Edge]:
    """Every import of another module of ``modules`` made anywhere in ``path``, in file order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    edges = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [_longest_module_prefix(alias.name, modules) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (_resolve_relative(module, node.level, node.module, modules) if node.level
                    else node.module or "")
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                targets.append(full if full in modules else _longest_module_prefix(base, modules))
        edges += [Edge(module, t, path, node.lineno) for t in targets if t is not None]
    return sorted(set(edges), key=lambda e: (e.line, e.target))


def import_graph(modules: Mapping[str, pathlib.Path]) -> dict[str, list[Edge]]:
    """``{module: its imports of other modules}`` for every module (the edges of the graph)."""
    return {name: module_imports(name, path, modules) for name, path in sorted(modules.items())}


def strongly_connected_components(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of ``graph``
    (``{node: successors}``; successors missing from the keys are nodes without edges),
    each sorted, in reverse topological order of the condensation."""
    nodes = set(graph) | {m for succ in graph.values() for m in succ}
    succ = {n: sorted(set(graph.get(n, ()))) for n in sorted(nodes)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in succ:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(succ[node]):
                work.append((node, i + 1))
                nxt = succ[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components that hold a cycle: more than one node, or a node
    with an edge to itself. Sorted by their first member."""
    comps = strongly_connected_components(graph)
    return sorted((c for c in comps if len(c) > 1 or c[0] in set(graph.get(c[0], ()))), key=lambda c: c[0])


def cycle_path(component: Sequence[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One closed path ``[a, b, ..., a]`` through the first node of a cyclic component
    (a shortest one, by breadth-first search inside the component)."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    seen = {start}
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(set(graph.get(node, ()))):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start] + path[::-1][1:] + [start] if node != start else [start, start]
                if nxt in members and nxt not in seen:
                    seen.add(nxt)
                    parent[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    raise ValueError(f"no cycle through {start} in {sorted(members)}")


def report(root: pathlib.Path, packages: Sequence[str], show_graph: bool = False, out=sys.stdout) -> int:
    """Prints the graph summary (and with ``show_graph`` every module's imports) and every
    cycle; returns the number of cyclic components."""
    modules = find_modules(root, packages)
    edges = import_graph(modules)
    graph = {m: [e.target for e in es] for m, es in edges.items()}
    n_edges = sum(len(set(t)) for t in graph.values())
    print(f"{len(modules)} modules in {', '.join(packages)}; {n_edges} imports between them", file=out)
    if show_graph:
        for m in sorted(graph):
            targets = sorted(set(graph[m]))
            print(f"  {m} -> {', '.join(targets) if targets else '(none)'}", file=out)
    cycles = find_cycles(graph)
    if not cycles:
        print("no import cycles", file=out)
        return 0
    print(f"{len(cycles)} import cycle(s):", file=out)
    for comp in cycles:
        print(f"- {len(comp)} modules: {', '.join(comp)}", file=out)
        path = cycle_path(comp, graph)
        for a, b in zip(path, path[1:]):
            where = next(e for e in edges[a] if e.target == b)
            print(f"    {a} -> {b}  ({where.path.relative_to(root)}:{where.line})", file=out)
    return len(cycles)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=pathlib.Path, default=REPO, help="repository root (default: this checkout)")
    ap.add_argument("--packages", nargs="+", default=list(PACKAGES), help="top-level package directories")
    ap.add_argument("--graph", action="store_true", help="print every module's imports")
    args = ap.parse_args(argv)
    return 1 if report(args.root.resolve(), args.packages, args.graph) else 0


if __name__ == "__main__":
    sys.exit(main())
