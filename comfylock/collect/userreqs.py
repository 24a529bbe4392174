"""`comfylock add` / `remove`: edit the user's own requirements file as the user wrote it.

The file is the user's: comment lines, inline comments, option lines and the order stay as they are.
Each requirement is read by compile's own parser (`_reqfile`), so what add sees is what compile will
read, and a line compile would refuse is refused here too, naming its file and line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfylock._exceptions import InputError
from comfylock._fs import read_text_file
from comfylock._names import canon
from comfylock.collect.lines import COMMENT, LINE_BREAK, logical_spans
from comfylock.collect.reqfile import _OPTIONS_START, _classify


@dataclass(frozen=True)
class _Entry:
    start: int  # index of its first physical line
    end: int  # one past its last physical line
    name: str  # canonical; "" for an option line
    text: str  # the logical line, comment removed


def _name(text: str, path: Path | None, line: int | None) -> str:
    """The canonical name of a requirement as compile reads it; InputError(file:line) if compile
    would refuse it."""
    split = _OPTIONS_START.search(text)
    kind, value = _classify(text[: split.start()] if split else text)
    if kind != "ok":
        why = value if kind in ("bad", "refused") else "a local path cannot be locked"
        raise InputError(f"not a valid requirement {text[:80]!r}: {why}", path=path, line=line)
    return str(canon(value.name))  # type: ignore[union-attr]


class UserFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        text = read_text_file(path)[0] if os.path.lexists(path) else ""
        self.raws = LINE_BREAK.split(text)
        if self.raws and self.raws[-1] == "":
            self.raws.pop()  # the final newline ends the last line; it starts none
        self._reparse()

    def requirements(self) -> list[str]:
        return [e.text for e in self.entries if e.name]

    def add(self, spec: str) -> None:
        """Put `spec` in place of the package's line (keeping its inline comment), else at the end."""
        spec = spec.strip()
        if not spec or spec.startswith("-") or COMMENT.search(spec) or LINE_BREAK.search(spec):
            raise InputError(f"not a single requirement {spec!r}", hint="give one requirement per argument")
        name = _name(spec, None, None)
        old = next((e for e in self.entries if e.name == name), None)
        if old is None:
            self.raws.append(spec)
        else:
            last = self.raws[old.end - 1]
            comment = COMMENT.search(last) if old.end - old.start == 1 else None
            self.raws[old.start : old.end] = [spec + ("  " + comment[0].strip() if comment else "")]
        self._reparse()
        while len(same := [e for e in self.entries if e.name == name]) > 1:  # a second line for it
            del self.raws[same[-1].start : same[-1].end]
            self._reparse()

    def remove(self, names: Sequence[str]) -> None:
        drop = {str(canon(n)) for n in names}
        missing = drop - {e.name for e in self.entries}
        if missing:
            raise InputError(f"{sorted(missing)[0]} is not in your requirements", path=self.path)
        for e in reversed(self.entries):
            if e.name in drop:
                del self.raws[e.start : e.end]
        self._reparse()

    def _reparse(self) -> None:
        self.entries = [
            _Entry(a, b, "" if t.startswith("-") else _name(t, self.path, a + 1), t)
            for a, b, t in logical_spans(self.raws)
        ]

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.raws)
