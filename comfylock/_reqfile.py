"""Parsing one node's requirement files: pip's requirements syntax and static pyproject dependencies.

Node files come from strangers: every include must stay inside the node's folder, index options are
refused unless allowed, and nothing here runs a subprocess or touches the network.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import sys
from collections.abc import Collection as AbstractSet
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement

from ._exceptions import InputError
from .collect import CORE, INDEX_OPTIONS, USER, BadLine, IndexOption, NodeInput, Req, Source

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MAX_BYTES = 1 << 20  # no real requirements file comes near this; anything bigger is junk or an attack
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
MAX_DEPTH = 16  # include nesting; keeps a hostile chain of files from reaching Python's recursion limit

_SHORT = {
    "-i": "--index-url",
    "-f": "--find-links",
    "-r": "--requirement",
    "-c": "--constraint",
    "-e": "--editable",
}
_TAKES_VALUE = frozenset(
    {
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "--trusted-host",
        "--requirement",
        "--constraint",
        "--editable",
        "--hash",
    }
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # not str.splitlines: \x0c or \u2028 would shift line numbers
_COMMENT = re.compile(r"(?:^|\s)#.*")  # a '#' glued to text (URL fragments: #egg=) is not a comment
_OPTIONS_START = re.compile(r"\s-")  # pip's rule: per-requirement options start at the first " -"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_LOCAL = re.compile(r"(?:\.{1,2}(?:[/\\]|$)|~?[/\\]|[A-Za-z]:[/\\]|file:)", re.IGNORECASE)
_ARCHIVES = (".whl", ".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")
_URL_MARKER = re.compile(r"(?<=\s);|;(?=\s)")  # URLs may hold ';', so pip wants a space next to it
_EGG = re.compile(r"([^\[\]]+)(\[[^\[\]]*\])?")
_NAME = re.compile(r"[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?", re.IGNORECASE)
_VERSION_SUFFIX = re.compile(r"-v?\d.*$")
_VARIANT = re.compile(r"requirements.*\.txt", re.IGNORECASE)


@lru_cache(maxsize=16384)
def _requirement(text: str) -> Requirement:
    # Nodes repeat the same lines ("numpy", "opencv-python") endlessly; parsing each once is enough.
    # Callers share the result, so it must be treated as immutable.
    return Requirement(text)


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _skip_hint(node: str) -> str | None:
    return None if node in (CORE, USER) else f"leave the node out with --skip-node {node}"


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: symlink loop on Python < 3.13
        raise InputError(f"cannot resolve path: {e}", path=path) from None


def _real_child(parent_real: Path, path: Path) -> tuple[Path, bool]:
    """path.resolve() when path's parent resolves to parent_real, and whether path itself is a link.

    One lstat instead of realpath's one per component: a tree has hundreds of nodes and files.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return _resolve(path), True  # missing or unreadable: resolve() gives its answer or error
    # A Windows junction is a reparse point but not S_ISLNK; it may point anywhere, like a symlink.
    link = stat.S_ISLNK(st.st_mode) or bool(
        getattr(st, "st_file_attributes", 0) & stat.FILE_ATTRIBUTE_REPARSE_POINT
    )
    return (_resolve(path) if link else parent_real / path.name), link


