"""Commands of the export area (registered by cli.build_parser): `export` and `import-snapshot`.

JSON reports (under --json), schema version 1:
  comfylock.export/1: {format, lock, output (path, or null for stdout), packages, notes: [str], intact}
  comfylock.import-snapshot/1: {snapshot, lock, written, packages, nodes: [str],
      not_carried: [{line, reason}], warnings: [str], changes: [{name, old, new, kind}]}
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this area's subcommands; each sets `handler=fn(args, out) -> exit code`."""
    p = sub.add_parser(
        "export",
        help="write the lock as a PEP 751 pylock, a bare requirements file or a ComfyUI-Manager snapshot",
    )
    common(p)
    p.add_argument(
        "--format",
        choices=("pylock", "requirements", "manager-snapshot"),  # export.FORMATS (not imported: lazy CLI)
        default="pylock",
        help="pylock: pylock.NAME.toml beside the lock (default); requirements: pins only, no "
        "comfylock header; manager-snapshot: JSON the Manager restores (.yaml name: its YAML form)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write ('-': standard output; the default for requirements and manager-snapshot)",
    )
    p.add_argument(
        "--no-index-options", action="store_true", help="requirements: leave out --index-url and friends"
    )
    p.set_defaults(handler=_export)

    p = sub.add_parser(
        "import-snapshot",
        help="turn a ComfyUI-Manager snapshot's pips into the lock (then `comfylock sync` applies it)",
    )
    common(p)
    p.add_argument("snapshot", metavar="FILE", help="a Manager snapshot, .json or .yaml")
    p.add_argument("--index-url", metavar="URL", help="the package index instead of PyPI")
    p.add_argument("--extra-index-url", metavar="URL", action="append", default=[], help="one more index")
    p.add_argument(
        "--find-links", "-f", metavar="DIR_OR_URL", action="append", default=[], help="a folder of wheels"
    )
    p.add_argument("--no-index", action="store_true", help="no index: only --find-links and the cache")
    p.add_argument("--dry-run", action="store_true", help="report what the lock would be, write nothing")
    p.set_defaults(handler=_import_snapshot)


def _context(args: argparse.Namespace) -> Any:
    from .cli import context

    return context(args)


def _emit(text: str, output: str | None, out: Any) -> Path | None:
    """Write an export to FILE (atomically) or, with no FILE or '-', to standard output."""
    from ._exceptions import InputError
    from ._fs import atomic_write

    if output in (None, "-"):
        if out.as_json:
            raise InputError("--json prints the report on standard output", hint="give -o FILE")
        sys.stdout.write(text)
        return None
    path = Path(output).absolute()
    atomic_write(path, text)
    return path


def _export(args: argparse.Namespace, out: Any) -> int:
    from . import export, snapshot

    ctx = _context(args)
    the_lock = export.read_any(ctx.lock_path)
    notes: list[str] = []
    if not the_lock.intact:
        notes.append(f"{ctx.lock_path.name} was edited since comfylock wrote it")
    if args.format == "pylock":
        dest = Path(args.output).absolute() if args.output else export.default_pylock_path(ctx.lock_path)
        result = export.export_pylock(
            the_lock, dest, python=ctx.ws.python, source=ctx.lock_path.name, cwd=ctx.ws.root
        )
        path: Path | None = result.path
    elif args.format == "requirements":
        text = export.export_requirements(the_lock, index_options=not args.no_index_options)
        path = _emit(text, args.output, out)
    else:
        data, more = snapshot.to_manager_snapshot(the_lock, ctx.ws.root)
        notes += more
        yaml = args.output is not None and Path(args.output).suffix.lower() in (".yaml", ".yml")
        path = _emit(snapshot.format_manager_snapshot(data, yaml=yaml), args.output, out)
    to_stdout = path is None
    for n in notes:
        if to_stdout:  # the export itself is on standard output: notes go aside so a pipe stays clean
            print(f"note: {n}", file=sys.stderr)
        else:
            out(f"note: {n}")
    if not to_stdout:
        out(f"wrote {path} ({args.format}, {len(the_lock.pins)} packages from {ctx.lock_path.name})")
    out.json(
        "export",
        {
            "format": args.format,
            "lock": str(ctx.lock_path),
            "output": None if path is None else str(path),
            "packages": len(the_lock.pins),
            "notes": notes,
            "intact": the_lock.intact,
        },
    )
    return 0


def _import_snapshot(args: argparse.Namespace, out: Any) -> int:
    from . import snapshot
    from .resolve import IndexOptions

    ctx = _context(args)
    if args.index_url or args.extra_index_url or args.find_links or args.no_index:
        index = IndexOptions(
            args.index_url, tuple(args.extra_index_url), tuple(args.find_links), args.no_index
        )
    else:
        index = ctx.config.index
    r = snapshot.import_snapshot(
        Path(args.snapshot),
        ctx.lock_path,
        options=index.lines(),
        torch_index=ctx.config.torch_index,
        no_index=index.no_index,
        dry_run=args.dry_run,
    )
    from .lock import summarize

    nodes = r.lock.lists.get("node", ())
    verb = "wrote" if r.written else "would write"
    name = Path(args.snapshot).name
    out(f"{verb} {r.lock_path.name} from {name}: {len(r.lock.pins)} packages, {len(nodes)} nodes")
    if r.skipped:
        out(f"  not carried ({len(r.skipped)}; `comfylock sync` removes them unless you add them yourself):")
        for s in r.skipped:
            out(f"    {s.line}: {s.reason}")
    for w in r.lock.lists.get("warning", ()):
        if not w.startswith("not carried:"):
            out(f"  note: {w}")
    out(f"  changes against the previous lock: {summarize(r.changes)}")
    if r.written:
        out("  `comfylock sync` makes the environment exactly this (removals included)")
    out.json(
        "import-snapshot",
        {
            "snapshot": str(Path(args.snapshot).absolute()),
            "lock": str(r.lock_path),
            "written": r.written,
            "packages": len(r.lock.pins),
            "nodes": list(nodes),
            "not_carried": [{"line": s.line, "reason": s.reason} for s in r.skipped],
            "warnings": list(r.lock.lists.get("warning", ())),
            "changes": [{"name": c.name, "old": c.old, "new": c.new, "kind": c.kind} for c in r.changes],
        },
    )
    return 0
