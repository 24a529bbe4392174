"""compile's no-op shortcut, decided before any requirement or policy is parsed.

The fingerprint in a lock is computed from parsed inputs: collecting every node and loading the policies
means importing packaging and parsing every line, most of a no-op compile's time. Parsing is a pure
function of the bytes read, so when every file the last compile read has the same bytes, the same
files exist (a new requirements.txt, an include now a symlink) and everything else the fingerprint
covers is equal, the fingerprint is equal too. This module records, after a compile, what it read and
a digest of all that; the next compile recomputes the digest from the files alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import __version__, resolve
from ._fs import file_digest, is_link, read_json_dict, update_json_dict
from .workspace import Target, Workspace

_FORMAT = 2
CACHE = ".compile-cache.json"
BASE_POLICY = Path(__file__).with_name("pip-policy.json")


def cache_path(ws: Workspace) -> Path:
    return ws.user_dir / CACHE


def arguments(
    skip: Iterable[str],
    keep_going: bool,
    policy_files: Iterable[Path],
    default_policy: bool,
    index: list[str],
    python_version: str | None,
    python_platform: str | None,
) -> dict[str, Any]:
    """The compile's arguments that decide its result; the digest must see them unchanged."""
    return {
        "skip": sorted(skip),
        "keep_going": keep_going,
        "policy_files": [str(Path(p).absolute()) for p in policy_files],
        "default_policy": default_policy,
        "index": index,
        "python_version": python_version,
        "python_platform": python_platform,
    }


def _kind(path: Path | str) -> str:
    try:
        st = os.lstat(path)
    except OSError:
        return "missing"
    return "link" if is_link(st) else "dir" if stat.S_ISDIR(st.st_mode) else "file"


def _identity(path: Path | str) -> list[int] | None:
    # What a path leads to: a link pointed at another file with the same bytes is still a change.
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def _content(path: str, known: str | None) -> list[Any]:
    return [_kind(path), _identity(path), known if known is not None else file_digest(path)]


def watched(ws: Workspace, read: Iterable[str], policy_files: Iterable[Path]) -> list[str]:
    """Every file whose bytes decide the collection and the policy: what collect read, the policies,
    the config and the files ComfyUI's version is read from."""
    fixed = [
        BASE_POLICY,
        ws.user_dir / "pip-policy.user.json",
        ws.user_dir / "requirements.txt",
        ws.user_dir / "config.toml",
        ws.root / "comfyui_version.py",
        ws.root / "pyproject.toml",
        ws.root / "requirements.txt",
    ]
    return sorted({*map(str, fixed), *read, *map(str, policy_files)})


def snapshot(files: Iterable[str], parsed: Mapping[str, str]) -> dict[str, list[Any]]:
    """Each file's kind, identity and sha256; `parsed` gives the digest of those already parsed (what
    was parsed counts, not a later edit). Take it before the rest are parsed, for the same reason."""
    return {f: _content(f, parsed.get(f)) for f in files}


def digest(
    ws: Workspace,
    target: Target,
    files: Mapping[str, list[Any]],
    names: Iterable[str],
    args: Mapping[str, Any],
) -> str:
    # Which file each node reads depends on which of these exist and on the config (watched).
    found = [
        (
            n.name,
            _kind(n.path),
            _identity(n.path),
            _kind(n.path / "requirements.txt"),
            _kind(n.path / "pyproject.toml"),
        )
        for n in ws.nodes
    ]
    state = {
        "format": _FORMAT,
        "comfylock": __version__,
        "uv": resolve.uv_version(),
        "args": args,
        "nodes": found,
        "files": files,
        "target": target.identity(),
        "installed": {n: target.installed.get(n) for n in names},
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def lookup(
    cache: Path, lock_path: Path, ws: Workspace, target: Target, args: Mapping[str, Any]
) -> str | None:
    """The fingerprint the last compile of `lock_path` computed, when nothing it read has changed."""
    entry = read_json_dict(cache).get(str(lock_path))
    try:
        files = snapshot(entry["files"], {})
        if entry["digest"] == digest(ws, target, files, entry["names"], args):
            return str(entry["fingerprint"])
    except (TypeError, KeyError):
        pass
    return None


def record(
    cache: Path,
    lock_path: Path,
    fingerprint: str,
    files: list[str],
    names: list[str],
    quick: str,
    args: Mapping[str, Any] | None = None,
) -> None:
    """Remember what a compile read: call it once the lock is written or found up to date, with the
    digest taken right after collecting (a file edited while uv resolved must not count as read)."""
    entry = {"fingerprint": fingerprint, "files": files, "names": names, "digest": quick, "args": args}
    update_json_dict(cache, str(lock_path), entry)


def as_compiled(cache: Path, lock_path: Path, ws: Workspace, target: Target) -> str | None:
    """lookup() with the arguments the last compile of `lock_path` was given: the fingerprint of its
    lock when nothing that compile read has changed since (`check` asks: is the lock stale?)."""
    entry = read_json_dict(cache).get(str(lock_path))
    args = entry.get("args") if isinstance(entry, dict) else None
    return lookup(cache, lock_path, ws, target, args) if isinstance(args, dict) else None
