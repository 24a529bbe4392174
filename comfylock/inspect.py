"""Reading the lock: why a package is there, what each node brings, what changed between two locks,
whether the lock is stale, and the conflicts the resolver cannot see (two distributions that install
the same import name). Everything works from data (a Lock, dist-info folders, command output) and
returns data; `_cli_inspect` prints it. The lock's `requested by` / `needed by` lines are the graph.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ._exceptions import InputError, LockFileError
from .lock import Change, Lock, Pin, Request, parse_lock, pin_versions
from .lock import diff as diff_versions

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _canon(name: str) -> str:
    return str(canonicalize_name(name))


def _order(node: str) -> tuple[bool, bool, str, str]:
    return (node != "core", node == "user", node.casefold(), node)  # core first, user last


def _mentions(line: str, name: str) -> bool:
    return name in {_canon(w) for w in _WORD.findall(line)}


# --- the lock as a graph -------------------------------------------------------------------------


def _children(lock: Lock) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {p.name: set() for p in lock.pins}
    for p in lock.pins:
        for parent in p.needed_by:
            out.setdefault(parent, set()).add(p.name)
    return out


def _reach(children: Mapping[str, set[str]], starts: Iterable[str]) -> set[str]:
    seen, todo = set(), list(starts)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo.extend(children.get(n, ()))
    return seen


def _direct(lock: Lock) -> dict[str, set[str]]:
    """node -> packages it asks for by name."""
    out: dict[str, set[str]] = {}
    for p in lock.pins:
        for r in p.requested_by:
            out.setdefault(r.node, set()).add(p.name)
    return out


def owners(lock: Lock) -> dict[str, set[str]]:
    """package -> nodes (core, user) that bring it, directly or through other packages."""
    children, out = _children(lock), {}
    for node, pkgs in _direct(lock).items():
        for name in _reach(children, pkgs):
            out.setdefault(name, set()).add(node)
    return out


# --- why -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chain:
    request: Request  # the line that starts the chain
    path: tuple[str, ...]  # package asked for, ..., the package asked about


@dataclass(frozen=True)
class Why:
    name: str
    spec: str | None  # the pin; None: not in the lock
    chains: tuple[Chain, ...]  # the shortest one per node
    needed_by: tuple[str, ...]
    policy: tuple[str, ...]  # the lock's `# policy:` lines (what policies did) that name it
    warnings: tuple[str, ...]  # the lock's `# warning:` lines that name it
    close: tuple[str, ...] = ()  # similar names in the lock, when it is not there


def why(lock: Lock, name: str) -> Why:
    name, pins = _canon(name), lock.by_name()
    policy = tuple(line for line in lock.lists.get("policy", ()) if _mentions(line, name))
    warnings = tuple(line for line in lock.lists.get("warning", ()) if _mentions(line, name))
    if name not in pins:
        import difflib

        close = tuple(difflib.get_close_matches(name, list(pins), n=3))
        return Why(name, None, (), (), policy, warnings, close)
    # Breadth-first up the `needed by` edges: the first time a node's line is met is its shortest chain.
    towards: dict[str, str | None] = {name: None}
    queue, chains, nodes = [name], [], set()
    for n in queue:
        path = [n]
        while (nxt := towards[path[-1]]) is not None:
            path.append(nxt)
        for r in pins[n].requested_by:
            if r.node not in nodes:
                nodes.add(r.node)
                chains.append(Chain(r, tuple(path)))
        for parent in pins[n].needed_by:
            if parent in pins and parent not in towards:
                towards[parent] = n
                queue.append(parent)
    return Why(name, pins[name].spec, tuple(chains), pins[name].needed_by, policy, warnings)


# --- nodes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeInfo:
    name: str
    source: str | None  # the requirement file read; None: none, or not recorded
    commit: str | None
    requirements: int  # its lines recorded in the lock
    direct: tuple[str, ...]  # packages it asks for by name
    only: tuple[str, ...]  # packages in the lock only because of it: what removing it would drop


def node_header(lock: Lock, known: Collection[str] = ()) -> dict[str, tuple[str | None, str | None]]:
    """The lock's `# node: NAME SOURCE [git=SHA]` lines as {name: (source, commit)}."""

    def fits(name: str, line: str) -> bool:  # what follows the name is "SOURCE" or "SOURCE git=SHA"
        rest = line[len(name) + 1 :].split(" ") if line.startswith(name + " ") else []
        return len(rest) == 1 or (len(rest) == 2 and rest[1].startswith("git="))

    out: dict[str, tuple[str | None, str | None]] = {}
    for line in lock.lists.get("node", ()):
        # Node folder names may hold spaces: prefer a name the lock knows from its annotations.
        words = line.split(" ")
        tail = 2 if len(words) > 2 and words[-1].startswith("git=") else 1
        name = next((k for k in known if fits(k, line)), " ".join(words[:-tail]) or line)
        rest = line[len(name) :].split()
        source = rest[0] if rest and rest[0] != "-" and not rest[0].startswith("git=") else None
        commit = rest[-1][4:] if rest and rest[-1].startswith("git=") else None
        out[name] = (source, commit)
    return out


