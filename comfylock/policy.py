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

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ._exceptions import PolicyError
from ._policy_schema import OS_NAMES, ParsedFile, Problem, check_file, conflicts, merge, read_file
from .collect import Req, Source

__all__ = [
    "BASE_POLICY", "Action", "Facts", "Policy", "PolicyOutcome", "Problem", "SoftPin",
    "apply", "check_policy_text", "load_policy",
]

BASE_POLICY = Path(__file__).with_name("pip-policy.json")
BASE_ORIGIN = "default"
POLICY_NODE = "policy"  # Source.node of requirements a policy adds with no requester to name
DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl"
KINDS = (
    "uninstall", "skip", "force_version", "replace", "pin_dependencies", "install_with", "warn", "restore",
)
_KIND_ORDER = {k: i for i, k in enumerate(KINDS)}
# Local version tags of PyTorch's own indexes (download.pytorch.org/whl/<tag>).
_TORCH_LOCAL = re.compile(r"cu\d+|rocm\d+(?:\.\d+)*|cpu|xpu")


@dataclass(frozen=True)
class Facts:
    """What conditions read, about the TARGET environment."""

    installed: Mapping[str, str]  # canonical name -> installed version
    os: str  # "linux" | "windows" | "macos" ("win32"/"darwin" accepted and normalized)
    has_gpu: bool  # an NVIDIA (CUDA) GPU, as Manager's torch.cuda.is_available() check means it
    comfyui_version: str | None

    def __post_init__(self) -> None:
        os_name = OS_NAMES.get(self.os.lower())
        if os_name is None:
            raise ValueError(f"unknown os {self.os!r} (expected one of linux, windows, macos)")
        object.__setattr__(self, "os", os_name)
        object.__setattr__(self, "installed", {canonicalize_name(k): v for k, v in self.installed.items()})


@dataclass(frozen=True)
class Policy:
    """The merged policy. Treat `entries` as read-only: its digest goes into the lock fingerprint."""

    entries: Mapping[str, Mapping[str, Any]]  # canonical package -> its sections (comments removed)
    origins: Mapping[str, str]  # canonical package -> "default" or the path of the file it came from
    files: tuple[str, ...]  # files merged, lowest priority first
    sources: Mapping[str, Source] = field(default_factory=dict)  # package -> where its key is written

    def ranks(self) -> dict[str, int]:
        """Priority of each package's entry: index of its file in `files` (higher wins)."""
        of_file = {f: i for i, f in enumerate(self.files)}
        return {name: of_file.get(self.origins.get(name, ""), 0) for name in self.entries}

    def digest(self) -> str:
        # Priorities, not paths: the same policy files on two machines give the same fingerprint.
        doc = {"entries": self.entries, "priority": self.ranks()}
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


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


def check_policy_text(text: str, path: str) -> list[Problem]:
    """Every problem of one policy file on its own, in file order (empty when it is valid)."""
    return check_file(text, path)[0]


def load_policy(
    user_file: Path | None = None, extra_files: Sequence[Path] = (), *, base: bool = True
) -> Policy:
    """Merge the shipped policy, the user's (skipped when missing) and --policy files (must exist)."""
    parsed: list[ParsedFile] = []
    if base:
        parsed.append(read_file(BASE_POLICY, BASE_ORIGIN))
    if user_file is not None and user_file.exists():
        parsed.append(read_file(user_file, str(user_file)))
    for extra in extra_files:
        if not extra.is_file():
            raise PolicyError("policy file not found", path=extra, hint="check the --policy argument")
        parsed.append(read_file(extra, str(extra)))
    problems = conflicts(parsed)
    if problems:
        raise problems[0].error()
    entries, origins, lines = merge(parsed)
    sources = {n: Source(POLICY_NODE, Path(origins[n][1]), lines[n]) for n in entries}
    return Policy(entries=entries, origins={n: o for n, (o, _) in origins.items()},
                  files=tuple(pf.origin for pf in parsed), sources=sources)


