"""Stage 7: the environment as it was before every change, so any earlier state can be synced back.

Each entry is a lock file of its own (`history/NNNN.lock`), made from `uv pip freeze` of the target just
before a sync changed it. Rolling back is syncing an entry: the same code path as any other sync.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfylock._exceptions import InputError, LockFileError
from comfylock._fs import atomic_write, read_bytes
from comfylock.lockfile.lock import HISTORY_KEY, Lock, Pin, pin_name, read_lock, write_lock
from comfylock.workspace.layout import Workspace


@dataclass(frozen=True)
class Entry:
    """One recorded state of the environment: the file holding it and the change that followed it."""

    id: int
    time: str  # ISO 8601, UTC
    trigger: str  # what was about to change the environment, e.g. "sync comfylock.lock"
    packages: int
    path: Path
    skipped: tuple[str, ...] = ()  # freeze lines a lock cannot hold (an editable install of unknown name)
    damaged: str | None = None  # why the entry cannot be read (edited by hand, disk damage)


def _dir(user_dir: Path) -> Path:
    return user_dir / Workspace.HISTORY


def snapshot(
    freeze_lines: Sequence[str], options: Sequence[str], meta: dict[str, str]
) -> tuple[Lock, list[str]]:
    """A lock of the environment as `uv pip freeze` shows it: registry pins, `name @ URL` (URLs, VCS
    commits, local paths) and editable installs as `-e name @ URL` (see _envstate.freeze). These are the
    user's own environment, restored by a rollback; a line naming no package is left out (`skipped`)."""
    pins: dict[str, Pin] = {}
    skipped: list[str] = []
    for line in freeze_lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        editable = line.startswith("-e ")
        if line.startswith("-") and not (editable and " @ " in line):
            skipped.append(line)
            continue
        name = pin_name(line[3:].strip() if editable else line)
        if name is None:
            skipped.append(line)
            continue
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
    # datetime's isoformat spelled with time alone: importing datetime costs a rollback 2 ms
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    meta = {**target, "history-time": now, HISTORY_KEY: trigger}
    lock, skipped = snapshot(freeze_lines, options, meta)
    # Numbered from file names alone: one damaged entry must not stop every later sync.
    ids = _ids(user_dir)
    number = ids[-1][0] + 1 if ids else 1
    path = _dir(user_dir) / f"{number:04d}.lock"
    write_lock(path, lock)
    return Entry(number, now, trigger, len(lock.pins), path, tuple(skipped))


def _ids(user_dir: Path) -> list[tuple[int, Path]]:
    d = _dir(user_dir)
    if not d.is_dir():
        return []
    # Temp files of an interrupted write start with '.', so the pattern never sees them.
    found = [(int(p.stem), p) for p in d.glob("[0-9][0-9][0-9][0-9]*.lock") if p.stem.isdigit()]
    return sorted(found)


def _entry(number: int, path: Path) -> Entry:
    try:
        lock = read_lock(path)
    except LockFileError as e:
        return Entry(number, "?", "?", 0, path, damaged=e.message)
    meta = lock.meta
    # An entry edited since it was recorded is listed with what it says, but cannot be rolled back to.
    edited = None if lock.intact else "its pins do not match its body-sha256 (edited)"
    time, trigger = meta.get("history-time", "?"), meta.get("history-trigger", "?")
    return Entry(number, time, trigger, len(lock.pins), path, damaged=edited)


def count_after(user_dir: Path, entry_id: int) -> int:
    """How many entries were recorded after `entry_id` (from file names alone)."""
    return sum(1 for n, _ in _ids(user_dir) if n > entry_id)


def newest_first(user_dir: Path) -> Iterator[Entry]:
    """Entries, newest first, each read only when asked for (a rollback looks at the last few)."""
    for n, path in reversed(_ids(user_dir)):
        yield _entry(n, path)


def newest(user_dir: Path) -> Entry | None:
    ids = _ids(user_dir)
    return _entry(*ids[-1]) if ids else None


def entries(user_dir: Path) -> list[Entry]:
    """History entries, oldest first. A damaged one is listed with the reason, not skipped."""
    return [_entry(number, path) for number, path in _ids(user_dir)]


def get(user_dir: Path, entry_id: int | None) -> Entry:
    """The entry `entry_id`, or the newest one: the state before the last change. Only that one is
    read (a long history must not slow every rollback down)."""
    ids = _ids(user_dir)
    if not ids:
        raise InputError(
            "no history yet: nothing to roll back to",
            path=_dir(user_dir),
            hint="history is recorded by `comfylock sync` before it changes anything",
        )
    found = ids[-1] if entry_id is None else next((i for i in ids if i[0] == entry_id), None)
    if found is None:
        raise InputError(
            f"no history entry {entry_id}",
            path=_dir(user_dir),
            hint=f"`comfylock history` lists entries {ids[0][0]}..{ids[-1][0]}",
        )
    chosen = _entry(*found)
    if chosen.damaged:
        older = [n for n, path in ids if n < chosen.id and not _entry(n, path).damaged]
        try:
            line = read_lock(chosen.path).sha_line
        except LockFileError as e:
            line = e.line
        raise InputError(
            f"history entry {chosen.id} cannot be read: {chosen.damaged}",
            path=chosen.path,
            line=line,
            hint=f"roll back to an older one with --to {older[-1]}" if older else None,
        )
    return chosen


# --- a sync under way ----------------------------------------------------------------------------
# uv killed while it removes a package can leave its .dist-info behind with the files gone: uv then
# sees the package as installed and a plain sync or rollback would not repair it. So the packages a
# sync is about to change are written down first and reinstalled by whichever sync runs next.

_PENDING = "pending.json"


@dataclass(frozen=True)
class Pending:
    """A sync under way (or killed): what it was changing, for the next sync to repair."""

    entry: int  # the history entry of the state before the first unfinished sync
    packages: tuple[str, ...]  # canonical names that sync was changing


def begin(user_dir: Path, entry: int, packages: Iterable[str]) -> Pending:
    """Mark a sync as under way (before uv runs); merges with a marker an earlier sync left."""
    earlier = pending(user_dir)
    names = set(packages) | set(earlier.packages if earlier else ())
    mark = Pending(earlier.entry if earlier else entry, tuple(sorted(names)))
    end(user_dir, restore=mark)
    return mark


def end(user_dir: Path, *, restore: Pending | None = None) -> None:
    """The sync finished (or failed before uv changed anything): drop the marker, or put back the
    one an earlier unfinished sync left (`restore`: what `pending()` said before `begin()`)."""
    path = _dir(user_dir) / _PENDING
    if restore is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write(path, json.dumps({"entry": restore.entry, "packages": restore.packages}) + "\n")


def pending(user_dir: Path) -> Pending | None:
    """The unfinished sync a kill or failure left behind, if any."""
    path = _dir(user_dir) / _PENDING
    try:
        data = json.loads(read_bytes(path).decode("utf-8"))
        return Pending(int(data["entry"]), tuple(str(n) for n in data["packages"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, InputError, RecursionError):
        # Written atomically, so only a hand edit gets here: a sync is owed; the newest entry is the
        # best guess of the state before it.
        ids = _ids(user_dir)
        return Pending(ids[-1][0] if ids else 0, ())
