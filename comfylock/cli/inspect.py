"""Commands of the inspect area (registered by cli.build_parser): why, diff, nodes.

They read the lock alone (its `requested by` / `needed by` lines are the graph), so they are instant and
need no network; only `diff env` runs the target interpreter once.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from comfylock.cli.out import Out, where
from comfylock.cli.out import display as _display
from comfylock.workspace.layout import USER_POLICY_FILE as POLICY_FILE

if TYPE_CHECKING:
    from comfylock.explain.inspect import Broken, Caused, Duplicate, Stale
    from comfylock.resolve.stale import Intended


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this area's subcommands; each sets `handler=fn(args, out) -> exit code`."""
    p = sub.add_parser("why", help="why a package is in the lock: the chains from nodes to it, and policies")
    common(p)
    p.add_argument("package", metavar="PKG", help="a package name in the lock")
    p.set_defaults(handler=_why)

    p = sub.add_parser(
        "diff",
        help="what changes between two locks, a lock and the environment, or a lock and a git revision",
        description="Each side is a lock file, `env` (the target environment) or `git:REV[:PATH]` (the lock, "
        "or PATH beside it, at a git revision). OLD defaults to env, NEW to the lock.",
    )
    common(p)
    p.add_argument(
        "old", nargs="?", default="env", metavar="OLD", help="a lock, env or git:REV[:PATH] (default: env)"
    )
    p.add_argument(
        "new",
        nargs="?",
        default=None,
        metavar="NEW",
        help="a lock, env or git:REV[:PATH] (default: the lock)",
    )
    p.set_defaults(handler=_diff)

    p = sub.add_parser("nodes", help="each node: its requirement file, how many lines, what only it brings")
    common(p)
    p.set_defaults(handler=_nodes)


def _why(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    r = api.why(args.package, **where(args))
    path, w, versions = r.lock_path, r.why, r.versions
    chains = [
        {**dataclasses.asdict(c.request), "path": [{"name": n, "version": versions.get(n)} for n in c.path]}
        for c in w.chains
    ]
    out.json(
        "why",
        {
            "package": w.name,
            "pin": w.spec,
            "chains": chains,
            "needed_by": list(w.needed_by),
            "policy": list(w.policy),
            "warnings": list(w.warnings),
            "close": list(w.close),
        },
    )
    if w.spec is None:
        maybe = f"; did you mean {', '.join(w.close)}?" if w.close else ""
        out(f"{w.name} is not in {_display(path)}{maybe}")
        for line in w.policy:
            out(f"  policy: {line}")
        return 1
    out(f"{w.spec} is in {_display(path)} because:")
    for c in w.chains:
        r = c.request
        via = " -> ".join(f"{n} {versions.get(n, '')}".strip() for n in c.path)
        out(f"  {r.node} ({r.file}:{r.line}: {r.quoted()})" + (f": {via}" if len(c.path) > 1 else ""))
    if not w.chains:
        out("  no node asks for it (a policy or an edit put it there)")
    if w.needed_by:
        out(f"needed by: {', '.join(w.needed_by)}")
    for line in w.policy:
        out(f"policy: {line}")
    for line in w.warnings:
        out(f"warning: {line}")
    return 0


def _nodes(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    r = api.nodes(**where(args))
    path, infos = r.lock_path, r.nodes
    out.json("nodes", {"nodes": [dataclasses.asdict(n) for n in infos]})
    width = max((len(n.name) for n in infos), default=0)
    for n in infos:
        src = n.source or "-"
        git = f"  git {n.commit[:10]}" if n.commit else ""
        count = f"{n.requirements:>3} requirement{'s' if n.requirements != 1 else ' '}"
        out(f"{n.name:<{width}}  {src:<18} {count}  {len(n.only):>3} only here{git}")
        if n.only:
            out(f"{'':<{width}}    only here: {', '.join(n.only)}", detail=True)
    if not infos:
        out(f"no nodes recorded in {_display(path)}")
    return 0


def _diff(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    r = api.diff(args.old, args.new, **where(args))
    labels = [r.old, r.new or _display(r.lock_path)]
    causes = r.changes
    out.json("diff", {"old": labels[0], "new": labels[1], "changes": changes_json(causes)})
    print_changes(out, causes, f"{labels[0]} -> {labels[1]}")
    return 0


def changes_json(causes: Sequence[Caused]) -> list[dict[str, Any]]:
    return [
        {
            "name": c.change.name,
            "kind": c.change.kind,
            "old": c.change.old,
            "new": c.change.new,
            "nodes": list(c.nodes),
            "reason": c.reason,
        }
        for c in causes
    ]


MARKS = {"added": "+", "removed": "-", "upgraded": "^", "downgraded": "v", "changed": "~"}


def print_changes(out: Out, causes: Sequence[Caused], label: str) -> None:
    """A diff (inspect.Caused records) with the nodes behind each change."""
    from comfylock.lockfile.lock import summarize

    out(f"{label}: {summarize(c.change for c in causes)}")
    for c in causes:
        ch = c.change
        what = ch.new if ch.kind == "added" else ch.old if ch.kind == "removed" else f"{ch.old} -> {ch.new}"
        who = f"  [{', '.join(c.nodes)}]" if c.nodes else ""
        out(f"  {MARKS[ch.kind]} {ch.name} {what}{who}" + (f"  {c.reason}" if c.reason else ""))


def report_lines(
    duplicates: Sequence[Duplicate] = (),
    stale: Sequence[Stale] = (),
    broken: Sequence[Broken] = (),
    intended: Sequence[Intended] = (),
) -> list[str]:
    """Lines for what `compile` and `check` add to their output: duplicate imports (inspect.Duplicate),
    a stale lock (inspect.Stale), broken requirements in the environment (inspect.Broken) and what
    `uv pip check` reports that a policy does on purpose (_stale.Intended: a note, not a warning)."""
    out = []
    for d in duplicates:
        asked = "; ".join(f"{k} by {', '.join(v)}" if v else k for k, v in d.asked_by.items())
        out.append(
            f"{d.severity}: {', '.join(d.dists)} all install `import {d.module}`: {d.reason} ({asked})"
        )
        out.append(f"  settle it in {POLICY_FILE} (keeps {d.keep}): {d.policy}")
    for s in stale:
        out.append(f"warning: the lock is stale: {s.node}: {s.detail} (run `comfylock compile`)")
    for b in broken:
        out.append(f"warning: broken in the environment: {b.message}")
    for i in intended:
        out.append(f"note: as intended: {i.message}")
    return out
