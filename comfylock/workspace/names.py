"""Node names the user typed (`--skip-node NAME`, `[nodes."NAME"]` in config.toml) checked against the
custom_nodes folder: a typo must not be silently ignored while the compile says "up to date"."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from comfylock._exceptions import InputError
from comfylock.workspace.config import Config
from comfylock.workspace.layout import RESERVED_NAMES as _SPECIAL  # config sections for ComfyUI, the user
from comfylock.workspace.layout import Workspace


def check_node_names(ws: Workspace, skip_nodes: Iterable[str], cfg: Config) -> None:
    """Raise InputError (exit 2) naming the first unknown node and the closest known name."""
    enabled = {n.name for n in ws.nodes}
    typed = [(name, "--skip-node") for name in skip_nodes] + [(name, "config") for name in cfg.nodes]
    unknown = [(name, where) for name, where in typed if name not in enabled and name not in _SPECIAL]
    if not unknown:
        return  # the usual case costs two set lookups per name; the folder is listed only on a miss
    known = enabled | _disabled(ws.root)
    for name, where in unknown:
        if name in known:
            continue  # a disabled node: configuring or skipping it is harmless and may be meant
        hint = _did_you_mean(name, sorted(enabled))
        if where == "--skip-node":
            raise InputError(f"--skip-node {name}: no node of that name in custom_nodes", hint=hint)
        raise InputError(
            f'[nodes."{name}"]: no node of that name in custom_nodes',
            path=cfg.path,
            line=_line_of(cfg.path, name),
            hint=hint,
        )


def _disabled(root: Path) -> set[str]:
    """Names of disabled nodes: `custom_nodes/NAME.disabled` and `custom_nodes/.disabled/NAME`."""
    custom = root / "custom_nodes"
    out: set[str] = set()
    for folder, strip in ((custom, ".disabled"), (custom / ".disabled", "")):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        out |= {n.removesuffix(strip) for n in names if not strip or n.endswith(strip)}
    return out


def _did_you_mean(name: str, candidates: list[str]) -> str:
    folded = {c.casefold(): c for c in candidates}
    import difflib  # only for a name that is not there

    close = difflib.get_close_matches(name.casefold(), list(folded), n=1, cutoff=0.6)
    if close:
        return f"did you mean {folded[close[0]]}?"
    return "`comfylock nodes` lists the nodes" if candidates else "custom_nodes has no enabled node"


def _line_of(path: Path | None, name: str) -> int | None:
    if path is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    quoted = re.compile(
        rf"""^\s*\[\s*nodes\s*\.\s*(?:"{re.escape(name)}"|'{re.escape(name)}'|{re.escape(name)})\s*\]"""
    )
    for number, line in enumerate(lines, 1):
        if quoted.match(line):
            return number
    return next((n for n, line in enumerate(lines, 1) if name in line), None)
