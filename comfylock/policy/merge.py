"""Merging checked policy files package by package: which file's entry wins, what cannot hold together,
and the merged Policy that policy.apply reads.

Priority: base file < user file < each --policy file. A package's entry in a higher file replaces the
lower one whole (`{}` disables it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfylock.collect.gather import Source
from comfylock.policy.jsontext import ParsedFile, Problem
from comfylock.workspace.layout import SHIPPED_POLICY

BASE_POLICY = SHIPPED_POLICY
BASE_ORIGIN = "default"  # what Policy.origins calls the shipped file
# Where requirements the shipped policy adds say they come from: relative to the comfylock package, so
# a lock does not depend on where comfylock is installed.
BASE_SOURCE = Path("comfylock") / BASE_POLICY.name
POLICY_NODE = "policy"  # Source.node of requirements a policy adds with no requester to name
Sections = dict[str, list[dict[str, Any]]]
Report = Callable[[str, str, int, str, str], None]  # (package, section, index, message, hint)


@dataclass(frozen=True)
class Policy:
    """The merged policy. Treat `entries` as read-only: its digest goes into the lock fingerprint."""

    entries: Mapping[str, Mapping[str, Any]]  # canonical package -> its sections (comments removed)
    origins: Mapping[str, str]  # canonical package -> "default" or the path of the file it came from
    files: tuple[str, ...]  # files merged, lowest priority first
    sources: Mapping[str, Source] = field(default_factory=dict)  # package -> where its key is written
    shadowed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # package -> lower files' entries
    # it replaced whole (what `comfylock policy show` reports as overridden)

    def ranks(self) -> dict[str, int]:
        """Priority of each package's entry: index of its file in `files` (higher wins)."""
        of_file = {f: i for i, f in enumerate(self.files)}
        return {name: of_file.get(self.origins.get(name, ""), 0) for name in self.entries}

    def digest(self) -> str:
        # Priorities, not paths: the same policy files on two machines give the same fingerprint.
        doc = {"entries": self.entries, "priority": self.ranks()}
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def stack(files: Sequence[ParsedFile]) -> dict[str, ParsedFile]:
    """The file whose entry each package takes: a later (higher-priority) file's entry replaces the rest."""
    out: dict[str, ParsedFile] = {}
    for pf in files:
        out.update(dict.fromkeys(pf.entries, pf))
    return out


def always(sections: Sections, section: str) -> dict[str, Any] | None:
    """The entry of a first-match section that applies whatever the facts, if any."""
    items = sections.get(section) or []
    return items[0] if items and "condition" not in items[0] else None


def conflicts(files: Sequence[ParsedFile]) -> list[Problem]:
    """Entries that cannot both hold once `files` (lowest priority first) are merged package by package.

    Checked: restore and uninstall of one target under the same condition; two unconditional overrides
    (restore / force_version) of one package to different versions; and, inside one file, force_version
    of an always-uninstalled package, a replacement that is always skipped or uninstalled, and a replacement
    chain P -> Q -> R (replacements do not chain, so Q's entry would never apply to P's requesters).
    Across files a higher-priority choice wins by design, so those last three are not errors there.
    """
    owner = stack(files)
    problems: list[Problem] = []
    uninstalls: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    always_uninstalled: dict[str, str] = {}  # target -> package whose unconditional uninstall drops it
    pinned_versions: dict[str, tuple[str, str]] = {}  # target -> (version, who) for always-on overrides

    def report(name: str, section: str, i: int, message: str, hint: str) -> None:  # a Report
        problems.append(owner[name].package_problem(name, (section, i), message, hint))

    def same_file(a: str, b: str) -> bool:
        return owner[a] is owner[b]

    for name in sorted(owner):
        sections = owner[name].entries[name]
        for e in sections.get("uninstall", []):
            uninstalls.setdefault(e["target"], []).append((name, e))
        if (e := always(sections, "uninstall")) is not None:
            always_uninstalled.setdefault(e["target"], name)
    for name in sorted(owner):
        sections = owner[name].entries[name]
        for i, e in enumerate(sections.get("restore", [])):
            for other, u in uninstalls.get(e["target"], []):
                if u.get("condition") == e.get("condition"):
                    report(
                        name,
                        "restore",
                        i,
                        f"restore of {e['target']!r} conflicts with {other}'s "
                        "uninstall of it under the same condition",
                        "keep one of the two",
                    )
        overrides = [("restore", always(sections, "restore"))]
        first = always(sections, "apply_first_match")
        if first is not None and first["type"] == "force_version":
            overrides.append(("force_version", {**first, "target": name}))
        for section, e in overrides:
            if e is None:
                continue
            prior = pinned_versions.setdefault(e["target"], (e["version"], name))
            if prior[0] != e["version"]:
                report(
                    name,
                    section,
                    0,
                    f"{e['target']}=={e['version']} conflicts with "
                    f"{e['target']}=={prior[0]} from {prior[1]}'s policy",
                    "keep one version",
                )
        for i, e in enumerate(sections.get("apply_first_match", [])):
            dropper = always_uninstalled.get(name)
            if e["type"] == "force_version" and dropper is not None and same_file(dropper, name):
                report(
                    name,
                    "apply_first_match",
                    i,
                    f"force_version of {name!r} never applies: {dropper}'s policy always uninstalls it",
                    "drop one of the two",
                )
            if e["type"] == "replace":
                _check_replacement(name, i, e["replacement"], owner, always_uninstalled, report)
    return problems


def _check_replacement(
    name: str,
    i: int,
    target: str,
    owner: dict[str, ParsedFile],
    always_uninstalled: dict[str, str],
    report: Report,
) -> None:
    """A replacement of `name` (entry i) by `target` that the same file makes pointless."""
    dropper = always_uninstalled.get(target)
    if dropper is not None and owner[dropper] is owner[name]:
        report(
            name,
            "apply_first_match",
            i,
            f"replacement {target!r} is always uninstalled by {dropper}'s policy",
            "drop one of the two",
        )
        return
    if owner.get(target) is not owner[name]:
        return
    nxt = always(owner[target].entries[target], "apply_first_match")
    entry = owner[name].entries[name]["apply_first_match"][i]
    if nxt is not None and nxt["type"] == "skip":
        report(
            name,
            "apply_first_match",
            i,
            f"replacement {target!r} is always skipped by its own entry",
            "drop one of the two",
        )
    elif nxt is not None and nxt["type"] == "replace" and "condition" not in entry:
        then = nxt["replacement"]
        report(
            name,
            "apply_first_match",
            i,
            f"replacements do not chain: {target!r} is itself replaced by {then!r}",
            f"replace {name!r} by {then!r} directly",
        )


def merge(files: Sequence[ParsedFile]) -> Policy:
    """Package by package, a later (higher-priority) file's entry replaces an earlier one whole."""
    owner = stack(files)
    shadowed: dict[str, list[str]] = {}
    for pf in files:
        for name in pf.entries:
            if owner[name] is not pf:
                shadowed.setdefault(name, []).append(pf.origin)
    order = sorted(owner)
    return Policy(
        entries={n: owner[n].entries[n] for n in order},
        origins={n: owner[n].origin for n in order},
        files=tuple(pf.origin for pf in files),
        sources={n: _source(owner[n], n) for n in order},
        shadowed={n: tuple(shadowed[n]) for n in order if n in shadowed},
    )


def _source(pf: ParsedFile, name: str) -> Source:
    path = BASE_SOURCE if pf.origin == BASE_ORIGIN else Path(pf.file)
    return Source(POLICY_NODE, path, pf.lines.get((pf.keys[name],), 0))