@lru_cache(maxsize=512)
def _specifier(spec: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(spec)
    except InvalidSpecifier:
        return None


def _matches(spec: str, version: str) -> bool:
    specifier = _specifier(spec)
    try:
        # Installed dev/nightly builds (torch 2.6.0.dev...) must still satisfy ">=2.0".
        return specifier is not None and specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def _exact(name: str, version: str) -> str:
    try:
        Version(version)
    except InvalidVersion:
        return f"{name}==={version}"  # arbitrary equality: the only way to pin a non-PEP 440 version
    return f"{name}=={version}"


def _rewrite(req: Req, name: str, spec: str, parsed: dict[str, Requirement]) -> Req:
    """`req` asking for `name` instead: extras and marker kept, version from the policy (or none)."""
    old = req.requirement
    extras = f"[{','.join(sorted(old.extras))}]" if old.extras else ""
    marker = f"; {old.marker}" if old.marker else ""
    text = f"{name}{extras}{spec}{marker}"
    # Hundreds of nodes ask for the same opencv line: parse each distinct rewrite once per run.
    requirement = parsed.get(text)
    if requirement is None:
        requirement = parsed[text] = Requirement(text)
    return Req(requirement, req.source, text)


def _with_marker(addition: str, req: Req | None, source: Source) -> Req:
    """An install_with addition, needed only where the requester's own requirement applies."""
    parsed = Requirement(addition)
    outer = req.requirement.marker if req is not None else None
    if outer is not None:
        inner = f"({parsed.marker}) and ({outer})" if parsed.marker else str(outer)
        parsed.marker = None
        addition = f"{parsed}; {inner}"
        parsed = Requirement(addition)
    return Req(parsed, source, addition)


def _unique_sources(reqs: Sequence[Req]) -> tuple[Source, ...]:
    return tuple(dict.fromkeys(r.source for r in reqs))


class _Run:
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
        self.parsed: dict[str, Requirement] = {}  # rewritten text -> its Requirement, shared within a run
        self.overrides: dict[str, tuple[str, str]] = {}  # name -> (line, package whose entry set it)
        self.pin_entries: list[tuple[str, dict[str, Any], tuple[Source, ...]]] = []
        self.indexes: list[str] = []
        self.actions: list[tuple[tuple[str, int, int], Action]] = []
        self.warnings: list[str] = []
        self.blocking: list[str] = []
        self.decisions = self._decide()

    def holds(self, entry: Mapping[str, Any], package: str) -> bool:
        cond = entry.get("condition")
        if cond is None:
            return True
        kind = cond.get("type")
        if kind == "installed":
            version = self.facts.installed.get(canonicalize_name(cond.get("package") or package))
            return version is not None and ("spec" not in cond or _matches(cond["spec"], version))
        if kind == "platform":
            if "os" in cond and OS_NAMES.get(str(cond["os"]).lower()) != self.facts.os:
                return False
            if "has_gpu" in cond and bool(cond["has_gpu"]) != self.facts.has_gpu:
                return False
            if "comfyui_version" in cond:
                version = self.facts.comfyui_version
                return version is not None and _matches(cond["comfyui_version"], version)
            return True
        # load_policy rejects these; a Policy built by hand must not turn a typo into "never".
        raise PolicyError(f"{package}: unknown condition type {kind!r}",
                          path=self.policy.origins.get(package), hint="expected one of installed, platform")

    def act(self, package: str, kind: str, detail: str, entry: Mapping[str, Any],
            requested_by: tuple[Source, ...] = ()) -> None:
        action = Action(package, kind, detail, str(entry.get("reason", "")),
                        self.policy.origins.get(package, BASE_ORIGIN), requested_by)
        self.actions.append(((package, _KIND_ORDER[kind], len(self.actions)), action))
        if entry.get("extra_index_url"):
            self.indexes.append(entry["extra_index_url"])

    def synthetic(self, package: str, text: str) -> Req:
        """A requirement a policy adds with no requester: its Source is the policy entry itself."""
        source = self.policy.sources.get(package)
        if source is None:
            source = Source(POLICY_NODE, Path(self.policy.origins.get(package, "")), 0)
        return Req(Requirement(text), source, text)

    def _first_match(self, package: str, protected: Mapping[str, int]) -> dict[str, Any] | None:
        guarded = protected.get(package, -1) >= self.rank[package]
        for entry in self.entries[package].get("apply_first_match", ()):
            if guarded and entry["type"] in ("skip", "replace"):
                continue  # chosen as a replacement by a file of the same or higher priority
            if self.holds(entry, package):
                return dict(entry)
        return None

    def _decide(self) -> dict[str, dict[str, Any] | None]:
        """Each package's apply_first_match choice; it depends on facts and priorities, never on requesters.

        Files are walked from the highest priority down so that a replacement chosen by a file protects
        that package from every entry of the same or lower priority before those entries are evaluated.
        """
        groups: dict[int, list[str]] = {}
        for name in self.entries:
            groups.setdefault(self.rank[name], []).append(name)
        protected: dict[str, int] = {}
        decisions: dict[str, dict[str, Any] | None] = {}
        for rank in sorted(groups, reverse=True):
            group = sorted(groups[rank])
            chosen = set()
            for name in group:
                decision = decisions[name] = self._first_match(name, protected)
                if decision is not None and decision["type"] == "replace":
                    chosen.add(canonicalize_name(decision["replacement"]))
            for target in chosen:
                protected[target] = max(protected.get(target, -1), rank)
            for name in chosen.intersection(group):
                decisions[name] = self._first_match(name, protected)
        return decisions

    def uninstall(self, asked: AbstractSet[str]) -> None:
        for name in sorted(self.entries):
            entry = next((e for e in self.entries[name].get("uninstall", ()) if self.holds(e, name)), None)
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
                self.warnings.append(f"{via}: its replacement {name} is uninstalled by policy, so nothing "
                                     f"replaces {via}")
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
            new = [_rewrite(r, target, spec, self.parsed) for r in reqs]
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
            if not self.holds(entry, name):
                continue
            kind = entry["type"]
            if kind == "pin_dependencies":
                self.pin_entries.append((name, entry, by))  # kept or dropped once overrides are known
            elif kind == "install_with":
                adds = list(entry["additional_packages"])
                for addition in adds:
                    if reqs:
                        new = [_with_marker(addition, r, r.source) for r in reqs]
                    else:
                        new = [_with_marker(addition, None, self.synthetic(name, addition).source)]
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
            entry = next((e for e in self.entries[name].get("restore", ()) if self.holds(e, name)), None)
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
            on_failure = on_failure if on_failure in ("fail", "retry_without_pin") else "warn"
            lines = []
            for pinned in dict.fromkeys(canonicalize_name(p) for p in entry["pinned_packages"]):
                version = self.facts.installed.get(pinned)
                # Not installed: nothing to keep. Upgraded on purpose, excluded or given an explicit
                # version by force_version/restore: the pin would only fight that decision.
                if version is None or everything or pinned in wanted or pinned in self.excludes:
                    continue
                if pinned in self.overrides:
                    continue
                line = _exact(pinned, version)
                lines.append(line)
                out[(name, line)] = SoftPin(line, on_failure, name)
                local = _local(version)
                if local and _TORCH_LOCAL.fullmatch(local):
                    self.indexes.append(f"{self.torch_index}/{local}")
            if lines:
                self.act(name, "pin_dependencies", ", ".join(lines), entry, by)
        return [out[k] for k in sorted(out)]


def _local(version: str) -> str | None:
    try:
        return Version(version).local
    except InvalidVersion:
        return None


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
    run = _Run(policy, facts, torch_index)
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
