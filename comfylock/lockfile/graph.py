"""The lock as a graph: its `requested by` lines say which node asks for a package, its `needed by` lines
which package pulls in which. Shared by inspect (why, nodes, diff) and _imports (who brings a duplicate).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from comfylock.lockfile.lock import Lock


def node_order(node: str) -> tuple[bool, bool, str, str]:
    # collect.CORE and collect.USER, spelled out: commands that read a lock alone need not import collect.
    return (node != "core", node == "user", node.casefold(), node)  # core first, user last


def children(lock: Lock) -> dict[str, set[str]]:
    """package -> the packages it pulls in."""
    out: dict[str, set[str]] = {p.name: set() for p in lock.pins}
    for p in lock.pins:
        for parent in p.needed_by:
            out.setdefault(parent, set()).add(p.name)
    return out


def reach(kids: Mapping[str, set[str]], starts: Iterable[str]) -> set[str]:
    seen, todo = set(), list(starts)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(kids.get(n, ()))
    return seen


def direct(lock: Lock) -> dict[str, set[str]]:
    """node -> packages it asks for by name."""
    out: dict[str, set[str]] = {}
    for p in lock.pins:
        for r in p.requested_by:
            out.setdefault(r.node, set()).add(p.name)
    return out


def owners(lock: Lock) -> dict[str, set[str]]:
    """package -> nodes (core, user) that bring it, directly or through other packages."""
    kids, out = children(lock), {}
    for node, pkgs in direct(lock).items():
        for name in reach(kids, pkgs):
            out.setdefault(name, set()).add(node)
    return out
