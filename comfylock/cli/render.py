"""How the CLI shows the results of compile, sync, rollback, history and check (text, or --json
through cli.report). The modules a result needs are imported where it is shown, as in cli.main."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock.cli import report as _report
from comfylock.cli.out import Out
from comfylock.cli.out import display as _display
from comfylock.lockfile.lock import Change, Lock, summarize

if TYPE_CHECKING:
    from comfylock.api import CompileResult, SyncResult
    from comfylock.commands.check import CheckReport
    from comfylock.commands.rollback import RollbackInfo
    from comfylock.environment.history import Entry
    from comfylock.environment.sync import SyncPlan


def compiled(r: CompileResult, out: Out) -> int:
    """A compile's result: what was read, what policy did, what changed."""
    if out.as_json:  # the report reads r.collection, which an up-to-date compile collects only now
        out.json("compile", _report.compile_report(r))
    name = _display(r.lock_path)
    if r.up_to_date:  # without reading r.collection: the quick no-op check collects nothing
        what = "node commits in the header refreshed" if r.written else "nothing changed"
        out(f"{name} is up to date ({r.nodes} nodes, {len(r.lock.pins)} packages; {what})")
        for w in r.warnings:
            out(f"  warning: {w}")
        return 0
    inputs = r.collection.inputs
    nreq = sum(len(i.requirements) for i in inputs)
    nodes = [i for i in inputs if i.node not in ("core", "user")]
    verb = "would write" if not r.written else "wrote"
    out(f"{verb} {name}: {len(nodes)} nodes, {nreq} requirements -> {len(r.lock.pins)} packages")
    for i in inputs:
        n = len(i.requirements)
        out(f"  {i.node}: {i.why} ({n} requirement{'' if n == 1 else 's'})", detail=len(inputs) > 8)
        for bad in i.bad_lines:
            out(f"  warning: skipped {bad.source.path.name}:{bad.source.line}: {bad.text!r} ({bad.reason})")
    if r.outcome is not None:
        # One line per action: the torch stack's packages each carry the same pin_dependencies entry.
        said: dict[tuple[str, str], set[str]] = {}
        for a in r.outcome.actions:
            said.setdefault((a.kind, a.detail), set()).update(src.node for src in a.requested_by)
        for (kind, detail), who in said.items():
            out(f"  policy {kind}: {detail}" + (f" (asked by {', '.join(sorted(who))})" if who else ""))
    if r.lock.meta.get("torch-backend"):
        backend = r.lock.meta["torch-backend"]
        out(f"  torch build: {backend} (the lock's torch-backend, kept while that torch is installed)")
    for w in r.warnings:
        out(f"  warning: {w}")
    for u in r.undeclared:
        out(f"  requirements not declared statically: {u.node}: {'; '.join(u.reasons)}")
        out(f"    {u.hint()}")
    from comfylock.cli.inspect import report_lines

    print_changes(out, r.changes, "changes", _causes(r.lock))
    for line in report_lines(duplicates=r.duplicates):
        out(f"  {line}")
    return 0


def _causes(lock: Lock) -> dict[str, str]:
    """name -> the nodes that asked for it, or the packages that pulled it in."""
    out = {}
    for pin in lock.pins:
        nodes = sorted({r.node for r in pin.requested_by})
        out[pin.name] = ", ".join(nodes) if nodes else "via " + ", ".join(pin.needed_by)
    return out


def print_changes(
    out: Out, changes: Sequence[Change], label: str, causes: dict[str, str] | None = None
) -> None:
    out(f"  {label}: {summarize(changes)}")
    marks = {"added": "+", "removed": "-", "upgraded": "^", "downgraded": "v", "changed": "~"}
    width = max((len(c.name) for c in changes), default=0)
    rows = []
    for c in changes:
        what = c.new if c.kind == "added" else c.old if c.kind == "removed" else f"{c.old} -> {c.new}"
        rows.append((f"    {marks[c.kind]} {c.name:<{width}} {what}", (causes or {}).get(c.name, "")))
    pad = max((len(r[0]) for r in rows), default=0)
    for line, why in rows:
        out(f"{line:<{pad}}  ({why})" if why else line)


def synced(r: SyncResult, out: Out, what: str, verbose: bool = False) -> int:
    """A sync's or rollback's result; the exit code (1: verifying found a node that stopped loading)."""
    if out.as_json:
        data = _report.sync_report(r)
        if r.check is not None:
            from comfylock.verify.after_sync import report_json

            data["verify"] = report_json(r.check)
        out.json(what, data)
    if out.quiet:  # -q and --json: nothing more to print, so nothing more to work out
        return 1 if r.regressed else 0
    for w in r.warnings:
        out(f"warning: {w}")
    if r.plan.is_noop:
        out(f"environment already matches {_display(r.lock_path)}: nothing to do")
        return 0
    verb = "would change" if r.dry_run else "changed"
    out(f"{what}: {verb} {len(r.plan.changes)} packages to match {_display(r.lock_path)}")
    print_changes(out, r.plan.changes, "plan" if r.dry_run else "done")
    undone = r.check is not None and r.check.undo is not None
    if r.entry is not None and not undone:  # once undone by verify, what it says below holds instead
        out(f"  previous state saved as history entry {r.entry.id} (`comfylock rollback` returns to it)")
    if r.check is not None:
        from comfylock.cli.verify import sync_lines

        for line in sync_lines(r.check, verbose=verbose, command=what, lock_path=r.lock_path):
            out(line)
        return 1 if r.regressed else 0
    return 0


