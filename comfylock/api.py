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
from typing import TYPE_CHECKING

# Compile's modules (collect, policy, the fingerprint, conflict explanation, duplicate imports) are
# imported inside the functions that use them: a no-op `sync` at every ComfyUI start needs none.
from . import _quick, export, history, lock, resolve, sync
from ._exceptions import InputError, LockFileError, UvError
from ._filelock import locked
from ._fs import atomic_write, flushed_behind
from ._redact import restore
from .config import Config, load_config
from .lock import Change, Lock
from .resolve import IndexOptions
from .workspace import Target, Workspace, open_workspace, probe_target, remember

if TYPE_CHECKING:
    from . import collect, inspect, policy

USER_REQUIREMENTS = "requirements.txt"
USER_POLICY = "pip-policy.user.json"


@dataclass(frozen=True)
class Context:
    """Everything a command reads about one ComfyUI, read once."""

    ws: Workspace
    config: Config
    lock_path: Path

    @classmethod
    def open(
        cls,
        comfyui: str | os.PathLike[str] | None = None,
        *,
        python: str | os.PathLike[str] | None = None,
        lock_file: str | os.PathLike[str] | None = None,
    ) -> Context:
        ws = open_workspace(comfyui, python)
        path = Path(lock_file).absolute() if lock_file else ws.default_lock
        return cls(ws, load_config(ws.user_dir), path)


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


@locked
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
    index = index or cfg.index or IndexOptions.from_env(os.environ)
    target = probe_target(ws.python, ws.probe_cache)
    skip = frozenset(skip_nodes) | cfg.skip
    args = _quick.arguments(
        skip, keep_going, policy_files, default_policy, index.args(), python_version, python_platform
    )
    forced = upgrade or bool(upgrade_packages) or refresh
    previous = _previous(ctx.lock_path)
    if previous is not None and previous.intact and not forced:
        known = _quick.lookup(_quick.cache_path(ws), ctx.lock_path, ws, target, args)
        if known is not None and known == previous.meta.get("fingerprint"):
            if not dry_run:
                remember(target)
            again = functools.partial(_collect, ctx, skip, keep_going)
            return CompileResult(ctx.lock_path, previous, (), again, None, up_to_date=True, written=False)

    from . import _compile, policy
    from ._fingerprint import fingerprint, policy_names

    coll = _collect(ctx, skip, keep_going)
    # What was parsed, by its digest then; the other watched files are hashed before they are parsed.
    parsed = {str(f): d for i in coll.inputs for f, d in zip(i.files, i.digests, strict=False)}
    if cfg.path is not None and cfg.sha is not None:
        parsed[str(cfg.path)] = cfg.sha
    watched = _quick.watched(ws, parsed, policy_files)
    seen = _quick.snapshot(watched, parsed)
    pol = policy.load_policy(ws.user_dir / USER_POLICY, list(policy_files), base=default_policy)
    facts = policy.Facts(
        installed=target.installed,
        os=target.os,
        has_gpu=target.has_gpu,
        comfyui_version=_compile.comfyui_version(ws.root),
    )
    for inp in coll.inputs:
        for opt in inp.index_options:
            index = _compile.add_node_option(index, opt)
    fp = fingerprint(coll, pol, target, index, cfg, python_version, python_platform, facts.comfyui_version)
    names = policy_names(pol.entries)
    quick = _quick.digest(ws, target, seen, names, args)

    def done() -> None:
        remember(target)
        _quick.record(_quick.cache_path(ws), ctx.lock_path, fp, watched, names, quick, args)

    if previous is not None and previous.intact and previous.meta.get("fingerprint") == fp and not forced:
        if not dry_run:
            done()
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
        done()
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
        duplicates=_duplicates(ws.python, new),
    )


def _collect(ctx: Context, skip: frozenset[str], keep_going: bool) -> collect.Collection:
    from . import collect

    return collect.collect(
        ctx.ws,
        settings=ctx.config.nodes,
        skip_nodes=skip,
        keep_going=keep_going,
        user_requirements=ctx.ws.user_dir / USER_REQUIREMENTS,
    )


def _previous(path: Path) -> Lock | None:
    # A damaged lock must not stop the compile that rebuilds it: it only loses its preferences.
    try:
        return lock.read_lock(path) if path.is_file() else None
    except LockFileError:
        return None


def _duplicates(python: Path, new: Lock) -> tuple[inspect.Duplicate, ...]:
    """Distributions in the lock that install the same import (the resolver cannot see these)."""
    from . import inspect

    dirs = [*inspect.site_dirs(python), *inspect.cache_dirs(resolve.cache_dir())]
    return tuple(inspect.duplicate_imports(new, inspect.read_dist_infos(dirs, {p.name for p in new.pins})))


