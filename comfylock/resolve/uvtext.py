"""What uv's standard error says, read as data: the error with its whole cause chain, its warnings, the
packages and URLs it names, and which collected requirement or locked package they point back to.

uv prints one `error:` line followed by its causes (`  cause: ...` in 0.13, `Caused by: ...` in other
versions), sometimes a build's or git's own output indented under a cause, then `hint:` lines. No
function here runs anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from comfylock._names import canon

if TYPE_CHECKING:
    from comfylock.collect.gather import Req
    from comfylock.lockfile.lock import Lock

_CAUSE = re.compile(r"^\s*(?:cause:|caused by:)\s*", re.IGNORECASE)
_SUBJECT = re.compile(r"`([^`]+)`")
_URL = re.compile(r"(?:git\+|hg\+|svn\+|bzr\+)?[a-z][a-z0-9+.-]*://[^\s'\"`)]+", re.IGNORECASE)
# A package name written right before a version operator, an extra or a marker (`numpy>=2`, `foo[x]`,
# `torch{sys_platform == 'linux'}`), or after the words uv puts before a bare name.
_NAME_OP = re.compile(r"(?<![\w.\-=<>!~])([A-Za-z0-9][A-Za-z0-9._-]*?)(?===|!=|<=|>=|~=|<|>|\[|\{)")
_NAME_AFTER = re.compile(
    r"(?:versions? of|you require|depends? on|requires?|and) ([A-Za-z0-9][A-Za-z0-9._-]*)(?=[\s,.]|$)"
)
_NAME_BEFORE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*) (?:was not found|is unavailable|has no)")
_NOT_NAMES = frozenset(
    {"you", "we", "your", "all", "the", "and", "because", "there", "only", "no", "it", "that", "is", "are"}
)


@dataclass(frozen=True)
class UvMessage:
    error: str  # the `error:` line, prefix removed ("" when uv printed none)
    causes: tuple[str, ...]  # each cause on one line; a tool's own output shortened to its last line
    hints: tuple[str, ...]
    warnings: tuple[str, ...]

    def one_line(self) -> str:
        """The error and every cause joined with ': ', as one line."""
        return ": ".join(p for p in (self.error, *self.causes) if p)

    @property
    def text(self) -> str:
        return " ".join((self.error, *self.causes))


def parse(stderr: str) -> UvMessage:
    error, hints, warnings = "", [], []
    causes: list[list[str]] = []
    in_error = False
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("warning:"):
            warnings.append(line.removeprefix("warning:").strip())
            in_error = False
        elif line.startswith("error:") and not error:
            error, in_error = line.removeprefix("error:").strip(), True
        elif line.startswith("hint:"):
            hints.append(line.removeprefix("hint:").strip())
            in_error = False
        elif in_error and _CAUSE.match(raw):
            causes.append([_CAUSE.sub("", raw).strip()])
        elif in_error and raw[:1].isspace():
            # A build's stderr or git's output, indented under its cause: its last line says why.
            (causes[-1] if causes else [error]).append(line)
    return UvMessage(
        error, tuple(_cause_line(c) for c in causes), tuple(hints), tuple(dict.fromkeys(warnings))
    )


def _cause_line(parts: list[str]) -> str:
    head, rest = parts[0], [p for p in parts[1:] if not re.fullmatch(r"\[\w+\]|-+ \w+ ?-*", p)]
    return f"{head}: {rest[-1]}" if rest else head


def subjects(text: str) -> list[str]:
    """What uv quotes in backticks (`foo==1.0`, `bar @ https://...`), in order, without commands."""
    found = dict.fromkeys(_SUBJECT.findall(text))
    return [s for s in found if not any(c in s.split(" @ ")[0] for c in "/ ")]


def subject_names(text: str) -> list[str]:
    out = []
    for s in subjects(text):
        name = re.split(r"[\s=<>!~;@\[]", s, maxsplit=1)[0]
        if name and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            out.append(canon(name))
    return list(dict.fromkeys(out))


def conflict_names(explanation: str) -> frozenset[str]:
    """The package names in uv's derivation of a conflict: those written with a version, extra or
    marker, and those after "versions of", "you require", "depends on" (never the prose around them)."""
    text = " ".join(explanation.split())
    found = {canon(m) for m in _NAME_OP.findall(text)}
    for pattern in (_NAME_AFTER, _NAME_BEFORE):
        found |= {canon(m) for m in pattern.findall(text) if m.lower() not in _NOT_NAMES}
    # "the current Python version (3.11.7) does not satisfy Python>=3.12": the interpreter, no package.
    return frozenset(n for n in found if n != "python" and not re.fullmatch(r"[\d.-]+", n))


def _plain_url(url: str) -> str:
    """A URL as any tool may print it: no VCS prefix, no fragment, no `@rev` after a git path."""
    url = re.sub(r"^(?:git|hg|svn|bzr)\+", "", url, flags=re.IGNORECASE).split("#")[0]
    scheme, sep, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    if "@" in path:
        path = path.rsplit("@", 1)[0]
    return f"{scheme}{sep}{host.rpartition('@')[2]}{slash}{path}".rstrip("/")


def blame(text: str, requirements: Iterable[Req], hints: Sequence[str] = ()) -> list[Req]:
    """The collected requirements uv's message is about: by URL (unnamed URL lines included, whose
    name comfylock made up), else by the names it quotes, else (a dependency failed) by the chain uv's
    hints give."""
    reqs = list(requirements)
    urls = {_plain_url(u) for u in _URL.findall(text)}
    by_url = [r for r in reqs if r.requirement.url and _plain_url(r.requirement.url) in urls]
    if by_url:
        return by_url
    names = set(subject_names(text))
    direct = [r for r in reqs if not r.constraint and r.name in names]
    if direct or not hints:
        return direct
    # A dependency: uv's hint "`c` (v1) was included because `a` (v1) depends on `b` ..." names the chain.
    chain = {n for h in hints if "was included because" in h for n in subject_names(h)}
    return [r for r in reqs if not r.constraint and r.name in chain]


def inclusion(hints: Sequence[str]) -> str | None:
    """uv's hint saying why a dependency was in the resolution, if it gave one."""
    return next((h for h in hints if "was included because" in h), None)