def _read_text(path: Path) -> str:
    """Decode a small text file: UTF-8 (BOM or not) or UTF-16 with a BOM; anything else is refused."""
    try:
        # Non-blocking, then fstat: a FIFO must not hang us and a 50 MB file is not worth reading,
        # and one lookup of the path (not a stat, then an open) matters with a thousand nodes.
        fd = os.open(path, _OPEN_FLAGS)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise InputError("not a regular file", path=path)
        with os.fdopen(fd, "rb") as f:
            if st.st_size > MAX_BYTES:
                raise InputError(
                    f"file is {st.st_size} bytes; over 1 MiB is not a real requirements file", path=path
                )
            # Sized reads: read(MAX_BYTES + 1) would allocate 1 MiB per file, most of the time spent.
            data = f.read(st.st_size + 1)
            if len(data) > st.st_size:  # it grew since fstat: read on, still bounded
                data += f.read(MAX_BYTES + 1 - len(data))
    except OSError as e:
        if os.path.isdir(path):  # Windows refuses to open a folder at all
            raise InputError("not a regular file", path=path) from None
        raise InputError(f"cannot read file: {e.strerror or e}", path=path) from None
    if len(data) > MAX_BYTES:
        raise InputError("file is over 1 MiB; not a real requirements file", path=path)
    codec = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        kind = "UTF-16" if codec == "utf-16" else "UTF-8"
        raise InputError(
            f"not a text file: not {kind} (bad byte at offset {e.start})", path=path, hint="save it as UTF-8"
        ) from None
    if "\0" in text:
        raise InputError("not a text file (it contains NUL bytes)", path=path)
    return text


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first physical line number, text) of each non-empty logical line, comments removed."""
    start, parts = 0, list[str]()
    for number, raw in enumerate(_LINE_BREAK.split(text), 1):
        # Comments go first so a comment ending in '\' does not swallow the next line.
        line = (_COMMENT.sub("", raw, count=1) if "#" in raw else raw).rstrip()
        if line.endswith("\\"):
            if not parts:
                start = number
            parts.append(line[:-1])
            continue
        if parts:
            parts.append(line)
            line, parts = "".join(parts), []
        else:
            start = number
        if line.strip():
            yield start, line.strip()
    if parts and "".join(parts).strip():
        yield start, "".join(parts).strip()


def _url_requirement(body: str) -> str:
    """Turn an unnamed URL line into 'name @ url', taking the name from #egg= or the last segment."""
    found = _URL_MARKER.search(body)
    url, marker = (body[: found.start()].strip(), body[found.end() :].strip()) if found else (body, "")
    parts = urlsplit(url)  # its ValueError ("Invalid IPv6 URL") makes a bad line like any other
    name = extras = ""
    items = [item for item in parts.fragment.split("&") if item]
    kept: list[str] = []
    for item in items:
        key, _, value = item.partition("=")
        egg = _EGG.fullmatch(value) if key == "egg" else None
        if egg:
            name, extras = egg.group(1), egg.group(2) or ""
        else:
            kept.append(item)
    if not name:
        segment = unquote(parts.path.rstrip("/").rpartition("/")[2]).partition("@")[0]
        for suffix in (".git", *_ARCHIVES):
            if segment.lower().endswith(suffix):
                segment = segment[: -len(suffix)]
                break
        name = _VERSION_SUFFIX.sub("", segment)
    if not _NAME.fullmatch(name):
        raise ValueError("cannot tell the package name from the URL; write it as 'name @ URL'")
    if len(kept) != len(items):
        url = parts._replace(fragment="&".join(kept)).geturl()  # #egg= said the name; uv needs no more
    return f"{name}{extras} @ {url}" + (f" ; {marker}" if marker else "")


def _option(token: str) -> tuple[str, str | None] | None:
    """('--long-name', attached value or None) for an option token, None for a plain word."""
    if token.startswith("--"):
        name, eq, value = token.partition("=")
        return name, value if eq else None
    if token.startswith("-") and len(token) > 1:
        name = _SHORT.get(token[:2])
        return (token, None) if name is None else (name, token[2:] or None)
    return None


