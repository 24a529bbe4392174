"""The Python API: each command of the CLI as a function returning a typed result.

Tools such as ComfyUI-Manager or comfy-cli can call these directly; `cli.py` only parses arguments,
calls them and prints what they return.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Compile's modules (collect, policy, the fingerprint, conflict explanation, duplicate imports) are
# imported inside the functions that use them, the other commands' modules on first use (__getattr__,
# at the end): a no-op `sync` at every ComfyUI start needs none.
from . import _quick, _synctxn, export, history, lock, resolve, sync
from ._context import Context
from ._context import command as _command
from ._context import given_index as given_index
from ._context import lock_path as lock_path
from ._exceptions import InputError, LockFileError, UvError
from ._fs import atomic_write
from ._redact import restore
from .lock import Change, Lock
from .resolve import IndexOptions
from .workspace import Target, Workspace

if TYPE_CHECKING:
    from . import collect, inspect, policy

    # What __getattr__ (at the end) gives, for type checkers; `X as X` marks each as exported.
    from ._api_lock import DiffResult as DiffResult
    from ._api_lock import Exported as Exported
    from ._api_lock import NodesResult as NodesResult
    from ._api_lock import WhyResult as WhyResult
    from ._api_lock import diff as diff
    from ._api_lock import export_lock as export_lock
    from ._api_lock import import_snapshot as import_snapshot
    from ._api_lock import nodes as nodes
    from ._api_lock import why as why
    from ._api_policy import PolicyCheck as PolicyCheck
    from ._api_policy import PolicyFile as PolicyFile
    from ._api_policy import PolicyPackage as PolicyPackage
    from ._api_policy import PolicyShow as PolicyShow
    from ._api_policy import policy_check as policy_check
    from ._api_policy import policy_show as policy_show


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
) -> CompileResult:
    """Resolve core + nodes + user requirements at once and write the lock (unless nothing changed)."""
    ws, cfg = ctx.ws, ctx.config
    index = ctx.index(index)
    target = ctx.probe.read()
    skip = frozenset(skip_nodes) | cfg.skip
    args = _quick.arguments(
        skip, keep_going, policy_files, default_policy, index.args(), python_version, python_platform
    )
    forced = upgrade or bool(upgrade_packages) or refresh
    previous = _previous(ctx.lock_path)
    quick = _quick.NoOpCheck(ws, target, ctx.lock_path, args)
    if previous is not None and previous.intact and not forced:
        known = quick.known()
        if known is not None and known == previous.meta.get("fingerprint"):
            again = functools.partial(_collect, ctx, skip, keep_going)
            return CompileResult(ctx.lock_path, previous, (), again, None, up_to_date=True, written=False)

    from . import _compile, policy
    from ._fingerprint import fingerprint, policy_names

    coll = _collect(ctx, skip, keep_going)
    # What was parsed, by its digest then; the other watched files are hashed before they are parsed.
    parsed = {str(f): d for i in coll.inputs for f, d in zip(i.files, i.digests, strict=False)}
    if cfg.path is not None and cfg.sha is not None:
        parsed[str(cfg.path)] = cfg.sha
    quick.after_collect(parsed, policy_files)
    pol = policy.load_policy(ws.user_policy, list(policy_files), base=default_policy)
    facts = policy.Facts(
        installed=target.installed,
        os=target.os,
        has_gpu=target.has_gpu,
        comfyui_version=_compile.comfyui_version(ws.version_files),
    )
    for inp in coll.inputs:
        for opt in inp.index_options:
            index = _compile.add_node_option(index, opt)
    fp = fingerprint(coll, pol, target, index, cfg, python_version, python_platform, facts.comfyui_version)
    quick.before_resolve(policy_names(pol.entries))
    if previous is not None and previous.intact and previous.meta.get("fingerprint") == fp and not forced:
        if not dry_run:
            quick.record(fp)
        return CompileResult(ctx.lock_path, previous, (), coll, None, up_to_date=True, written=False)

    upgrade_set = frozenset({"*"} if upgrade else {_compile.resolve_name(p) for p in upgrade_packages})
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
        preferences=_compile.preferences_text(ctx.lock_path, previous),
        upgrade=upgrade,
        upgrade_packages=tuple(upgrade_packages),
        offline=offline,
        refresh=refresh,
        python_version=python_version,
        python_platform=python_platform,
    )
    resolved, outcome, warnings, used_cache = _compile.resolve_with_policy(
        base, pol, coll, facts, outcome, upgrade_set, cfg.torch_index
    )
    new = _compile.build_lock(
        ws,
        coll,
        outcome,
        resolved,
        base.index.plus(outcome.extra_index_urls),
        target,
        fp,
        python_version,
        python_platform,
        warnings,
    )
    changes = tuple(lock.diff(lock.pin_versions(previous) if previous else {}, lock.pin_versions(new)))
    if not dry_run:
        lock.write_lock(ctx.lock_path, new)
        quick.record(fp)
    return CompileResult(
        ctx.lock_path,
        new,
        changes,
        coll,
        outcome,
        written=not dry_run,
        warnings=tuple(warnings),
        offline_first=used_cache,
        previous=previous,
        duplicates=_duplicates(target, new),
    )


def _collect(ctx: Context, skip: frozenset[str], keep_going: bool) -> collect.Collection:
    from . import collect

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
    from . import inspect

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


@_command
def sync_env(
    ctx: Context,
    *,
    lock_file: Path | None = None,
    dry_run: bool = False,
    offline: bool = False,
    trigger: str | None = None,
    force: bool = False,
) -> SyncResult:
    """Make the target environment exactly the lock (a comfylock lock, a requirements file or a PEP 751
    pylock); record the state before in the history first. A lock made for another Python or platform
    is refused unless `force`."""
    path = lock_file or ctx.lock_path
    target = ctx.probe.read()
    the_lock = export.read_any(path, export.marker_environment(target))
    lock.require_intact(the_lock, path)
    warnings = [] if the_lock.intact else [f"{path.name} was edited since comfylock wrote it"]
    mismatch = export.check_target(the_lock, target)
    if mismatch and not force:
        raise InputError(mismatch, path=path, hint="compile for this machine, or pass --force to sync anyway")
    if mismatch:
        warnings.append(f"{mismatch}; synced anyway (--force)")
    unfinished = history.pending(ctx.ws.user_dir)
    if not dry_run and unfinished and sync.remove_torn(target.site_dirs, unfinished.packages):
        target = ctx.probe.read()  # what is left once a killed install's debris is gone
    p = sync.plan(the_lock, target.installed, unfinished=unfinished.packages if unfinished else ())
    if dry_run or p.is_noop:
        return SyncResult(p, path, None, dry_run, tuple(warnings))
    index = IndexOptions.from_lines(the_lock.options) if the_lock.options else ctx.config.index
    # A lock holds index URLs without credentials; the user's own settings give them back.
    known = [*ctx.config.index.args(), *IndexOptions.from_env(os.environ).args()]
    index = IndexOptions(
        index.index_url and restore(index.index_url, known),
        tuple(restore(u, known) for u in index.extra_index_urls),
        index.find_links,
        index.no_index,
    )
    frozen = _freeze(target)
    with _synctxn.recorded(
        ctx.ws.user_dir,
        frozen,
        index.lines(),
        trigger=trigger or f"sync {path.name}",
        target=target.meta(),
        changing=[c.name for c in p.changes] + list(p.reinstall),
        unfinished=unfinished,
        unchanged=lambda: _freeze(ctx.probe.read()) == frozen,  # uv stopped before changing anything
    ) as entry:
        sync.apply(p, ctx.ws.python, index, offline=offline)
        if unfinished:  # uv's uninstall of a half-written package can leave its .dist-info behind
            sync.remove_torn(target.site_dirs, unfinished.packages)
    ctx.probe.forget()  # read before uv changed the environment (.pth files too): the next run probes
    return SyncResult(p, path, entry, False, tuple(warnings))


def _freeze(target: Target) -> list[str]:
    """The environment as `uv pip freeze` lists it: from the probe when it holds only plain registry
    installs (the environment is read once a run), else from uv (URLs, editables, legacy installs)."""
    return list(target.frozen) if target.frozen is not None else resolve.freeze(target.python)


@_command
def rollback(ctx: Context, *, to: int | None = None, dry_run: bool = False) -> SyncResult:
    """Sync a history entry (default: the state before the last sync). Offline first: uv's cache
    holds what was installed before, so a rollback needs no network unless the cache was cleaned."""
    entry = history.get(ctx.ws.user_dir, to)
    try:
        return sync_env(
            ctx, lock_file=entry.path, dry_run=dry_run, offline=True, trigger=f"rollback to {entry.id}"
        )
    except UvError:
        return sync_env(ctx, lock_file=entry.path, dry_run=dry_run, trigger=f"rollback to {entry.id}")


def list_history(ctx: Context) -> list[history.Entry]:
    return history.entries(ctx.ws.user_dir)


def check(ctx: Context) -> sync.SyncPlan:
    """What differs between the target environment and the lock (an empty plan: they match)."""
    target = ctx.probe.read()
    unfinished = history.pending(ctx.ws.user_dir)
    return sync.plan(
        export.read_any(ctx.lock_path, export.marker_environment(target)),
        target.installed,
        unfinished=unfinished.packages if unfinished else (),
    )


@dataclass(frozen=True)
class CheckReport:
    plan: sync.SyncPlan
    stale: tuple[inspect.Stale, ...] = ()
    broken: tuple[inspect.Broken, ...] = ()
    unfinished: history.Pending | None = None  # a sync that did not finish (killed or failed)


def check_report(ctx: Context) -> CheckReport:
    """check(), plus whether the lock is stale and what `uv pip check` finds broken."""
    from . import _compile, inspect

    ws, cfg = ctx.ws, ctx.config
    target = ctx.probe.read()
    the_lock = export.read_any(ctx.lock_path, export.marker_environment(target))
    try:
        coll = _collect(ctx, cfg.skip, keep_going=True)
        folders = {i.node: i.path for i in coll.inputs}
        stale = inspect.stale(the_lock, _compile.node_lines(ws, coll), coll.requirements(), folders)
    except InputError as e:
        stale = [inspect.Stale("?", "requirements", f"cannot read the requirements now: {e}")]
    broken = inspect.parse_pip_check(resolve.pip_check(ws.python))
    unfinished = history.pending(ctx.ws.user_dir)  # a killed sync: never reported as matching
    p = sync.plan(the_lock, target.installed, unfinished=unfinished.packages if unfinished else ())
    return CheckReport(p, tuple(stale), tuple(broken), unfinished)


# --- the user's own requirements -----------------------------------------------------------------


@_command
def add(ctx: Context, specs: Sequence[str]) -> list[str]:
    """Add requirements to the user's own list (replacing an earlier line for the same package)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    path = ctx.ws.user_requirements
    lines = _user_lines(path)
    for spec in specs:
        try:
            req = Requirement(spec)
        except InvalidRequirement as e:
            raise InputError(f"not a valid requirement {spec!r}: {e}") from None
        name = canonicalize_name(req.name)
        lines = [ln for ln in lines if canonicalize_name(Requirement(ln).name) != name] + [str(req)]
    atomic_write(path, "".join(f"{ln}\n" for ln in sorted(lines, key=str.lower)))
    return lines


@_command
def remove(ctx: Context, names: Sequence[str]) -> list[str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    path = ctx.ws.user_requirements
    drop = {canonicalize_name(n) for n in names}
    lines = _user_lines(path)
    missing = drop - {canonicalize_name(Requirement(ln).name) for ln in lines}
    if missing:
        raise InputError(f"{sorted(missing)[0]} is not in your requirements", path=path)
    kept = [ln for ln in lines if canonicalize_name(Requirement(ln).name) not in drop]
    atomic_write(path, "".join(f"{ln}\n" for ln in kept))
    return kept


def _user_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [
        ln.strip()
        for ln in path.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]


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
        "._api_lock",
    ),
    **dict.fromkeys(
        ("PolicyCheck", "PolicyFile", "PolicyPackage", "PolicyShow", "policy_check", "policy_show"),
        "._api_policy",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        import importlib

        return getattr(importlib.import_module(_ELSEWHERE[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
