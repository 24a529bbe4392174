"""One application of a merged policy to the collected requirements: the engine behind policy.apply."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from comfylock.collect.gather import Req, Source
from comfylock.policy.facts import Facts, exact_pin, holds, local_tag
from comfylock.policy.merge import BASE_ORIGIN, POLICY_NODE, Policy
from comfylock.policy.schema import ON_FAILURE

KINDS = (
    "uninstall",
    "skip",
    "force_version",
    "replace",
    "pin_dependencies",
    "install_with",
    "warn",
    "restore",
)
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}
# Local version tags of PyTorch's own indexes (download.pytorch.org/whl/<tag>).
_TORCH_LOCAL = re.compile(r"cu\d+|rocm\d+(?:\.\d+)*|cpu|xpu")


@dataclass(frozen=True)
class SoftPin:
    requirement: str  # "numpy==1.26.4"
    on_failure: str  # "fail" | "retry_without_pin" | "warn"
    package: str  # whose pin_dependencies asked for it


@dataclass(frozen=True)
class Action:
    package: str  # canonical name the entry is for
    kind: str  # one of KINDS
    detail: str  # one line a user reads
    reason: str
    origin: str  # which policy file
    requested_by: tuple[Source, ...]  # the Reqs that triggered it (empty for uninstall/restore or transitive)
    label: str | None = None  # the entry's short name ("one OpenCV"), when it gives one


@dataclass(frozen=True)
class PolicyOutcome:
    requirements: tuple[Req, ...]  # collected minus replaced, plus replacements/install_with/restore
    overrides: tuple[str, ...]  # lines for uv --overrides
    constraints: tuple[str, ...]  # hard constraint lines: no action makes one today
    pins: tuple[SoftPin, ...]
    excludes: tuple[str, ...]  # canonical names for uv --excludes (sorted)
    extra_index_urls: tuple[str, ...]
    actions: tuple[Action, ...]  # ordered by package, then KINDS order
    warnings: tuple[str, ...]  # every warning, blocking ones included
    blocking: tuple[str, ...]  # warn messages with allow_continue false: compile stops unless --yes
    # Policy packages that were evaluated (asked for, present or replacements). After a resolution, a
    # locked name with a policy entry that is not in here means the caller must re-resolve with `present`.
    considered: tuple[str, ...] = ()


def _rewrite(old: Requirement, name: str, spec: str) -> str:
    """`old` asking for `name` instead: extras and marker kept; the version specifier is the policy's
    when it gives one, else the original's (the packages a replace entry maps share their version line:
    opencv-python 4.10 and opencv-contrib-python-headless 4.10 are one release, as are onnxruntime and
    onnxruntime-gpu, and an import name written as a package name meant the real package's versions)."""
    extras = f"[{','.join(sorted(old.extras))}]" if old.extras else ""
    marker = f"; {old.marker}" if old.marker else ""
    return f"{name}{extras}{spec or old.specifier}{marker}"


def label(entry: Mapping[str, Any], kind: str, package: str) -> str:
    """How a lock's `requested by` line names the policy that rewrote the line: the entry's `label`,
    else its action and package. No parentheses: they close the annotation."""
    text = str(entry.get("label") or f"{kind} {package}")
    return text.replace("(", "[").replace(")", "]")


def _scoped(addition: str, outer: Marker | None) -> str:
    """An install_with addition, needed only where the requester's own requirement applies."""
    if outer is None:
        return addition
    parsed = Requirement(addition)
    inner = f"({parsed.marker}) and ({outer})" if parsed.marker else str(outer)
    parsed.marker = None
    return f"{parsed}; {inner}"


def _unique_sources(reqs: Sequence[Req]) -> tuple[Source, ...]:
    return tuple(dict.fromkeys(r.source for r in reqs))


