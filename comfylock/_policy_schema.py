"""Reading and checking pip-policy.json files (ComfyUI-Manager's schema) for comfylock.policy.

A policy file is checked whole before anything applies it: a typo in a policy silently ignored would
let the very package the user meant to keep out land in the lock. Every problem carries the JSON path of
the offending value and the line it sits on, so the one-line PolicyError points at the spot to fix.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json.decoder import scanstring
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ._exceptions import PolicyError

SECTIONS = ("uninstall", "apply_first_match", "apply_all_matches", "restore")
ACTIONS = {
    "apply_first_match": ("skip", "force_version", "replace"),
    "apply_all_matches": ("pin_dependencies", "install_with", "warn"),
}
CONDITION_TYPES = ("installed", "platform")
# Manager's own code compares against platform.system(); sys.platform spellings are accepted too.
OS_NAMES = {"linux": "linux", "windows": "windows", "win32": "windows", "macos": "macos", "darwin": "macos"}
ON_FAILURE = ("fail", "retry_without_pin")  # anything else means "warn", as in Manager
ALWAYS_FIRST = ("apply_first_match", "uninstall", "restore")  # sections where only the first match applies

_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_URL = re.compile(r"^(https?|file)://\S+$")

JsonPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a policy file; `json_path` like `$.numpy.apply_first_match[0].version`."""

    file: str
    json_path: str
    message: str
    hint: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        return str(self.error())

    def error(self) -> PolicyError:
        message = f"{self.json_path}: {self.message}"
        return PolicyError(message, path=self.file, line=self.line, hint=self.hint)


@dataclass
class ParsedFile:
    """A policy file that passed the per-file checks, names canonical and comments dropped."""

    file: str  # what messages call it (a path)
    origin: str  # what Policy.origins calls it ("default" for the shipped file)
    entries: dict[str, dict[str, list[dict[str, Any]]]]
    keys: dict[str, str] = field(default_factory=dict)  # canonical name -> key as written
    lines: dict[JsonPath, int] = field(default_factory=dict)

    def line_of(self, path: JsonPath) -> int | None:
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                return line
        return None

    def problem(self, path: JsonPath, message: str, hint: str | None = None) -> Problem:
        return Problem(self.file, render_path(path), message, hint, self.line_of(path))


def render_path(path: JsonPath) -> str:
    out = "$"
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(value), "value")


def _locate(text: str) -> tuple[dict[JsonPath, int], list[JsonPath]]:
    """Line of every key and list item of already-valid JSON, and the keys written twice.

    json.loads keeps no positions; this walk over the (known valid) text recovers them so a problem
    deep in the file points at its own line rather than the top of the package.
    """
    starts = [0] + [m.end() for m in re.finditer("\n", text)]
    space = re.compile(r"[ \t\r\n]*")
    scalar = re.compile(r"[^,\]}\s]*")
    lines: dict[JsonPath, int] = {}
    dups: list[JsonPath] = []

    def skip(i: int) -> int:
        return space.match(text, i).end()  # type: ignore[union-attr]

    def value(i: int, path: JsonPath) -> int:
        i = skip(i)
        ch = text[i]
        if ch == '"':
            return scanstring(text, i + 1)[1]
        if ch not in "{[":
            return scalar.match(text, i).end()  # type: ignore[union-attr]
        closing, i, n, seen = ("}" if ch == "{" else "]"), skip(i + 1), 0, set()
        if text[i] == closing:
            return i + 1
        while True:
            i = skip(i)
            line = bisect.bisect_right(starts, i)
            if ch == "{":
                key, i = scanstring(text, i + 1)
                sub: JsonPath = (*path, key)
                if key in seen and not key.startswith("_"):
                    dups.append(sub)
                seen.add(key)
                i = skip(i) + 1  # the ':'
            else:
                sub = (*path, n)
                n += 1
            lines[sub] = line
            i = skip(value(i, sub))
            if text[i] != ",":
                return i + 1
            i += 1

    try:
        lines[()] = bisect.bisect_right(starts, skip(0))
        value(0, ())
    except (IndexError, ValueError, RecursionError):
        pass  # positions are a courtesy: a text json accepted but this walk did not still validates
    return lines, dups


class _Bad(Exception):
    """A value that failed its check; the problem is already recorded."""


