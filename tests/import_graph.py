"""Read the import graph of a package from its source (``ast``, nothing is imported) and check it against
a declared order of layers: every import must run down to a lower layer, or stay inside one unit."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """``root/pkg/a/b.py`` -> ``pkg.a.b``; a package's ``__init__.py`` is the package itself."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(package_dir: str | Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports anywhere (function-local imports too)."""
    root = Path(package_dir)
    top = root.name
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(path, root)
        is_pkg = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == top}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.split(".")[0] == top:
                    # ``from pkg.sub import module`` imports that module; other names come from ``mod``
                    folder = root.parent / mod.replace(".", "/")
                    subs = {a.name for a in node.names if (folder / f"{a.name}.py").is_file()
                            or (folder / a.name / "__init__.py").is_file()}
                    targets |= {f"{mod}.{n}" for n in subs}
                    if len(subs) < len(node.names):
                        targets.add(mod)
        graph[name] = targets - {name}
    return graph


def unit(module: str, layers: Mapping[str, int]) -> str:
    """The longest prefix of ``module`` named in ``layers`` (its unit of the layering)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in layers:
            return prefix
    raise KeyError(f"{module} belongs to no declared layer; add it to the layering")


def upward_edges(graph: Mapping[str, set[str]], layers: Mapping[str, int]) -> list[tuple[str, str]]:
    """Imports that do not run down: to a unit of the same or a higher layer, other than their own unit.

    The package's own ``__init__`` (the top unit) is ignored as a source, being an index of names."""
    bad = []
    for src, targets in graph.items():
        if "." not in src:
            continue
        for dst in targets:
            if "." not in dst:
                bad.append((src, dst))  # importing the top package runs back up through its __init__
                continue
            a, b = unit(src, layers), unit(dst, layers)
            if a != b and layers[b] >= layers[a]:
                bad.append((src, dst))
    return sorted(bad)


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Every import cycle, each as the list of modules on it (empty: the graph is acyclic)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def oversized(package_dir: str | Path, limit: int) -> list[tuple[str, int]]:
    """Modules of more than ``limit`` lines, with their line counts."""
    out = []
    for path in sorted(Path(package_dir).rglob("*.py")):
        n = len(path.read_text().splitlines())
        if n > limit:
            out.append((str(path), n))
    return out


def layering(order: Sequence[Sequence[str]]) -> dict[str, int]:
    """``[["pkg.a", "pkg.b"], ["pkg.c"]]`` -> unit -> layer index (0 is the bottom)."""
    return {name: i for i, names in enumerate(order) for name in names}
