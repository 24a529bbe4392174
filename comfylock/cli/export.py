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

from comfylock._redact import redact_text
from comfylock.cli.args import add_index_options
from comfylock.cli.out import Out, context, index_given


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
    add_index_options(p)
    p.add_argument("--dry-run", action="store_true", help="report what the lock would be, write nothing")
    p.set_defaults(handler=_import_snapshot)


def _export(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api
    from comfylock._exceptions import InputError

    r = api.export_lock(
        context(args), args.format, output=args.output, index_options=not args.no_index_options
    )
    if r.text is not None:
        if out.as_json:
            raise InputError("--json prints the report on standard output", hint="give -o FILE")
        sys.stdout.write(r.text)
    for n in r.notes:
        if r.output is None:  # the export itself is on standard output: notes go aside so a pipe stays clean
            print(redact_text(f"note: {n}"), file=sys.stderr)
        else:
            out(f"note: {n}")
    if r.output is not None:
        out(f"wrote {r.output} ({r.format}, {r.packages} packages from {r.lock_path.name})")
    out.json(
        "export",
        {
            "format": r.format,
            "lock": str(r.lock_path),
            "output": None if r.output is None else str(r.output),
            "packages": r.packages,
            "notes": list(r.notes),
            "intact": r.intact,
        },
    )
    return 0


def _import_snapshot(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api
    from comfylock.lockfile.lock import summarize

    r = api.import_snapshot(context(args), Path(args.snapshot), index=index_given(args), dry_run=args.dry_run)
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