def nodes(lock: Lock) -> list[NodeInfo]:
    direct, children = _direct(lock), _children(lock)
    header = node_header(lock, direct)
    count: dict[str, int] = {}
    for p in lock.pins:
        for r in p.requested_by:
            count[r.node] = count.get(r.node, 0) + 1
    names = list(header) + sorted((n for n in direct if n not in header), key=_order)
    out = []
    for n in names:
        others = _reach(children, {p for o, ps in direct.items() if o != n for p in ps})
        mine = _reach(children, direct.get(n, ()))
        src, commit = header.get(n, (None, None))
        out.append(
            NodeInfo(
                n,
                src,
                commit,
                count.get(n, 0),
                tuple(sorted(direct.get(n, ()))),
                tuple(sorted(mine - others)),
            )
        )
    return out


# --- diff ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caused:
    change: Change
    nodes: tuple[str, ...]  # nodes that bring the package (new side; old side for a removal)
    reason: str = ""  # what changed on the nodes' side, when the locks tell


def _requests(lock: Lock) -> dict[str, set[tuple[str, str]]]:
    return {p.name: {(r.node, r.text) for r in p.requested_by} for p in lock.pins}


def _node_names(lock: Lock) -> set[str]:
    direct = _direct(lock)
    return set(node_header(lock, direct)) | set(direct)


def diff(old: Lock, new: Lock, *, ignore: Collection[str] = ()) -> list[Caused]:
    """Package-level changes from `old` to `new`, each with the nodes behind it. Names in `ignore`
    that one side lacks are left out (pip, setuptools... when a side is an environment)."""
    a, b = pin_versions(old), pin_versions(new)
    a = {k: v for k, v in a.items() if k in b or k not in ignore}
    b = {k: v for k, v in b.items() if k in a or k not in ignore}
    was, now, asked_old, asked_new = owners(old), owners(new), _requests(old), _requests(new)
    before, after = _node_names(old), _node_names(new)
    # A side without nodes (an environment) tells nothing about nodes coming or going.
    came, left = (after - before if before else set()), (before - after if after else set())
    out = []
    for c in diff_versions(a, b):
        who = (was.get(c.name, set()) if c.kind != "added" else set()) | (
            now.get(c.name, set()) if c.kind != "removed" else set()
        )
        reasons = [f"node {n} added" for n in sorted(who & came)] + [
            f"node {n} removed" for n in sorted(who & left)
        ]
        lost = asked_old.get(c.name, set()) - asked_new.get(c.name, set())
        got = asked_new.get(c.name, set()) - asked_old.get(c.name, set())
        for node in sorted({n for n, _ in lost | got} - came - left):
            before_text = ", ".join(sorted(t for n, t in lost if n == node)) or "-"
            after_text = ", ".join(sorted(t for n, t in got if n == node)) or "-"
            reasons.append(f"{node}: {before_text} -> {after_text}")
        out.append(Caused(c, tuple(sorted(who, key=_order)), "; ".join(reasons)))
    return out


def env_lock(installed: Mapping[str, str]) -> Lock:
    """An environment ({name: version}) as a lock without provenance, so it can be diffed."""
    pins = [Pin(_canon(n), v if " @ " in v else f"{_canon(n)}=={v}") for n, v in installed.items()]
    return Lock(tuple(sorted(pins, key=lambda p: p.name)))


