"""Stage 7: the environment as it was before every change, so any earlier state can be synced back.

Each entry is a lock file of its own (`history/NNNN.lock`), made from `uv pip freeze` of the target just
before a sync changed it. Rolling back is syncing an entry: the same code path as any other sync.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ._exceptions import InputError
from .lock import Lock, Pin, read_lock, write_lock


@dataclass(frozen=True)
class Entry:
    id: int
    time: str  # ISO 8601, UTC
    trigger: str  # what was about to change the environment, e.g. "sync comfylock.lock"
    packages: int
    path: Path
    skipped: tuple[str, ...] = ()  # freeze lines a lock cannot hold (editable installs)


def _dir(user_dir: Path) -> Path:
    return user_dir / "history"


def snapshot(
    freeze_lines: Sequence[str], options: Sequence[str], meta: dict[str, str]
) -> tuple[Lock, list[str]]:
    """A lock of the environment as `uv pip freeze` shows it. Editable installs cannot be pinned."""
    pins: dict[str, Pin] = {}
    skipped: list[str] = []
    for line in freeze_lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            skipped.append(line)
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            skipped.append(line)
            continue
        name = str(canonicalize_name(req.name))
        pins[name] = Pin(name, line)
    lock = Lock(pins=tuple(sorted(pins.values(), key=lambda p: p.name)), options=tuple(options), meta=meta)
    return lock, skipped


def record(
    user_dir: Path,
    freeze_lines: Sequence[str],
    options: Sequence[str],
    *,
    trigger: str,
    target: dict[str, str],
) -> Entry:
    """Write the state before a change as the next history entry (atomically)."""
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    meta = {**target, "history-time": now, "history-trigger": trigger}
    lock, skipped = snapshot(freeze_lines, options, meta)
    existing = entries(user_dir)
    number = existing[-1].id + 1 if existing else 1
    path = _dir(user_dir) / f"{number:04d}.lock"
    write_lock(path, lock)
    return Entry(number, now, trigger, len(lock.pins), path, tuple(skipped))


def entries(user_dir: Path) -> list[Entry]:
    """History entries, oldest first."""
    out = []
    d = _dir(user_dir)
    if not d.is_dir():
        return []
    for path in sorted(d.glob("[0-9][0-9][0-9][0-9]*.lock")):
        if not path.stem.isdigit():
            continue
        lock = read_lock(path)
        out.append(
            Entry(
                int(path.stem),
                lock.meta.get("history-time", "?"),
                lock.meta.get("history-trigger", "?"),
                len(lock.pins),
                path,
            )
        )
    return sorted(out, key=lambda e: e.id)


def get(user_dir: Path, entry_id: int | None) -> Entry:
    """The entry `entry_id`, or the newest one: the state before the last change."""
    all_entries = entries(user_dir)
    if not all_entries:
        raise InputError(
            "no history yet: nothing to roll back to",
            path=_dir(user_dir),
            hint="history is recorded by `comfylock sync` before it changes anything",
        )
    if entry_id is None:
        return all_entries[-1]
    for e in all_entries:
        if e.id == entry_id:
            return e
    raise InputError(
        f"no history entry {entry_id}",
        path=_dir(user_dir),
        hint=f"`comfylock history` lists entries {all_entries[0].id}..{all_entries[-1].id}",
    )
