"""Parsing one node's requirement files: pip's requirements syntax and static pyproject dependencies.

Node files come from strangers: every include must stay inside the node's folder, index options are
refused unless allowed, and nothing here runs a subprocess or touches the network.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Collection as AbstractSet
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement

from comfylock._exceptions import InputError
from comfylock._fs import read_text_file as _read_text
from comfylock._fs import resolve_path as _resolve
from comfylock.collect.lines import logical_lines
from comfylock.collect.types import CORE, USER, BadLine, IndexOption, NodeInput, Req, Source
from comfylock.collect.untrusted import ARCHIVES as _ARCHIVES
from comfylock.collect.untrusted import untrusted as _untrusted
from comfylock.workspace.config import INDEX_OPTIONS, toml

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
_OPTIONS_START = re.compile(r"\s-")  # pip's rule: per-requirement options start at the first " -"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_LOCAL = re.compile(r"(?:\.{1,2}(?:[/\\]|$)|~?[/\\]|[A-Za-z]:[/\\]|file:)", re.IGNORECASE)
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


@lru_cache(maxsize=16384)
def _classify(body: str) -> tuple[str, Requirement | str]:
    """("ok", requirement), ("local", "") for a local path, or ("bad", why) for one requirement's text.

    Pure, so cached: a thousand nodes repeat the same few hundred lines.
    """
    head = body.partition(";")[0].strip().lower()
    if _LOCAL.match(body) or (head.endswith(_ARCHIVES) and "://" not in head and "@" not in head):
        return "local", ""
    try:
        req = _requirement(_url_requirement(body) if _URL.match(body) else body)
    except ValueError as e:  # InvalidRequirement is a ValueError
        return "bad", str(e).splitlines()[0] if str(e) else type(e).__name__
    if req.url is not None and (not _URL.match(req.url) or req.url.lower().startswith("file:")):
        return "local", ""
    refused = _untrusted(req)
    return ("refused", refused) if refused else ("ok", req)


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _skip_hint(node: str) -> str | None:
    return None if node in (CORE, USER) else f"leave the node out with --skip-node {node}"


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
        self.digests: dict[Path, str] = {}  # sha256 of the bytes parsed, for the fingerprints
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
        text, self.digests[path] = _read_text(path)
        if path not in self.files:
            self.files.append(path)
        node, reqs = self.node, self.reqs
        for number, line in logical_lines(text):
            src = Source(node, path, number)
            if line.startswith("-"):
                self.option_line(line, src)
                continue
            if not _OPTIONS_START.search(line):  # the common line, inline: a thousand nodes add up
                kind, value = _classify(line)
                if kind == "ok":
                    reqs.append(Req(value, src, line, constraint))  # type: ignore[arg-type]
                    continue
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
            if value is not None and "$" in value:
                raise self.fail(
                    f"option {name} value {_quote(value)}: '$' is not allowed (uv would expand ${{VAR}})", src
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
        # Recorded as written (through any link), so a link pointed elsewhere later is a change.
        self.read_file(target, constraint, real)

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
        kind, value = _classify(body)
        if kind == "ok":
            self.reqs.append(Req(value, src, text, constraint))  # type: ignore[arg-type]
        elif kind == "local":
            raise self.local(text, src)
        elif kind == "refused":
            raise self.fail(f"requirement {_quote(text)} refused: {value}", src, _skip_hint(self.node))
        elif self.keep_going:
            self.bad.append(BadLine(src, text, str(value)))
        else:
            raise self.fail(f"not a valid requirement {_quote(text)}: {value}", src, _skip_hint(self.node))

    def read_pyproject(self, path: Path) -> tuple[bool, str]:
        """Add the static [project].dependencies; (False, why) when the file has none to give."""
        text, self.digests[path] = _read_text(path)
        self.files.append(path)
        tomllib = toml()  # imported here: most nodes have a requirements.txt
        try:
            data = tomllib.loads(text)
        except RecursionError:  # [[[[... 200 kB deep: no pyproject.toml is like that
            raise InputError(f"{self.node}: TOML nested too deeply", path=path, line=1) from None
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
            tuple(self.digests[f] for f in self.files),
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
