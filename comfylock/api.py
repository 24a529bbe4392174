"""The Python API: each command of the CLI as a function returning a typed result.

Tools such as ComfyUI-Manager or comfy-cli can call these directly; `cli.py` only parses arguments,
calls them and prints what they return.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, collect, export, history, lock, policy, resolve, sync
from ._exceptions import InputError, ResolutionError, UvError
from ._fingerprint import fingerprint
from ._fs import atomic_write
from ._git import git_commit
from .config import Config, load_config
from .lock import Change, Lock, Pin, Request
from .resolve import IndexOptions
from .workspace import Target, Workspace, open_workspace, probe_target

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
    collection: collect.Collection
    outcome: policy.PolicyOutcome | None
    up_to_date: bool = False  # nothing that decides the result changed: uv was not run
    written: bool = True
    warnings: tuple[str, ...] = ()
    offline_first: bool = False  # resolved from uv's cache without the network


def _target_meta(t: Target) -> dict[str, str]:
    return {"python": f"{t.version} {t.implementation}", "platform": f"{t.sys_platform} {t.machine}"}


def _node_lines(ws: Workspace, coll: collect.Collection) -> list[str]:
    folders = {n.name: n.path for n in ws.nodes}
    out = []
    for inp in coll.inputs:
        if inp.node == collect.USER:
            continue
        sha = git_commit(folders.get(inp.node, ws.root))
        out.append(f"{inp.node} {inp.chosen or '-'}" + (f" git={sha}" if sha else ""))
    return out


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


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
    target = probe_target(ws.python)
    coll = collect.collect(
        ws,
        settings=cfg.nodes,
        skip_nodes=frozenset(skip_nodes) | cfg.skip,
        keep_going=keep_going,
        user_requirements=ws.user_dir / USER_REQUIREMENTS,
    )
    pol = policy.load_policy(ws.user_dir / USER_POLICY, list(policy_files), base=default_policy)
    facts = policy.Facts(
        installed=target.installed,
        os=target.os,
        has_gpu=target.has_gpu,
        comfyui_version=_comfyui_version(ws.root),
    )
    for inp in coll.inputs:
        for opt in inp.index_options:
            index = _add_node_option(index, opt)
    fp = fingerprint(coll, pol, target, index, cfg, python_version, python_platform)
    previous = _read_previous(ctx.lock_path)
    forced = upgrade or bool(upgrade_packages) or refresh
    if previous is not None and previous.intact and previous.meta.get("fingerprint") == fp and not forced:
        return CompileResult(ctx.lock_path, previous, (), coll, None, up_to_date=True, written=False)

    upgrade_set = frozenset({"*"} if upgrade else {resolve_name(p) for p in upgrade_packages})
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
        preferences=_preferences_text(ctx.lock_path, previous),
        upgrade=upgrade,
        upgrade_packages=tuple(upgrade_packages),
        offline=offline,
        refresh=refresh,
        python_version=python_version,
        python_platform=python_platform,
    )
    resolved, outcome, warnings, used_cache = _resolve_with_policy(
        base, pol, coll, facts, outcome, upgrade_set, cfg.torch_index
    )
    new = _build_lock(
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
    return CompileResult(
        ctx.lock_path,
        new,
        changes,
        coll,
        outcome,
        written=not dry_run,
        warnings=tuple(warnings),
        offline_first=used_cache,
    )


def resolve_name(spec: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(spec.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()))


def _comfyui_version(root: Path) -> str | None:
    import re

    for path in (root / "comfyui_version.py", root / "pyproject.toml"):
        try:
            m = re.search(r'^(?:__version__|version)\s*=\s*"([^"]+)"', path.read_text(encoding="utf-8"), re.M)
        except OSError:
            continue
        if m:
            return m.group(1)
    return None


def _add_node_option(index: IndexOptions, opt: collect.IndexOption) -> IndexOptions:
    if opt.option == "--index-url" and opt.value:
        return IndexOptions(opt.value, index.extra_index_urls, index.find_links, index.no_index)
    if opt.option == "--extra-index-url" and opt.value:
        return index.plus([opt.value]) if "://" in opt.value else index
    if opt.option == "--find-links" and opt.value:
        return IndexOptions(
            index.index_url, index.extra_index_urls, (*index.find_links, opt.value), index.no_index
        )
    return index


def _read_previous(path: Path) -> Lock | None:
    return lock.read_lock(path) if path.is_file() else None


def _preferences_text(path: Path, previous: Lock | None) -> str | None:
    return lock.format_body(previous.pins, ()) if previous is not None else None


def _inputs(outcome: policy.PolicyOutcome) -> tuple[dict[str, list[str]], list[str]]:
    groups: dict[str, list[str]] = {}
    constraints: list[str] = []
    for r in outcome.requirements:
        if r.constraint:
            constraints.append(str(r.requirement))
        else:
            groups.setdefault(r.source.node, []).append(str(r.requirement))
    return groups, constraints


def _resolve_with_policy(
    base: resolve.ResolveRequest,
    pol: policy.Policy,
    coll: collect.Collection,
    facts: policy.Facts,
    outcome: policy.PolicyOutcome,
    upgrade_set: frozenset[str],
    torch_index: str,
) -> tuple[list[resolve.Resolved], policy.PolicyOutcome, list[str], bool]:
    """Resolve; then, when a policy names a package that only arrived as a dependency, apply it and
    resolve once more (a policy can only see direct requests before the first resolution)."""
    warnings = list(outcome.warnings)
    resolved, used_cache = _resolve_pins(base, coll, outcome, warnings)
    present = frozenset(r.name for r in resolved)
    triggered = {a.package for a in outcome.actions}
    if any(name in pol.entries and name not in triggered for name in present):
        again = policy.apply(
            pol, coll.requirements(), facts, present=present, upgrade=upgrade_set, torch_index=torch_index
        )
        if again.actions != outcome.actions:
            outcome = again
            warnings = list(again.warnings)
            resolved, used_cache = _resolve_pins(base, coll, outcome, warnings)
    return resolved, outcome, warnings, used_cache


def _resolve_pins(
    base: resolve.ResolveRequest, coll: collect.Collection, outcome: policy.PolicyOutcome, warnings: list[str]
) -> tuple[list[resolve.Resolved], bool]:
    """Resolve with the policy's soft pins, dropping them as their on_failure says."""
    groups, constraints = _inputs(outcome)
    pins = list(outcome.pins)
    while True:
        request = _request(
            base, groups, [*constraints, *outcome.constraints, *(p.requirement for p in pins)], outcome
        )
        try:
            return _resolve_cache_first(request)
        except ResolutionError as e:
            blamed = [p for p in pins if resolve_name(p.requirement) in e.packages] or pins
            droppable = [p for p in blamed if p.on_failure != "fail"]
            if not droppable:
                raise _explain(e, coll, outcome) from None
            for p in droppable:
                pins.remove(p)
                if p.on_failure != "retry_without_pin":
                    warnings.append(
                        f"pin {p.requirement} (asked by {p.package}'s policy) could not hold; "
                        "resolved without it"
                    )


