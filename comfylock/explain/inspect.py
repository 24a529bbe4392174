"""Reading the lock: why a package is there, what each node brings, what changed between two locks,
whether the lock is stale, and the conflicts the resolver cannot see (two distributions that install
the same import name; in `_imports`). Everything works from data (a Lock, dist-info folders, command
output) and returns data; `_cli_inspect` prints it. The lock's `requested by` / `needed by` lines are
the graph (`_lockgraph`).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfylock._exceptions import InputError, LockFileError
from comfylock._names import canon, node_file, words
from comfylock.explain.imports import (
    FAMILIES,
    DistFiles,
    Duplicate,
    Family,
    cache_dirs,
    duplicate_imports,
    read_dist_infos,
    site_dirs,
)
from comfylock.lockfile.export import read_any
from comfylock.lockfile.graph import children, direct, node_order, owners, reach
from comfylock.lockfile.lock import Change, Lock, Pin, Request, parse_lock, pin_versions
from comfylock.lockfile.lock import diff as diff_versions

__all__ = [
    "FAMILIES",
    "Broken",
    "Caused",
    "Chain",
    "DistFiles",
    "Duplicate",
    "Family",
    "NodeInfo",
    "Stale",
    "Why",
    "cache_dirs",
    "diff",
    "duplicate_imports",
    "env_lock",
    "node_header",
    "nodes",
    "owners",
    "parse_pip_check",
    "read_dist_infos",
    "read_side",
    "site_dirs",
    "stale",
    "why",
]


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
    name, pins = canon(name), lock.by_name()
    policy = tuple(line for line in lock.lists.get("policy", ()) if name in words(line))
    warnings = tuple(line for line in lock.lists.get("warning", ()) if name in words(line))
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
        parts = line.split(" ")
        tail = 2 if len(parts) > 2 and parts[-1].startswith("git=") else 1
        name = next((k for k in known if fits(k, line)), " ".join(parts[:-tail]) or line)
        rest = line[len(name) :].split()
        source = rest[0] if rest and rest[0] != "-" and not rest[0].startswith("git=") else None
        commit = rest[-1][4:] if rest and rest[-1].startswith("git=") else None
        out[name] = (source, commit)
    return out


def nodes(lock: Lock) -> list[NodeInfo]:
    asks, kids = direct(lock), children(lock)
    header = node_header(lock, asks)
    count: dict[str, int] = {}
    for p in lock.pins:
        for r in p.requested_by:
            count[r.node] = count.get(r.node, 0) + 1
    names = list(header) + sorted((n for n in asks if n not in header), key=node_order)
    out = []
    for n in names:
        others = reach(kids, {p for o, ps in asks.items() if o != n for p in ps})
        mine = reach(kids, asks.get(n, ()))
        src, commit = header.get(n, (None, None))
        out.append(
            NodeInfo(
                n,
                src,
                commit,
                count.get(n, 0),
                tuple(sorted(asks.get(n, ()))),
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
    asks = direct(lock)
    return set(node_header(lock, asks)) | set(asks)


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
        out.append(Caused(c, tuple(sorted(who, key=node_order)), "; ".join(reasons)))
    return out


def env_lock(installed: Mapping[str, str]) -> Lock:
    """An environment ({name: version}) as a lock without provenance, so it can be diffed."""
    pins = [Pin(canon(n), v if " @ " in v else f"{canon(n)}=={v}") for n, v in installed.items()]
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
            said = (done.stderr.strip().splitlines() or ["no output"])[-1].removeprefix("fatal: ")
            raise InputError(f"git show {rev}:{name} failed: {said}", path=lock_path.parent)
        return parse_lock(done.stdout, f"{spec}")
    path = Path(spec)
    if not path.is_file():
        raise LockFileError("no such lock file", path=path, hint="give a lock file, `env` or `git:REV`")
    return read_any(path)  # a pylock.NAME.toml works as a side too


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
    known = {r.source.node for r in reqs} | set(direct(lock))
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
    # The lock quotes each line as its node wrote it (a policy's rewrite follows it), so lines compare
    # as they are; the lines a policy adds of its own are the policy's, which the fingerprint covers.
    recorded = {(r.node, r.file, r.text) for p in lock.pins for r in p.requested_by if r.node != "policy"}
    current = {
        (r.source.node, node_file(Path(r.source.path), folders.get(r.source.node)), r.text) for r in reqs
    }
    changes: dict[str, list[str]] = {}
    for pairs, what in ((recorded - current, "gone"), (current - recorded, "new")):
        for node, file, text in sorted(pairs):
            changes.setdefault(node, []).append(f"{file}: {text!r} {what}")
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
            out.append(Broken(canon(m[1]), m[2], m[3], line))
        elif line.startswith("The package `"):
            out.append(Broken(canon(line.split("`")[1]), "", None, line))
    return out
