"""Stage 3: apply pip-policy.json policies (ComfyUI-Manager's schema) to the collected requirements.

ComfyUI-Manager applies a policy install by install; comfylock applies the merged policy once, to the
whole resolution, and maps each action onto a uv mechanism so its effect lands in the lock:

  skip, uninstall   -> uv --excludes: drops the package even where it is a transitive dependency
  force_version     -> uv --overrides "name==version"
  replace           -> --excludes old, plus the replacement as an input requirement carrying the
                       requester's Source, extras and marker
  restore           -> --overrides "target==version", plus an input requirement
  pin_dependencies  -> soft --constraints "name==installed version" (SoftPin; the caller retries
                       without them per on_failure)
  install_with      -> input requirements with the requester's Source
  extra_index_url   -> extra index URLs

Priority: base file < user file < each --policy file. A package's entry in a higher file replaces the
lower one whole. When two replace entries meet, the higher-priority choice wins: a package that a file
chose as a replacement is not replaced (or skipped) by an entry of the same or a lower priority, while
a strictly higher-priority file may still replace the replacement (so a one-line user override of the
OpenCV choice reaches every OpenCV name of the default policy). This module only computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from packaging.utils import canonicalize_name

from comfylock.collect.gather import Req
from comfylock.policy.engine import KINDS, Action, PolicyOutcome, Run, SoftPin
from comfylock.policy.facts import Facts
from comfylock.policy.jsontext import ParsedFile, Problem
from comfylock.policy.merge import BASE_ORIGIN, BASE_POLICY, POLICY_NODE, Policy, conflicts, merge
from comfylock.policy.schema import check_file, check_path, read_file
from comfylock.workspace.config import DEFAULT_TORCH_INDEX  # noqa: F401 - part of this module's API

__all__ = [
    "BASE_ORIGIN",
    "BASE_POLICY",
    "DEFAULT_TORCH_INDEX",
    "KINDS",
    "POLICY_NODE",
    "Action",
    "Facts",
    "Policy",
    "PolicyOutcome",
    "Problem",
    "SoftPin",
    "apply",
    "check_policy_files",
    "check_policy_text",
    "load_policy",
]


def check_policy_text(text: str, path: str) -> list[Problem]:
    """Every problem of one policy file on its own, in file order (empty when it is valid)."""
    return check_file(text, path)[0]


def check_policy_files(files: Sequence[Path], *, base: bool = True) -> list[Problem]:
    """Every problem of `files`: each file on its own, then what cannot hold once they are merged above
    the shipped policy (in the order given, as compile merges them). Empty when compile accepts them."""
    parsed = _base(base)
    problems: list[Problem] = []
    for path in files:
        found, pf = check_path(path)
        problems += found
        parsed.append(pf)
    problems += conflicts(parsed)  # repeats the same-file ones check_path found: dict.fromkeys drops them
    order = {str(f): i for i, f in enumerate(files)}
    return sorted(dict.fromkeys(problems), key=lambda p: (order.get(p.file, -1), p.line or 0))


def load_policy(
    user_file: Path | None = None, extra_files: Sequence[Path] = (), *, base: bool = True
) -> Policy:
    """Merge the shipped policy, the user's (skipped when missing) and --policy files (must exist).

    PolicyError on the first problem; `check_policy_files` lists them all.
    """
    parsed = _base(base)
    if user_file is not None and user_file.exists():
        parsed.append(read_file(user_file, str(user_file)))
    parsed += [read_file(extra, str(extra)) for extra in extra_files]
    problems = conflicts(parsed)
    if problems:
        raise problems[0].error()
    return merge(parsed)


def _base(wanted: bool) -> list[ParsedFile]:
    return [read_file(BASE_POLICY, BASE_ORIGIN)] if wanted else []


def apply(
    policy: Policy,
    reqs: Sequence[Req],
    facts: Facts,
    *,
    present: AbstractSet[str] = frozenset(),
    upgrade: AbstractSet[str] = frozenset(),
    torch_index: str = DEFAULT_TORCH_INDEX,
) -> PolicyOutcome:
    """What the policy does to these requirements on this target, as uv inputs. Pure and deterministic.

    A package's apply_first_match/apply_all_matches entries apply when a collected non-constraint Req asks
    for it, when it is in `present` (found by an earlier resolution), or when it is a replacement's target
    (apply_all_matches only, unless a strictly higher-priority file replaces it again). uninstall and
    restore apply whenever their condition holds, as Manager's batch steps do. The entries of a package that
    ends out of the lock (skipped, replaced, uninstalled) stop there: its pins, additions and warnings
    belonged to it being installed.
    """
    run = Run(policy, facts, torch_index)
    by_name: dict[str, list[Req]] = {}
    for req in reqs:
        if not req.constraint:
            by_name.setdefault(req.name, []).append(req)
    present = {canonicalize_name(p) for p in present}
    run.uninstall(by_name.keys() | present)
    for name in sorted(n for n in by_name if n in policy.entries):
        run.route(name, by_name[name])
    for name in sorted(n for n in present if n in policy.entries and n not in by_name):
        if name not in run.demand:  # a transitive package no replacement already reached
            run.route(name, [])
    run.first_match_actions()
    for name in sorted(run.demand):
        if name in policy.entries and name not in run.excludes:
            run.all_matches(name, run.demand[name])
    run.restore()
    pins = run.pins(upgrade)
    requirements = [r for r in reqs if r.constraint or r.name not in run.replaced]
    return PolicyOutcome(
        requirements=tuple(requirements + run.additions),
        overrides=tuple(sorted(line for line, _ in run.overrides.values())),
        constraints=(),
        pins=tuple(pins),
        excludes=tuple(sorted(run.excludes)),
        extra_index_urls=tuple(dict.fromkeys(run.indexes)),
        actions=tuple(a for _, a in sorted(run.actions, key=lambda item: item[0])),
        warnings=tuple(run.warnings),
        blocking=tuple(run.blocking),
        considered=tuple(sorted(n for n in run.demand if n in policy.entries)),
    )
