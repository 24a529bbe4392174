"""`check`: the environment against the lock, whether the lock is stale (compile's own question) and
what `uv pip check` finds broken apart from what the lock's policies do on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from comfylock._exceptions import ComfylockError
from comfylock.commands.context import Context
from comfylock.environment import history, state, sync
from comfylock.lockfile import export
from comfylock.resolve import quick

# What only the slow path needs (collecting, the policy, the fingerprint, `uv pip check`) is imported
# there: a `check` whose inputs did not change since the compile answers without any of it.
if TYPE_CHECKING:
    from comfylock.environment.target import Target
    from comfylock.explain import inspect
    from comfylock.lockfile.lock import Lock
    from comfylock.resolve.stale import Intended


@dataclass(frozen=True)
class CheckReport:
    """What check found: the plan to the lock, a stale lock, and real breakage."""

    plan: sync.SyncPlan
    stale: tuple[inspect.Stale, ...] = ()
    broken: tuple[inspect.Broken, ...] = ()  # real breakage only
    intended: tuple[Intended, ...] = ()  # what `uv pip check` calls broken because a policy chose so
    rolled_back: history.Entry | None = None  # the environment is at this entry by a rollback
    rolled_back_automatic: bool = False  # ... made by a sync that broke a node (verify)
    unfinished: history.Pending | None = None  # a sync that did not finish (killed or failed)


def check_report(ctx: Context) -> CheckReport:
    """check(), plus whether the lock is stale (as compile decides it) and what `uv pip check` finds
    broken, apart from what the lock's policies do on purpose."""
    from comfylock.workspace.names import check_node_names

    ws = ctx.ws
    check_node_names(ws, (), ctx.config)
    target = ctx.probe.read()
    the_lock = export.read_any(ctx.lock_path, export.marker_environment(target))
    unfinished = history.pending(ctx.ws.user_dir)  # a killed sync: never reported as matching
    p = state.plan(the_lock, target, unfinished)
    fp = the_lock.meta.get("fingerprint")
    compiled = p.is_noop and fp and the_lock.intact
    if compiled and quick.as_compiled(ws.compile_cache, ctx.lock_path, ws, target) == fp:
        # Inputs unchanged since this lock was compiled (nothing stale), and the environment is exactly
        # one uv resolution (nothing broken): no collecting, no `uv pip check`.
        return CheckReport(p, unfinished=unfinished)
    from comfylock.commands.rollback import AUTOMATIC, rolled_back_to
    from comfylock.explain import inspect
    from comfylock.resolve import uv as resolve
    from comfylock.resolve.stale import split_broken

    try:
        stale = _stale_now(ctx, target, the_lock)
    except ComfylockError as e:
        stale = [inspect.Stale("?", "requirements", f"cannot read the inputs now: {e}")]
    found = inspect.parse_pip_check(resolve.pip_check(ws.python))
    broken, intended = split_broken(found, the_lock, target.installed)
    back = None if p.is_noop else rolled_back_to(ws.user_dir, target.installed)
    last = history.newest(ws.user_dir) if back is not None else None
    automatic = last is not None and last.trigger.startswith(AUTOMATIC)
    return CheckReport(p, tuple(stale), tuple(broken), tuple(intended), back, automatic, unfinished)


def _stale_now(ctx: Context, target: Target, the_lock: Lock) -> list[inspect.Stale]:
    """compile's own question: does the fingerprint of today's inputs match the lock's? Asked with the
    arguments the last compile of this lock ran with (its record), else with compile's defaults."""
    from pathlib import Path

    from comfylock.commands.compile import collect_requirements
    from comfylock.resolve import request
    from comfylock.resolve.fingerprint import policy_names
    from comfylock.resolve.stale import TorchAsk, explain, index_from_args, read_inputs
    from comfylock.resolve.torch_backend import asked

    if "fingerprint" not in the_lock.meta:
        return []  # a pylock or a plain requirements file: nothing to compare
    ws, cfg = ctx.ws, ctx.config
    args = quick.recorded_args(ws.compile_cache, ctx.lock_path)
    if args is not None:
        skip = frozenset(args.get("skip") or ())
        index = index_from_args(args.get("index") or [])
        files = [Path(f) for f in args.get("policy_files") or []]
        default_policy = bool(args.get("default_policy", True))
        python_version, python_platform = args.get("python_version"), args.get("python_platform")
        backend = asked(args.get("torch_backend"), cfg.torch_backend)
    else:
        skip, files, default_policy = cfg.skip, [], True
        index = ctx.index()
        python_version = the_lock.meta.get("target-python-version")
        python_platform = the_lock.meta.get("target-python-platform")
        backend = asked(None, cfg.torch_backend)
    coll = collect_requirements(ctx, skip, keep_going=True)
    found = read_inputs(
        ws,
        cfg,
        target,
        coll,
        ws.user_policy,
        files,
        default_policy,
        index,
        python_version,
        python_platform,
        TorchAsk(backend, the_lock, offline=True),
    )
    if found.fingerprint == the_lock.meta["fingerprint"]:
        return []
    folders = {i.node: i.path for i in coll.inputs}
    return explain(
        the_lock,
        found,
        request.node_lines(ws, coll),
        folders,
        export.marker_environment(target),
        policy_names(found.policy.entries),
    )
