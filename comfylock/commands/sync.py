"""`sync_env`: make the target environment exactly a lock, as one history transaction, then verify
ComfyUI still loads its nodes (rolled back at once when one stopped); and `verify` alone.
`comfylock.api` exports both.

Download sizes, failure explanations and the loader are imported inside sync_env, past the point
where a no-op sync (at every ComfyUI start) has returned.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock._exceptions import InputError, UvError
from comfylock._fs import flushed_behind
from comfylock._redact import restore
from comfylock.commands.context import Context, command, env_warnings
from comfylock.environment import history, sync, transaction
from comfylock.environment import state as _envstate
from comfylock.environment.probe import rescan
from comfylock.lockfile import export, lock
from comfylock.resolve.index import IndexOptions

if TYPE_CHECKING:
    from comfylock.commands import rollback as _rollback
    from comfylock.verify.after_sync import SyncCheck
    from comfylock.verify.loader import VerifyResult


@dataclass(frozen=True)
class SyncResult:
    """What a sync or rollback did: its plan, the history entry it recorded, and what verifying found."""

    plan: sync.SyncPlan
    lock_path: Path
    entry: history.Entry | None = None  # the history entry recorded before changing anything
    dry_run: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)
    rollback: _rollback.RollbackInfo | None = None  # set by rollback()
    check: SyncCheck | None = None  # what verifying ComfyUI afterwards found (None: not verified)

    @property
    def regressed(self) -> bool:
        return self.check is not None and bool(self.check.regressions)


@command
def sync_env(
    ctx: Context,
    *,
    lock_file: Path | None = None,
    dry_run: bool = False,
    offline: bool = False,
    trigger: str | None = None,
    force: bool = False,
    offline_first: bool = False,
    announce: Callable[[sync.SyncPlan, int], None] | None = None,
    verify: bool | None = None,
    notify: Callable[[str], None] | None = None,
) -> SyncResult:
    """Make the target environment exactly the lock (a comfylock lock, a requirements file or a PEP 751
    pylock); record the state before in the history first. A lock made for another Python or platform
    is refused unless `force`. `offline_first`: try uv's cache alone, then the network, as one
    operation with one history entry. `announce(plan, packages installed now)` is called once the plan
    is known, before anything changes.

    Then, where the folder holds ComfyUI's loader (unless `verify` is False or config.toml says
    `verify = false`), run it: a node that loaded before and fails now is a regression, and the sync is
    rolled back at once (`SyncResult.check` says which node, why, and which changes it names)."""
    path = lock_file or ctx.lock_path
    target = ctx.probe.read()
    the_lock = export.read_any(path, export.marker_environment(target))
    lock.require_intact(the_lock, path)
    warnings = [] if the_lock.intact else [f"{path.name} was edited since comfylock wrote it"]
    warnings += env_warnings()
    mismatch = export.check_target(the_lock, target)
    if mismatch and not force:
        raise InputError(mismatch, path=path, hint="compile for this machine, or pass --force to sync anyway")
    if mismatch:
        warnings.append(f"{mismatch}; synced anyway (--force)")
    _envstate.refuse_moving_own(the_lock, target, path)
    unfinished = history.pending(ctx.ws.user_dir)
    if not dry_run and unfinished and sync.remove_torn(target.site_dirs, unfinished.packages):
        target = ctx.probe.read()  # what is left once a killed install's debris is gone
    # Past remove_torn, what a killed sync left installed is whole, so uv installs only what is missing
    # or other, from its cache: forcing a reinstall would make uv fetch those packages again.
    p = _envstate.plan(the_lock, target, unfinished if dry_run else None)
    if announce is not None:
        announce(p, len(target.installed))
    if dry_run or p.is_noop:
        if not dry_run and unfinished:  # the killed sync had done all that mattered; only debris was left
            history.end(ctx.ws.user_dir)
        return SyncResult(p, path, None, dry_run, tuple(warnings))
    # As compile: uv sees no UV_* index variable of its own, so a lock naming no index uses the
    # config's, else the one those variables name.
    index = ctx.index(IndexOptions.from_lines(the_lock.options) if the_lock.options else None)
    # A lock holds index URLs without credentials; the user's own settings give them back.
    known = [*ctx.config.index.args(), *IndexOptions.from_env(os.environ).args()]
    index = IndexOptions(
        index.index_url and restore(index.index_url, known),
        tuple(restore(u, known) for u in index.extra_index_urls),
        index.find_links,
        index.no_index,
    )
    frozen = _envstate.freeze(target)
    if not (offline or offline_first):  # before the download starts; a rollback downloads little
        from comfylock.environment.download_size import announce as announce_size

        announce_size(p.changes, index, target, notify or warnings.append)
    # The entry and the marker are in place before uv starts; their fsyncs overlap with uv.
    with (
        flushed_behind(),
        transaction.recorded(
            ctx.ws.user_dir,
            frozen,
            index.lines(),
            trigger=trigger or f"sync {path.name}",
            target=target.meta(),
            changing=[c.name for c in p.changes] + list(p.reinstall),
            unfinished=unfinished,
            # uv stopped before changing anything:
            unchanged=lambda: _envstate.freeze(ctx.probe.read()) == frozen,
            failure=lambda e, back: _failure(e, the_lock, back),
        ) as entry,
    ):
        try:
            said = sync.apply(p, ctx.ws.python, index, offline=offline or offline_first)
        except UvError:
            if not offline_first or offline:
                raise
            said = sync.apply(p, ctx.ws.python, index)  # the cache lacked something: same entry
        if unfinished:  # uv's uninstall of a half-written package can leave its .dist-info behind
            sync.remove_torn(target.site_dirs, unfinished.packages)
        if p.install_text:  # uv installed only the plan's packages: is the environment the lock now?
            after = rescan(target) if target.own else ctx.probe.read()
            if not _envstate.plan(the_lock, after, None).is_noop:  # it moved meanwhile: the whole lock
                said += sync.apply(p, ctx.ws.python, index, offline=offline, exact=True)
    ctx.probe.forget()  # read before uv changed the environment (.pth files too): the next run probes
    warnings += [f"history cannot hold {line!r}: a rollback will not bring it back" for line in entry.skipped]
    if said:
        from comfylock.explain.failures import sync_warnings

        warnings += sync_warnings(said, the_lock)
    done = SyncResult(p, path, entry, False, tuple(warnings))
    from comfylock.verify.when import wanted

    if not wanted(ctx.ws.root, ctx.config.verify, verify):
        return done
    from comfylock.verify import after_sync

    undo = functools.partial(
        _sync_entry, ctx, entry, f"automatic rollback to {entry.id} (a node stopped loading)"
    )
    return replace(done, check=after_sync.after_sync(ctx, target.installed, p.changes, entry.path, undo))


def _failure(e: UvError, the_lock: lock.Lock, back: str) -> UvError:
    from comfylock.explain.failures import sync_failure  # only when uv failed

    return sync_failure(e, the_lock, back)


def _sync_entry(ctx: Context, entry: history.Entry, trigger: str) -> SyncResult:
    """Sync a history entry's state back, from uv's cache first (what was installed before is there),
    as one operation with one history entry."""
    return sync_env(ctx, lock_file=entry.path, offline_first=True, trigger=trigger, force=True, verify=False)


@command
def verify(ctx: Context, *, timeout: float | None = None) -> VerifyResult:
    """Run ComfyUI's own loader in the target and report each custom node; the result is kept for
    the environment's present state (the baseline the next sync compares with)."""
    from comfylock.verify.after_sync import verify_here

    return verify_here(ctx, timeout)
