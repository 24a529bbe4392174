"""`comfylock verify` (registered by cli.build_parser), and the verify part of sync's and rollback's report.

JSON report (under --json), schema version 1:
  comfylock.verify/1: {started, error, returncode, seconds, timed_out,
      nodes: [{node, loaded, seconds, error, traceback, path, missing_module, add}]}
  sync/rollback reports gain `verify`: null or {baseline, result (as above), regressions: [{node, error,
      packages, named_in_traceback}], rolled_back, rollback_history_entry, rollback_error}
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser(
        "verify",
        help="run ComfyUI's own loader in the target: exit 0 every custom node loads, 1 one fails, "
        "2 ComfyUI cannot start",
    )
    common(p)
    p.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        help="stop a load that takes longer (default: verify-timeout in config.toml, else 300)",
    )
    p.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace, out: Any) -> int:
    from comfylock import api
    from comfylock.cli.out import context

    if args.timeout is not None and args.timeout <= 0:
        from comfylock._exceptions import InputError

        raise InputError("--timeout must be a positive number of seconds")
    ctx = context(args)
    r = api.verify(ctx, timeout=args.timeout)
    out.json("verify", result_json(r))
    for line in lines(r, verbose=args.verbose, lock_path=ctx.lock_path):
        out(line)
    return int(r.exit_code)


def result_json(r: Any) -> dict[str, Any]:
    from comfylock.verify.state import provider

    data = r.to_json()
    for n in data["nodes"]:
        n["add"] = provider(n["missing_module"]) if n["missing_module"] else None
    return dict(data)


def lines(r: Any, *, verbose: bool = False, indent: str = "", lock_path: Any = None) -> list[str]:
    """The human report of one verify: a line per node, the error of each failed one (and, for a
    missing module, what to do about it; see missing_hint for `lock_path`)."""
    out = []
    for n in r.nodes:
        secs = f"{n.seconds:5.1f} s" if n.seconds is not None else "   ?   "
        out.append(f"{indent}  {'ok    ' if n.loaded else 'FAILED'} {secs}  {n.name}")
        if n.loaded:
            continue
        if verbose and n.traceback:
            out.extend(f"{indent}      {t}" for t in n.traceback.splitlines())
        else:
            out.append(f"{indent}      {n.error}")
        if n.missing_module:
            out.append(f"{indent}      {missing_hint(n.missing_module, lock_path)}")
    loaded = sum(1 for n in r.nodes if n.loaded)
    if r.started or r.nodes:
        out.append(f"{indent}{loaded} of {len(r.nodes)} custom nodes loaded ({r.seconds:.1f} s)")
    if not r.started:
        out.append(f"{indent}ComfyUI did not start: {r.error}")
        if verbose and not r.timed_out and r.output:
            out.extend(f"{indent}  | {t}" for t in r.output.splitlines()[-30:])
    return out


def missing_hint(module: str, lock_path: Any = None) -> str:
    """How to add the package a ModuleNotFoundError asks for; where the lock at `lock_path` leaves
    that package out by a policy, that rule instead (adding it would change nothing)."""
    from comfylock.verify.state import provider

    add = provider(module)
    rule = _skipped_by(lock_path, add or module.split(".")[0]) if lock_path is not None else None
    if rule is not None:
        return (
            f"missing module {module!r}: a policy leaves it out of the lock: skip {rule}; "
            "drop that rule, then compile and sync"
        )
    if add:
        return f"missing module {module!r}: `comfylock add '{add}'`, then compile and sync"
    top = module.split(".")[0]
    return (
        f"missing module {module!r}: `comfylock add '{top}'` if its package has the module's name "
        "(else the package that provides it), then compile and sync"
    )


def _skipped_by(lock_path: Any, requirement: str) -> str | None:
    """The lock's `skip` policy line (without "skip ") for the package of `requirement`, if any."""
    from comfylock._exceptions import InputError
    from comfylock._names import canon, req_name
    from comfylock.lockfile.lock import read_lock

    try:
        policies = read_lock(lock_path).lists.get("policy", ())
    except InputError:
        return None
    name = req_name(requirement) or canon(requirement)
    for line in policies:
        kind, _, rest = line.partition(" ")
        if kind == "skip" and canon(rest.split(" ", 1)[0]) == name:
            return rest
    return None


def sync_lines(
    check: Any, *, verbose: bool = False, command: str = "sync", lock_path: Any = None
) -> list[str]:
    """What verifying after a sync or rollback (`command`) found, and what was undone."""
    out = [
        "verify: ComfyUI's loader after the change"
        + ("" if check.before else " (no earlier result to compare)")
    ]
    out.extend(lines(check.after, verbose=verbose, indent="  ", lock_path=lock_path))
    for reg in check.regressions:
        what = "names" if reg.named else "changed (its traceback names none of them)"
        out.append(f"  REGRESSION: {reg.node} loaded before and fails now: {reg.error}")
        out.append(f"    packages this change {what}: {', '.join(reg.blamed) or '-'}")
    if check.undo is not None:
        entry = check.undo.entry
        where = f" (history entry {entry.id} is the broken state)" if entry is not None else ""
        out.append(f"rolled back: the environment is as it was before this change{where}")
        if command == "rollback":  # nothing to pin: the state rolled back to is what does not load
            out.append(
                "  that state does not load: `comfylock history` lists the others, `comfylock rollback "
                "--to ID` returns to one (`--no-verify` keeps this one anyway)"
            )
        else:
            out.append("  pin or replace what broke it, compile and sync again (`--no-verify` keeps it)")
    elif check.undo_error:
        out.append(f"the automatic rollback failed: {check.undo_error}")
        out.append("  `comfylock rollback` restores the state before this change")
    elif check.before is not None and check.after.failed and not check.regressions:
        out.append("  (these nodes failed before this change too: not a regression)")
    return out


def entry_verified(path: Any) -> dict[str, Any] | None:
    """What loaded in the state a history entry records, when that state was verified."""
    from comfylock.verify.state import of_entry

    r = of_entry(path)
    if r is None:
        return None
    failed = [n.name for n in r.failed]
    return {
        "started": r.started,
        "nodes": len(r.nodes),
        "loaded": len(r.nodes) - len(failed),
        "failed": failed,
    }
