"""uv's failures and warnings told in the user's terms: which node and which line of its file asked for
what uv could not fetch, build or install, and what to do about it. uv's text is read by `_uvtext`; the
provenance comes from what collect recorded (compile) or from the lock's `requested by`/`needed by`
lines (sync)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock._exceptions import UvError
from comfylock._names import shell_quote as _quote
from comfylock.resolve import uvtext
from comfylock.workspace.layout import USER_POLICY_FILE as POLICY_FILE

if TYPE_CHECKING:
    from comfylock.collect.gather import Req
    from comfylock.lockfile.lock import Lock


def _where(r: Req, root: Path | None) -> str:
    path = r.source.path
    if root is not None and path.is_relative_to(root):
        path = path.relative_to(root)
    return f"{path.as_posix()}:{r.source.line}"


def _what_to_do(nodes: Sequence[str], names: Sequence[str], url: bool) -> str:
    user = [n for n in nodes if n not in ("core", "user")]
    ways = []
    if user:
        ways.append("leave the node out with " + " ".join(f"--skip-node {_quote(n)}" for n in user))
    if names:
        ways.append(
            f'replace or skip {names[0]} with a policy in {POLICY_FILE} ({{"{names[0]}": '
            '{"apply_first_match": [{"type": "skip"}]}})'
        )
    ways.append(
        "make the URL reachable" if url else "give uv an index or --find-links folder with a wheel for it"
    )
    return "; or ".join(ways)


def compile_failure(e: UvError, requirements: Iterable[Req], root: Path | None) -> UvError:
    """`e` (uv pip compile failed, not a conflict) naming the node and file:line of the requirement
    uv failed on, and what to do."""
    said = uvtext.parse(e.details)
    hits = uvtext.blame(said.text or e.details, requirements, said.hints)
    if not hits:
        return e
    first = hits[0]
    nodes = list(dict.fromkeys(r.source.node for r in hits))
    # The package uv failed on (a dependency, maybe), else the ones asked for: what a policy would skip.
    names = uvtext.subject_names(said.error)[:1] or list(dict.fromkeys(r.name for r in hits))
    others = [f"{r.source.node} ({_where(r, root)})" for r in hits[1:]]
    text = first.text if len(first.text) <= 200 else first.text[:197] + "..."
    cause = said.one_line() or e.message.removeprefix("uv pip compile failed: ")
    message = f"uv pip compile failed on {first.source.node}'s requirement {text!r}: {cause}"
    why = uvtext.inclusion(said.hints)
    if why:
        message += f" ({why})"
    if others:
        message += f"; also asked by {', '.join(others)}"
    hint = _what_to_do(nodes, names, url=first.requirement.url is not None)
    where = _where(first, root)
    path, _, line = where.rpartition(":")
    return UvError(message, path=path, line=int(line), hint=hint, details=e.details)


def sync_failure(e: UvError, lock: Lock, back: str) -> UvError:
    """`e` (uv pip sync failed) naming the node(s) behind the package(s) uv failed on, by the lock's
    provenance; `back` is how to return to the state before."""
    said = uvtext.parse(e.details)
    names = [n for n in uvtext.subject_names(said.text) if n in lock.by_name()]
    paths = [c for n in names for c in uvtext.chains(lock, n)]
    nodes = uvtext.chain_nodes(lock, names)
    message = e.message
    if paths:
        message += f" (in the lock because of: {'; '.join(paths)})"
    hint = back
    if nodes:
        hint = f"{_what_to_do(nodes, names[:1], url=False)}, then compile again; {back}"
    return UvError(message, hint=hint, details=e.details)


def attributed_warnings(
    warnings: Iterable[str],
    requirements: Iterable[Req],
    groups: Mapping[str, Sequence[str]],
    parents: Mapping[str, Sequence[str]],
    root: Path | None,
) -> list[str]:
    """uv's warnings, each followed by who asked: the requirement lines naming the package, else the
    nodes that pulled it in (`groups`: package -> nodes asking directly; `parents`: package -> the
    packages depending on it)."""
    reqs = list(requirements)
    out = []
    for w in warnings:
        hits = uvtext.asked_by(w, reqs)
        if hits:
            who = "; ".join(f"{r.source.node} ({_where(r, root)}): {r.text}" for r in hits[:3])
            out.append(f"uv: {w} (asked by {who})")
            continue
        names = uvtext.subject_names(w)[:1]
        # No line asks for it like that: the packages depending on it did, and whoever brought them.
        starts = [p for n in names for p in parents.get(n, ())] or names
        nodes = _owners(starts, groups, parents)
        out.append(f"uv: {w}" + (f" (brought in by {', '.join(nodes)})" if nodes else ""))
    return out


def _owners(
    names: Sequence[str], groups: Mapping[str, Sequence[str]], parents: Mapping[str, Sequence[str]]
) -> list[str]:
    seen, todo, nodes = set(names), list(names), []
    while todo:
        name = todo.pop(0)
        nodes += list(groups.get(name, ()))
        for p in parents.get(name, ()):
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return list(dict.fromkeys(nodes))


def sync_warnings(warnings: Iterable[str], lock: Lock) -> list[str]:
    """uv's warnings during a sync, each with the nodes behind the package it names."""
    out = []
    for w in warnings:
        names = [n for n in uvtext.subject_names(w) if n in lock.by_name()][:1]
        paths = [c for n in names for c in uvtext.chains(lock, n)]
        out.append(f"uv: {w}" + (f" ({'; '.join(paths)})" if paths else ""))
    return out
