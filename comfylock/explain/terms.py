"""What a conflict report is made of (explain's types), and what uv's message says: the requirements it
quotes ("you require numpy<2 and numpy>=2") and the cause it gives."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement

from comfylock._exceptions import ResolutionError
from comfylock._names import canon
from comfylock.lockfile.lock import Request
from comfylock.workspace.layout import USER_POLICY_FILE

DEFAULT_BUDGET = 12
POLICY = "<policy>"  # constraints made by policies: in every trial, never a group to leave out
POLICY_FILE = USER_POLICY_FILE

# One requirement line that takes part: the record the lock keeps under a pin (node, file relative to
# the node folder, line, text); policy-made constraints read ("policy", "pip-policy", 0, text).
Line = Request


@dataclass(frozen=True)
class WayOut:
    kind: str  # "skip-node", "remove", "force-version", "upgrade-package"
    text: str  # a command to run, or a JSON snippet for POLICY_FILE
    verified: bool  # resolving everything with this applied succeeded
    note: str = ""


@dataclass(frozen=True)
class Attribution:
    groups: tuple[str, ...]  # the smallest set of nodes (core, user) whose requirements conflict
    lines: tuple[Line, ...]
    resolutions_used: int
    explanation: str  # uv's own words
    ways_out: tuple[WayOut, ...] = ()
    packages: tuple[str, ...] = ()  # the packages at the heart of it, most central first
    also: Mapping[str, tuple[Line, ...]] = field(default_factory=dict)  # culprit -> others on its side
    complete: bool = True  # False: budget or a uv failure stopped the search before the set was minimal
    note: str = ""


Groups = Mapping[str, Sequence[str]]  # group (node, core, user) -> requirement lines
Drop = frozenset[tuple[str, str]]  # (group, line) pairs left out of a trial


class ResolveFn(Protocol):
    """Resolve these groups plus constraints/overrides; raise ResolutionError when they conflict.
    Returns {name: version} of the result (empty when the caller does not know it)."""

    def __call__(
        self, inputs: Groups, *, constraints: Sequence[str] = (), overrides: Sequence[str] = ()
    ) -> Mapping[str, str] | None: ...


# --- reading uv's message ------------------------------------------------------------------------

_REQUIRE = re.compile(r"you require (.+?)(?=, we can conclude|\.\s|\.$|$)")
DEPENDS = re.compile(r"depends? on (.+?)(?=, we can conclude| and |\.\s|\.$|$)")
_TERM = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?(?:\{([^}]*)\})?\s*(.*)$")


def required_terms(explanation: str, pattern: re.Pattern[str] = _REQUIRE) -> list[Requirement]:
    """What uv says "you require" (direct and derived requirements), in message order."""
    out: list[Requirement] = []
    for m in pattern.finditer(" ".join(explanation.split())):
        for piece in re.split(r",? and |, ", m.group(1)):
            t = _TERM.match(piece.strip())
            if not t:
                continue
            name, extras, marker, spec = t.groups()
            try:
                req = Requirement(f"{name}{extras or ''}{spec.replace(' ', '')}")
                out.append(Requirement(f"{req}; {marker}") if marker else req)
            except InvalidRequirement:
                continue  # "foo==1.0 depends on ..." after an "and": not a requirement of ours
    return out


def term_names(terms: Iterable[Requirement]) -> set[str]:
    return {canon(t.name) for t in terms}


def same(line: str, term: Requirement) -> bool:
    """`line` asks for what uv quotes: the same name and the same versions."""
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return False
    return canon(req.name) == canon(term.name) and req.specifier == term.specifier


def allows(text: str, version: str) -> bool:
    try:
        return Requirement(text).specifier.contains(version, prereleases=True)
    except (InvalidRequirement, ValueError):
        return True


def cause(error: ResolutionError | None) -> str:
    """uv's `cause:` line (its first line when there is none)."""
    lines = [ln.strip() for ln in (error.explanation if error else "").splitlines() if ln.strip()]
    return next((ln for ln in lines if ln.startswith("cause:")), lines[0] if lines else "?").removeprefix(
        "cause: "
    )
