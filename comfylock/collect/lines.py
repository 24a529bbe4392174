"""A requirements file's text as pip reads it: physical lines (split on \\r\\n, \\r or \\n only), comments
(a '#' at the start or after white space), and logical lines (a trailing backslash joins the next)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: \x0c or \u2028 would shift line numbers
COMMENT = re.compile(r"(?:^|\s)#.*")  # a '#' glued to text (URL fragments: #egg=) is not a comment


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first physical line number, text) of each non-empty logical line, comments removed."""
    raws = LINE_BREAK.split(text)
    if "#" not in text and "\\" not in text:  # nothing to remove or join: most files
        yield from ((n, line.strip()) for n, line in enumerate(raws, 1) if line.strip())
        return
    for first, _, line in logical_spans(raws):
        yield first + 1, line


def logical_spans(raws: Sequence[str]) -> Iterator[tuple[int, int, str]]:
    """(first, one past last, text) of each non-empty logical line of physical lines `raws` (0-based):
    comments removed, lines ending in a backslash joined with the next."""
    start, parts = 0, list[str]()
    for i, raw in enumerate(raws):
        # Comments go first so a comment ending in '\' does not swallow the next line.
        line = (COMMENT.sub("", raw, count=1) if "#" in raw else raw).rstrip()
        if not parts:
            start = i
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        text = "".join([*parts, line]).strip()
        parts = []
        if text:
            yield start, i + 1, text
    if parts and "".join(parts).strip():
        yield start, len(raws), "".join(parts).strip()
