"""How `compile` turns collected requirements and a policy outcome into a lock: the uv requests it
builds (cache first, soft pins dropped as their policy says, a second pass when a policy package only
arrives as a dependency), and the lock it writes with every pin's provenance."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from packaging.utils import canonicalize_name

from comfylock import __version__
from comfylock._exceptions import InputError, ResolutionError, UvError
from comfylock._fs import read_bytes
from comfylock._paths import portable
from comfylock.collect import gather as collect
from comfylock.environment.target import Target
from comfylock.explain import failures
from comfylock.lockfile import lock
from comfylock.lockfile.lock import Lock, Pin, Request
from comfylock.policy import apply as policy
from comfylock.policy.merge import BASE_SOURCE, POLICY_NODE
from comfylock.resolve import uv as resolve
from comfylock.resolve import uvtext
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.git import git_commit
from comfylock.workspace.layout import Workspace


def node_lines(ws: Workspace, coll: collect.Collection) -> list[str]:
    folders = {n.name: n.path for n in ws.nodes}
    out = []
    for inp in coll.inputs:
        if inp.node == collect.USER:
            continue
        sha = git_commit(folders.get(inp.node, ws.root))
        out.append(f"{inp.node} {inp.chosen or '-'}" + (f" git={sha}" if sha else ""))
    return out


def refreshed_commits(ws: Workspace, coll: collect.Collection, previous: Lock) -> Lock | None:
    """`previous` with its node lines as they are now (a node's commit moved), or None if unchanged."""
    lines = tuple(lock.clean(line) for line in node_lines(ws, coll))
    if lines == tuple(previous.lists.get("node", ())):
        return None
    return replace(previous, lists={**previous.lists, "node": lines})


def relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def origin(name: str, root: Path) -> str:
    """A policy's origin as a lock records it: `default`, or its file relative to ComfyUI's folder."""
    if name == policy.BASE_ORIGIN:
        return name
    return portable(Path(name).absolute(), root)


def resolve_name(spec: str) -> str:
    return str(canonicalize_name(spec.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()))


def comfyui_version(files: Iterable[Path]) -> str | None:
    """ComfyUI's version from the first of `files` (Workspace.version_files) that states one."""
    for path in files:
        try:
            text = read_bytes(path).decode("utf-8", errors="replace")
        except (OSError, InputError):
            continue
        m = re.search(r'^(?:__version__|version)\s*=\s*"([^"]+)"', text, re.M)
        if m:
            return m.group(1)
    return None


def add_node_option(index: IndexOptions, opt: collect.IndexOption) -> IndexOptions:
    if opt.option == "--index-url" and opt.value:
        return IndexOptions(opt.value, index.extra_index_urls, index.find_links, index.no_index)
    if opt.option == "--extra-index-url" and opt.value:
        return index.plus([opt.value]) if "://" in opt.value else index
    if opt.option == "--find-links" and opt.value:
        return IndexOptions(
            index.index_url, index.extra_index_urls, (*index.find_links, opt.value), index.no_index
        )
    return index


def preferences_text(path: Path, previous: Lock | None) -> str | None:
    return lock.format_body(previous.pins, ()) if previous is not None else None


def inputs(outcome: policy.PolicyOutcome) -> tuple[dict[str, list[str]], list[str]]:
    groups: dict[str, list[str]] = {}
    constraints: list[str] = []
    for r in outcome.requirements:
        if r.constraint:
            constraints.append(str(r.requirement))
        else:
            groups.setdefault(r.source.node, []).append(str(r.requirement))
    return groups, constraints


def resolve_with_policy(
    base: resolve.ResolveRequest,
    pol: policy.Policy,
    coll: collect.Collection,
    facts: policy.Facts,
    outcome: policy.PolicyOutcome,
    upgrade_set: frozenset[str],
    torch_index: str,
    notes: list[str] | None = None,
) -> tuple[list[resolve.Resolved], policy.PolicyOutcome, list[str], bool]:
    """Resolve; then, when a policy names a package that only arrived as a dependency, apply it and
    resolve once more (a policy can only see direct requests before the first resolution).

    The warnings returned belong in the lock; uv's warnings about this machine rather than the
    inputs ("Python 3.12 is not available; 3.11 will build") go to `notes`, shown but not written."""
    warnings = list(outcome.warnings)
    resolved, used_cache = resolve_pins(base, coll, outcome, warnings, notes)
    present = frozenset(r.name for r in resolved)
    if any(name in pol.entries and name not in outcome.considered for name in present):
        again = policy.apply(
            pol, coll.requirements(), facts, present=present, upgrade=upgrade_set, torch_index=torch_index
        )
        if again.actions != outcome.actions:
            outcome = again
            warnings = list(again.warnings)
            # The first pass just filled uv's cache: let it answer the second one, keeping the
            # first pass's versions wherever the policy's change allows (minimal churn, no network).
            first = "".join(f"{r.spec}\n" for r in resolved)
            resolved, _ = resolve_pins(replace(base, preferences=first), coll, outcome, warnings, notes)
    return resolved, outcome, warnings, used_cache


def resolve_pins(
    base: resolve.ResolveRequest,
    coll: collect.Collection,
    outcome: policy.PolicyOutcome,
    warnings: list[str],
    notes: list[str] | None = None,
) -> tuple[list[resolve.Resolved], bool]:
    """Resolve with the policy's soft pins, dropping them as their on_failure says."""
    groups, constraints = inputs(outcome)
    pins = list(outcome.pins)
    root = next((i.path for i in coll.inputs if i.node == collect.CORE), None)
    while True:
        request = make_request(
            base, groups, [*constraints, *outcome.constraints, *(p.requirement for p in pins)], outcome
        )
        try:
            resolved, said, used_cache = resolve_cache_first(request)
        except UvError as e:
            raise failures.compile_failure(e, outcome.requirements, root) from None
        except ResolutionError as e:
            blamed = [p for p in pins if resolve_name(p.requirement) in e.packages] or pins
            droppable = [p for p in blamed if p.on_failure != "fail"]
            if not droppable:
                from comfylock.explain.conflicts import explain_failure, with_attribution

                folders = {i.node: i.path for i in coll.inputs}
                found = explain_failure(e, outcome.requirements, request, folders=folders)
                raise with_attribution(e, found) from None
            # One warning per pin, naming every package whose policy asked for it (sorted: the same
            # words whichever of the torch stack's entries fired).
            asked: dict[str, set[str]] = {}
            for p in droppable:
                pins.remove(p)
                if p.on_failure != "retry_without_pin":
                    asked.setdefault(p.requirement, set()).add(p.package)
            for requirement, who in asked.items():
                names = ", ".join(sorted(who))
                warnings.append(
                    f"pin {requirement} (asked by {names}'s policy) could not hold; resolved without it"
                )
            continue
        direct = {r.name: r.groups for r in resolved}
        parents = {r.name: r.parents for r in resolved}
        about_inputs = [w for w in said if uvtext.subject_names(w)]
        for w in failures.attributed_warnings(about_inputs, outcome.requirements, direct, parents, root):
            if w not in warnings:
                warnings.append(w)
        for w in said:
            if w not in about_inputs and notes is not None and f"uv: {w}" not in notes:
                notes.append(f"uv: {w}")
        return resolved, used_cache


def make_request(
    base: resolve.ResolveRequest,
    groups: dict[str, list[str]],
    constraints: list[str],
    outcome: policy.PolicyOutcome,
) -> resolve.ResolveRequest:
    return replace(
        base,
        inputs=groups,
        constraints=tuple(constraints),
        overrides=tuple(outcome.overrides),
        excludes=tuple(outcome.excludes),
        index=base.index.plus(outcome.extra_index_urls),
    )


def resolve_cache_first(
    request: resolve.ResolveRequest,
) -> tuple[list[resolve.Resolved], tuple[str, ...], bool]:
    """With a previous lock, uv's cache usually answers: try it offline, go online only if it cannot.
    Returns the pins, uv's warnings and whether the cache answered."""
    if request.preferences and not (request.offline or request.upgrade or request.refresh):
        try:
            return (*resolve.compile_warned(replace(request, offline=True)), True)
        except Exception:  # noqa: BLE001 - any offline failure is retried online, which decides
            pass
    return (*resolve.compile_warned(request), False)


def build_lock(
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
        rel = relative(r.source.path, folders.get(r.source.node, ws.root))
        if r.source.node == POLICY_NODE:  # a policy file's own line: where that file is, portably
            path = Path(r.source.path)
            rel = portable(path if path == BASE_SOURCE else path.absolute(), ws.root)
        rewritten = str(r.requirement) if r.policy is not None else None
        request = Request(r.source.node, rel, r.source.line, r.text, rewritten, r.policy)
        requests.setdefault(r.name, []).append(request)
    pins = tuple(Pin(x.name, x.spec, tuple(requests.get(x.name, ())), x.parents) for x in resolved)
    meta = {"comfylock": __version__, "uv": resolve.uv_version(), "fingerprint": fp, **target.meta()}
    if python_version:
        meta["target-python-version"] = python_version
    if python_platform:
        meta["target-python-platform"] = python_platform
    # One line per action: the torch stack's packages each carry the same pin_dependencies entry.
    acts = dict.fromkeys(
        f"{a.kind} {a.detail}{f' [{a.label}]' if a.label else ''} ({origin(a.origin, ws.root)}: {a.reason})"
        for a in outcome.actions
    )
    return Lock(
        pins=pins,
        options=tuple(index.lines()),
        meta=meta,
        lists={
            "node": tuple(node_lines(ws, coll)),
            "policy": tuple(acts),
            "warning": tuple(dict.fromkeys(warnings)),
        },
    )
