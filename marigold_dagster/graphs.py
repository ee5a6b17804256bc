"""Dependency graphs: order, cycles and depth, for template steps and planned steps alike.

A graph maps each node to the nodes it depends on. Order and cycle detection use `graphlib`;
a cycle is named by walking dependencies from its earliest-listed node (`a -> c -> b -> a`:
`a` depends on `c`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter


def dependency_order(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Nodes with every dependency before them; among nodes ready together, in listed order.

    Raises:
        CycleError: when the graph has a cycle (see `find_cycle` for one to report).
    """
    listed = {node: index for index, node in enumerate(graph)}
    sorter = TopologicalSorter({node: list(deps) for node, deps in graph.items()})
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda node: listed.get(node, len(listed)))
        order += ready
        sorter.done(*ready)
    return order


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """One cycle as a dependency walk that ends where it starts, or [] when there is none."""
    try:
        TopologicalSorter({node: list(deps) for node, deps in graph.items()}).prepare()
    except CycleError as error:
        found: list[str] = list(reversed(error.args[1]))[:-1]  # graphlib lists dependents last
        listed = list(graph)
        first = min(found, key=lambda node: listed.index(node) if node in listed else len(listed))
        start = found.index(first)
        walk = found[start:] + found[:start]
        return [*walk, walk[0]]
    return []


def depths(graph: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Each node's depth: 1 + the depth of its deepest dependency (an acyclic graph)."""
    found: dict[str, int] = {}
    for node in dependency_order(graph):
        found[node] = 1 + max((found[dep] for dep in graph.get(node, ())), default=0)
    return found


def ancestors(graph: Mapping[str, Iterable[str]], node: str) -> set[str]:
    """Every node `node` depends on, directly or through others."""
    found: set[str] = set()
    frontier = list(graph[node])
    while frontier:
        current = frontier.pop()
        if current not in found:
            found.add(current)
            frontier += graph[current]
    return found