class _Checker:
    def __init__(self, parsed: ParsedFile) -> None:
        self.parsed = parsed
        self.problems: list[Problem] = []

    def fail(self, path: JsonPath, message: str, hint: str | None = None) -> _Bad:
        self.problems.append(self.parsed.problem(path, message, hint))
        return _Bad()

    # Field checks: return the value as the policy keeps it, or raise _Bad after recording why.
    def string(self, v: Any, at: JsonPath) -> str:
        if not isinstance(v, str):
            raise self.fail(at, f"expected a string, got {_kind(v)}")
        return v

    def boolean(self, v: Any, at: JsonPath) -> bool:
        if not isinstance(v, bool):
            raise self.fail(at, f"expected true or false, got {_kind(v)}")
        return v

    def name(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        if not _NAME.match(s):
            raise self.fail(at, f"invalid package name {s!r}", "a PyPI project name such as 'opencv-python'")
        return canonicalize_name(s)

    def version(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        try:
            Version(s)
        except InvalidVersion:
            raise self.fail(at, f"invalid version {s!r}", "an exact version such as '1.26.4'") from None
        return s

    def specifier(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        try:
            if not s:
                raise InvalidSpecifier(s)
            return str(SpecifierSet(s))
        except InvalidSpecifier:
            hint = f"write '=={s}' or '>={s}'" if _is_version(s) else "a version specifier such as '>=1.0'"
            raise self.fail(at, f"invalid version specifier {s!r}", hint) from None

    def url(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        if not _URL.match(s):
            raise self.fail(at, f"invalid index URL {s!r}", "an http(s):// or file:// URL")
        return s

    def names(self, v: Any, at: JsonPath) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(at, f"expected a list of package names, got {_kind(v)}")
        return [self.name(x, (*at, i)) for i, x in enumerate(v)]

    def requirements(self, v: Any, at: JsonPath) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(at, f"expected a list of requirement strings, got {_kind(v)}")
        out = []
        for i, x in enumerate(v):
            s = self.string(x, (*at, i))
            try:
                out.append(str(Requirement(s)))
            except InvalidRequirement as e:
                first = str(e).splitlines()[0] if str(e) else "unparsable"
                message = f"invalid requirement {s!r}: {first}"
                raise self.fail((*at, i), message, "e.g. 'numpy>=1.26'") from None
        return out

    def on_failure(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        return s if s in ON_FAILURE else "warn"

    def condition(self, v: Any, at: JsonPath) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(at, f"expected an object, got {_kind(v)}",
                            '{"type": "installed"} or {"type": "platform"}')
        v = _uncomment(v)
        if "type" not in v:
            raise self.fail(at, "missing field 'type'", f"expected one of {', '.join(CONDITION_TYPES)}")
        kind = self.string(v["type"], (*at, "type"))
        fields: dict[str, Callable[[Any, JsonPath], Any]]
        if kind == "installed":
            fields = {"package": self.name, "spec": self.specifier}
        elif kind == "platform":
            fields = {"os": self.os, "has_gpu": self.boolean, "comfyui_version": self.specifier}
        else:
            raise self.fail((*at, "type"), f"unknown condition type {kind!r}",
                            f"expected one of {', '.join(CONDITION_TYPES)}")
        out: dict[str, Any] = {"type": kind}
        for key, value in v.items():
            if key == "type":
                continue
            if key not in fields:
                raise self.fail((*at, key), f"unknown condition key {key!r} for {kind}",
                                f"expected one of {', '.join(fields)}")
            out[key] = fields[key](value, (*at, key))
        return out

    def os(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at)
        if s.lower() not in OS_NAMES:
            raise self.fail(at, f"unknown os {s!r}", "expected one of linux, windows, macos")
        return OS_NAMES[s.lower()]


def _is_version(s: str) -> bool:
    try:
        Version(s)
    except InvalidVersion:
        return False
    return True


def _uncomment(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _fields(c: _Checker, section: str, kind: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(required, optional) field checks of one entry."""
    common = {"condition": c.condition, "reason": c.string}
    table: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "skip": ({}, {}),
        "force_version": ({"version": c.version}, {"extra_index_url": c.url}),
        "replace": ({"replacement": c.name}, {"version": c.specifier, "extra_index_url": c.url}),
        "pin_dependencies": ({"pinned_packages": c.names}, {"on_failure": c.on_failure}),
        "install_with": ({"additional_packages": c.requirements}, {}),
        "warn": ({"message": c.string}, {"allow_continue": c.boolean}),
        "uninstall": ({"target": c.name}, {}),
        "restore": ({"target": c.name, "version": c.version}, {"extra_index_url": c.url}),
    }
    required, optional = table[kind or section]
    return required, {**optional, **common}


def _entry(c: _Checker, package: str, section: str, raw: Any, at: JsonPath) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise c.fail(at, f"expected an object, got {_kind(raw)}")
    raw = _uncomment(raw)
    kind: str | None = None
    out: dict[str, Any] = {}
    if section in ACTIONS:
        expected = ACTIONS[section]
        if "type" not in raw:
            raise c.fail(at, "missing field 'type'", f"expected one of {', '.join(expected)}")
        kind = c.string(raw["type"], (*at, "type"))
        if kind not in expected:
            other = next((s for s, kinds in ACTIONS.items() if kind in kinds), None)
            hint = f"'{kind}' belongs in {other}" if other else f"expected one of {', '.join(expected)}"
            raise c.fail(at, f"unknown action {kind!r}", hint)
        out["type"] = kind
    required, optional = _fields(c, section, kind)
    ok = True
    for key, value in raw.items():
        if key == "type" and kind is not None:
            continue
        check = required.get(key) or optional.get(key)
        if check is None:
            ok = False
            c.fail((*at, key), f"unknown field {key!r} for {kind or section}",
                   f"expected one of {', '.join([*required, *optional])}")
            continue
        try:
            out[key] = check(value, (*at, key))
        except _Bad:
            ok = False
    for key in required:
        if key not in raw:
            ok = False
            c.fail(at, f"missing field {key!r}", f"{kind or section} needs {', '.join(required)}")
    if kind == "replace" and out.get("replacement") == package:
        raise c.fail((*at, "replacement"), f"replace of {package!r} by itself",
                     "remove the entry, or use force_version to change its version")
    if not ok:
        raise _Bad()
    return out


def check_file(text: str, file: str, origin: str | None = None) -> tuple[list[Problem], ParsedFile]:
    """Problems of one file on its own, in file order, and what could be read of it."""
    parsed = ParsedFile(file, origin or file, {})
    text = text.removeprefix("\ufeff")  # Windows editors save UTF-8 with a BOM; json.loads refuses it
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return [Problem(file, "$", f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})", None,
                        e.lineno)], parsed
    except RecursionError:
        return [Problem(file, "$", "invalid JSON: nested too deeply", None, None)], parsed
    parsed.lines, dups = _locate(text)
    c = _Checker(parsed)
    for path in dups:
        c.fail(path, f"duplicate key {path[-1]!r}", "JSON keeps only the last one; merge the two")
    if not isinstance(data, dict):
        c.fail((), f"expected an object of package names, got {_kind(data)}",
               '{"numpy": {"apply_first_match": [...]}}')
        return c.problems, parsed
    for key, sections in data.items():
        if key.startswith("_"):
            continue
        try:
            name = c.name(key, (key,))
        except _Bad:
            continue
        if name in parsed.entries:
            c.fail((key,), f"{key!r} and {parsed.keys[name]!r} are the same package", "merge the two entries")
            continue
        if not isinstance(sections, dict):
            c.fail((key,), f"expected an object of sections, got {_kind(sections)}",
                   '{"apply_first_match": [...]}')
            continue
        parsed.keys[name] = key
        parsed.entries[name] = _sections(c, name, key, sections)
    c.problems.extend(conflicts([parsed]))
    return sorted(c.problems, key=lambda p: p.line or 0), parsed


def _sections(c: _Checker, name: str, key: str, sections: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for section, items in _uncomment(sections).items():
        at: JsonPath = (key, section)
        if section not in SECTIONS:
            c.fail(at, f"unknown section {section!r}", f"expected one of {', '.join(SECTIONS)}")
            continue
        if not isinstance(items, list):
            c.fail(at, f"expected a list of entries, got {_kind(items)}")
            continue
        good = []
        always_at: int | None = None  # index of the first entry without a condition
        for i, raw in enumerate(items):
            try:
                entry = _entry(c, name, section, raw, (*at, i))
            except _Bad:
                continue
            # Only the first match applies in these sections: an entry after an unconditional one is dead.
            if section in ALWAYS_FIRST and always_at is not None:
                c.fail((*at, i), f"unreachable: entry [{always_at}] has no condition, so it always matches "
                       "first", "give the earlier entry a condition or move it last")
            elif "condition" not in entry:
                always_at = i
            good.append(entry)
        out[section] = good
    return out


def _always(sections: dict[str, list[dict[str, Any]]], section: str) -> dict[str, Any] | None:
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
    merged: dict[str, tuple[ParsedFile, dict[str, list[dict[str, Any]]]]] = {}
    for pf in files:
        for name, sections in pf.entries.items():
            merged[name] = (pf, sections)
    problems: list[Problem] = []
    uninstalls: dict[str, list[tuple[str, int, dict[str, Any]]]] = {}
    always_uninstalled: dict[str, str] = {}
    pinned_versions: dict[str, tuple[str, str]] = {}  # target -> (version, who) for always-on overrides

    def report(name: str, section: str, i: int, message: str, hint: str | None = None) -> None:
        pf = merged[name][0]
        problems.append(pf.problem((pf.keys.get(name, name), section, i), message, hint))

    for name in sorted(merged):
        sections = merged[name][1]
        for i, e in enumerate(sections.get("uninstall", [])):
            uninstalls.setdefault(e["target"], []).append((name, i, e))
        if (e := _always(sections, "uninstall")) is not None:
            always_uninstalled.setdefault(e["target"], name)
    for name in sorted(merged):
        pf, sections = merged[name]
        for i, e in enumerate(sections.get("restore", [])):
            for other, _, u in uninstalls.get(e["target"], []):
                if u.get("condition") == e.get("condition"):
                    report(name, "restore", i, f"restore of {e['target']!r} conflicts with {other}'s "
                           "uninstall of it under the same condition", "keep one of the two")
        overrides = [("restore", _always(sections, "restore"))]
        first = _always(sections, "apply_first_match")
        if first is not None and first["type"] == "force_version":
            overrides.append(("force_version", {**first, "target": name}))
        for section, e in overrides:
            if e is None:
                continue
            prior = pinned_versions.setdefault(e["target"], (e["version"], name))
            if prior[0] != e["version"]:
                report(name, section, 0, f"{e['target']}=={e['version']} conflicts with "
                       f"{e['target']}=={prior[0]} from {prior[1]}'s policy", "keep one version")
        for i, e in enumerate(sections.get("apply_first_match", [])):
            owner = always_uninstalled.get(name)
            if e["type"] == "force_version" and owner is not None and merged[owner][0] is pf:
                report(name, "apply_first_match", i, f"force_version of {name!r} never applies: "
                       f"{owner}'s policy always uninstalls it", "drop one of the two")
            if e["type"] != "replace":
                continue
            target = e["replacement"]
            owner = always_uninstalled.get(target)
            if owner is not None and merged[owner][0] is pf:
                report(name, "apply_first_match", i, f"replacement {target!r} is always uninstalled by "
                       f"{owner}'s policy", "drop one of the two")
                continue
            if target not in merged or merged[target][0] is not pf:
                continue
            nxt = _always(merged[target][1], "apply_first_match")
            if nxt is not None and nxt["type"] == "skip":
                report(name, "apply_first_match", i, f"replacement {target!r} is always skipped by its own "
                       "entry", "drop one of the two")
            elif nxt is not None and nxt["type"] == "replace" and "condition" not in e:
                then = nxt["replacement"]
                report(name, "apply_first_match", i, f"replacements do not chain: {target!r} is itself "
                       f"replaced by {then!r}", f"replace {name!r} by {then!r} directly")
    return problems


def read_file(path: Path, origin: str) -> ParsedFile:
    """One policy file from disk, checked; PolicyError on its first problem."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise PolicyError(f"cannot read policy file: {e.strerror or e}", path=path) from None
    except UnicodeDecodeError as e:
        raise PolicyError(f"policy file is not UTF-8 text (byte {e.start})", path=path) from None
    return parse_file(text, str(path), origin)


def merge(
    files: Sequence[ParsedFile],
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, str]], dict[str, int]]:
    """Package by package, a later (higher-priority) file's entry replaces an earlier one whole.

    Returns entries, (origin, file) and the line of the package key, each keyed by name, sorted.
    """
    entries: dict[str, dict[str, Any]] = {}
    origins: dict[str, tuple[str, str]] = {}
    lines: dict[str, int] = {}
    for pf in files:
        for name, sections in pf.entries.items():
            entries[name], origins[name] = sections, (pf.origin, pf.file)
            lines[name] = pf.lines.get((pf.keys[name],), 0)
    order = sorted(entries)
    return {n: entries[n] for n in order}, {n: origins[n] for n in order}, {n: lines[n] for n in order}


def parse_file(text: str, file: str, origin: str | None = None) -> ParsedFile:
    """The checked file, or PolicyError on its first problem (in file order)."""
    problems, parsed = check_file(text, file, origin)
    if problems:
        raise problems[0].error()
    return parsed
