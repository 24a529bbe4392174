"""Where a rollback leaves things: which history entry the environment is at because of one, and the
entry written as the lock (`comfylock rollback --write-lock`) when the user wants to keep that state."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from comfylock._exceptions import InputError
from comfylock.commands.context import Context, command
from comfylock.commands.sync import SyncResult, sync_env
from comfylock.environment import history, sync
from comfylock.lockfile import lock as lockfile
from comfylock.lockfile.lock import Lock, read_lock

# `rollback to N` (a user's rollback) and `automatic rollback to N (...)` (a sync that broke a node).
_ROLLBACK = re.compile(r"(?:automatic )?rollback to (\d+)(?: \(.*\))?")
# The trigger of the rollback a sync makes of itself when a node stops loading: the state recorded
# before it (the one that broke the node) is never a bare `rollback`'s target.
AUTOMATIC = "automatic rollback to "


def rolled_back_to(user_dir: Path, installed: Mapping[str, str]) -> history.Entry | None:
    """The entry N the environment matches because the last recorded change was `rollback to N` (or
    the automatic rollback of a sync that broke a node)."""
    last = history.newest(user_dir)
    m = _ROLLBACK.fullmatch(last.trigger) if last is not None else None
    if m is None:
        return None
    try:
        entry = history.get(user_dir, int(m.group(1)))
        the_lock = read_lock(entry.path)
    except InputError:  # a damaged or missing entry says nothing
        return None
    return entry if sync.plan(the_lock, installed).is_noop else None


def entry_as_lock(entry: history.Entry) -> Lock:
    """History entry `entry` as the lock: its pins and index options, the target it was recorded for,
    and a header line saying where it came from. It has no fingerprint, so the next `compile` resolves
    again, keeping these pins wherever the requirements allow."""
    e = read_lock(entry.path)
    from comfylock import __version__

    meta = {k: v for k, v in e.meta.items() if not k.startswith("history-") and k != "fingerprint"}
    meta["comfylock"] = __version__
    note = (
        f"written from history entry {entry.id} ({entry.time}) by `comfylock rollback --write-lock`; "
        "`comfylock compile` adds who asks for each package, keeping these pins where it can"
    )
    return replace(e, meta=meta, lists={"warning": (note,)}, intact=True, sha_line=None)


@dataclass(frozen=True)
class RollbackInfo:
    """What a rollback undoes: the change recorded after history entry `entry`, and any later ones."""

    entry: history.Entry  # the state returned to; its trigger is the change that followed it
    later: int  # changes recorded after that one, undone too
    installed: int  # packages in the environment now
    lock_written: Path | None = None  # --write-lock: the lock file the entry was written to


@command
def rollback(
    ctx: Context,
    *,
    to: int | None = None,
    dry_run: bool = False,
    write_lock: bool = False,
    announce: Callable[[RollbackInfo, sync.SyncPlan], None] | None = None,
    verify: bool | None = None,
) -> SyncResult:
    """Sync a history entry (default: the state before the last sync). Offline first: uv's cache
    holds what was installed before, so a rollback needs no network unless the cache was cleaned;
    either way it is one operation and records one history entry.

    `announce` is called with what will be undone and the plan, before anything changes. `write_lock`:
    the entry also becomes the lock file (written only once the environment matches it). Verified as a
    sync is (`verify`; a rollback that breaks a node is undone too)."""
    if to is None:
        to = default_target(ctx)
    entry = history.get(ctx.ws.user_dir, to)
    later = history.count_after(ctx.ws.user_dir, entry.id)
    infos: list[RollbackInfo] = []

    def planned(plan: sync.SyncPlan, installed: int) -> None:  # inside sync_env: one probe, one plan
        infos.append(RollbackInfo(entry, later, installed))
        if announce is not None:
            announce(infos[-1], plan)

    done = sync_env(
        ctx,
        lock_file=entry.path,
        dry_run=dry_run,
        offline_first=True,
        trigger=f"rollback to {entry.id}",
        announce=planned,
        verify=verify,
    )
    info = infos[-1]
    if write_lock and not dry_run:
        lockfile.write_lock(ctx.lock_path, entry_as_lock(entry))
        info = replace(info, lock_written=ctx.lock_path)
    return replace(done, rollback=info)


def default_target(ctx: Context) -> int | None:
    """The entry a bare `rollback` returns to: the newest recorded state that differs from the
    environment now (returning to the present state would change nothing, as after an automatic
    rollback), that no automatic rollback left because a node stopped loading in it, and in which
    verifying found failing a node that loads now. None: the newest entry (history.get then says why
    it cannot be used)."""
    from comfylock.environment import state
    from comfylock.verify import state as verified

    target = ctx.probe.read()
    now = verified.load_state(ctx.ws.user_dir, verified.state_key(target.installed))
    loads_now = {n.name for n in now.nodes if n.loaded} if now is not None else set()
    entries = list(history.newest_first(ctx.ws.user_dir))
    # The states automatic rollbacks left (each recorded before its rollback): the same state recorded
    # under another entry is broken just as well.
    broken = {_state(read_lock(e.path)) for e in entries if e.trigger.startswith(AUTOMATIC) and not e.damaged}
    for e in entries:
        if e.damaged:
            return e.id  # refused by history.get, with the way to an older one: never skipped silently
        if e.trigger.startswith(AUTOMATIC):
            continue
        recorded = read_lock(e.path)
        if _state(recorded) in broken:
            continue
        then = verified.of_entry(e.path) if loads_now else None
        if then is not None and any(n.name in loads_now for n in then.failed):
            continue  # known to break a node that loads now (`--to` still goes there, with a warning)
        if not state.plan(recorded, target, None).is_noop:
            return e.id
    return None


def _state(recorded: Lock) -> frozenset[tuple[str, str]]:
    return frozenset(lockfile.pin_versions(recorded).items())


def rolled_back(ctx: Context) -> history.Entry | None:
    """The history entry the environment is at because of the last rollback, or None (the last change
    was no rollback, or the environment moved since)."""
    installed = ctx.probe.read().installed
    return rolled_back_to(ctx.ws.user_dir, installed)
