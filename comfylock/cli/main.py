"""The command line: parse arguments, call the API, print what it returns, pick the exit code.

Every module a command needs is imported inside its handler (here and in the _cli_* area modules):
`comfylock --version` and the no-op `sync` at every ComfyUI start import only what they use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfylock import __version__
from comfylock.cli import report as _report
from comfylock.cli.out import Out, context, index_given
from comfylock.cli.out import display as _display

if TYPE_CHECKING:
    from comfylock._exceptions import ComfylockError
    from comfylock.api import SyncResult
    from comfylock.lockfile.lock import Change, Lock


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--comfyui",
        metavar="DIR",
        help="the ComfyUI folder (default: the one holding the current folder, else $COMFYUI_PATH)",
    )
    p.add_argument(
        "-p",
        "--python",
        metavar="PY",
        help="the target interpreter or venv (default: VIRTUAL_ENV, "
        "<comfyui>/venv, <comfyui>/.venv, ../python_embeded, this Python)",
    )
    p.add_argument("--lock", metavar="FILE", help="the lock file (default: <comfyui>/comfylock.lock)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--json", action="store_true", help="print a JSON report (schema: README, JSON output)")
    p.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour and progress bars of uv's output (default: auto; NO_COLOR is honoured)",
    )


def _index(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index-url", metavar="URL", help="the package index instead of PyPI")
    p.add_argument(
        "--extra-index-url", metavar="URL", action="append", default=[], help="one more index (repeatable)"
    )
    p.add_argument(
        "--find-links",
        "-f",
        metavar="DIR_OR_URL",
        action="append",
        default=[],
        help="a folder or page of wheels to use as well (repeatable)",
    )
    p.add_argument("--no-index", action="store_true", help="no index at all: only --find-links and the cache")
    p.add_argument("--offline", action="store_true", help="use only uv's cache")


def _no_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not run ComfyUI's loader afterwards (default: run it, and roll back when a node that "
        "loaded before fails)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` one of the core commands, only what parsing it needs
    (the other areas' modules are not imported: sync runs at every ComfyUI start)."""
    parser = argparse.ArgumentParser(
        prog="comfylock",
        description="One lock file for a ComfyUI install's Python packages: compile, sync, roll back.",
        epilog="The options every command has (--comfyui, -p/--python, --lock, -v, -q, --json, --color) and "
        "the index options may also come before the command. `comfylock COMMAND --help` shows them.",
    )
    parser.add_argument("--version", action="version", version=f"comfylock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    p = sub.add_parser("compile", help="resolve core + nodes + your requirements into the lock")
    _common(p)
    _index(p)
    p.add_argument("-U", "--upgrade", action="store_true", help="move every package to its newest allowed")
    p.add_argument(
        "-P",
        "--upgrade-package",
        metavar="NAME",
        action="append",
        default=[],
        help="move NAME to its newest allowed version, keep the rest (repeatable)",
    )
    p.add_argument("--refresh", action="store_true", help="revalidate uv's cache")
    p.add_argument(
        "--skip-node",
        metavar="NAME",
        action="append",
        default=[],
        help="leave the custom node NAME out (repeatable)",
    )
    p.add_argument("--keep-going", action="store_true", help="skip invalid requirement lines, with a warning")
    p.add_argument("--policy", metavar="FILE", action="append", default=[], help="an extra pip-policy.json")
    p.add_argument("--no-default-policy", action="store_true", help="leave out comfylock's shipped policy")
    p.add_argument("--yes", action="store_true", help="go on past policy warnings that stop the compile")
    p.add_argument("--dry-run", action="store_true", help="resolve and report, write nothing")
    p.add_argument("--python-version", metavar="X.Y", help="compile for another Python (uv's value)")
    p.add_argument("--python-platform", metavar="TRIPLE", help="compile for another platform (uv's value)")
    p.add_argument(
        "--torch-backend",
        metavar="NAME",
        help="the torch build for a target without torch: auto (default: this machine's GPU), cpu, pypi, "
        "cu126, rocm6.2... from <torch-index>/NAME",
    )

    p = sub.add_parser("sync", help="make the environment exactly the lock")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--offline", action="store_true", help="use only uv's cache")
    p.add_argument("--force", action="store_true", help="sync a lock made for another Python or platform")
    _no_verify(p)

    p = sub.add_parser("rollback", help="sync back to an earlier state from the history")
    _common(p)
    p.add_argument("--to", metavar="ID", type=int, help="history entry (default: before the last sync)")
    p.add_argument("--dry-run", action="store_true", help="say what would be undone, change nothing")
    p.add_argument(
        "--write-lock",
        action="store_true",
        help="also make the entry the lock file (keep the rolled-back state; compile keeps its pins)",
    )
    _no_verify(p)

    p = sub.add_parser("history", help="list the recorded states")
    _common(p)

    p = sub.add_parser("check", help="exit 0 if the environment matches the lock, 1 listing what differs")
    _common(p)

    p = sub.add_parser("add", help="add your own requirements (kept by comfylock, resolved with the rest)")
    _common(p)
    p.add_argument("requirements", nargs="+", metavar="REQ", help="a requirement, as in requirements.txt")

    p = sub.add_parser("remove", help="remove your own requirements")
    _common(p)
    p.add_argument("names", nargs="+", metavar="NAME", help="a package name added with `comfylock add`")
    for name, handler in _COMMANDS.items():
        sub.choices[name].set_defaults(handler=handler)
    if command not in _COMMANDS:
        import importlib

        # Commands of other areas register themselves; each module keeps its imports lazy.
        for module in _AREAS:
            importlib.import_module(module).register(sub, _common)
    from comfylock.cli.args import add_examples

    add_examples(parser)
    return parser


_AREAS = ("comfylock.cli.inspect", "comfylock.cli.policy", "comfylock.cli.export", "comfylock.cli.verify")


def main(argv: Sequence[str] | None = None) -> int:
    from comfylock.cli import args as _cli_args

    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught
        return code
    except BrokenPipeError:
        return _cli_args.quiet_closed_pipe()


def _main(argv: Sequence[str] | None) -> int:
    from comfylock.cli.args import command_of, hoist, interrupted

    words = hoist(sys.argv[1:] if argv is None else argv)
    if words == ["--version"]:  # before any parser is built: Python's start-up is all it should cost
        print(f"comfylock {__version__}")
        return 0
    args = build_parser(command_of(words)).parse_args(words)
    from comfylock._exceptions import ComfylockError, ResolutionError
    from comfylock._redact import redact_text
    from comfylock.cli import progress as _progress

    as_json = getattr(args, "json", False)
    _progress.configure(
        quiet=args.quiet, verbose=args.verbose, as_json=as_json, color=getattr(args, "color", "auto")
    )
    try:
        return _run(args, Out(args.quiet, args.verbose, as_json))
    except ResolutionError as e:
        if args.debug:
            raise
        _json_error(args, e)
        print(f"comfylock: error: {redact_text(str(e))}", file=sys.stderr)
        for line in e.involved:
            print(f"  {redact_text(line)}", file=sys.stderr)
        print(redact_text(e.explanation), file=sys.stderr)
        return e.exit_code
    except ComfylockError as e:
        if args.debug:
            raise
        _json_error(args, e)
        print(f"comfylock: error: {redact_text(str(e))}", file=sys.stderr)
        if args.verbose and getattr(e, "details", ""):  # uv's own words, whole
            print("uv says:", file=sys.stderr)
            for line in e.details.strip().splitlines():  # type: ignore[attr-defined]
                print(f"  {redact_text(line)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(interrupted(args), file=sys.stderr)
        return 130


def _json_error(args: argparse.Namespace, e: ComfylockError) -> None:
    """Under --json, the error is a JSON document on stdout too (the one-line message stays on stderr)."""
    if getattr(args, "json", False):
        from comfylock._exceptions import ResolutionError, UvError

        data: dict[str, Any] = {
            "error": str(e),
            "exit_code": e.exit_code,
            "type": type(e).__name__,
        }
        if isinstance(e, UvError) and e.details:
            data["details"] = e.details
        if isinstance(e, ResolutionError):
            data["explanation"] = e.explanation
            data["packages"] = sorted(e.packages)
            if e.attribution is not None:
                from comfylock.explain.conflicts import to_json

                data["attribution"] = to_json(e.attribution)
        Out(False, False, True).json("error", data)


def _run(args: argparse.Namespace, out: Out) -> int:
    return args.handler(args, out)


def _compile(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    r = api.compile(
        ctx,
        upgrade=args.upgrade,
        upgrade_packages=args.upgrade_package,
        index=index_given(args),
        offline=args.offline,
        refresh=args.refresh,
        skip_nodes=args.skip_node,
        keep_going=args.keep_going,
        policy_files=[Path(p) for p in args.policy],
        default_policy=not args.no_default_policy,
        yes=args.yes,
        dry_run=args.dry_run,
        python_version=args.python_version,
        python_platform=args.python_platform,
        torch_backend=_backend(args.torch_backend),
    )
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
        out(f"  {i.node}: {i.why} ({len(i.requirements)} requirements)", detail=len(inputs) > 8)
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
        out(f"  torch build: {backend} (chosen for this machine; kept while it is installed)")
    for w in r.warnings:
        out(f"  warning: {w}")
    for u in r.undeclared:
        out(f"  requirements not declared statically: {u.node}: {'; '.join(u.reasons)}")
        out(f"    {u.hint()}")
    from comfylock.cli.inspect import report_lines

    _print_changes(out, r.changes, "changes", _causes(r.lock))
    for line in report_lines(duplicates=r.duplicates):
        out(f"  {line}")
    return 0


def _backend(value: str | None) -> str | None:
    if value is None:
        return None
    from comfylock.resolve.torch_backend import check

    return check(value)


def _causes(lock: Lock) -> dict[str, str]:
    """name -> the nodes that asked for it, or the packages that pulled it in."""
    out = {}
    for pin in lock.pins:
        nodes = sorted({r.node for r in pin.requested_by})
        out[pin.name] = ", ".join(nodes) if nodes else "via " + ", ".join(pin.needed_by)
    return out


def _print_changes(
    out: Out, changes: Sequence[Change], label: str, causes: dict[str, str] | None = None
) -> None:
    from comfylock.lockfile.lock import summarize

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


def _sync(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    r = api.sync_env(
        ctx,
        dry_run=args.dry_run,
        offline=args.offline,
        force=args.force,
        verify=False if args.no_verify else None,
        notify=None if out.as_json else lambda note: out(f"note: {note}"),
    )
    return _report_sync(r, out, "sync", args.verbose)


def _report_sync(r: SyncResult, out: Out, what: str, verbose: bool = False) -> int:
    data = _report.sync_report(r)
    if r.check is not None:
        from comfylock.verify.after_sync import report_json

        data["verify"] = report_json(r.check)
    out.json(what, data)
    for w in r.warnings:
        out(f"warning: {w}")
    if r.plan.is_noop:
        out(f"environment already matches {_display(r.lock_path)}: nothing to do")
        return 0
    verb = "would change" if r.dry_run else "changed"
    out(f"{what}: {verb} {len(r.plan.changes)} packages to match {_display(r.lock_path)}")
    _print_changes(out, r.plan.changes, "plan" if r.dry_run else "done")
    if r.entry is not None:
        out(f"  previous state saved as history entry {r.entry.id} (`comfylock rollback` returns to it)")
    if r.check is not None:
        from comfylock.cli.verify import sync_lines

        for line in sync_lines(r.check, verbose=verbose):
            out(line)
        return 1 if r.regressed else 0
    return 0


def _rollback(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)

    def announce(info: Any, plan: Any) -> None:  # before anything changes
        for line in _report.rollback_lines(info, plan, len(plan.changes)):
            out(line)

    r = api.rollback(
        ctx,
        to=args.to,
        dry_run=args.dry_run,
        write_lock=args.write_lock,
        announce=announce,
        verify=False if args.no_verify else None,
    )
    code = _report_sync(r, out, "rollback", args.verbose)
    if r.rollback is not None and r.rollback.lock_written is not None:
        out(
            f"wrote history entry {r.rollback.entry.id} as {_display(r.rollback.lock_written)} "
            "(`comfylock compile` adds who asks for each package, keeping these pins where it can)"
        )
    return code


def _history(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    entries = api.list_history(ctx)
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


def _check(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    from comfylock.cli.inspect import report_lines

    r = api.check_report(ctx)
    p = r.plan
    data = _report.check_report(p, ctx.lock_path)
    data["stale"] = [{"node": s.node, "what": s.what, "detail": s.detail} for s in r.stale]
    data["rolled_back_to"] = r.rolled_back.id if r.rolled_back is not None else None
    data["broken"] = [
        {"package": b.package, "requirement": b.requirement, "installed": b.installed} for b in r.broken
    ]
    from comfylock.resolve.stale import report as intended_json

    data["intended"] = intended_json(r.intended)
    out.json("check", data)
    for line in report_lines(stale=r.stale, broken=r.broken, intended=r.intended):
        out(line)
    if p.is_noop:
        out(f"environment matches {_display(ctx.lock_path)}")
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
    out(f"environment differs from {_display(ctx.lock_path)} in {len(p.changes)} packages:")
    for c in p.changes:
        out(f"  {words[c.kind]}: {c.name} (installed {c.old or '-'}, lock {c.new or '-'})")
    if r.rolled_back is not None and r.rolled_back_automatic:
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


def _add(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    out.json("add", {"requirements": api.add(ctx, args.requirements)})
    out(f"added {', '.join(args.requirements)} to your requirements; run `comfylock compile` to lock them")
    return 0


def _remove(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    out.json("remove", {"requirements": api.remove(ctx, args.names)})
    out(f"removed {', '.join(args.names)} from your requirements; run `comfylock compile`")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, Out], int]] = {
    "compile": _compile,
    "sync": _sync,
    "rollback": _rollback,
    "history": _history,
    "check": _check,
    "add": _add,
    "remove": _remove,
}