def read_side(spec: str, lock_path: Path, installed: Callable[[], Mapping[str, str]] | None = None) -> Lock:
    """One side of a diff: `env` (the target environment), `git:REV[:PATH]` (the lock, or PATH next to
    it, at a git revision) or a lock file."""
    if spec == "env":
        if installed is None:
            raise InputError("`env` needs a target environment", hint="pass --comfyui DIR or --python PY")
        return env_lock(installed())
    if spec.startswith("git:"):
        rev, _, path = spec[4:].partition(":")
        if not rev or rev.startswith("-") or any(c.isspace() or not c.isprintable() for c in rev):
            raise InputError(f"not a git revision: {rev!r}", hint="write git:REV, e.g. git:HEAD~1")
        name = (path or lock_path.name).replace("\\", "/")
        try:
            done = subprocess.run(
                ["git", "show", f"{rev}:./{name}"],
                cwd=lock_path.parent,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise InputError(
                f"cannot run git: {e}", hint="install git, or give the old lock as a file"
            ) from None
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("fatal: ")
            raise InputError(f"git show {rev}:{name} failed: {why}", path=lock_path.parent)
        return parse_lock(done.stdout, f"{spec}")
    path = Path(spec)
    if not path.is_file():
        raise LockFileError("no such lock file", path=path, hint="give a lock file, `env` or `git:REV`")
    from .export import read_any  # a pylock.NAME.toml works as a side too

    return read_any(path)


# --- stale locks and broken environments ---------------------------------------------------------


@dataclass(frozen=True)
class Stale:
    node: str
    what: str  # "added", "removed", "source", "commit", "requirements"
    detail: str


def stale(
    lock: Lock,
    node_lines: Sequence[str],
    requirements: Iterable[Any] = (),
    folders: Mapping[str, Path] | None = None,
) -> list[Stale]:
    """What changed on the nodes' side since `lock` was compiled. `node_lines` are today's `# node:`
    lines (api writes them); `requirements` today's collect.Req records (constraints are skipped)."""
    if not lock.lists.get("node"):
        return []  # a lock without the node header (pylock, plain requirements) has nothing to compare
    folders = folders or {}
    reqs = [r for r in requirements if not r.constraint]
    known = {r.source.node for r in reqs} | set(_direct(lock))
    before = node_header(lock, known)
    now = node_header(Lock((), lists={"node": tuple(node_lines)}), known)
    out = [Stale(n, "added", "node added since the lock was compiled") for n in now if n not in before]
    out += [
        Stale(n, "removed", "node removed or disabled since the lock was compiled")
        for n in before
        if n not in now
    ]
    for n in (n for n in now if n in before):
        (src0, git0), (src1, git1) = before[n], now[n]
        if src0 != src1:
            out.append(Stale(n, "source", f"reads {src1 or 'nothing'} now, {src0 or 'nothing'} then"))
        if git0 != git1:
            out.append(
                Stale(n, "commit", f"at {(git1 or 'no commit')[:12]} now, {(git0 or 'no commit')[:12]} then")
            )
    if reqs:
        out += _changed_lines(lock, reqs, folders, {s.node for s in out if s.what in ("added", "removed")})
    return out


def _changed_lines(lock: Lock, reqs: list[Any], folders: Mapping[str, Path], skip: set[str]) -> list[Stale]:
    def rel(r: Any) -> str:
        try:
            return Path(r.source.path).relative_to(folders[r.source.node]).as_posix()
        except (KeyError, ValueError):
            return Path(r.source.path).name

    recorded = {(r.node, r.file, r.text) for p in lock.pins for r in p.requested_by}
    current = {(r.source.node, rel(r), r.text) for r in reqs}
    policy = lock.lists.get("policy", ())

    def touched(text: str) -> bool:
        # A policy rewrites (replace) or drops (skip) lines, and adds its own: what it touched is not
        # comparable line for line, and the policy itself is part of the lock's fingerprint.
        try:
            name = _canon(Requirement(text).name)
        except InvalidRequirement:
            return False
        return any(_mentions(line, name) for line in policy)

    changes: dict[str, list[str]] = {}
    for node, file, text in sorted(recorded - current):
        if not touched(text):
            changes.setdefault(node, []).append(f"{file}: {text!r} gone")
    for node, file, text in sorted(current - recorded):
        if not touched(text):
            changes.setdefault(node, []).append(f"{file}: {text!r} new")
    return [
        Stale(n, "requirements", "; ".join(c[:3]) + (f" (+{len(c) - 3})" if len(c) > 3 else ""))
        for n, c in changes.items()
        if n not in skip
    ]


@dataclass(frozen=True)
class Broken:
    package: str  # the installed package whose requirement does not hold
    requirement: str
    installed: str | None  # the version there is; None: not installed
    message: str


_BROKEN = re.compile(
    r"^The package `([^`]+)` requires `([^`]+)`, but (?:`([^`]+)` is installed|it's not installed)"
)


def parse_pip_check(text: str) -> list[Broken]:
    """The problems `uv pip check` prints (on stderr; it exits 1 when there are some)."""
    out = []
    for line in (ln.strip() for ln in text.splitlines()):
        m = _BROKEN.match(line)
        if m:
            out.append(Broken(_canon(m[1]), m[2], m[3], line))
        elif line.startswith("The package `"):
            out.append(Broken(_canon(line.split("`")[1]), "", None, line))
    return out


# --- the same import from two distributions ------------------------------------------------------


@dataclass(frozen=True)
class Family:
    module: str
    members: re.Pattern[str]
    prefer: tuple[str, ...] = ()  # what a policy should keep, best first; the first is kept even if absent
    superset: bool = False  # prefer[0] does what every member does: replace them all with it


# Known families whose members all install the same top-level package and overwrite each other.
FAMILIES = (
    Family(
        "cv2",
        re.compile(r"opencv(-contrib)?-python(-headless)?(-rolling)?"),
        ("opencv-contrib-python-headless",),
        True,
    ),
    Family(
        "onnxruntime",
        re.compile(r"onnxruntime(-gpu|-directml|-openvino|-silicon|-rocm|-qnn|-cann|-migraphx|-training)?"),
        ("onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino", "onnxruntime"),
    ),
    Family("PIL", re.compile(r"pillow(-simd)?"), ("pillow",)),
    Family("decord", re.compile(r"(eva-)?decord"), ("decord",)),
    Family("dlib", re.compile(r"dlib(-bin)?"), ("dlib",)),
    Family("triton", re.compile(r"triton(-windows)?")),
    Family("faiss", re.compile(r"faiss-(cpu|gpu)(-cu\d+)?"), ("faiss-gpu", "faiss-cpu")),
    Family("cupy", re.compile(r"cupy(-cuda\d+x?|-rocm-[\d-]+)?")),
    Family("pycocotools", re.compile(r"pycocotools(-windows)?"), ("pycocotools",)),
    Family("websocket", re.compile(r"websocket(-client)?"), ("websocket-client",)),
    Family("fitz", re.compile(r"pymupdf|fitz"), ("pymupdf",)),
    Family("jwt", re.compile(r"pyjwt|jwt"), ("pyjwt",)),
    Family("magic", re.compile(r"python-magic(-bin)?"), ("python-magic",)),
    Family("Crypto", re.compile(r"pycrypto(dome)?"), ("pycryptodome",)),
)


@dataclass(frozen=True)
class DistFiles:
    name: str
    version: str
    top_level: frozenset[str]
    files: Mapping[str, str] = field(default_factory=dict)  # RECORD path -> hash ("" when none)


def site_dirs(python: Path) -> list[Path]:
    """The target's import path (sys.path), read by running it once; where its dist-info folders are."""
    code = "import json, sys; print(json.dumps([p for p in sys.path if p]))"
    try:
        done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True, timeout=60)
        return [Path(p) for p in json.loads(done.stdout.strip().splitlines()[-1]) if Path(p).is_dir()]
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return []


