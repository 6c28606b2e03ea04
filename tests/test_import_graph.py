"""No module-level import cycles in the project's packages.

Built with grimp over every first-party package. Lazy (function-level) and ``TYPE_CHECKING``
imports count too: a cycle hidden behind them is still two files a reader must hold in mind at
once, and the lazy import is usually the workaround for it.
"""

from __future__ import annotations

import grimp

PACKAGES = ("plinth", "control_plane", "gpu_nodes", "lambdas", "infra")


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[module] = min(low[module], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[module])
            if low[module] == index[module]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_strongly_connected_finds_cycles_and_only_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "d"}}
    assert strongly_connected(edges) == [["a", "b", "c"]]
    assert strongly_connected({"x": {"y"}, "y": set()}) == []


def test_no_module_level_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}
    cycles = []
    for group in strongly_connected(edges):
        first, second = group[0], sorted(edges[group[0]] & set(group))[0]
        back = graph.find_shortest_chain(importer=second, imported=first) or ()
        cycles.append(f"{' -> '.join((first, *back))}  (cycle among {', '.join(group)})")
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
