"""The api's policy commands: the merged policy compile applies (`policy_show`) and every problem of
policy files (`policy_check`). `comfylock.api` exports them; the policy modules are imported inside the
functions (a no-op sync imports comfylock.api and needs none of them)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfylock.commands.context import Context

if TYPE_CHECKING:
    from comfylock.policy.apply import Problem


@dataclass(frozen=True)
class PolicyFile:
    origin: str  # as the merged policy names it ("default" for the shipped file)
    path: str
    role: str  # "default", "user" or "--policy"


@dataclass(frozen=True)
class PolicyPackage:
    name: str
    file: PolicyFile  # the file its entry comes from
    line: int | None
    shadows: tuple[PolicyFile, ...]  # lower files whose entry for it this one replaces
    sections: Mapping[str, tuple[Mapping[str, Any], ...]]  # pip-policy.json sections, entries as written


@dataclass(frozen=True)
class PolicyShow:
    files: tuple[PolicyFile, ...]  # lowest priority first
    user_file: Path
    packages: tuple[PolicyPackage, ...]


def policy_show(
    ctx: Context, policy_files: Sequence[Path] = (), *, default_policy: bool = True
) -> PolicyShow:
    """The merged policy compile would apply: each package, its entries and the file they came from."""
    from comfylock.policy import apply as policy

    user = ctx.ws.user_policy
    pol = policy.load_policy(user, list(policy_files), base=default_policy)
    packages = tuple(
        PolicyPackage(
            name,
            _file(pol.origins[name], user),
            pol.sources[name].line if name in pol.sources else None,
            tuple(_file(o, user) for o in pol.shadowed.get(name, ())),
            {k: tuple(dict(e) for e in v) for k, v in sections.items()},
        )
        for name, sections in pol.entries.items()
    )
    return PolicyShow(tuple(_file(o, user) for o in pol.files), user, packages)


def _file(origin: str, user: Path) -> PolicyFile:
    from comfylock.policy.apply import BASE_ORIGIN, BASE_POLICY

    if origin == BASE_ORIGIN:
        return PolicyFile(origin, str(BASE_POLICY), "default")
    return PolicyFile(origin, origin, "user" if origin == str(user) else "--policy")


@dataclass(frozen=True)
class PolicyCheck:
    files: tuple[str, ...]  # every file checked, the shipped one first when it was merged in
    default_policy: bool
    problems: tuple[Problem, ...]
    missing_user_file: Path | None = None  # the user's policy file, checked by default, is absent


def policy_check(
    file: Path | None = None,
    policy_files: Sequence[Path] = (),
    *,
    default_policy: bool = True,
    comfyui: str | os.PathLike[str] | None = None,
    python: str | os.PathLike[str] | None = None,
) -> PolicyCheck:
    """Every problem of `file` (default: the user's policy file, which needs the ComfyUI folder) and
    `policy_files`, each alone and merged above the shipped policy as compile merges them."""
    from comfylock.policy import apply as policy

    missing = None
    if file is not None:
        targets = [file, *policy_files]
    else:
        user = Context.open(comfyui, python=python).ws.user_policy
        missing = None if user.is_file() else user
        targets = ([user] if missing is None else []) + list(policy_files)
    problems = policy.check_policy_files(targets, base=default_policy)
    shown = ([str(policy.BASE_POLICY)] if default_policy else []) + [str(t) for t in targets]
    return PolicyCheck(tuple(shown), default_policy, tuple(problems), missing)