def cache_dirs(cache_dir: Path) -> list[Path]:
    """uv's unpacked wheels (`<cache>/archive-v0/<id>/`): dist-info of packages not installed yet."""
    try:
        return [e for e in (cache_dir / "archive-v0").iterdir() if e.is_dir()]
    except OSError:
        return []


def read_dist_infos(dirs: Iterable[Path], names: Collection[str] | None = None) -> dict[str, DistFiles]:
    """{name: DistFiles} from the *.dist-info folders in `dirs` (first one found wins, as for import)."""
    out: dict[str, DistFiles] = {}
    for d in dirs:
        try:
            entries = [e for e in os.scandir(d) if e.name.endswith(".dist-info") and e.is_dir()]
        except OSError:
            continue
        for e in entries:
            stem = e.name[: -len(".dist-info")]
            name, _, version = stem.rpartition("-") if "-" in stem else (stem, "", "")
            name = _canon(name)
            if name in out or (names is not None and name not in names):
                continue
            files = _record(Path(e.path) / "RECORD")
            top = {t for p in files if (t := _top(p))}
            if not top:
                try:
                    top = set((Path(e.path) / "top_level.txt").read_text(encoding="utf-8").split())
                except OSError:
                    pass
            out[name] = DistFiles(name, version, frozenset(top), files)
    return out


