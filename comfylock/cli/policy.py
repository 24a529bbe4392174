"""Commands of the policy area (registered by cli.build_parser): `policy show` and `policy check`.

  comfylock policy show [--policy FILE]... [--no-default-policy] [-v] [--json]
      The merged policy compile applies: each package, its sections, and the file its entry came from.
  comfylock policy check [FILE] [--policy FILE]... [--no-default-policy] [--json]
      Every problem, with file, line, JSON path and a hint. FILE alone needs no ComfyUI folder; without
      FILE the user's <comfyui>/user/comfylock/pip-policy.user.json is checked. Either way the files are
      also checked merged above the shipped policy, as compile merges them. Exit 0 clean, 2 with problems.

JSON reports (under --json), schema version 1:
  comfylock.policy-show/1: {files: [{origin, path, role}], user_file, packages: {name: {origin, path,
      line, role, shadows: [origin], sections: {section: [entry]}}}}
  comfylock.policy-check/1: {files: [path], default_policy: bool, ok: bool,
      problems: [{file, line, json_path, message, hint}]}
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from comfylock._redact import redact_text
from comfylock.cli.out import Out, context


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this area's subcommands; each sets `handler=fn(args, out) -> exit code`."""
    p = sub.add_parser("policy", help="show or check the pip-policy.json policies compile applies")
    actions = p.add_subparsers(dest="policy_command", required=True, metavar="ACTION", help="one of:")

    s = actions.add_parser("show", help="the merged policy: each package, its entries, their file")
    common(s)
    _sources(s)
    s.set_defaults(handler=_show)

    c = actions.add_parser("check", help="list every problem of policy files (exit 2 if any)")
    common(c)
    c.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="a policy file to check (default: <comfyui>/user/comfylock/pip-policy.user.json)",
    )
    _sources(c)
    c.set_defaults(handler=_check)


def _sources(p: argparse.ArgumentParser) -> None:
    # The same two options as compile, so what is shown or checked is what compile would merge.
    p.add_argument("--policy", metavar="FILE", action="append", default=[], help="an extra pip-policy.json")
    p.add_argument("--no-default-policy", action="store_true", help="leave out comfylock's shipped policy")


def _show(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    r = api.policy_show(
        context(args), [Path(p) for p in args.policy], default_policy=not args.no_default_policy
    )
    user = r.user_file
    files = [{"origin": f.origin, "path": f.path, "role": f.role} for f in r.files]
    out.json(
        "policy-show",
        {
            "files": files,
            "user_file": str(user),
            "packages": {
                p.name: {
                    "origin": p.file.origin,
                    "path": p.file.path,
                    "line": p.line,
                    "role": p.file.role,
                    "shadows": [f.origin for f in p.shadows],
                    "sections": {k: [dict(e) for e in v] for k, v in p.sections.items()},
                }
                for p in r.packages
            },
        },
    )
    out("policy files, lowest priority first:")
    for i, f in enumerate(r.files, 1):
        out(f"  {i}. {f.role:<8} {f.path}")
    if not user.is_file():
        out(f"  (no user policy at {user})")
    out()
    if not r.packages:
        out("no policy entries")
    for p in r.packages:
        where = f"{Path(p.file.path).name}:{p.line}" if p.line else Path(p.file.path).name
        over = [f.role for f in p.shadows]
        replaces = f" (replaces the {', '.join(over)} entry)" if over else ""
        out(f"{p.name}  [{p.file.role}, {where}]{replaces}")
        if not p.sections:
            out("  (empty: disables the lower files' entry)")
        for section, entries in p.sections.items():
            for i, entry in enumerate(entries):
                out(f"  {section}[{i}]: {describe(section, entry)}")
                if entry.get("reason"):
                    out(f"      reason: {entry['reason']}", detail=True)
    return 0


def _check(args: argparse.Namespace, out: Out) -> int:
    from comfylock import api

    r = api.policy_check(
        None if args.file is None else Path(args.file),
        [Path(p) for p in args.policy],
        default_policy=not args.no_default_policy,
        comfyui=args.comfyui,
        python=args.python,
    )
    if r.missing_user_file is not None:
        out(f"no user policy at {r.missing_user_file}")
    problems = r.problems
    out.json(
        "policy-check",
        {
            "files": list(r.files),
            "default_policy": r.default_policy,
            "ok": not problems,
            "problems": [dataclasses.asdict(p) for p in problems],
        },
    )
    if not out.as_json:
        for p in problems:
            print(redact_text(str(p)))  # even under --quiet: the errors the command exists to report
    checked = ", ".join(r.files) or "no files"
    if problems:
        files = len({p.file for p in problems})
        out(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {files} file{'s' * (files != 1)}")
        return 2
    out(f"policy OK: {checked}")
    return 0


def describe(section: str, entry: Mapping[str, Any]) -> str:
    """One line for a policy entry: what it does, then when."""
    kind = entry.get("type", section)
    what = {
        "skip": lambda: "skip",
        "force_version": lambda: f"force_version {entry['version']}",
        "replace": lambda: f"replace -> {entry['replacement']}{entry.get('version', '')}",
        "pin_dependencies": lambda: (
            f"pin_dependencies {', '.join(entry['pinned_packages'])}"
            + (f" (on_failure {entry['on_failure']})" if "on_failure" in entry else "")
        ),
        "install_with": lambda: f"install_with {', '.join(entry['additional_packages'])}",
        "warn": lambda: (
            f"warn {entry['message']!r}"
            + (" (stops compile unless --yes)" if entry.get("allow_continue") is False else "")
        ),
        "uninstall": lambda: f"uninstall {entry['target']}",
        "restore": lambda: f"restore {entry['target']}=={entry['version']}",
    }[kind]()
    if entry.get("extra_index_url"):
        what += f" from {entry['extra_index_url']}"
    cond = entry.get("condition")
    return what + (f"  when {_condition(cond)}" if cond else "")


def _condition(cond: Mapping[str, Any]) -> str:
    if cond.get("type") == "installed":
        return f"{cond.get('package', 'it')} installed" + (f" {cond['spec']}" if "spec" in cond else "")
    parts = []
    for key in ("os", "has_gpu", "comfyui_version"):
        if key in cond:
            value = cond[key]
            value = str(value).lower() if isinstance(value, bool) else value
            parts.append(f"ComfyUI {value}" if key == "comfyui_version" else f"{key}={value}")
    return ", ".join(parts) or "always"