def _request(
    base: resolve.ResolveRequest,
    groups: dict[str, list[str]],
    constraints: list[str],
    outcome: policy.PolicyOutcome,
) -> resolve.ResolveRequest:
    from dataclasses import replace

    return replace(
        base,
        inputs=groups,
        constraints=tuple(constraints),
        overrides=tuple(outcome.overrides),
        excludes=tuple(outcome.excludes),
        index=base.index.plus(outcome.extra_index_urls),
    )


def _resolve_cache_first(request: resolve.ResolveRequest) -> tuple[list[resolve.Resolved], bool]:
    """With a previous lock, uv's cache usually answers: try it offline, go online only if it cannot."""
    if request.preferences and not (request.offline or request.upgrade or request.refresh):
        from dataclasses import replace

        try:
            return resolve.compile(replace(request, offline=True)), True
        except Exception:  # noqa: BLE001 - any offline failure is retried online, which decides
            pass
    return resolve.compile(request), False


def _explain(e: ResolutionError, coll: collect.Collection, outcome: policy.PolicyOutcome) -> ResolutionError:
    nodes = sorted({r.source.node for r in outcome.requirements if r.name in e.packages})
    lines = [
        f"{r.source.node}: {r.source.path.name}:{r.source.line}: {r.text}"
        for r in outcome.requirements
        if r.name in e.packages
    ]
    hint = ("involved: " + ", ".join(nodes) + "; skip one with --skip-node NAME") if nodes else None
    err = ResolutionError(e.message, explanation=e.explanation, packages=e.packages, hint=hint)
    err.involved = lines  # type: ignore[attr-defined]
    return err


