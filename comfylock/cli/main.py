"""The command line: parse arguments, call the API, print what it returns, pick the exit code.

Every module a command needs is imported inside its handler (here and in the cli area modules):
`comfylock --version` and the no-op `sync` at every ComfyUI start import only what they use."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfylock import __version__
from comfylock.cli.out import Out, context, index_given

if TYPE_CHECKING:
    from comfylock._exceptions import ComfylockError


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




def _no_verify(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="do not run ComfyUI's loader afterwards (default: run it, and roll back when a node that "
        "loaded before fails)",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `command` one of the core commands, only what parsing it needs:
    the other commands are listed but get no options, and the other areas' modules are not imported
    (sync runs at every ComfyUI start)."""
    from comfylock.cli.args import HelpFormatter, add_examples

    parser = argparse.ArgumentParser(
        prog="comfylock",
        description="One lock file for a ComfyUI install's Python packages: compile, sync, roll back.",
        epilog="The options every command has (--comfyui, -p/--python, --lock, -v, -q, --json, --color) and "
        "the index options may also come before the command. `comfylock COMMAND --help` shows them.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"comfylock {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="one of:",
        parser_class=functools.partial(argparse.ArgumentParser, formatter_class=HelpFormatter),
    )
    for name, (handler, what, options) in _COMMANDS.items():
        p = sub.add_parser(name, help=what)
        p.set_defaults(handler=handler)
        if command is None or command == name or command not in _COMMANDS:
            _common(p)
            options(p)
    if command not in _COMMANDS:
        import importlib

        # Commands of other areas register themselves; each module keeps its imports lazy.
        for module in _AREAS:
            importlib.import_module(module).register(sub, _common)
    add_examples(parser)
    return parser


def _compile_options(p: argparse.ArgumentParser) -> None:
    from comfylock.cli.args import add_index_options

    add_index_options(p)
    p.add_argument("--offline", action="store_true", help="use only uv's cache")
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


def _sync_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.add_argument("--offline", action="store_true", help="use only uv's cache")
    p.add_argument("--force", action="store_true", help="sync a lock made for another Python or platform")
    _no_verify(p)


def _rollback_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--to", metavar="ID", type=int, help="history entry (default: before the last sync)")
    p.add_argument("--dry-run", action="store_true", help="say what would be undone, change nothing")
    p.add_argument(
        "--write-lock",
        action="store_true",
        help="also make the entry the lock file (keep the rolled-back state; compile keeps its pins)",
    )
    _no_verify(p)


def _no_options(p: argparse.ArgumentParser) -> None:
    return None


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("requirements", nargs="+", metavar="REQ", help="a requirement, as in requirements.txt")


def _remove_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="+", metavar="NAME", help="a package name added with `comfylock add`")


_AREAS = ("comfylock.cli.inspect", "comfylock.cli.policy", "comfylock.cli.export", "comfylock.cli.verify")


def main(argv: Sequence[str] | None = None) -> int:
    from comfylock.cli import args as _cli_args

    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught
        return code
    except BrokenPipeError:
        return _cli_args.quiet_closed_pipe()


def run() -> None:
    """The `comfylock` command: main(), then leave at once.

    Tearing the interpreter down (every module and object freed, one by one) costs a command 8-10 ms,
    as much as a no-op sync's own work, and frees nothing the OS does not free anyway: the output is
    flushed, the files are closed (each write is atomic and already in place), the workspace lock is
    released and comfylock registers no exit handlers. Under a tracer or coverage, which save their
    data at exit, it exits normally."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: already said quietly by main()
        pass
    if sys.gettrace() is None and sys.getprofile() is None and "coverage" not in sys.modules:
        os._exit(code)
    sys.exit(code)


def _main(argv: Sequence[str] | None) -> int:
    from comfylock.cli.args import command_of, hoist, interrupted

    words = hoist(sys.argv[1:] if argv is None else argv)
    if words == ["--version"]:  # before any parser is built: Python's start-up is all it should cost
        print(f"comfylock {__version__}")
        return 0
    args = build_parser(command_of(words)).parse_args(words)
    from comfylock import _progress
    from comfylock._exceptions import ComfylockError, ResolutionError
    from comfylock._redact import redact_text

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
    from comfylock.cli import render

    return render.compiled(r, out)


def _backend(value: str | None) -> str | None:
    if value is None:
        return None
    from comfylock.resolve.torch_backend import check

    return check(value)


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
    from comfylock.cli import render

    return render.synced(r, out, "sync", args.verbose)


def _rollback(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api
    from comfylock.cli import render

    ctx = context(args)

    def announce(info: Any, plan: Any) -> None:  # before anything changes
        render.rollback_plan(info, plan, out)

    r = api.rollback(
        ctx,
        to=args.to,
        dry_run=args.dry_run,
        write_lock=args.write_lock,
        announce=None if out.quiet else announce,  # -q and --json print none of it: not even read
        verify=False if args.no_verify else None,
    )
    return render.rolled_back(r, out, args.verbose)


def _history(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    entries = api.list_history(ctx)
    from comfylock.cli import render

    return render.history(entries, out)


def _check(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    ctx = context(args)
    r = api.check_report(ctx)
    from comfylock.cli import render

    return render.checked(r, ctx.lock_path, out)


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


# The core commands: handler, the line `comfylock --help` shows, and the options of their own.
_COMMANDS: dict[
    str, tuple[Callable[[argparse.Namespace, Out], int], str, Callable[[argparse.ArgumentParser], None]]
] = {
    "compile": (_compile, "resolve core + nodes + your requirements into the lock", _compile_options),
    "sync": (_sync, "make the environment exactly the lock", _sync_options),
    "rollback": (_rollback, "sync back to an earlier state from the history", _rollback_options),
    "history": (_history, "list the recorded states", _no_options),
    "check": (_check, "exit 0 if the environment matches the lock, 1 listing what differs", _no_options),
    "add": (_add, "add your own requirements (kept by comfylock, resolved with the rest)", _add_options),
    "remove": (_remove, "remove your own requirements", _remove_options),
}
