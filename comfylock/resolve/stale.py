"""One notion of a stale lock, shared by `compile` and `check`, and what `check` makes of `uv pip check`.

A lock is up to date when the fingerprint of today's inputs equals the one in its header: that is how
`compile` decides to skip uv, and `check` asks the very same question (with the arguments the last
compile of that lock was run with, which the compile record keeps). Only when the answer is "stale"
does `check` look for what changed, to say it in words.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfylock._names import canon
from comfylock.collect import gather as collect
from comfylock.environment.target import Target
from comfylock.explain.imports import FAMILIES
from comfylock.explain.inspect import Broken, Stale
from comfylock.lockfile.lock import Lock
from comfylock.policy import apply as policy
from comfylock.policy.merge import always
from comfylock.resolve import request
from comfylock.resolve.fingerprint import fingerprint
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.config import Config
from comfylock.workspace.layout import Workspace

if TYPE_CHECKING:
    from comfylock.resolve import torch_backend


@dataclass(frozen=True)
class Inputs:
    """What a compile reads besides the lock: collected requirements, the merged policy, the facts it
    reads about the target, the index options (nodes' allowed ones included) and their fingerprint."""

    collection: collect.Collection
    policy: policy.Policy
    facts: policy.Facts
    index: IndexOptions
    fingerprint: str
    torch: torch_backend.Choice | None = None  # the torch build chosen (see TorchAsk)


@dataclass(frozen=True)
class TorchAsk:
    """What the torch build is chosen from: the backend asked, the previous lock (its choice is kept
    once installed, and offline), and whether the index may be asked if it answers."""

    requested: str
    previous: Lock | None
    offline: bool


def read_inputs(
    ws: Workspace,
    cfg: Config,
    target: Target,
    coll: collect.Collection,
    user_policy: Path,
    policy_files: Sequence[Path],
    default_policy: bool,
    index: IndexOptions,
    python_version: str | None,
    python_platform: str | None,
    torch: TorchAsk | None = None,
) -> Inputs:
    pol = policy.load_policy(user_policy, list(policy_files), base=default_policy)
    choice = None
    if torch is not None:
        choice = torch_choice_for(torch, cfg, coll, target, python_platform, skipped=skipped_by(pol))
        if choice is not None and choice.url:
            index = index.plus([choice.url])
    facts = policy.Facts(
        installed=target.visible,
        os=target.os,
        has_gpu=target.has_gpu,
        comfyui_version=request.comfyui_version(ws.version_files),
    )
    for inp in coll.inputs:
        for opt in inp.index_options:
            index = request.add_node_option(index, opt)
    fp = fingerprint(
        coll, pol, target, index, cfg, python_version, python_platform, facts.comfyui_version, root=ws.root
    )
    return Inputs(coll, pol, facts, index, fp, choice)


def skipped_by(pol: policy.Policy) -> frozenset[str]:
    """Packages the policy always leaves out (a first-match `skip` with no condition)."""
    return frozenset(
        n for n, s in pol.entries.items() if (e := always(s, "apply_first_match")) and e["type"] == "skip"
    )


def torch_choice_for(
    ask: TorchAsk,
    cfg: Config,
    coll: collect.Collection,
    target: Target,
    python_platform: str | None,
    skipped: frozenset[str] = frozenset(),
) -> torch_backend.Choice | None:
    """The torch build this compile adds an index for (see torch_backend.for_compile); `check` asks
    the same with the lock it checks as `previous`, so both see the same inputs. A torch the policy
    leaves out is asked for by nobody: nothing is chosen, no index is asked whether it answers."""
    from comfylock.lockfile.lock import pin_versions
    from comfylock.resolve import torch_backend

    previous = ask.previous
    return torch_backend.for_compile(
        ask.requested,
        cfg.torch_index,
        {r.name for r in coll.requirements()} - skipped,
        target.installed,
        previous.meta if previous is not None else None,
        pin_versions(previous).get("torch") if previous is not None else None,
        other_platform=python_platform is not None,
        offline=ask.offline,
    )


def index_from_args(args: Sequence[str]) -> IndexOptions:
    """IndexOptions back from IndexOptions.args() (what the compile record keeps)."""
    lines, i = [], 0
    while i < len(args):
        if args[i] == "--no-index":
            lines.append("--no-index")
            i += 1
        else:
            lines.append(f"{args[i]} {args[i + 1] if i + 1 < len(args) else ''}")
            i += 2
    return IndexOptions.from_lines(lines)


def explain(
    lock: Lock,
    inputs: Inputs,
    node_lines: Sequence[str],
    folders: Mapping[str, Path],
    environment: Mapping[str, str],
    names: Iterable[str],
) -> list[Stale]:
    """Why the fingerprints differ, in words: nodes, their lines, the installed versions policies read."""
    from comfylock.explain import inspect

    out = inspect.stale(lock, node_lines, _would_record(inputs, lock, environment), folders)
    out = [s for s in out if s.what != "commit"]  # a commit decides nothing; only its files do
    pins = {p.name: p.version for p in lock.pins}
    for name in sorted(names):
        have, locked = inputs.facts.installed.get(name), pins.get(name)
        if have != locked and (have is not None or locked is not None):
            out.append(
                Stale(
                    name,
                    "installed",
                    f"a policy reads {name}: {have or 'not installed'} here, "
                    f"{locked or 'not in the lock'} in the lock",
                )
            )
    if not out:
        out.append(Stale("-", "inputs", "the policy, index options or target changed since it was compiled"))
    return out


def _would_record(inputs: Inputs, lock: Lock, environment: Mapping[str, str]) -> list[collect.Req]:
    """Today's lines as a lock records them: not those whose marker is false on the target, nor those
    of packages a policy keeps out (skip, uninstall): uv never pins them, so no lock lists them."""
    kept_out = {
        canon(m[2])
        for line in lock.lists.get("policy", ())
        if (m := re.match(r"^(skip|uninstall) (\S+)", line))
    }
    env = {**environment, "extra": ""}
    out = []
    for r in inputs.collection.requirements():
        marker = r.requirement.marker
        if marker is not None and not marker.evaluate(env):
            continue
        if r.name in kept_out:
            continue
        out.append(r)
    return out


# --- uv pip check against the policies ------------------------------------------------------------

_ACTION = re.compile(
    r"^(?P<kind>replace|skip|uninstall) (?P<name>[A-Za-z0-9._-]+)"
    r"(?: -> (?P<target>[A-Za-z0-9._-]+)\S*)?(?: \[(?P<label>[^\]]*)\])? \("
)


@dataclass(frozen=True)
class Intended:
    """What `uv pip check` calls broken because a policy chose so: one per policy decision."""

    asked: str  # the package the dependents ask for
    given: str | None  # what the policy gives instead; None: kept out
    label: str
    dependents: tuple[str, ...]
    message: str


def split_broken(
    broken: Sequence[Broken], lock: Lock, installed: Mapping[str, str]
) -> tuple[list[Broken], list[Intended]]:
    """Real breakage, and what a policy of the lock does on purpose (a replace whose replacement is
    installed at a version the requirement accepts, or a package kept out and not installed)."""
    from packaging.requirements import InvalidRequirement, Requirement

    actions: dict[str, tuple[str | None, str]] = {}
    for line in lock.lists.get("policy", ()):
        m = _ACTION.match(line)
        if m:
            given = canon(m["target"]) if m["kind"] == "replace" and m["target"] else None
            actions.setdefault(canon(m["name"]), (given, m["label"] or f"{m['kind']} {m['name']}"))
    real: list[Broken] = []
    groups: dict[tuple[str, str | None, str], list[str]] = {}
    for b in broken:
        try:
            req = Requirement(b.requirement)
        except InvalidRequirement:
            real.append(b)
            continue
        asked = canon(req.name)
        given, label = actions.get(asked, (None, ""))
        if asked not in actions or asked in installed:
            real.append(b)
            continue
        version = installed.get(given) if given else None
        if given is not None and (version is None or not req.specifier.contains(version, prereleases=True)):
            real.append(b)
            continue
        groups.setdefault((asked, given, label), []).append(b.package)
    intended = []
    for (asked, given, label), who in sorted(groups.items()):
        dependents = tuple(sorted(set(who)))
        if given is None:
            said = f"policy '{label}' keeps it out"
        else:
            module = next(
                (f.module for f in FAMILIES if f.members.fullmatch(asked) and f.members.fullmatch(given)),
                None,
            )
            said = f"policy '{label}' gives {given}" + (f", which provides {module}" if module else "")
        intended.append(
            Intended(
                asked,
                given,
                label,
                dependents,
                f"{', '.join(dependents)} ask{'s' if len(dependents) == 1 else ''} for {asked}; {said}",
            )
        )
    return real, intended


def report(intended: Sequence[Intended]) -> list[dict[str, Any]]:
    return [
        {"asked": i.asked, "given": i.given, "policy": i.label, "dependents": list(i.dependents)}
        for i in intended
    ]
