"""A pip-policy.json file as text: JSON paths, the line every value sits on, and the Problem type.

json.loads keeps no positions, yet a problem deep in a policy file must point at its own line (not at
the top of the package), so the one-line PolicyError names the spot to fix. This module recovers
positions from the text; `_policy_schema` decides what is wrong, `_policy_conflicts` what cannot hold.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any

from comfylock._exceptions import PolicyError

JsonPath = tuple[str | int, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


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
        # A problem of the whole file (missing, unreadable) reads better without a bare "$: ".
        whole = self.json_path == "$" and self.line is None
        message = self.message if whole else f"{self.json_path}: {self.message}"
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
        """The line of `path`, else of its nearest ancestor that has one."""
        for n in range(len(path), -1, -1):
            line = self.lines.get(path[:n])
            if line is not None:
                return line
        return None

    def problem(self, path: JsonPath, message: str, hint: str | None = None) -> Problem:
        return Problem(self.file, render_path(path), message, hint, self.line_of(path))

    def package_problem(self, name: str, path: JsonPath, message: str, hint: str | None = None) -> Problem:
        """A problem under package `name` (canonical), located at the key as it is written."""
        return self.problem((self.keys.get(name, name), *path), message, hint)


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


def kind_of(value: Any) -> str:
    """What a JSON value is, in the words a policy author knows."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {dict: "object", list: "list", str: "string", type(None): "null"}.get(type(value), "value")


def locate(text: str) -> tuple[dict[JsonPath, int], list[JsonPath]]:
    """Line of every key and list item of already-valid JSON, and the keys written twice.

    Keys starting with '_' are comments: writing one twice is fine (json keeps the last, nobody reads it).
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
