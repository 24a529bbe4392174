"""The Python API: each command of the CLI as a function returning a typed result.

Tools such as ComfyUI-Manager or comfy-cli can call these directly; `cli.py` only parses arguments,
calls them and prints what they return.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfylock._exceptions import InputError, LockFileError, UvError
from comfylock._fs import atomic_write, flushed_behind
from comfylock._redact import restore
from comfylock.commands.context import Context
from comfylock.commands.context import command as _command
from comfylock.commands.context import given_index as given_index
from comfylock.commands.context import lock_path as lock_path
from comfylock.environment import history, sync, transaction

# Compile's modules (collect, policy, the fingerprint, conflict explanation, duplicate imports) are
# imported inside the functions that use them, the other commands' modules on first use (__getattr__,
# at the end): a no-op `sync` at every ComfyUI start needs none.
from comfylock.environment import state as _envstate
from comfylock.environment.target import Target
from comfylock.lockfile import export, lock
from comfylock.lockfile.lock import Change, Lock
from comfylock.resolve import quick as _quick
from comfylock.resolve import uv as resolve
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.config import Config
from comfylock.workspace.layout import Workspace

if TYPE_CHECKING:
    from comfylock.collect import gather as collect
    from comfylock.collect.undeclared import Undeclared
    from comfylock.commands import rollback as _rollback
    from comfylock.commands.check import CheckReport

    # What __getattr__ (at the end) gives, for type checkers; `X as X` marks each as exported.
    from comfylock.commands.lock_tools import DiffResult as DiffResult
    from comfylock.commands.lock_tools import Exported as Exported
    from comfylock.commands.lock_tools import NodesResult as NodesResult
    from comfylock.commands.lock_tools import WhyResult as WhyResult
    from comfylock.commands.lock_tools import diff as diff
    from comfylock.commands.lock_tools import export_lock as export_lock
    from comfylock.commands.lock_tools import import_snapshot as import_snapshot
    from comfylock.commands.lock_tools import nodes as nodes
    from comfylock.commands.lock_tools import why as why
    from comfylock.commands.policy_tools import PolicyCheck as PolicyCheck
    from comfylock.commands.policy_tools import PolicyFile as PolicyFile
    from comfylock.commands.policy_tools import PolicyPackage as PolicyPackage
    from comfylock.commands.policy_tools import PolicyShow as PolicyShow
    from comfylock.commands.policy_tools import policy_check as policy_check
    from comfylock.commands.policy_tools import policy_show as policy_show
    from comfylock.commands.rollback import RollbackInfo as RollbackInfo
    from comfylock.commands.rollback import rollback as rollback
    from comfylock.commands.rollback import rolled_back as rolled_back
    from comfylock.explain import inspect
    from comfylock.policy import apply as policy
    from comfylock.verify.after_sync import SyncCheck
    from comfylock.verify.loader import VerifyResult


# The user's files, for callers that imported them from here; Workspace names every file.
USER_REQUIREMENTS = Workspace.USER_REQUIREMENTS
USER_POLICY = Workspace.USER_POLICY


@dataclass(frozen=True)
class CompileResult:
    lock_path: Path
    lock: Lock
    changes: tuple[Change, ...]
    # What was collected; a compile that found the lock up to date without collecting gives a function
    # that collects when `collection` is first read.
    collected: collect.Collection | Callable[[], collect.Collection]
    outcome: policy.PolicyOutcome | None
    up_to_date: bool = False  # nothing that decides the result changed: uv was not run
    written: bool = True
    warnings: tuple[str, ...] = ()
    offline_first: bool = False  # resolved from uv's cache without the network
    previous: Lock | None = None  # the lock before this compile
    duplicates: tuple[inspect.Duplicate, ...] = ()  # distributions installing the same import
    undeclared: tuple[Undeclared, ...] = ()  # nodes that install more than they declare (install.py...)

    @functools.cached_property
    def collection(self) -> collect.Collection:
        return self.collected() if callable(self.collected) else self.collected

    @property
    def nodes(self) -> int:
        """How many custom nodes the lock was compiled from (core and the user not counted)."""
        return max(len(self.lock.lists.get("node", ())) - 1, 0)  # its node lines: core, then each node


@_command
def compile(  # noqa: A001 - the command's name
    ctx: Context,
    *,
    upgrade: bool = False,
    upgrade_packages: Sequence[str] = (),
    index: IndexOptions | None = None,
    offline: bool = False,
    refresh: bool = False,
    skip_nodes: Sequence[str] = (),
    keep_going: bool = False,
    policy_files: Sequence[Path] = (),
    default_policy: bool = True,
    yes: bool = False,
    dry_run: bool = False,
    python_version: str | None = None,
    python_platform: str | None = None,
    torch_backend: str | None = None,
) -> CompileResult:
    """Resolve core + nodes + user requirements at once and write the lock (unless nothing changed).

    `torch_backend` (default: config.toml's torch-backend, else auto): the torch build a target
    without torch gets, from `<torch-index>/<backend>` (see _torch_backend)."""
    ws, cfg = ctx.ws, ctx.config
    from comfylock.workspace.names import check_node_names

    check_node_names(ws, skip_nodes, cfg)
    from_env = not (index or cfg.index)
    index = ctx.index(index)
    target = ctx.probe.read()
    skip = frozenset(skip_nodes) | cfg.skip
    from comfylock.resolve.torch_backend import asked

    backend_asked = asked(torch_backend, cfg.torch_backend)
    args = _quick.arguments(
        skip,
        keep_going,
        policy_files,
        default_policy,
        index.args(),
        python_version,
        python_platform,
        torch_backend=backend_asked,
    )
    forced = upgrade or bool(upgrade_packages) or refresh
    previous = _previous(ctx.lock_path)
    quick = _quick.NoOpCheck(ws, target, ctx.lock_path, args)
    if previous is not None and previous.intact and not forced:
        known = quick.known()
        if known is not None and known == previous.meta.get("fingerprint"):
            again = functools.partial(_collect, ctx, skip, keep_going)
            return CompileResult(
                ctx.lock_path, previous, (), again, None, True, False, _env_warnings(from_env)
            )

    from comfylock.policy import apply as policy
    from comfylock.resolve import request
    from comfylock.resolve.fingerprint import fingerprint, policy_names

    coll = _collect(ctx, skip, keep_going)
    # What was parsed, by its digest then; the other watched files are hashed before they are parsed.
    parsed = {str(f): d for i in coll.inputs for f, d in zip(i.files, i.digests, strict=False)}
    if cfg.path is not None and cfg.sha is not None:
        parsed[str(cfg.path)] = cfg.sha
    quick.after_collect(parsed, policy_files)
    from comfylock.resolve.stale import read_inputs, torch_choice_for

    torch_choice = torch_choice_for(backend_asked, cfg, coll, target, previous, python_platform, offline)
    if torch_choice is not None and torch_choice.url:
        index = index.plus([torch_choice.url])

    found = read_inputs(
        ws,
        cfg,
        target,
        coll,
        ws.user_policy,
        policy_files,
        default_policy,
        index,
        python_version,
        python_platform,
    )
    pol, facts, index, fp = found.policy, found.facts, found.index, found.fingerprint
    names = policy_names(pol.entries)
    quick.before_resolve(names)

    if previous is not None and previous.intact and previous.meta.get("fingerprint") == fp and not forced:
        # A node's git commit decides nothing uv resolves, so a moved commit with the same requirements
        # costs no resolution; but the header names the commits, and must not keep the old ones.
        fresh = request.refreshed_commits(ws, coll, previous)
        if fresh is not None and not dry_run:
            lock.write_lock(ctx.lock_path, fresh)
        if not dry_run:
            quick.record(fp)
        return CompileResult(
            ctx.lock_path,
            fresh or previous,
            (),
            coll,
            None,
            up_to_date=True,
            written=fresh is not None and not dry_run,
            warnings=_env_warnings(from_env),
        )

    upgrade_set = frozenset({"*"} if upgrade else {request.resolve_name(p) for p in upgrade_packages})
    outcome = policy.apply(pol, coll.requirements(), facts, upgrade=upgrade_set, torch_index=cfg.torch_index)
    if outcome.blocking and not yes:
        raise InputError(
            f"policy stops the compile: {outcome.blocking[0]}",
            hint="read the warning, then run again with --yes to go on",
        )
    base = resolve.ResolveRequest(
        inputs={},
        python=ws.python,
        index=index,
        preferences=request.preferences_text(ctx.lock_path, previous),
        upgrade=upgrade,
        upgrade_packages=tuple(upgrade_packages),
        offline=offline,
        refresh=refresh,
        python_version=python_version,
        python_platform=python_platform,
    )
    notes: list[str] = []  # shown, not written into the lock: about this machine, not the inputs
    resolved, outcome, warnings, used_cache = request.resolve_with_policy(
        base, pol, coll, facts, outcome, upgrade_set, cfg.torch_index, notes
    )
    from comfylock.resolve.settle import settle

    # The lock records the policies as they read the environment its sync leaves, so compiling again
    # after that sync finds it up to date (the fingerprint is of that environment too).
    settled = settle(base, pol, coll, facts, outcome, resolved, warnings, upgrade_set, cfg.torch_index)
    fp_after = fp
    if settled.facts is not None:
        fp_after = fingerprint(
            coll,
            pol,
            target,
            index,
            cfg,
            python_version,
            python_platform,
            facts.comfyui_version,
            root=ws.root,
            installed=settled.facts.installed,
            has_gpu=settled.facts.has_gpu,
        )
    if torch_choice is not None and torch_choice.warning:
        notes.append(torch_choice.warning)  # about this machine's reach, not the inputs
    new = request.build_lock(
        ws,
        coll,
        settled.outcome,
        settled.resolved,
        base.index.plus(settled.outcome.extra_index_urls),
        target,
        fp_after,
        python_version,
        python_platform,
        list(settled.warnings),
    )
    from comfylock.environment.owndeps import blame, moved

    # A downgraded uv or packaging in the environment comfylock runs from breaks it. A lock made for
    # another Python or platform is not for here (sync refuses it here all the same).
    bad = [] if python_version or python_platform else moved(new, target)
    if bad:
        raise blame(bad[0], coll, new)
    if torch_choice is not None:
        new = replace(new, meta={**new.meta, "torch-backend": torch_choice.backend})
    changes = tuple(lock.diff(lock.pin_versions(previous) if previous else {}, lock.pin_versions(new)))
    if not dry_run:
        lock.write_lock(ctx.lock_path, new)
        quick.record(fp_after)  # this environment, as it is now, gives this lock
    return CompileResult(
        ctx.lock_path,
        new,
        changes,
        coll,
        outcome,
        written=not dry_run,
        warnings=(*settled.shown, *notes, *_env_warnings(from_env)),
        offline_first=used_cache,
        previous=previous,
        duplicates=_duplicates(target, new),
        undeclared=_undeclared_nodes(coll, cfg),
    )


def _env_warnings(index_from_env: bool = True) -> tuple[str, ...]:
    """The user's UV_* variables uv will not see (see _uvenv); uv's index variables too when the
    command line or config.toml gave the index settings."""
    from comfylock.resolve.uvenv import CONSUMED, ignored

    unused = [] if index_from_env else sorted(k for k in CONSUMED if os.environ.get(k))
    return (
        *ignored(os.environ),
        *(f"{k} is ignored: the index settings of the command line or config.toml win" for k in unused),
    )


def _undeclared_nodes(coll: collect.Collection, cfg: Config) -> tuple[Undeclared, ...]:
    from comfylock.collect.undeclared import scan_inputs

    return scan_inputs(coll.inputs, cfg.nodes)


def _collect(ctx: Context, skip: frozenset[str], keep_going: bool) -> collect.Collection:
    from comfylock.collect import gather as collect

    return collect.collect(
        ctx.ws,
        settings=ctx.config.nodes,
        skip_nodes=skip,
        keep_going=keep_going,
        user_requirements=ctx.ws.user_requirements,
    )


def _previous(path: Path) -> Lock | None:
    # A damaged lock must not stop the compile that rebuilds it: it only loses its preferences.
    try:
        return lock.read_lock(path) if path.is_file() else None
    except LockFileError:
        return None


def _duplicates(target: Target, new: Lock) -> tuple[inspect.Duplicate, ...]:
    """Distributions in the lock that install the same import (the resolver cannot see these)."""
    from comfylock.explain import inspect

    # The target's site folders as its probe told them: no second run of the interpreter.
    dirs = [*map(Path, target.site_dirs), *inspect.cache_dirs(resolve.cache_dir())]
    return tuple(inspect.duplicate_imports(new, inspect.read_dist_infos(dirs, {p.name for p in new.pins})))


# --- sync, rollback, history ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
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


@_command
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
    warnings += _env_warnings()
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
    index = IndexOptions.from_lines(the_lock.options) if the_lock.options else None
    # As compile: uv sees no UV_* index variable of its own, so a lock naming no index uses the
    # config's, else the one those variables name.
    index = index or ctx.config.index or IndexOptions.from_env(os.environ)
    # A lock holds index URLs without credentials; the user's own settings give them back.
    known = [*ctx.config.index.args(), *IndexOptions.from_env(os.environ).args()]
    index = IndexOptions(
        index.index_url and restore(index.index_url, known),
        tuple(restore(u, known) for u in index.extra_index_urls),
        index.find_links,
        index.no_index,
    )
    frozen = _envstate.freeze(target)
    lost = [line for line in frozen if line.startswith("-") and " @ " not in line]
    warnings += [f"history cannot hold {line!r}: a rollback will not bring it back" for line in lost]
    if not (offline or offline_first):  # before the download starts; a rollback downloads little
        from comfylock.environment.download_size import announce as announce_size

        announce_size(p.changes, index, target, notify or warnings.append)
    from comfylock.explain.failures import sync_failure

    # The entry and the marker are in place before uv starts; their fsyncs overlap with uv.
    with flushed_behind(), transaction.recorded(
        ctx.ws.user_dir,
        frozen,
        index.lines(),
        trigger=trigger or f"sync {path.name}",
        target=target.meta(),
        changing=[c.name for c in p.changes] + list(p.reinstall),
        unfinished=unfinished,
        unchanged=lambda: _envstate.freeze(ctx.probe.read()) == frozen,  # uv stopped before changing anything
        failure=lambda e, back: sync_failure(e, the_lock, back),
    ) as entry:
        try:
            said = sync.apply(p, ctx.ws.python, index, offline=offline or offline_first)
        except UvError:
            if not offline_first or offline:
                raise
            said = sync.apply(p, ctx.ws.python, index)  # the cache lacked something: same entry
        if unfinished:  # uv's uninstall of a half-written package can leave its .dist-info behind
            sync.remove_torn(target.site_dirs, unfinished.packages)
    ctx.probe.forget()  # read before uv changed the environment (.pth files too): the next run probes
    if said:
        from comfylock.explain.failures import sync_warnings

        warnings += sync_warnings(said, the_lock)
    done = SyncResult(p, path, entry, False, tuple(warnings))
    from comfylock.verify import after_sync

    if not after_sync.wanted(ctx.ws.root, ctx.config.verify, verify):
        return done
    undo = functools.partial(
        _sync_entry, ctx, entry, f"automatic rollback to {entry.id} (a node stopped loading)"
    )
    return replace(done, check=after_sync.after_sync(ctx, target.installed, p.changes, entry.path, undo))


def _sync_entry(ctx: Context, entry: history.Entry, trigger: str) -> SyncResult:
    """Sync a history entry's state back, from uv's cache first (what was installed before is there),
    as one operation with one history entry."""
    return sync_env(ctx, lock_file=entry.path, offline_first=True, trigger=trigger, force=True, verify=False)


@_command
def verify(ctx: Context, *, timeout: float | None = None) -> VerifyResult:
    """Run ComfyUI's own loader in the target and report each custom node; the result is kept for
    the environment's present state (the baseline the next sync compares with)."""
    from comfylock.verify.after_sync import verify_here

    return verify_here(ctx, timeout)


def list_history(ctx: Context) -> list[history.Entry]:
    return history.entries(ctx.ws.user_dir)


def check(ctx: Context) -> sync.SyncPlan:
    """What differs between the target environment and the lock (an empty plan: they match)."""
    target = ctx.probe.read()
    unfinished = history.pending(ctx.ws.user_dir)
    return _envstate.plan(
        export.read_any(ctx.lock_path, export.marker_environment(target)), target, unfinished
    )


def check_report(ctx: Context) -> CheckReport:
    """check(), plus whether the lock is stale (as compile decides it) and what `uv pip check` finds
    broken, apart from what the lock's policies do on purpose (see `_check`)."""
    from comfylock.commands.check import check_report as report

    return report(ctx)


def _as_compiled(ctx: Context, target: Target, the_lock: Lock) -> bool:
    """True when `the_lock` is intact and nothing its compile read has changed since (compile's quick
    check, which reads no node's requirements)."""
    fp = the_lock.meta.get("fingerprint")
    if not fp or not the_lock.intact:
        return False
    return _quick.as_compiled(_quick.cache_path(ctx.ws), ctx.lock_path, ctx.ws, target) == fp


# --- the user's own requirements -----------------------------------------------------------------


@_command
def add(ctx: Context, specs: Sequence[str]) -> list[str]:
    """Add requirements to the user's own list: a package's earlier line is replaced in place, a new
    one goes at the end; comments and order stay."""
    from comfylock.collect.userreqs import UserFile

    f = UserFile(ctx.ws.user_requirements)
    for spec in specs:
        f.add(spec)
    atomic_write(f.path, f.text())
    return f.requirements()


@_command
def remove(ctx: Context, names: Sequence[str]) -> list[str]:
    from comfylock.collect.userreqs import UserFile

    f = UserFile(ctx.ws.user_requirements)
    f.remove(names)
    atomic_write(f.path, f.text())
    return f.requirements()


# The other commands, from their own modules (see the note at the imports).
_ELSEWHERE = {
    **dict.fromkeys(
        (
            "DiffResult",
            "Exported",
            "NodesResult",
            "WhyResult",
            "diff",
            "export_lock",
            "import_snapshot",
            "nodes",
            "why",
        ),
        "comfylock.commands.lock_tools",
    ),
    **dict.fromkeys(
        ("PolicyCheck", "PolicyFile", "PolicyPackage", "PolicyShow", "policy_check", "policy_show"),
        "comfylock.commands.policy_tools",
    ),
    **dict.fromkeys(("RollbackInfo", "rollback", "rolled_back"), "comfylock.commands.rollback"),
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