def rollback_plan(info: RollbackInfo, plan: SyncPlan, out: Out) -> None:
    """What a rollback will undo, said before anything changes."""
    for line in _report.rollback_lines(info, len(plan.changes)):
        out(line)


def rolled_back(r: SyncResult, out: Out, verbose: bool = False) -> int:
    """A rollback's result, as a sync's, and the lock it wrote (--write-lock)."""
    code = synced(r, out, "rollback", verbose)
    if r.rollback is not None and r.rollback.lock_written is not None:
        out(
            f"wrote history entry {r.rollback.entry.id} as {_display(r.rollback.lock_written)} "
            "(`comfylock compile` adds who asks for each package, keeping these pins where it can)"
        )
    return code


def history(entries: Sequence[Entry], out: Out) -> int:
    """The history entries, each with what verifying found in the state it records."""
    from comfylock.cli.verify import entry_verified

    verified = {e.id: entry_verified(e.path) for e in entries}
    data = _report.history_report(entries)
    for row in data["entries"]:
        row["verify"] = verified[row["id"]]  # what loaded in the state it records; null: not verified
    out.json("history", data)
    if not entries:
        out("no history yet (`comfylock sync` records the environment before it changes it)")
    for e in entries:
        if e.damaged:  # listed, so its number is not mistaken for a gap; rollback refuses it
            out(f"{e.id:>4}  {e.time}  damaged: {e.damaged}")
        else:
            v = verified[e.id]
            note = ""
            if v is not None:
                note = f"  verified: {v['loaded']} of {v['nodes']} nodes loaded"
                note += f" ({', '.join(v['failed'])} failed)" if v["failed"] else ""
            out(f"{e.id:>4}  {e.time}  {e.packages:>4} packages  before {e.trigger}{note}")
    return 0


def checked(r: CheckReport, lock_path: Path, out: Out) -> int:
    """check's result; the exit code (1: the environment differs from the lock)."""
    from comfylock.cli.inspect import report_lines

    p = r.plan
    data = _report.check_report(p, lock_path)
    data["stale"] = [{"node": s.node, "what": s.what, "detail": s.detail} for s in r.stale]
    data["rolled_back_to"] = r.rolled_back.id if r.rolled_back is not None else None
    data["broken"] = [
        {"package": b.package, "requirement": b.requirement, "installed": b.installed} for b in r.broken
    ]
    if r.intended:  # only the slow path finds any: the quick one needs none of stale's imports
        from comfylock.resolve.stale import report as intended_json

        data["intended"] = intended_json(r.intended)
    else:
        data["intended"] = []
    out.json("check", data)
    for line in report_lines(stale=r.stale, broken=r.broken, intended=r.intended):
        out(line)
    if p.is_noop:
        out(f"environment matches {_display(lock_path)}")
        return 0
    words = {
        "added": "missing",
        "removed": "extra",
        "upgraded": "other version",
        "downgraded": "other version",
        "changed": "other version",
    }
    unfinished = r.unfinished
    if unfinished is not None:
        out(
            f"a sync did not finish ({len(unfinished.packages)} packages may be half-installed): "
            f"`comfylock sync` completes it, `comfylock rollback --to {unfinished.entry}` undoes it"
        )
    out(f"environment differs from {_display(lock_path)} in {len(p.changes)} packages:")
    for c in p.changes:
        out(f"  {words[c.kind]}: {c.name} (installed {c.old or '-'}, lock {c.new or '-'})")
    if r.rolled_back is not None and r.rolled_back_automatic and r.rolled_back.trigger.startswith("rollback"):
        out(  # the entry's trigger is the change that followed it: here a rollback into a broken state
            f"the environment is at history entry {r.rolled_back.id} ({r.rolled_back.time}): the last "
            f"change (`{r.rolled_back.trigger}`) broke a custom node and was undone by itself; `comfylock "
            "history` lists the other states, `comfylock sync` returns to the lock"
        )
    elif r.rolled_back is not None and r.rolled_back_automatic:
        out(
            f"the environment is at history entry {r.rolled_back.id} ({r.rolled_back.time}): the last sync "
            "broke a custom node and was rolled back by itself; pin or replace what broke it, then "
            "`comfylock compile` and `comfylock sync` (`comfylock sync --no-verify` keeps the lock anyway)"
        )
    elif r.rolled_back is not None:
        n = r.rolled_back.id
        out(
            f"the environment is at history entry {n} ({r.rolled_back.time}) by a rollback: "
            f"`comfylock sync` returns to the lock; "
            f"`comfylock rollback --to {n} --write-lock` makes it the lock"
        )
    return 1
