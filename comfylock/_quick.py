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
from ._fs import WriteError, atomic_write
from .workspace import Target, Workspace

_FORMAT = 1
CACHE = ".compile-cache.json"
BASE_POLICY = Path(__file__).with_name("pip-policy.json")


def cache_path(ws: Workspace) -> Path:
    return ws.user_dir / CACHE


def _kind(path: Path | str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return "missing"
    return "link" if stat.S_ISLNK(mode) else "dir" if stat.S_ISDIR(mode) else "file"


def _content(path: str) -> tuple[str, str | None]:
    try:
        with open(path, "rb") as f:
            return _kind(path), hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return _kind(path), None


def watched(
    ws: Workspace, read: Iterable[Path], policy_files: Iterable[Path], config: Path | None
) -> list[str]:
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
    extra = [config] if config is not None else []
    return sorted({str(p) for p in [*fixed, *extra, *read, *policy_files]})


def digest(
    ws: Workspace, target: Target, files: Iterable[str], names: Iterable[str], args: Mapping[str, Any]
) -> str:
    # Which file each node reads depends on which of these exist and on the config (watched).
    found = [
        (n.name, _kind(n.path), _kind(n.path / "requirements.txt"), _kind(n.path / "pyproject.toml"))
        for n in ws.nodes
    ]
    state = {
        "format": _FORMAT,
        "comfylock": __version__,
        "uv": resolve.uv_version(),
        "args": args,
        "nodes": found,
        "files": [(f, *_content(f)) for f in files],
        "target": [
            str(target.python),
            target.version,
            target.implementation,
            target.sys_platform,
            target.machine,
            target.has_gpu,
        ],
        "installed": {n: target.installed.get(n) for n in names},
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def _entries(cache: Path) -> dict[str, Any]:
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(
    cache: Path, lock_path: Path, ws: Workspace, target: Target, args: Mapping[str, Any]
) -> str | None:
    """The fingerprint the last compile of `lock_path` computed, when nothing it read has changed."""
    entry = _entries(cache).get(str(lock_path))
    try:
        if entry["digest"] == digest(ws, target, entry["files"], entry["names"], args):
            return str(entry["fingerprint"])
    except (TypeError, KeyError):
        pass
    return None


def record(
    cache: Path, lock_path: Path, fingerprint: str, files: list[str], names: list[str], quick: str
) -> None:
    """Remember what a compile read: call it once the lock is written or found up to date, with the
    digest taken right after collecting (a file edited while uv resolved must not count as read)."""
    data = _entries(cache)
    data[str(lock_path)] = {"fingerprint": fingerprint, "files": files, "names": names, "digest": quick}
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, json.dumps(data, sort_keys=True) + "\n")
    except (OSError, WriteError):
        pass  # without the shortcut the next compile is only slower
