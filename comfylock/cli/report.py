"""The `--json` documents of the core commands. Each is versioned by its `schema` key
(`comfylock.<command>/1`, added by cli.Out.json); the README lists the fields."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfylock.api import CompileResult, SyncResult
    from comfylock.environment.history import Entry
    from comfylock.environment.sync import SyncPlan
    from comfylock.lockfile.lock import Change

_CHECK_KIND = {"added": "missing", "removed": "extra"}


def changes(items: Iterable[Change]) -> list[dict[str, Any]]:
    return [{"name": c.name, "old": c.old, "new": c.new, "kind": c.kind} for c in items]


def compile_report(r: CompileResult) -> dict[str, Any]:
    meta = r.lock.meta
    return {
        "lock": str(r.lock_path),
        "written": r.written,
        "up_to_date": r.up_to_date,
        "offline_first": r.offline_first,
        "packages": len(r.lock.pins),
        "target": {
            "python": meta.get("python"),
            "platform": meta.get("platform"),
            "target_python_version": meta.get("target-python-version"),
            "target_python_platform": meta.get("target-python-platform"),
        },
        "nodes": [
            {
                "node": i.node,
                "file": i.chosen,
                "why": i.why,
                "requirements": len(i.requirements),
                "bad_lines": [
                    {"file": str(b.source.path), "line": b.source.line, "text": b.text, "reason": b.reason}
                    for b in i.bad_lines
                ],
            }
            for i in r.collection.inputs
        ],
        "policy": [
            {
                "kind": a.kind,
                "package": a.package,
                "detail": a.detail,
                "origin": a.origin,
                "reason": a.reason,
                "requested_by": sorted({s.node for s in a.requested_by}),
            }
            for a in (r.outcome.actions if r.outcome is not None else ())
        ],
        "warnings": list(r.warnings),
        "changes": changes(r.changes),
        "torch_backend": meta.get("torch-backend"),  # the build chosen for a target without torch
        "undeclared": [
            {
                "node": u.node,
                "reasons": list(u.reasons),
                "packages": list(u.packages),
                "files": list(u.files),
                "hint": u.hint(),
            }
            for u in r.undeclared
        ],
    }


def sync_report(r: SyncResult) -> dict[str, Any]:
    info = r.rollback
    extra = {}
    if info is not None:  # rollback's report: what it undoes
        e = info.entry
        extra["undoes"] = {
            "entry": e.id,
            "time": e.time,
            "trigger": e.trigger,
            "later_changes": info.later,
            "entry_packages": e.packages,
            "installed_packages": info.installed,
            "lock_written": str(info.lock_written) if info.lock_written else None,
        }
    return {
        **extra,
        "lock": str(r.lock_path),
        "dry_run": r.dry_run,
        "noop": r.plan.is_noop,
        "changes": changes(r.plan.changes),
        "kept": list(r.plan.kept),
        "history_entry": r.entry.id if r.entry is not None else None,
        "warnings": list(r.warnings),
    }


def check_report(plan: SyncPlan, lock_path: Path) -> dict[str, Any]:
    return {
        "lock": str(lock_path),
        "matches": plan.is_noop,
        "differences": [
            {
                "name": c.name,
                "installed": c.old,
                "locked": c.new,
                "kind": _CHECK_KIND.get(c.kind, "other-version"),
            }
            for c in plan.changes
        ],
    }


def history_report(entries: Iterable[Entry]) -> dict[str, Any]:
    return {
        "entries": [
            {
                "id": e.id,
                "time": e.time,
                "trigger": e.trigger,
                "packages": e.packages,
                "path": str(e.path),
                "damaged": e.damaged,  # why it cannot be rolled back to; null for a good entry
            }
            for e in entries
        ]
    }


def rollback_lines(info: Any, changes: int) -> list[str]:
    """What a rollback undoes, said before it does it (and all a --dry-run does)."""
    e = info.entry
    # A no-op sync records nothing, so the newest entry's change may be older than the last sync run.
    later = (
        f" and the {info.later} change{'s' if info.later != 1 else ''} after it"
        if info.later
        else " (the last change comfylock made to the environment)"
    )
    lines = [
        f"rollback to history entry {e.id}: undoes `{e.trigger}` of {e.time}{later}",
        f"  entry {e.id} holds {e.packages} packages; the environment has {info.installed} now; "
        + (f"{changes} change" + ("s" if changes != 1 else "") if changes else "nothing changes"),
    ]
    from comfylock.cli.verify import entry_verified

    known = entry_verified(e.path)
    if known is not None and known["failed"]:  # e.g. the state an automatic rollback undid
        lines.append(
            f"  warning: entry {e.id} was verified and {', '.join(known['failed'])} did not load in it "
            f"({known['loaded']} of {known['nodes']} nodes loaded)"
        )
    return lines