class Run:
    """One application of a policy; collects uv inputs as it goes."""

    def __init__(self, policy: Policy, facts: Facts, torch_index: str) -> None:
        self.policy = policy
        self.entries = policy.entries
        self.facts = facts
        self.torch_index = torch_index.rstrip("/")
        self.rank = policy.ranks()
        self.excludes: set[str] = set()
        self.uninstalled: dict[str, str] = {}  # target -> package whose uninstall entry fired
        self.replaced: set[str] = set()
        self.fired: dict[str, dict[str, Any]] = {}  # package -> apply_first_match entry that applied
        self.demand: dict[str, list[Req]] = {}  # package -> Reqs that asked for it (as written or rewritten)
        self.additions: list[Req] = []
        self.parsed: dict[str, Requirement] = {}  # requirement text -> its Requirement, shared within a run
        self.overrides: dict[str, tuple[str, str]] = {}  # name -> (line, package whose entry set it)
        self.pin_entries: list[tuple[str, dict[str, Any], tuple[Source, ...]]] = []
        self.indexes: list[str] = []
        self.actions: list[tuple[tuple[str, int, int], Action]] = []
        self.warnings: list[str] = []
        self.blocking: list[str] = []
        self.decisions = self._decide()

    def first_holding(self, name: str, section: str, passed: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """The first entry of `name`'s `section` whose condition holds, entry types in `passed` left out."""
        for entry in self.entries[name].get(section, ()):
            if entry.get("type") not in passed and self.applies(entry, name):
                return dict(entry)
        return None

    def applies(self, entry: Mapping[str, Any], name: str) -> bool:
        return holds(entry.get("condition"), name, self.facts, origin=self.policy.origins.get(name))

    def req(self, text: str, source: Source) -> Req:
        # Hundreds of nodes ask for the same opencv line: parse each distinct text once per run.
        requirement = self.parsed.get(text)
        if requirement is None:
            requirement = self.parsed[text] = Requirement(text)
        return Req(requirement, source, text)

    def rewritten(self, old: Req, text: str, policy: str) -> Req:
        """What a policy made of `old`: the new requirement, the line still quoted as its node wrote it."""
        return replace(self.req(text, old.source), text=old.text, policy=policy)

    def act(
        self,
        package: str,
        kind: str,
        detail: str,
        entry: Mapping[str, Any],
        requested_by: tuple[Source, ...] = (),
    ) -> None:
        action = Action(
            package,
            kind,
            detail,
            str(entry.get("reason", "")),
            self.policy.origins.get(package, BASE_ORIGIN),
            requested_by,
            label(entry, kind, package) if entry.get("label") else None,
        )
        self.actions.append(((package, _KIND_ORDER[kind], len(self.actions)), action))
        if entry.get("extra_index_url"):
            self.indexes.append(entry["extra_index_url"])

    def synthetic(self, package: str, text: str) -> Req:
        """A requirement a policy adds with no requester: its Source is the policy entry itself."""
        source = self.policy.sources.get(package)
        if source is None:
            source = Source(POLICY_NODE, Path(self.policy.origins.get(package, "")), 0)
        return self.req(text, source)

    def _decide(self) -> dict[str, dict[str, Any] | None]:
        """Each package's apply_first_match choice; it depends on facts and priorities, never on requesters.

        Files are walked from the highest priority down so that a replacement chosen by a file protects
        that package from every entry of the same or lower priority before those entries are evaluated.
        """
        groups: dict[int, list[str]] = {}
        for name in self.entries:
            groups.setdefault(self.rank[name], []).append(name)
        protected: dict[str, int] = {}

        def choose(name: str) -> dict[str, Any] | None:
            # Chosen as a replacement by a file of the same or higher priority: never skipped or replaced.
            guarded = protected.get(name, -1) >= self.rank[name]
            return self.first_holding(name, "apply_first_match", ("skip", "replace") if guarded else ())

        decisions: dict[str, dict[str, Any] | None] = {}
        for rank in sorted(groups, reverse=True):
            group = sorted(groups[rank])
            chosen = set()
            for name in group:
                decision = decisions[name] = choose(name)
                if decision is not None and decision["type"] == "replace":
                    chosen.add(canonicalize_name(decision["replacement"]))
            for target in chosen:
                protected[target] = max(protected.get(target, -1), rank)
            for name in chosen.intersection(group):
                decisions[name] = choose(name)
        return decisions

    def uninstall(self, asked: AbstractSet[str]) -> None:
        for name in sorted(self.entries):
            entry = self.first_holding(name, "uninstall")
            if entry is None:
                continue
            target = canonicalize_name(entry["target"])
            self.excludes.add(target)
            self.uninstalled.setdefault(target, name)
            if target in asked or target in self.facts.installed:  # else it was never going to be there
                self.act(name, "uninstall", target, entry)

    def route(self, name: str, reqs: list[Req], via: str | None = None, seen: tuple[str, ...] = ()) -> None:
        """Send requests for `name` through its first-match choice; a replacement goes on to its target."""
        self.demand.setdefault(name, []).extend(reqs)
        if name in self.uninstalled:
            if via is not None:
                self.warnings.append(
                    f"{via}: its replacement {name} is uninstalled by policy, so nothing replaces {via}"
                )
            return
        decision = self.decisions.get(name) if name in self.entries else None
        kind = decision["type"] if decision else None
        if decision is not None:
            self.fired[name] = decision
        if kind == "skip":
            self.excludes.add(name)
            if via is not None:
                self.warnings.append(f"{via}: its replacement {name} is skipped by policy")
        elif kind == "replace" and decision is not None and name not in seen:
            target = canonicalize_name(decision["replacement"])
            spec = decision.get("version", "")
            self.excludes.add(name)
            self.replaced.add(name)
            tag = label(decision, "replace", name)
            new = [self.rewritten(r, _rewrite(r.requirement, target, spec), tag) for r in reqs]
            new = new or [self.synthetic(name, f"{target}{spec}")]
            self.route(target, new, name, (*seen, name))
        elif via is not None:
            self.additions.extend(reqs)  # rewritten requests land here

    def first_match_actions(self) -> None:
        for name in sorted(self.fired):
            entry = self.fired[name]
            by = _unique_sources(self.demand.get(name, []))
            kind = entry["type"]
            if kind == "skip":
                self.act(name, kind, name, entry, by)
            elif kind == "replace":
                target = canonicalize_name(entry["replacement"])
                self.act(name, kind, f"{name} -> {target}{entry.get('version', '')}", entry, by)
            elif name not in self.excludes:  # force_version of a package something else keeps out is moot
                line = f"{name}=={entry['version']}"
                self.overrides[name] = (line, name)
                self.act(name, kind, line, entry, by)

    def all_matches(self, name: str, reqs: list[Req]) -> None:
        by = _unique_sources(reqs)
        for entry in self.entries[name].get("apply_all_matches", ()):
            if not self.applies(entry, name):
                continue
            kind = entry["type"]
            if kind == "pin_dependencies":
                self.pin_entries.append((name, entry, by))  # kept or dropped once overrides are known
            elif kind == "install_with":
                adds = list(entry["additional_packages"])
                for addition in adds:
                    if reqs:
                        tag = label(entry, kind, name)
                        new = [self.rewritten(r, _scoped(addition, r.requirement.marker), tag) for r in reqs]
                    else:
                        new = [self.synthetic(name, addition)]
                    self.additions.extend(dict.fromkeys(new))
                self.act(name, kind, ", ".join(adds), entry, by)
            elif kind == "warn":
                message = f"{name}: {entry['message']}"
                self.warnings.append(message)
                if entry.get("allow_continue", True) is False:
                    self.blocking.append(message)
                self.act(name, kind, str(entry["message"]), entry, by)

    def restore(self) -> None:
        # Lowest priority first, so a higher file's restore of the same target is the one that stays.
        for name in sorted(self.entries, key=lambda n: (self.rank[n], n)):
            entry = self.first_holding(name, "restore")
            if entry is None:
                continue
            target = canonicalize_name(entry["target"])
            line = f"{target}=={entry['version']}"
            if target in self.excludes:
                self.warnings.append(f"{name}: restore of {line} ignored: {target} is kept out of the lock")
                continue
            prior = self.overrides.get(target)
            if prior is not None and prior[0] != line:
                self.warnings.append(f"{name}: restore of {line} wins over {prior[0]} ({prior[1]}'s policy)")
            self.overrides[target] = (line, name)
            self.additions.append(self.synthetic(name, line))
            self.act(name, "restore", line, entry)

    def pins(self, upgrade: AbstractSet[str]) -> list[SoftPin]:
        everything = "*" in upgrade
        wanted = {canonicalize_name(u) for u in upgrade if u != "*"}
        out: dict[tuple[str, str], SoftPin] = {}
        for name, entry, by in self.pin_entries:
            on_failure = entry.get("on_failure", "fail")
            on_failure = on_failure if on_failure in ON_FAILURE else "warn"  # a hand-built Policy's too
            lines = []
            for pinned in dict.fromkeys(canonicalize_name(p) for p in entry["pinned_packages"]):
                version = self.facts.installed.get(pinned)
                # Not installed: nothing to keep. Upgraded on purpose, excluded or given an explicit
                # version by force_version/restore: the pin would only fight that decision.
                if version is None or everything or pinned in wanted or pinned in self.excludes:
                    continue
                if pinned in self.overrides:
                    continue
                line = exact_pin(pinned, version)
                lines.append(line)
                out[(name, line)] = SoftPin(line, on_failure, name)
                local = local_tag(version)
                if local and _TORCH_LOCAL.fullmatch(local):
                    self.indexes.append(f"{self.torch_index}/{local}")
            if lines:
                self.act(name, "pin_dependencies", ", ".join(lines), entry, by)
        return [out[k] for k in sorted(out)]