def _record(path: Path) -> dict[str, str]:
    try:
        rows = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    out = {}
    for row in rows:
        parts = row.rsplit(",", 2)
        if len(parts) == 3 and "__pycache__" not in parts[0]:
            out[parts[0].replace("\\", "/")] = parts[1]
    return out


def _top(path: str) -> str | None:
    first, sep, _ = path.partition("/")
    if first.startswith("..") or first.endswith((".dist-info", ".data")):
        return None
    if sep:
        return first if first.isidentifier() else None
    stem, dot, ext = first.partition(".")
    return (
        stem if dot and ext.rsplit(".", 1)[-1] in ("py", "so", "pyd", "pyc") and stem.isidentifier() else None
    )


@dataclass(frozen=True)
class Duplicate:
    module: str  # the import name two or more distributions install
    dists: tuple[str, ...]
    severity: str  # "error": they overwrite each other's files; "warning": they may
    reason: str
    asked_by: Mapping[str, tuple[str, ...]]  # distribution -> nodes that bring it
    keep: str
    policy: str  # a pip-policy.user.json snippet that settles it


def duplicate_imports(
    lock: Lock, found: Mapping[str, DistFiles] | None = None, *, names: Collection[str] | None = None
) -> list[Duplicate]:
    """Distributions that provide the same top-level import: the lock's (or `names`, e.g. what is
    installed), from the built-in families and the dist-info found installed or in uv's cache."""
    found = found or {}
    by_module: dict[str, set[str]] = {}
    family: dict[str, Family] = {}
    for name in sorted(names if names is not None else {p.name for p in lock.pins}):
        for f in FAMILIES:
            if f.members.fullmatch(name):
                by_module.setdefault(f.module, set()).add(name)
                family[f.module] = f
        for t in found[name].top_level if name in found else ():
            by_module.setdefault(t, set()).add(name)
    who, out = owners(lock), []
    for module, dists in sorted(by_module.items()):
        if len(dists) < 2:
            continue
        severity, reason = _clash(module, sorted(dists), family.get(module), found)
        if not severity:
            continue
        ds = tuple(sorted(dists))
        keep = _keep(family.get(module), ds, who)
        rule = {"type": "replace", "replacement": keep, "reason": f"one distribution for `import {module}`"}
        snippet = {d: {"apply_first_match": [rule]} for d in ds if d != keep}
        asked = {d: tuple(sorted(who.get(d, ()))) for d in ds}
        out.append(Duplicate(module, ds, severity, reason, asked, keep, json.dumps(snippet)))
    return out


def _clash(
    module: str, dists: list[str], fam: Family | None, found: Mapping[str, DistFiles]
) -> tuple[str, str]:
    if fam is not None:
        return "error", f"each of them installs `{module}` and they overwrite each other"
    # Namespace packages share a folder, not files; identical files (empty __init__.py) do no harm.
    seen: dict[str, str] = {}
    unseen = []
    for d in dists:
        files = {p: h for p, h in (found[d].files if d in found else {}).items() if _top(p) == module}
        unseen += [] if files else [d]
        for path, digest in files.items():
            if path in seen and (seen[path] != digest or not digest):
                return "error", f"they overwrite each other's {path}"
            seen[path] = digest
    if unseen:  # only top_level.txt says so
        return "warning", f"{', '.join(unseen)} may install `{module}` too (no file list to compare)"
    return "", ""


def _keep(fam: Family | None, dists: tuple[str, ...], who: Mapping[str, set[str]]) -> str:
    if fam is not None and fam.superset and fam.prefer:
        return fam.prefer[0]
    for name in fam.prefer if fam else ():
        if name in dists:
            return name
    return max(dists, key=lambda d: (len(who.get(d, ())), d))
