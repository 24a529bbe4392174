"""compile's no-op shortcut, decided before any requirement or policy is parsed: `NoOpCheck`.

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

from comfylock import __version__
from comfylock._fs import file_digest, is_link, read_json_dict, update_json_dict
from comfylock.environment.target import Target
from comfylock.resolve import uv as resolve
from comfylock.workspace.git import git_commit
from comfylock.workspace.layout import SHIPPED_POLICY, Workspace

_FORMAT = 4  # 3: node commits and recorded arguments; 4: with the torch backend asked


class NoOpCheck:
    """compile's no-op check for one lock, one target and one set of arguments.

    Invariant: `known()` gives a fingerprint only when it equals what a full compile would compute now:
    the last compile of this lock recorded it together with a digest of everything the fingerprint
    depends on (the bytes, kind and identity of every file it read, which node files exist, the
    arguments, the target, uv's and comfylock's versions, the installed versions the policy asked
    about), and that digest is the same today. Kept true by the order of the steps, which this object
    enforces: `after_collect()` right after collecting and before the policies and the config are
    parsed further (the bytes that were parsed count, not a later edit), `before_resolve()` once the
    policy's package names are known, `record()` only once the lock is written or found up to date.
    """

    def __init__(self, ws: Workspace, target: Target, lock_path: Path, args: Mapping[str, Any]) -> None:
        self._ws, self._target, self._lock_path, self._args = ws, target, lock_path, args
        self._watched: list[str] | None = None
        self._seen: dict[str, list[Any]] | None = None
        self._names: list[str] | None = None
        self._digest: str | None = None

    def known(self) -> str | None:
        """The fingerprint the last compile of this lock computed, when nothing it read has changed."""
        return lookup(self._ws.compile_cache, self._lock_path, self._ws, self._target, self._args)

    def after_collect(self, parsed: Mapping[str, str], policy_files: Iterable[Path]) -> None:
        """Take the watched files' state: `parsed` gives the digests of the files already parsed."""
        self._watched = watched(self._ws, parsed, policy_files)
        self._seen = snapshot(self._watched, parsed)

    def before_resolve(self, names: list[str]) -> None:
        """Seal the digest; `names`: the packages the policy's conditions ask the target about."""
        if self._seen is None:
            raise RuntimeError("NoOpCheck.after_collect() must come first")
        self._names = names
        self._digest = digest(self._ws, self._target, self._seen, names, self._args)

    def record(self, fingerprint: str) -> None:
        if self._digest is None or self._watched is None or self._names is None:
            raise RuntimeError("NoOpCheck.before_resolve() must come first")
        record(
            self._ws.compile_cache,
            self._lock_path,
            fingerprint,
            self._watched,
            self._names,
            self._digest,
            self._args,
        )


def arguments(
    skip: Iterable[str],
    keep_going: bool,
    policy_files: Iterable[Path],
    default_policy: bool,
    index: list[str],
    python_version: str | None,
    python_platform: str | None,
    torch_backend: str = "auto",
) -> dict[str, Any]:
    """The compile's arguments that decide its result; the digest must see them unchanged."""
    return {
        "torch_backend": torch_backend,
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
        SHIPPED_POLICY,
        ws.user_policy,
        ws.user_requirements,
        ws.config_file,
        *ws.version_files,
        ws.core_requirements,
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
            git_commit(n.path),  # the lock's header names it: a moved commit must reach compile
        )
        for n in ws.nodes
    ]
    found.append(("", "", None, "", "", git_commit(ws.root)))  # ComfyUI's own, for the core line
    state = {
        "format": _FORMAT,
        "comfylock": __version__,
        "uv": resolve.uv_version(),
        "args": args,
        "nodes": found,
        "files": files,
        "target": target.identity(),
        "installed": {n: target.visible.get(n) for n in names},
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def lookup(
    cache: Path, lock_path: Path, ws: Workspace, target: Target, args: Mapping[str, Any]
) -> str | None:
    """The fingerprint the last compile of `lock_path` computed, when nothing it read has changed."""
    return _fingerprint_if_unchanged(read_json_dict(cache).get(str(lock_path)), ws, target, args)


def _fingerprint_if_unchanged(
    entry: Any, ws: Workspace, target: Target, args: Mapping[str, Any]
) -> str | None:
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
    digest taken right after collecting (a file edited while uv resolved must not count as read).
    `args` (the compile's arguments()) let `check` ask the same question compile asked."""
    entry = {"fingerprint": fingerprint, "files": files, "names": names, "digest": quick, "args": args}
    update_json_dict(cache, str(lock_path), entry)


def recorded_args(cache: Path, lock_path: Path) -> dict[str, Any] | None:
    """The arguments the last compile of `lock_path` ran with (see arguments()), if recorded."""
    entry = read_json_dict(cache).get(str(lock_path))
    args = entry.get("args") if isinstance(entry, dict) else None
    return args if isinstance(args, dict) else None


def as_compiled(cache: Path, lock_path: Path, ws: Workspace, target: Target) -> str | None:
    """lookup() with the arguments the last compile of `lock_path` was given: the fingerprint of its
    lock when nothing that compile read has changed since (`check` asks: is the lock stale?)."""
    entry = read_json_dict(cache).get(str(lock_path))  # read once for both questions
    args = entry.get("args") if isinstance(entry, dict) else None
    return _fingerprint_if_unchanged(entry, ws, target, args) if isinstance(args, dict) else None
