"""Stage 5: the lock file: its format, reading it back, writing it atomically, and diffing two locks.

A lock is a pip-compatible requirements file (`uv pip sync LOCK` and `pip install -r LOCK` work without
comfylock) with exact `==` pins, a header of `# key: value` comment lines comfylock reads back, and
under each pin the lines that asked for it. Nothing in it depends on time or on the order files were
read, so the same inputs give a byte-identical lock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from comfylock._exceptions import InputError, LockFileError
from comfylock._fs import BIG_BYTES, atomic_write, read_bytes
from comfylock._names import NORMAL_VERSION, canon, release
from comfylock._redact import strip_text

FORMAT_VERSION = "1"
HISTORY_KEY = "history-trigger"  # the header key only history entries carry (see history.record)
_PREAMBLE = (
    "# comfylock lock file: the exact Python packages of this ComfyUI install.",
    "# Made by `comfylock compile`; applied by `comfylock sync`. Edit requirements, not this file.",
)
# Header keys that may repeat, in the order they are written.
_LIST_KEYS = ("node", "policy", "warning")
_OPTIONS = ("--index-url", "--extra-index-url", "--find-links", "--no-index")
# `name==version` with a version in PEP 440's normal form, as uv writes every registry pin: read without
# packaging, whose import alone costs more than the rest of a no-op sync. Anything else takes the full parser.
_SIMPLE_PIN = re.compile(
    rf"(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)==(?P<version>{NORMAL_VERSION.pattern})",
    re.ASCII,
)
_REQUESTED = re.compile(r"^requested by (?P<node>.+?) \((?P<file>[^()]*):(?P<line>\d+)\): ?(?P<text>.*)$")
# "opencv-python>=4.5 -> opencv-contrib-python-headless>=4.5 (policy: one OpenCV)"
_REWRITE = re.compile(r"^(?P<text>.+?) -> (?P<new>.+) \(policy: (?P<policy>[^()]*)\)$")


@dataclass(frozen=True)
class Request:
    """One line of one node that asked for a package, as recorded under its pin."""

    node: str
    file: str  # relative to the node's folder (core: ComfyUI's folder), forward slashes
    line: int
    text: str  # the line as the node wrote it (comments removed)
    rewritten: str | None = None  # what a policy made of it (replace, install_with), if one did
    policy: str | None = None  # that policy's label

    def quoted(self) -> str:
        """The line as written, then the policy's rewrite: what the lock and `why` show."""
        if self.rewritten is None:
            return self.text
        return f"{self.text} -> {self.rewritten} (policy: {self.policy or '?'})"


@dataclass(frozen=True)
class Pin:
    """One package of a lock: its requirement line and who asked for it."""

    name: str  # canonical
    spec: str  # the requirement line as written: "numpy==1.26.4" or "foo @ git+https://..."
    requested_by: tuple[Request, ...] = ()
    needed_by: tuple[str, ...] = ()  # canonical names of packages in the lock that depend on it

    @property
    def editable(self) -> bool:
        """`-e name @ URL`: only a history entry holds one (the user's own editable install, as
        `uv pip freeze` listed it); compile refuses editable and local requirements from any file."""
        return self.spec.startswith("-e ")

    @property
    def version(self) -> str | None:
        """The pinned version, or None for a URL or editable requirement."""
        simple = _SIMPLE_PIN.fullmatch(self.spec)
        if simple:
            return simple["version"]
        if self.editable:
            return None
        from packaging.requirements import Requirement

        req = Requirement(self.spec)
        spec = next(iter(req.specifier), None)
        return spec.version if spec is not None and spec.operator in ("==", "===") else None


@dataclass(frozen=True)
class Lock:
    """A lock file read or to be written: pins, index options, header keys and lists."""

    pins: tuple[Pin, ...]  # sorted by name
    options: tuple[str, ...] = ()  # pip option lines: "--index-url URL", "--find-links DIR", ...
    meta: Mapping[str, str] = field(default_factory=dict)  # single-valued header keys
    lists: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # repeated header keys
    intact: bool = True  # the body hashes to the header's body-sha256
    sha_line: int | None = None  # where the header's body-sha256 is (a damaged lock's error names it)

    def by_name(self) -> dict[str, Pin]:
        return {p.name: p for p in self.pins}


def _clean(text: str) -> str:
    # Node text ends up in comments: a newline or other control character must not start a new line.
    # Credentials in URLs never reach a file (the lock is meant to be committed and shared).
    return strip_text("".join(c if c.isprintable() else "?" for c in text))


clean = _clean  # what a header or annotation line holds of a text


def format_body(pins: Iterable[Pin], options: Iterable[str]) -> str:
    lines = list(options)
    if lines:
        lines.append("")
    for pin in sorted(pins, key=lambda p: p.name):
        lines.append(pin.spec)
        for r in pin.requested_by:
            lines.append(
                f"    # requested by {_clean(r.node)} ({_clean(r.file)}:{r.line}): {_clean(r.quoted())}"
            )
        if pin.needed_by:
            lines.append(f"    # needed by {', '.join(pin.needed_by)}")
    return "\n".join(lines) + "\n"


