"""`compile`: resolve core + nodes + the user's requirements at once and write the lock, unless the
no-op check finds nothing that decides the result changed. `comfylock.api` exports it.

The stages only a compile needs (collect, policy, the fingerprint, settling, conflict explanation,
duplicate imports) are imported inside the functions that use them: `comfylock.api` imports this
module, and a no-op `sync` at every ComfyUI start needs none of them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock._exceptions import InputError, LockFileError
from comfylock.commands.context import Context, command, env_warnings
from comfylock.lockfile import lock
from comfylock.lockfile.lock import Change, Lock
from comfylock.resolve import quick as _quick
from comfylock.resolve.index import IndexOptions

if TYPE_CHECKING:
    from comfylock.collect import gather as collect
    from comfylock.collect.undeclared import Undeclared
    from comfylock.environment.target import Target
    from comfylock.explain import inspect
    from comfylock.policy import apply as policy
    from comfylock.workspace.config import Config


@dataclass(frozen=True)
class CompileResult:
    """What a compile produced: the lock, what changed against the previous one, and what it found."""

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


@command
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
            again = functools.partial(collect_requirements, ctx, skip, keep_going)
            return CompileResult(
                ctx.lock_path, previous, (), again, None, True, False, env_warnings(from_env)
            )

    from comfylock.policy import apply as policy
    from comfylock.resolve import request
    from comfylock.resolve.fingerprint import fingerprint, policy_names

    coll = collect_requirements(ctx, skip, keep_going)
    # What was parsed, by its digest then; the other watched files are hashed before they are parsed.
    parsed = {str(f): d for i in coll.inputs for f, d in zip(i.files, i.digests, strict=False)}
    if cfg.path is not None and cfg.sha is not None:
        parsed[str(cfg.path)] = cfg.sha
    quick.after_collect(parsed, policy_files)
    from comfylock.resolve.stale import TorchAsk, read_inputs

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
        TorchAsk(backend_asked, previous, offline),
    )
    pol, facts, index, fp = found.policy, found.facts, found.index, found.fingerprint
    torch_choice = found.torch
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
            warnings=env_warnings(from_env),
        )

    upgrade_set = frozenset({"*"} if upgrade else {request.resolve_name(p) for p in upgrade_packages})
    outcome = policy.apply(pol, coll.requirements(), facts, upgrade=upgrade_set, torch_index=cfg.torch_index)
    if outcome.blocking and not yes:
        raise InputError(
            f"policy stops the compile: {outcome.blocking[0]}",
            hint="read the warning, then run again with --yes to go on",
        )
    from comfylock.resolve.types import ResolveRequest

    base = ResolveRequest(
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
    # A downgraded uv or packaging in the environment comfylock runs from breaks it. A lock made for
    # another Python or platform is not for here (sync refuses it here all the same).
    from comfylock.environment.owndeps import blame, moved

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
        warnings=(*settled.shown, *notes, *env_warnings(from_env)),
        offline_first=used_cache,
        previous=previous,
        duplicates=_duplicates(target, new),
        undeclared=_undeclared_nodes(coll, cfg),
    )


def _undeclared_nodes(coll: collect.Collection, cfg: Config) -> tuple[Undeclared, ...]:
    from comfylock.collect.undeclared import scan_inputs

    return scan_inputs(coll.inputs, cfg.nodes)


def collect_requirements(ctx: Context, skip: frozenset[str], keep_going: bool) -> collect.Collection:
    """Every requirement of core, the nodes not skipped and the user, as compile and check read them."""
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
    from comfylock.resolve.uv import cache_dir

    dirs = [*map(Path, target.site_dirs), *inspect.cache_dirs(cache_dir())]
    return tuple(inspect.duplicate_imports(new, inspect.read_dist_infos(dirs, {p.name for p in new.pins})))