def chains(lock: Lock, name: str, limit: int = 3) -> list[str]:
    """How `name` got into the lock: `pkg <- parent <- Node (file:line)`, shortest first."""
    pins = lock.by_name()
    out: list[str] = []
    todo: list[list[str]] = [[name]]
    seen = {name}
    while todo and len(out) < limit:
        path = todo.pop(0)
        pin = pins.get(path[-1])
        if pin is None:
            continue
        for r in pin.requested_by:
            out.append(" <- ".join([*path, f"{r.node} ({r.file}:{r.line})"]))
        for parent in pin.needed_by:
            if parent not in seen:
                seen.add(parent)
                todo.append([*path, parent])
    return out[:limit]


def chain_nodes(lock: Lock, names: Sequence[str]) -> list[str]:
    """The nodes at the end of `chains` for every name, in order."""
    nodes = []
    for name in names:
        for c in chains(lock, name, limit=20):
            nodes.append(c.rsplit(" <- ", 1)[-1].rsplit(" (", 1)[0])
    return list(dict.fromkeys(nodes))


def asked_by(warning: str, requirements: Iterable[Req]) -> list[Req]:
    """The requirements a uv warning is about ("`foo==1` does not have an extra named `bar`": those
    asking for foo[bar])."""
    names = subject_names(warning)
    extra = re.search(r"extra named `([^`]+)`", warning)
    hits = [r for r in requirements if r.name in names[:1]]
    if extra:  # a line asking without that extra did not cause it: then a dependency did
        wanted = canon(extra.group(1))
        hits = [r for r in hits if wanted in {canon(e) for e in r.requirement.extras}]
    return hits
