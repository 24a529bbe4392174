"""Reading and checking pip-policy.json files (ComfyUI-Manager's schema) for comfylock.policy.

A policy file is checked whole before anything applies it: a typo in a policy silently ignored would
let the very package the user meant to keep out land in the lock. Every problem carries the JSON path of
the offending value and the line it sits on (see `_policy_json`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from comfylock._exceptions import InputError
from comfylock._fs import read_bytes
from comfylock.policy.facts import CONDITION_TYPES, normalize_os, parse_version
from comfylock.policy.jsontext import JsonPath, ParsedFile, Problem, kind_of, locate
from comfylock.policy.merge import conflicts

SECTIONS = ("uninstall", "apply_first_match", "apply_all_matches", "restore")
ACTIONS = {
    "apply_first_match": ("skip", "force_version", "replace"),
    "apply_all_matches": ("pin_dependencies", "install_with", "warn"),
}
ON_FAILURE = ("fail", "retry_without_pin")  # anything else means "warn", as in Manager
ALWAYS_FIRST = ("apply_first_match", "uninstall", "restore")  # sections where only the first match applies

_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
_URL = re.compile(r"^(https?|file)://\S+$")


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
            raise self.fail(at, f"expected a string, got {kind_of(v)}")
        return v

    def boolean(self, v: Any, at: JsonPath) -> bool:
        if not isinstance(v, bool):
            raise self.fail(at, f"expected true or false, got {kind_of(v)}")
        return v

    def name(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        if not _NAME.match(s):
            raise self.fail(at, f"invalid package name {s!r}", "a PyPI project name such as 'opencv-python'")
        return canonicalize_name(s)

    def version(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        if parse_version(s) is None:
            raise self.fail(at, f"invalid version {s!r}", "an exact version such as '1.26.4'")
        return s

    def specifier(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        try:
            if not s:
                raise InvalidSpecifier(s)
            return str(SpecifierSet(s))
        except InvalidSpecifier:
            versionish = parse_version(s) is not None
            hint = f"write '=={s}' or '>={s}'" if versionish else "a version specifier such as '>=1.0'"
            raise self.fail(at, f"invalid version specifier {s!r}", hint) from None

    def url(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at).strip()
        if not _URL.match(s):
            raise self.fail(at, f"invalid index URL {s!r}", "an http(s):// or file:// URL")
        return s

    def names(self, v: Any, at: JsonPath) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(at, f"expected a list of package names, got {kind_of(v)}")
        return [self.name(x, (*at, i)) for i, x in enumerate(v)]

    def requirements(self, v: Any, at: JsonPath) -> list[str]:
        if not isinstance(v, list):
            raise self.fail(at, f"expected a list of requirement strings, got {kind_of(v)}")
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
            raise self.fail(
                at, f"expected an object, got {kind_of(v)}", '{"type": "installed"} or {"type": "platform"}'
            )
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
            raise self.fail(
                (*at, "type"),
                f"unknown condition type {kind!r}",
                f"expected one of {', '.join(CONDITION_TYPES)}",
            )
        out: dict[str, Any] = {"type": kind}
        for key, value in v.items():
            if key == "type":
                continue
            if key not in fields:
                raise self.fail(
                    (*at, key),
                    f"unknown condition key {key!r} for {kind}",
                    f"expected one of {', '.join(fields)}",
                )
            out[key] = fields[key](value, (*at, key))
        return out

    def os(self, v: Any, at: JsonPath) -> str:
        s = self.string(v, at)
        os_name = normalize_os(s)
        if os_name is None:
            raise self.fail(at, f"unknown os {s!r}", "expected one of linux, windows, macos")
        return os_name


def _uncomment(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def _fields(c: _Checker, section: str, kind: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(required, optional) field checks of one entry."""
    common = {"condition": c.condition, "reason": c.string, "label": c.string}  # label: comfylock's
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
        raise c.fail(at, f"expected an object, got {kind_of(raw)}")
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
            c.fail(
                (*at, key),
                f"unknown field {key!r} for {kind or section}",
                f"expected one of {', '.join([*required, *optional])}",
            )
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
        raise c.fail(
            (*at, "replacement"),
            f"replace of {package!r} by itself",
            "remove the entry, or use force_version to change its version",
        )
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
        return [
            Problem(file, "$", f"invalid JSON: {e.msg} (line {e.lineno}, column {e.colno})", None, e.lineno)
        ], parsed
    except RecursionError:
        return [Problem(file, "$", "invalid JSON: nested too deeply", None, None)], parsed
    parsed.lines, dups = locate(text)
    c = _Checker(parsed)
    for path in dups:
        c.fail(path, f"duplicate key {path[-1]!r}", "JSON keeps only the last one; merge the two")
    if not isinstance(data, dict):
        c.fail(
            (),
            f"expected an object of package names, got {kind_of(data)}",
            '{"numpy": {"apply_first_match": [...]}}',
        )
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
            c.fail(
                (key,),
                f"expected an object of sections, got {kind_of(sections)}",
                '{"apply_first_match": [...]}',
            )
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
            c.fail(at, f"expected a list of entries, got {kind_of(items)}")
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
                c.fail(
                    (*at, i),
                    f"unreachable: entry [{always_at}] has no condition, so it always matches first",
                    "give the earlier entry a condition or move it last",
                )
            elif "condition" not in entry:
                always_at = i
            good.append(entry)
        out[section] = good
    return out


def check_path(path: Path, origin: str | None = None) -> tuple[list[Problem], ParsedFile]:
    """check_file on a file on disk; a missing or unreadable file is a problem of its own."""
    file = str(path)
    try:
        text = read_bytes(path).decode("utf-8-sig")
    except InputError as e:
        problem = Problem(file, "$", e.message)
    except FileNotFoundError:
        problem = Problem(file, "$", "policy file not found", "check the path given")
    except OSError as e:
        problem = Problem(file, "$", f"cannot read policy file: {e.strerror or e}")
    except UnicodeDecodeError as e:
        problem = Problem(file, "$", f"policy file is not UTF-8 text (byte {e.start})")
    else:
        return check_file(text, file, origin)
    return [problem], ParsedFile(file, origin or file, {})


def read_file(path: Path, origin: str) -> ParsedFile:
    """One policy file from disk, checked; PolicyError on its first problem (saying how many follow)."""
    problems, parsed = check_path(path, origin)
    if len(problems) > 1:
        first, more = problems[0], len(problems) - 1
        also = f"{more} more problem{'s' * (more > 1)} in this file: `comfylock policy check` lists them"
        raise replace(first, hint=f"{first.hint}; {also}" if first.hint else also).error()
    if problems:
        raise problems[0].error()
    return parsed
