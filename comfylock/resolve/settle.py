"""The lock as a fixed point of its own sync.

Policies read what is installed (pin_dependencies keeps the installed torch, `installed` conditions,
uninstall of what is there). A first compile on a fresh environment sees no torch; its sync installs
the lock's torch; a compile after that would see it, pin it and write a header line the first lock
did not have. So a lock records the policies as they read the environment its own sync leaves: after
resolving, the policy is applied again to that environment. When it asks uv for the same thing (its
soft pins are the lock's own versions, which the resolution already holds) the resolution stands and
only what the header records comes from the second application; otherwise uv resolves again, from
the last result, until the two agree (a few rounds at most).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from comfylock.collect import gather as collect
from comfylock.environment.owndeps import protected
from comfylock.environment.probe import gpu_available
from comfylock.lockfile.lock import Pin
from comfylock.policy import apply as policy
from comfylock.resolve import uv as resolve
from comfylock.resolve.request import resolve_with_policy

MAX_ROUNDS = 2


def after_sync(installed: Mapping[str, str], resolved: Iterable[resolve.Resolved]) -> dict[str, str]:
    """{name: version} of the environment once the lock is synced: the lock's pins, the packages sync
    never removes, and for a URL pin whatever is installed now (its version is not in the lock)."""
    out = {n: v for n, v in installed.items() if n in protected()}
    for r in resolved:
        version = Pin(r.name, r.spec).version
        if version is not None:
            out[r.name] = version
        elif r.name in installed:
            out[r.name] = installed[r.name]
    return out


def facts_after(facts: policy.Facts, resolved: list[resolve.Resolved]) -> policy.Facts:
    installed = after_sync(facts.installed, resolved)
    # has_gpu: an NVIDIA driver, or a CUDA/ROCm torch build; the driver stays, the lock's torch is the
    # one installed after the sync. A lock without torch says nothing about the GPU: the answer stays.
    if not any(r.name == "torch" for r in resolved):
        return replace(facts, installed=installed)
    driver = facts.has_gpu and not gpu_available(facts.installed.get("torch"), False)
    return replace(facts, installed=installed, has_gpu=gpu_available(installed.get("torch"), driver))


def _same_request(a: policy.PolicyOutcome, b: policy.PolicyOutcome, resolved: list[resolve.Resolved]) -> bool:
    """Would uv, given `b`, keep the resolution it made from `a`? Yes when every input is the same and
    each of b's soft pins already holds in it (with the resolution as preferences uv keeps it)."""
    have = {r.spec for r in resolved}
    return (
        a.requirements == b.requirements
        and a.overrides == b.overrides
        and a.constraints == b.constraints
        and a.excludes == b.excludes
        and a.extra_index_urls == b.extra_index_urls
        and all(p.requirement in have for p in b.pins)
    )


@dataclass(frozen=True)
class Settled:
    resolved: list[resolve.Resolved]
    outcome: policy.PolicyOutcome  # the policy as it reads the synced environment: what the lock records
    warnings: tuple[str, ...]  # what the lock records
    shown: tuple[str, ...]  # every warning of every round, for the user now
    facts: policy.Facts | None  # the synced environment as the policies read it; None: no fixed point


def settle(
    base: resolve.ResolveRequest,
    pol: policy.Policy,
    coll: collect.Collection,
    facts: policy.Facts,
    outcome: policy.PolicyOutcome,
    resolved: list[resolve.Resolved],
    warnings: list[str],
    upgrade: frozenset[str],
    torch_index: str,
) -> Settled:
    shown = list(warnings)
    reqs = coll.requirements()
    first = (resolved, outcome, tuple(warnings))
    for _ in range(MAX_ROUNDS):
        after = facts_after(facts, resolved)
        # What the policy already saw arrive as a dependency (a replaced opencv-contrib-python under
        # some package) is still asked for by the lock's packages, though the lock no longer holds it.
        present = frozenset(r.name for r in resolved) | frozenset(outcome.considered)
        # --upgrade asked for new versions once; the synced environment holds them, pins keep them.
        again = policy.apply(pol, reqs, after, present=present, torch_index=torch_index)
        if _same_request(outcome, again, resolved):
            shown += again.warnings
            return Settled(resolved, again, again.warnings, tuple(dict.fromkeys(shown)), after)
        preferences = "".join(f"{r.spec}\n" for r in resolved)
        request = replace(base, preferences=preferences, upgrade=False, upgrade_packages=())
        resolved, outcome, more, _ = resolve_with_policy(
            request, pol, coll, after, again, frozenset(), torch_index
        )
        shown += more
    # A policy that undoes itself once synced (restore "if installed != X" of X): the lock is what
    # the policies make of the environment as it is now, and says that it will not stay.
    resolved, outcome, said = first
    note = (
        "a policy reads installed versions that this lock changes (it does not give the same lock once "
        "synced): the next compile after `comfylock sync` will change the lock"
    )
    return Settled(resolved, outcome, (*said, note), tuple(dict.fromkeys([*shown, note])), None)