def format_lock(lock: Lock) -> str:
    """The lock file's text. body-sha256 is computed here, so a caller cannot get it wrong.

    URL credentials are dropped (`https://user:token@host` -> `https://host`): sync gets them back from
    the user's own settings (`_redact.restore`), netrc or uv's keyring support.
    """
    body = strip_text(format_body(lock.pins, lock.options))
    header = [*_PREAMBLE, "#", f"# comfylock-lock: {FORMAT_VERSION}"]
    for key in sorted(lock.meta):
        if key not in ("comfylock-lock", "body-sha256"):
            header.append(f"# {key}: {_clean(lock.meta[key])}")
    for key in _LIST_KEYS:
        header.extend(f"# {key}: {_clean(v)}" for v in lock.lists.get(key, ()))
    header.append(f"# body-sha256: {hashlib.sha256(body.encode()).hexdigest()}")
    return "\n".join(header) + "\n\n" + body


def write_lock(path: Path, lock: Lock) -> str:
    text = format_lock(lock)
    atomic_write(path, text)
    return text


def read_lock(path: Path) -> Lock:
    try:
        raw = read_bytes(path, BIG_BYTES)
    except FileNotFoundError:
        raise LockFileError("no lock file", path=path, hint="run `comfylock compile` first") from None
    except InputError as e:
        raise LockFileError(e.message, path=path) from None
    except OSError as e:
        raise LockFileError(f"cannot read lock file: {e.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise LockFileError("lock file is not UTF-8 text", path=path, line=line) from None
    return parse_lock(text, path)


def parse_lock(text: str, path: Path | str = "<lock>") -> Lock:
    """Read a lock back. Also reads a plain `name==version` requirements file (no header)."""
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise LockFileError("lock file contains binary data", path=path, line=line)
    lines = text.replace("\r\n", "\n").split("\n")
    meta: dict[str, str] = {}
    lists: dict[str, list[str]] = {k: [] for k in _LIST_KEYS}
    where: dict[str, int] = {}
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        # lstrip only: an empty or space-ended value must read back as written
        key, sep, value = lines[i][1:].lstrip().partition(": ")
        if sep and re.fullmatch(r"[a-z0-9-]+", key):
            if key in lists:
                lists[key].append(value)
            else:
                meta[key] = value
                where[key] = i + 1
        i += 1
    body_start = i + 1 if i < len(lines) and lines[i] == "" else i
    body = "\n".join(lines[body_start:])
    if meta.get("comfylock-lock", FORMAT_VERSION) != FORMAT_VERSION:
        raise LockFileError(
            f"lock format {meta['comfylock-lock']!r} is not one this comfylock reads ({FORMAT_VERSION})",
            path=path,
            line=where["comfylock-lock"],
            hint="upgrade comfylock",
        )
    expected = meta.get("body-sha256")
    # A file that says it is comfylock's (its preamble or header keys, wherever they ended up) without a
    # hash line in its header was cut short or reordered: what is left may lack packages, or all.
    ours = "comfylock-lock" in meta or any(
        ln == _PREAMBLE[0] or ln.startswith(("# comfylock-lock:", "# body-sha256:")) for ln in lines
    )
    intact = hashlib.sha256(body.encode()).hexdigest() == expected if expected is not None else not ours
    # Editable pins are the user's own environment as a history entry recorded it; a compiled lock
    # never holds one (compile refuses `-e` and local paths in every requirement file).
    pins, options = _parse_body(lines, body_start, path, editable_ok=HISTORY_KEY in meta)
    return Lock(
        pins=tuple(pins),
        options=tuple(options),
        meta=meta,
        lists={k: tuple(v) for k, v in lists.items() if v},
        intact=intact,
        sha_line=where.get("body-sha256", max(i, 1)),
    )


_REBUILD = "run `comfylock compile` to rebuild it; pin a version yourself with `comfylock add NAME==VERSION`"


def require_intact(lock: Lock, path: Path | str) -> None:
    """Refuse, before sync acts on it, a lock that is not what comfylock wrote: its body no longer
    matches body-sha256 (a pin edited, deleted or duplicated), it was cut short, or it holds nothing.

    A deleted pin parses fine and would sync an environment missing a package, and an empty lock makes
    sync remove everything; only the hash tells these from the real thing.
    """
    if not lock.intact and "body-sha256" in lock.meta:
        raise LockFileError(
            "the pins do not match the lock's body-sha256: edited by hand or damaged",
            path=path,
            line=lock.sha_line,
            hint=_REBUILD,
        )
    if not lock.intact:
        raise LockFileError(
            "the lock has no body-sha256 line: cut short or damaged",
            path=path,
            line=lock.sha_line,
            hint=_REBUILD,
        )
    if not lock.pins and not lock.meta and not lock.options:
        raise LockFileError(
            "the lock is empty: syncing it would remove every package",
            path=path,
            line=1,
            hint="run `comfylock compile`; to really empty the environment, compile with no requirements",
        )


def _parse_body(
    lines: list[str], start: int, path: Path | str, *, editable_ok: bool = False
) -> tuple[list[Pin], list[str]]:
    pins: list[Pin] = []
    options: list[str] = []
    seen: dict[str, int] = {}
    current: dict | None = None

    def close() -> None:
        if current is not None:
            pins.append(Pin(current["name"], current["spec"], tuple(current["req"]), tuple(current["need"])))

    def bad(message: str, line: int) -> LockFileError:
        return LockFileError(message, path=path, line=line, hint="recompile with `comfylock compile`")

    for n, raw in enumerate(lines[start:], start=start + 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comment = line[1:].strip()
            if current is None:
                continue
            m = _REQUESTED.match(comment)
            if m:
                text, rewrite = m["text"], _REWRITE.match(m["text"])
                if rewrite:
                    new = (rewrite["text"], rewrite["new"], rewrite["policy"])
                    current["req"].append(Request(m["node"], m["file"], int(m["line"]), *new))
                else:
                    current["req"].append(Request(m["node"], m["file"], int(m["line"]), text))
            elif comment.startswith("needed by "):
                current["need"].extend(x.strip() for x in comment[len("needed by ") :].split(","))
            continue
        if line.startswith("-e ") and editable_ok:
            # An editable install a history entry recorded: `-e name @ URL`, the name written out so
            # the entry says which package it is without building it.
            spec = "-e " + line[3:].split(" #")[0].strip()
            name = _check_pin(spec[3:], path, n)
            if " @ " not in spec:
                raise bad(f"an editable pin must read `-e NAME @ URL`: {spec[:80]!r}", n)
        elif line.startswith("-"):
            opt = line.split()[0].split("=")[0]
            if opt not in _OPTIONS:
                raise bad(f"unexpected option {opt[:40]!r} in a lock file", n)
            if opt != "--no-index" and len(line.replace("=", " ", 1).split()) != 2:
                raise bad(f"option {opt} needs exactly one value", n)
            options.append(line)
            continue
        else:
            spec = line.split(" #")[0].strip()
            simple = _SIMPLE_PIN.fullmatch(spec)
            name = canon(simple["name"]) if simple else _check_pin(spec, path, n)
        close()
        if name in seen:
            raise bad(f"{name} is pinned twice (first on line {seen[name]})", n)
        seen[name] = n
        current = {"name": name, "spec": spec, "req": [], "need": []}
    close()
    return sorted(pins, key=lambda p: p.name), options


def pin_name(line: str) -> str | None:
    """The canonical name of a `uv pip freeze` line; None when it is not a requirement."""
    simple = _SIMPLE_PIN.fullmatch(line)
    if simple:  # nearly every line: no need to import packaging (a rollback is timed against uv)
        return canon(simple["name"])
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canon(Requirement(line).name)
    except InvalidRequirement:
        return None


def _check_pin(spec: str, path: Path | str, n: int) -> str:
    """The canonical name of a pin that is not plain `name==version`: a URL, extras, a marker..."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(spec)
    except InvalidRequirement as e:
        raise LockFileError(
            f"not a valid pin {spec[:80]!r}: {e}",
            path=path,
            line=n,
            hint="recompile with `comfylock compile`",
        ) from None
    exact = [s for s in req.specifier if s.operator in ("==", "===")]
    if req.url is None and (len(req.specifier) != 1 or not exact or "*" in exact[0].version):
        raise LockFileError(
            f"{spec[:80]!r} is not pinned with ==",
            path=path,
            line=n,
            hint="a lock pins every package exactly; recompile with `comfylock compile`",
        )
    return canon(req.name)


@dataclass(frozen=True)
class Change:
    """One package's move between two states: added (old None), removed (new None) or changed."""

    name: str
    old: str | None  # version (or URL spec) before; None: added
    new: str | None  # after; None: removed

    @property
    def kind(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        a, b = release(self.old), release(self.new)
        if a is not None and b is not None:  # the common case, without packaging's import
            return "upgraded" if b > a else "downgraded" if b < a else "changed"
        from packaging.version import InvalidVersion, Version

        try:
            return "upgraded" if Version(self.new) > Version(self.old) else "downgraded"
        except InvalidVersion:
            return "changed"


def pin_versions(lock: Lock) -> dict[str, str]:
    """name -> version, or the whole spec for URL pins (so a changed URL counts as a change)."""
    return {p.name: p.version or p.spec for p in lock.pins}


def diff(old: Mapping[str, str], new: Mapping[str, str]) -> list[Change]:
    """Package-level changes between two {name: version} maps, sorted by name."""
    names = sorted(set(old) | set(new))
    return [Change(n, old.get(n), new.get(n)) for n in names if old.get(n) != new.get(n)]


def summarize(changes: Iterable[Change]) -> str:
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.kind] = counts.get(c.kind, 0) + 1
    order = ("added", "removed", "upgraded", "downgraded", "changed")
    return ", ".join(f"{counts[k]} {k}" for k in order if k in counts) or "no changes"