def _build_lock(
    ws: Workspace,
    coll: collect.Collection,
    outcome: policy.PolicyOutcome,
    resolved: list[resolve.Resolved],
    index: IndexOptions,
    target: Target,
    fp: str,
    python_version: str | None,
    python_platform: str | None,
    warnings: list[str],
) -> Lock:
    folders = {inp.node: inp.path for inp in coll.inputs}
    requests: dict[str, list[Request]] = {}
    for r in outcome.requirements:
        if r.constraint:
            continue
        rel = _rel(r.source.path, folders.get(r.source.node, ws.root))
        requests.setdefault(r.name, []).append(Request(r.source.node, rel, r.source.line, r.text))
    pins = tuple(Pin(x.name, x.spec, tuple(requests.get(x.name, ())), x.parents) for x in resolved)
    meta = {"comfylock": __version__, "uv": resolve.uv_version(), "fingerprint": fp, **_target_meta(target)}
    if python_version:
        meta["target-python-version"] = python_version
    if python_platform:
        meta["target-python-platform"] = python_platform
    acts = [f"{a.kind} {a.detail} ({a.origin}: {a.reason})" for a in outcome.actions]
    return Lock(
        pins=pins,
        options=tuple(index.lines()),
        meta=meta,
        lists={"node": tuple(_node_lines(ws, coll)), "policy": tuple(acts), "warning": tuple(warnings)},
    )


# --- sync, rollback, history ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    plan: sync.SyncPlan
    lock_path: Path
    entry: history.Entry | None = None  # the history entry recorded before changing anything
    dry_run: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


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
    target = probe_target(ctx.ws.python)
    the_lock = export.read_any(path, export.marker_environment(target))
    warnings = [] if the_lock.intact else [f"{path.name} was edited since comfylock wrote it"]
    mismatch = export.check_target(the_lock, target)
    if mismatch and not force:
        raise InputError(mismatch, path=path, hint="compile for this machine, or pass --force to sync anyway")
    if mismatch:
        warnings.append(f"{mismatch}; synced anyway (--force)")
    p = sync.plan(the_lock, target.installed)
    if dry_run or p.is_noop:
        return SyncResult(p, path, None, dry_run, tuple(warnings))
    index = IndexOptions.from_lines(the_lock.options) if the_lock.options else ctx.config.index
    entry = history.record(
        ctx.ws.user_dir,
        resolve.freeze(ctx.ws.python),
        index.lines(),
        trigger=trigger or f"sync {path.name}",
        target=_target_meta(target),
    )
    try:
        sync.apply(p, ctx.ws.python, index, offline=offline)
    except UvError as e:
        raise UvError(
            e.message,
            hint=f"the environment before this sync is history entry {entry.id}; "
            f"`comfylock rollback --to {entry.id}` restores it",
        ) from None
    return SyncResult(p, path, entry, False, tuple(warnings))


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
    target = probe_target(ctx.ws.python)
    return sync.plan(export.read_any(ctx.lock_path, export.marker_environment(target)), target.installed)


# --- the user's own requirements -----------------------------------------------------------------


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