class _Parser:
    """Reads requirement files and pyproject dependencies of one node, accumulating the results."""

    def __init__(
        self,
        node: str,
        folder: Path,
        allow: AbstractSet[str],
        keep_going: bool,
        folder_real: Path | None = None,
    ) -> None:
        self.node, self.folder, self.keep_going = node, folder, keep_going
        self.allow = frozenset(_SHORT.get(o, o) for o in allow)
        self.folder_real = folder_real or _resolve(folder)
        self.reqs: list[Req] = []
        self.options: list[IndexOption] = []
        self.files: list[Path] = []
        self.bad: list[BadLine] = []
        self._stack: list[Path] = []  # files being read: an include of one of them is a cycle
        self._done: set[tuple[Path, bool]] = set()

    def fail(self, message: str, src: Source, hint: str | None = None) -> InputError:
        return InputError(f"{self.node}: {message}", path=src.path, line=src.line, hint=hint)

    def local(self, text: str, src: Source) -> InputError:
        return self.fail(
            f"local path requirement {_quote(text)} is not allowed (only indexes and URLs can be locked)",
            src,
            _skip_hint(self.node),
        )

    def read_file(self, path: Path, constraint: bool = False, real: Path | None = None) -> None:
        real = real or _resolve(path)
        # A diamond of includes is read once: re-reading adds nothing and could grow exponentially.
        self._done.add((real, constraint))
        self._stack.append(real)
        text = _read_text(path)
        if path not in self.files:
            self.files.append(path)
        for number, line in _logical_lines(text):
            src = Source(self.node, path, number)
            if line.startswith("-"):
                self.option_line(line, src)
            else:
                self.requirement_line(line, src, constraint)
        self._stack.pop()

    def option_line(self, line: str, src: Source) -> None:
        try:
            tokens = shlex.split(line)
        except ValueError as e:
            raise self.fail(f"cannot split option line {_quote(line)}: {e}", src) from None
        i = 0
        while i < len(tokens):
            parsed = _option(tokens[i])
            i += 1
            if parsed is None:
                raise self.fail(
                    f"unexpected text {_quote(tokens[i - 1])} on an option line", src, _skip_hint(self.node)
                )
            name, value = parsed
            if name in _TAKES_VALUE and value is None:
                if i == len(tokens):
                    raise self.fail(f"option {name} needs a value", src)
                value, i = tokens[i], i + 1
            elif name not in _TAKES_VALUE and value is not None:
                raise self.fail(f"option {name} takes no value", src)
            self.handle_option(name, value, src)

    def handle_option(self, name: str, value: str | None, src: Source) -> None:
        if name in ("--requirement", "--constraint"):
            # As pip does: -r inside a constraints file still adds requirements.
            self.include(value or "", src, name == "--constraint")
        elif name == "--editable":
            raise self.fail(
                f"editable requirement {_quote(value or '')} is not allowed", src, _skip_hint(self.node)
            )
        elif name in INDEX_OPTIONS:
            if name not in self.allow:
                allow = (
                    f'allow it in user/comfylock/config.toml: [nodes."{self.node}"] '
                    f'allow-options = ["{name}"]'
                )
                skip = _skip_hint(self.node)
                raise self.fail(
                    f"option {name} changes where every package comes from; refused",
                    src,
                    f"{allow}, or {skip}" if skip else allow,
                )
            self.options.append(IndexOption(name, value, src))
        else:
            raise self.fail(f"option {name} is not supported", src, _skip_hint(self.node))

    def include(self, value: str, src: Source, constraint: bool) -> None:
        if _URL.match(value):
            raise self.fail(f"include {_quote(value)} is a URL; only files in the node folder are read", src)
        target = src.path.parent / value
        try:
            real = target.resolve()
        except (OSError, RuntimeError) as e:
            raise self.fail(f"cannot resolve include {_quote(value)}: {e}", src) from None
        if not real.is_relative_to(self.folder_real):
            raise self.fail(
                f"include {_quote(value)} points outside the node folder", src, _skip_hint(self.node)
            )
        if real in self._stack:
            raise self.fail(f"include cycle: {_quote(value)} includes itself again", src)
        if (real, constraint) in self._done:
            return
        if len(self._stack) >= MAX_DEPTH:
            raise self.fail(f"includes nested more than {MAX_DEPTH} deep", src)
        if not os.path.lexists(real):
            raise self.fail(f"included file {_quote(value)} does not exist", src)
        self.read_file(real, constraint, real)

    def requirement_line(self, line: str, src: Source, constraint: bool) -> None:
        body = line
        split = _OPTIONS_START.search(line)
        if split:
            body = line[: split.start()]
            try:
                tokens = shlex.split(line[split.start() :])
            except ValueError as e:
                raise self.fail(f"cannot split options of {_quote(line)}: {e}", src) from None
            for token in tokens:
                parsed = _option(token)
                if parsed and parsed[0] != "--hash":
                    raise self.fail(
                        f"option {parsed[0]} on a requirement line is not supported",
                        src,
                        _skip_hint(self.node),
                    )
                # --hash and its values are dropped: the lock records hashes of its own.
        self.add(body, line, src, constraint)

    def add(self, body: str, text: str, src: Source, constraint: bool) -> None:
        head = body.partition(";")[0].strip().lower()
        local = _LOCAL.match(body) or (head.endswith(_ARCHIVES) and "://" not in head and "@" not in head)
        if local:
            raise self.local(text, src)
        try:
            req = _requirement(_url_requirement(body) if _URL.match(body) else body)
        except ValueError as e:  # InvalidRequirement is a ValueError
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not self.keep_going:
                raise self.fail(
                    f"not a valid requirement {_quote(text)}: {reason}", src, _skip_hint(self.node)
                ) from None
            self.bad.append(BadLine(src, text, reason))
            return
        if req.url is not None and (not _URL.match(req.url) or req.url.lower().startswith("file:")):
            raise self.local(text, src)
        self.reqs.append(Req(req, src, text, constraint))

    def read_pyproject(self, path: Path) -> tuple[bool, str]:
        """Add the static [project].dependencies; (False, why) when the file has none to give."""
        text = _read_text(path)
        self.files.append(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            found = re.search(r"line (\d+)", str(e))
            last = text.count("\n") + (not text.endswith("\n"))  # "at end of document" has no number
            raise InputError(
                f"{self.node}: invalid TOML: {e}",
                path=path,
                line=int(found.group(1)) if found else max(last, 1),
            ) from None
        project = data.get("project")
        if project is None:
            return False, "has no [project] table"
        if not isinstance(project, dict):
            raise InputError(f"{self.node}: [project] is not a table", path=path)
        dynamic = project.get("dynamic", [])
        if isinstance(dynamic, list) and "dependencies" in dynamic:
            return False, "declares [project].dependencies dynamic (computed at build time)"
        deps = project.get("dependencies")
        if deps is None:
            return False, "has no [project].dependencies"
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise InputError(f"{self.node}: [project].dependencies is not a list of strings", path=path)
        section = re.search(r"^[ \t]*\[project\]", text, re.MULTILINE)
        pos = section.end() if section else 0
        key = re.compile(r"^[ \t]*(?:project\.)?dependencies[ \t]*=", re.MULTILINE).search(text, pos)
        pos = key.start() if key else pos
        key_line = text.count("\n", 0, pos) + 1
        for dep in deps:
            found = [i for q in "\"'" if (i := text.find(q + dep + q, pos)) >= 0]
            line_no = key_line
            if found:  # best effort: escapes or odd quoting fall back to the `dependencies` line
                pos = min(found)
                line_no = text.count("\n", 0, pos) + 1
                pos += len(dep) + 2
            self.add(dep.strip(), dep.strip(), Source(self.node, path, line_no), False)
        return True, "[project].dependencies" + ("" if deps else " (empty)")

    def result(self, path: Path, chosen: str | None, why: str) -> NodeInput:
        return NodeInput(
            self.node,
            path,
            chosen,
            why,
            tuple(self.reqs),
            tuple(self.options),
            tuple(self.files),
            tuple(self.bad),
        )


def parse_requirements_file(
    path: Path,
    *,
    node: str,
    folder: Path,
    allow_options: AbstractSet[str] = frozenset(),
    keep_going: bool = False,
) -> tuple[list[Req], list[IndexOption], list[Path], list[BadLine]]:
    """Parse one requirements file and its -r/-c includes (which must stay inside `folder`).

    Returns (requirements, allowed index options, files read, bad lines). The file itself is trusted
    to be where the caller says; collect() checks it against the ComfyUI root.
    """
    parser = _Parser(node, folder, allow_options, keep_going)
    parser.read_file(path)
    return parser.reqs, parser.options, parser.files, parser.bad


def parse_pyproject(path: Path, *, node: str) -> list[Req] | None:
    """Static [project].dependencies of a pyproject.toml; None when absent or dynamic."""
    parser = _Parser(node, path.parent, frozenset(), keep_going=False)
    has_deps, _ = parser.read_pyproject(path)
    return parser.reqs if has_deps else None
