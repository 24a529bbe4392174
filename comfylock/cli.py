"""The command line: parse arguments, call the API, print what it returns, pick the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__, _report


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

    p = sub.add_parser("sync", help="make the environment exactly the lock")
    _common(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--offline", action="store_true", help="use only uv's cache")
    p.add_argument("--force", action="store_true", help="sync a lock made for another Python or platform")

    p = sub.add_parser("rollback", help="sync back to an earlier state from the history")
    _common(p)
    p.add_argument("--to", metavar="ID", type=int, help="history entry (default: before the last sync)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")

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
    from ._cli_args import add_examples

    add_examples(parser)
    return parser


_AREAS = ("comfylock._cli_inspect", "comfylock._cli_policy", "comfylock._cli_export")


class Out:
    """Where commands print: plain lines (respecting --quiet/--verbose) or one JSON document."""

    def __init__(self, quiet: bool, verbose: bool, as_json: bool = False) -> None:
        self.quiet, self.verbose, self.as_json = quiet or as_json, verbose, as_json

    def json(self, command: str, data: dict[str, Any]) -> None:
        """Print the versioned JSON report of `command` (only under --json)."""
        if self.as_json:
            import json

            from ._redact import redact_text

            text = json.dumps({"schema": f"comfylock.{command}/1", **data}, indent=2, sort_keys=True)
            print(redact_text(text))

    def __call__(self, text: str = "", *, detail: bool = False) -> None:
        if not self.quiet and (self.verbose or not detail):
            from ._redact import redact_text

            print(redact_text(text))


def main(argv: Sequence[str] | None = None) -> int:
    from . import _cli_args

    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught
        return code
    except BrokenPipeError:
        return _cli_args.quiet_closed_pipe()


def _main(argv: Sequence[str] | None) -> int:
    from ._cli_args import command_of, hoist, interrupted

    words = hoist(sys.argv[1:] if argv is None else argv)
    if words == ["--version"]:  # before any parser is built: Python's start-up is all it should cost
        print(f"comfylock {__version__}")
        return 0
    args = build_parser(command_of(words)).parse_args(words)
    from . import _progress
    from ._exceptions import ComfylockError, ResolutionError
    from ._redact import redact_text

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
        for line in getattr(e, "involved", []):
            print(f"  {redact_text(line)}", file=sys.stderr)
        print(redact_text(e.explanation), file=sys.stderr)
        return e.exit_code
    except ComfylockError as e:
        if args.debug:
            raise
        _json_error(args, e)
        print(f"comfylock: error: {redact_text(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(interrupted(args), file=sys.stderr)
        return 130


def _json_error(args: argparse.Namespace, e: Exception) -> None:
    """Under --json, the error is a JSON document on stdout too (the one-line message stays on stderr)."""
    if getattr(args, "json", False):
        data: dict[str, Any] = {
            "error": str(e),
            "exit_code": getattr(e, "exit_code", 1),
            "type": type(e).__name__,
        }
        if hasattr(e, "explanation"):
            data["explanation"] = e.explanation
            data["packages"] = sorted(getattr(e, "packages", ()))
        if getattr(e, "attribution", None) is not None:
            from .explain import to_json

            data["attribution"] = to_json(e.attribution)  # type: ignore[attr-defined]
        Out(False, False, True).json("error", data)


def _run(args: argparse.Namespace, out: Out) -> int:
    return args.handler(args, out)


def context(args: argparse.Namespace) -> Any:
    """The api.Context for the ComfyUI and target the arguments name (read once per run)."""
    from . import api

    return api.Context.open(args.comfyui, python=args.python, lock_file=args.lock)


def _compile(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    from .resolve import IndexOptions

    index = None
    if args.index_url or args.extra_index_url or args.find_links or args.no_index:
        index = IndexOptions(
            args.index_url, tuple(args.extra_index_url), tuple(args.find_links), args.no_index
        ).anchored(Path.cwd())
    r = api.compile(
        ctx,
        upgrade=args.upgrade,
        upgrade_packages=args.upgrade_package,
        index=index,
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
    )
    if out.as_json:  # the report reads r.collection, which an up-to-date compile collects only now
        out.json("compile", _report.compile_report(r))
    name = _display(r.lock_path)
    if r.up_to_date:  # without reading r.collection: the quick no-op check collects nothing
        out(f"{name} is up to date ({r.nodes} nodes, {len(r.lock.pins)} packages; nothing changed)")
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
        for a in r.outcome.actions:
            who = sorted({src.node for src in a.requested_by})
            out(f"  policy {a.kind}: {a.detail}" + (f" (asked by {', '.join(who)})" if who else ""))
    for w in r.warnings:
        out(f"  warning: {w}")
    from ._cli_inspect import report_lines

    _print_changes(out, r.changes, "changes", _causes(r.lock))
    for line in report_lines(duplicates=r.duplicates):
        out(f"  {line}")
    return 0


def _causes(lock: Any) -> dict[str, str]:
    """name -> the nodes that asked for it, or the packages that pulled it in."""
    out = {}
    for pin in lock.pins:
        nodes = sorted({r.node for r in pin.requested_by})
        out[pin.name] = ", ".join(nodes) if nodes else "via " + ", ".join(pin.needed_by)
    return out


def _print_changes(
    out: Out, changes: Sequence[Any], label: str, causes: dict[str, str] | None = None
) -> None:
    from .lock import summarize

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


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _sync(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    r = api.sync_env(
        ctx,
        lock_file=Path(args.lock).absolute() if args.lock else None,
        dry_run=args.dry_run,
        offline=args.offline,
        force=args.force,
    )
    return _report_sync(r, out, "sync")


def _report_sync(r: Any, out: Out, what: str) -> int:
    out.json(what, _report.sync_report(r))
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
    return 0


def _rollback(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    return _report_sync(api.rollback(ctx, to=args.to, dry_run=args.dry_run), out, "rollback")


def _history(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    entries = api.list_history(ctx)
    out.json("history", _report.history_report(entries))
    if not entries:
        out("no history yet (`comfylock sync` records the environment before it changes it)")
    for e in entries:
        if e.damaged:  # listed, so its number is not mistaken for a gap; rollback refuses it
            out(f"{e.id:>4}  {e.time}  damaged: {e.damaged}")
        else:
            out(f"{e.id:>4}  {e.time}  {e.packages:>4} packages  before {e.trigger}")
    return 0


def _check(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    from ._cli_inspect import report_lines

    r = api.check_report(ctx)
    p = r.plan
    data = _report.check_report(p, ctx.lock_path)
    data["stale"] = [{"node": s.node, "what": s.what, "detail": s.detail} for s in r.stale]
    data["broken"] = [
        {"package": b.package, "requirement": b.requirement, "installed": b.installed} for b in r.broken
    ]
    out.json("check", data)
    for line in report_lines(stale=r.stale, broken=r.broken):
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
    from . import history

    unfinished = history.pending(ctx.ws.user_dir)
    if unfinished is not None:
        out(
            f"a sync did not finish ({len(unfinished.packages)} packages may be half-installed): "
            f"`comfylock sync` completes it, `comfylock rollback --to {unfinished.entry}` undoes it"
        )
    out(f"environment differs from {_display(ctx.lock_path)} in {len(p.changes)} packages:")
    for c in p.changes:
        out(f"  {words[c.kind]}: {c.name} (installed {c.old or '-'}, lock {c.new or '-'})")
    return 1


def _add(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    out.json("add", {"requirements": api.add(ctx, args.requirements)})
    out(f"added {', '.join(args.requirements)} to your requirements; run `comfylock compile` to lock them")
    return 0


def _remove(args: argparse.Namespace, out: Out) -> int:
    from . import api

    ctx = context(args)
    out.json("remove", {"requirements": api.remove(ctx, args.names)})
    out(f"removed {', '.join(args.names)} from your requirements; run `comfylock compile`")
    return 0


_COMMANDS: dict[str, Any] = {
    "compile": _compile,
    "sync": _sync,
    "rollback": _rollback,
    "history": _history,
    "check": _check,
    "add": _add,
    "remove": _remove,
}