# --- sync, rollback, history ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    plan: sync.SyncPlan
    lock_path: Path
    entry: history.Entry | None = None  # the history entry recorded before changing anything
    dry_run: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


@locked
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
    target = probe_target(ctx.ws.python, ctx.ws.probe_cache)
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
        target = probe_target(ctx.ws.python)  # what is left once a killed install's debris is gone
    # Past remove_torn, what a killed sync left installed is whole, so uv installs only what is missing
    # or other, from its cache: forcing a reinstall would make uv fetch those packages again.
    redo = unfinished.packages if unfinished and dry_run else ()
    p = sync.plan(the_lock, target.installed, unfinished=redo)
    if dry_run or p.is_noop:
        if not dry_run:
            remember(target)
            if unfinished:  # the killed sync had done all that mattered; only its debris was left
                history.end(ctx.ws.user_dir)
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
    try:
        # The entry and the marker are in place before uv starts; their fsyncs overlap with uv.
        with flushed_behind():
            entry = history.record(
                ctx.ws.user_dir,
                frozen,
                index.lines(),
                trigger=trigger or f"sync {path.name}",
                target=target.meta(),
            )
            history.begin(ctx.ws.user_dir, entry.id, [c.name for c in p.changes] + list(p.reinstall))
            sync.apply(p, ctx.ws.python, index, offline=offline)
    except UvError as e:
        if _freeze(probe_target(ctx.ws.python)) == frozen:  # uv stopped before changing anything
            history.end(ctx.ws.user_dir, restore=unfinished)
        raise UvError(
            e.message,
            hint=f"the environment before this sync is history entry {entry.id}; "
            f"`comfylock rollback --to {entry.id}` restores it",
        ) from None
    if unfinished:  # uv's uninstall of a half-written package can leave its .dist-info behind
        sync.remove_torn(target.site_dirs, unfinished.packages)
    history.end(ctx.ws.user_dir)
    return SyncResult(p, path, entry, False, tuple(warnings))


def _freeze(target: Target) -> list[str]:
    """The environment as `uv pip freeze` lists it: from the probe when it holds only plain registry
    installs (the environment is read once a run), else from uv (URLs, editables, legacy installs)."""
    return list(target.frozen) if target.frozen is not None else resolve.freeze(target.python)


@locked
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
    target = probe_target(ctx.ws.python, ctx.ws.probe_cache)
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


def check_report(ctx: Context) -> CheckReport:
    """check(), plus whether the lock is stale and what `uv pip check` finds broken."""
    ws, cfg = ctx.ws, ctx.config
    target = probe_target(ws.python, ws.probe_cache)
    the_lock = export.read_any(ctx.lock_path, export.marker_environment(target))
    unfinished = history.pending(ctx.ws.user_dir)  # a killed sync: never reported as matching
    p = sync.plan(the_lock, target.installed, unfinished=unfinished.packages if unfinished else ())
    if p.is_noop and _as_compiled(ctx, target, the_lock):
        # Inputs unchanged since this lock was compiled (nothing stale), and the environment is exactly
        # one uv resolution (nothing broken): no collecting, no `uv pip check`.
        return CheckReport(p)
    from . import _compile, inspect

    try:
        coll = _collect(ctx, cfg.skip, keep_going=True)
        folders = {i.node: i.path for i in coll.inputs}
        stale = inspect.stale(the_lock, _compile.node_lines(ws, coll), coll.requirements(), folders)
    except InputError as e:
        stale = [inspect.Stale("?", "requirements", f"cannot read the requirements now: {e}")]
    broken = inspect.parse_pip_check(resolve.pip_check(ws.python))
    return CheckReport(p, tuple(stale), tuple(broken))


def _as_compiled(ctx: Context, target: Target, the_lock: Lock) -> bool:
    """True when `the_lock` is intact and nothing its compile read has changed since (compile's quick
    check, which reads no node's requirements)."""
    fp = the_lock.meta.get("fingerprint")
    if not fp or not the_lock.intact:
        return False
    return _quick.as_compiled(_quick.cache_path(ctx.ws), ctx.lock_path, ctx.ws, target) == fp


# --- the user's own requirements -----------------------------------------------------------------


@locked
def add(ctx: Context, specs: Sequence[str]) -> list[str]:
    """Add requirements to the user's own list (replacing an earlier line for the same package)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    path = ctx.ws.user_dir / USER_REQUIREMENTS
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


@locked
def remove(ctx: Context, names: Sequence[str]) -> list[str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    path = ctx.ws.user_dir / USER_REQUIREMENTS
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
