"""The YAML subset PyYAML's block style writes, which is all a ComfyUI-Manager snapshot uses.

comfylock depends on no YAML library; anything outside this subset is an error naming file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfylock._exceptions import InputError


@dataclass
class _Line:
    no: int  # 1-based
    indent: int  # -1 for a blank line
    text: str  # without indentation


_NULL = {"", "~", "null", "Null", "NULL"}
_BOOL = {
    **dict.fromkeys(("true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"), True),
    **dict.fromkeys(("false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"), False),
}
_ESCAPES = {"0": "\0", "a": "\a", "b": "\b", "t": "\t", "\t": "\t", "n": "\n", "v": "\v", "f": "\f",
            "r": "\r", "e": "\x1b", " ": " ", '"': '"', "/": "/", "\\": "\\", "N": "\x85", "_": "\xa0",
            "L": "\u2028", "P": "\u2029"}  # fmt: skip
_HEX = {"x": 2, "u": 4, "U": 8}


class _YamlReader:
    """Block mappings and sequences of scalars (plain, single- or double-quoted, folded over lines),
    `? ` keys (PyYAML's form for keys past 128 characters), `{}` and `[]`. Plain scalars stay text
    except null and booleans; no anchors, tags, flow collections or block scalars."""

    def __init__(self, text: str, path: Path) -> None:
        self.path, self.i = path, 0
        self.lines: list[_Line] = []
        for no, raw in enumerate(text.split("\n"), start=1):
            body = raw.rstrip()
            stripped = body.lstrip(" ")
            if body in ("---", "...") and all(ln.indent < 0 or ln.text[0] == "#" for ln in self.lines):
                continue
            if stripped.startswith("\t"):
                self.fail(no, "tab in indentation")
            self.lines.append(_Line(no, len(body) - len(stripped) if stripped else -1, stripped))

    def fail(self, no: int, what: str) -> None:
        raise InputError(f"YAML: {what}", path=self.path, line=no, hint="comfylock reads the Manager's YAML")

    def skip(self) -> _Line | None:
        """The next line with content (a `#` line is content only inside a quoted scalar)."""
        while self.i < len(self.lines) and (
            self.lines[self.i].indent < 0 or self.lines[self.i].text[0] == "#"
        ):
            self.i += 1
        return self.lines[self.i] if self.i < len(self.lines) else None

    def parse(self) -> Any:
        line = self.skip()
        value = None if line is None else self.block(line)
        if (line := self.skip()) is not None:
            self.fail(line.no, "unexpected indentation")
        return value

    def block(self, line: _Line) -> Any:
        return self.sequence(line.indent) if self._item(line) else self.mapping(line.indent)

    @staticmethod
    def _item(line: _Line) -> bool:
        return line.text == "-" or line.text.startswith("- ")

    def _inline(self, line: _Line, rest: str) -> _Line:
        """`- key: value` or `: key: value`: a mapping whose first line starts where `key` does."""
        self.lines[self.i] = _Line(line.no, line.indent + len(line.text) - len(rest), rest)
        return self.lines[self.i]

    def mapping(self, indent: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while (line := self.skip()) is not None and line.indent == indent:
            if self._item(line):
                self.fail(line.no, "a list item where a key was expected")
            key, rest = self.key(line)
            if key in out:
                self.fail(line.no, f"duplicate key {key!r}")
            value_line = self.lines[self.i]
            if value_line is not line and rest and self._split_key(rest, line.no, strict=False):
                out[key] = self.mapping(self._inline(value_line, rest).indent)
            else:
                out[key] = self.value(rest, indent, line.no)
        if line is not None and line.indent > indent:
            self.fail(line.no, "unexpected indentation")
        return out

    def sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while (line := self.skip()) is not None and line.indent == indent and self._item(line):
            rest = line.text[1:].lstrip(" ")
            if rest and self._split_key(rest, line.no, strict=False) is not None:
                out.append(self.mapping(self._inline(line, rest).indent))
            else:
                out.append(self.value(rest, indent, line.no))
        return out

    def value(self, rest: str, indent: int, no: int) -> Any:
        """The value after `key:` or `- ` (self.i at its line): a nested block, or a scalar."""
        self.i += 1
        nxt = self.skip() if not rest else None
        if nxt is not None and (nxt.indent > indent or (nxt.indent == indent and self._item(nxt))):
            return self.block(nxt)
        return self.scalar(self.continued(rest, indent), no)

    def continued(self, text: str, indent: int) -> str:
        # A long scalar is folded onto deeper-indented lines: one line break reads as a space, each
        # blank line as a newline, and a double-quoted line ending in an odd `\` joins directly.
        while text:
            j = self.i
            while j < len(self.lines) and self.lines[j].indent < 0:
                j += 1
            if j >= len(self.lines) or self.lines[j].indent <= indent:
                break
            nxt, quoted = self.lines[j].text, text[0] in "'\""
            if text in ("{}", "[]"):
                break
            if (self._quote_end(text) is not None) if quoted else nxt.startswith("#"):
                break
            odd = (len(text) - len(text.rstrip("\\"))) % 2 == 1
            if j > self.i:
                text += "\n" * (j - self.i) + nxt
            else:
                text = text[:-1] + nxt if text[0] == '"' and odd else f"{text} {nxt}"
            self.i = j + 1
        return text

    def key(self, line: _Line) -> tuple[str, str]:
        """A key (never typed: `true` stays text) and the rest of its line; self.i on the value line."""
        if line.text != "?" and not line.text.startswith("? "):
            raw, rest = self._split_key(line.text, line.no, strict=True) or ("", "")
            return str(self.scalar(raw, line.no, typed=False)), rest
        self.i += 1  # PyYAML's form for keys past 128 characters: "? KEY" then ": VALUE"
        text = self.continued(line.text[1:].strip(), line.indent)
        colon = self.skip()
        if colon is None or colon.indent != line.indent or not colon.text.startswith(":"):
            self.fail(line.no, "a `? ` key without its `: ` value line")
        return str(self.scalar(text, line.no, typed=False)), colon.text[1:].strip()  # type: ignore[union-attr]

    def _split_key(self, text: str, no: int, *, strict: bool) -> tuple[str, str] | None:
        if text[0] in "'\"":
            end = self._quote_end(text)
            if end is not None and text[end + 1 : end + 2] == ":" and text[end + 2 : end + 3] in ("", " "):
                return text[: end + 1], text[end + 2 :].strip()
        elif (m := re.search(r":( |$)", text)) and text[0] not in "{[":
            return text[: m.start()], text[m.end() :].strip()
        if strict:
            self.fail(no, f"expected `key: value`, found {text[:60]!r}")
        return None

    @staticmethod
    def _quote_end(text: str) -> int | None:
        q, i = text[0], 1
        while i < len(text):
            if q == '"' and text[i] == "\\":
                i += 2
            elif text[i] == q and q == "'" and text[i + 1 : i + 2] == "'":
                i += 2
            elif text[i] == q:
                return i
            else:
                i += 1
        return None

    def scalar(self, text: str, no: int, *, typed: bool = True) -> Any:
        if not text or text[0] not in "'\"":
            text = re.split(r"\s#", text, maxsplit=1)[0].strip()  # a comment after a plain scalar
            if text in ("{}", "[]"):
                return {} if text == "{}" else []
            if text[:1] in ("&", "*", "!", "|", ">", "{", "[", "%", "@", "`"):
                self.fail(no, f"YAML feature not in the Manager's snapshots: {text[:40]!r}")
            return text if not typed else None if text in _NULL else _BOOL.get(text, text)
        end = self._quote_end(text)
        if end is None:
            self.fail(no, "unterminated quoted string")
        tail = text[end + 1 :].strip()  # type: ignore[operator]
        if tail and not tail.startswith("#"):
            self.fail(no, f"unexpected text after a quoted string: {tail[:40]!r}")
        body = text[1:end]
        if text[0] == "'":
            return body.replace("''", "'")
        out, i = [], 0
        while i < len(body):
            e = body[i + 1 : i + 2] if body[i] == "\\" else ""
            if not e:
                out.append(body[i])
                i += 1
            elif e in _HEX:
                digits = body[i + 2 : i + 2 + _HEX[e]]
                if len(digits) != _HEX[e] or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    self.fail(no, f"bad escape \\{e}{digits}")
                out.append(chr(int(digits, 16)))
                i += 2 + _HEX[e]
            elif e in _ESCAPES:
                out.append(_ESCAPES[e])
                i += 2
            else:
                self.fail(no, f"unknown escape \\{e}")
        return "".join(out)


def parse_yaml(text: str, path: Path) -> Any:
    """Parse the YAML subset the Manager writes; InputError(file:line) for anything else."""
    try:
        return _YamlReader(text, path).parse()
    except RecursionError:  # thousands of nested mappings: no snapshot is like that
        raise InputError("YAML nested too deeply to be a snapshot", path=path, line=1) from None
