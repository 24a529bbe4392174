"""ComfyUI-Manager snapshots, both ways: import one as a lock (so years of snapshots can be synced back
to exactly, torch and removals included, where the Manager's own restore only adds packages), and
write a lock as one (so a Manager user can restore a comfylock state with the Manager).

The Manager saves `get_current_snapshot()` as JSON, or as YAML (PyYAML's block style) under a
`custom_nodes:` key: `comfyui` (core commit or null), `git_custom_nodes` {url: {hash, disabled}},
`cnr_custom_nodes` {id: version}, `file_custom_nodes` [{filename, disabled}], `pips` {freeze line: ""}
or {name: url} for `name @ url` lines. YAML is read by a small strict reader of exactly that subset
(comfylock depends on no YAML library); anything else is an error naming file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from comfylock import __version__
from comfylock._exceptions import InputError, LockFileError
from comfylock._fs import BIG_BYTES, read_bytes
from comfylock._redact import strip, strip_text
from comfylock.lockfile import lock
from comfylock.lockfile.lock import Change, Lock, Pin
from comfylock.lockfile.manager_yaml import parse_yaml
from comfylock.workspace.config import toml


@dataclass(frozen=True)
class GitNode:
    url: str
    hash: str
    disabled: bool = False


@dataclass(frozen=True)
class Snapshot:
    comfyui: str | None
    git_custom_nodes: tuple[GitNode, ...] = ()
    cnr_custom_nodes: Mapping[str, str] = field(default_factory=dict)
    file_custom_nodes: tuple[tuple[str, bool], ...] = ()  # (filename, disabled)
    pips: Mapping[str, str] | None = None  # None: saved with "custom nodes only"


@dataclass(frozen=True)
class Skipped:
    """A snapshot pip entry the lock does not carry, and why."""

    line: str
    reason: str


@dataclass(frozen=True)
class ImportResult:
    lock_path: Path
    lock: Lock
    changes: tuple[Change, ...]
    skipped: tuple[Skipped, ...]
    written: bool


# --- reading -------------------------------------------------------------------------------------


def read_snapshot(path: Path) -> Snapshot:
    """A Manager snapshot (.json, or .yaml/.yml with the `custom_nodes:` wrapper)."""
    try:
        text = read_bytes(path, BIG_BYTES).decode("utf-8-sig")
    except FileNotFoundError:
        raise InputError("no such snapshot file", path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read snapshot: {e}", path=path) from None
    yaml = path.suffix.lower() in (".yaml", ".yml")
    if yaml and not text.lstrip().startswith("{"):  # JSON is YAML too: comfylock writes it so
        data = parse_yaml(text, path)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"invalid JSON: {e.msg}", path=path, line=e.lineno) from None
        except RecursionError:
            raise InputError("JSON nested too deeply to be a snapshot", path=path, line=1) from None
    if yaml:
        if not isinstance(data, dict) or "custom_nodes" not in data:
            raise InputError("a YAML snapshot has everything under `custom_nodes:`", path=path, line=1)
        data = data["custom_nodes"]
    return _snapshot(data, path)


def _snapshot(data: Any, path: Path) -> Snapshot:
    def need(value: Any, kind: type, what: str) -> Any:
        if not isinstance(value, kind):
            raise InputError(f"{what} must be a {'mapping' if kind is dict else kind.__name__}", path=path)
        return value

    need(data, dict, "a snapshot")
    comfyui = data.get("comfyui")
    gits = []
    for url, info in need(data.get("git_custom_nodes") or {}, dict, "git_custom_nodes").items():
        info = need(info, dict, f"git_custom_nodes[{url!r}]")
        gits.append(GitNode(str(url), str(info.get("hash", "")), info.get("disabled") is True))
    cnr = {
        str(k): str(v) for k, v in need(data.get("cnr_custom_nodes") or {}, dict, "cnr_custom_nodes").items()
    }
    files = tuple(
        (str(f.get("filename", "")), f.get("disabled") is True)
        for f in need(data.get("file_custom_nodes") or [], list, "file_custom_nodes")
        if isinstance(f, dict)
    )
    pips = data.get("pips")
    if pips is not None:
        pips = {str(k): "" if v is None else str(v) for k, v in need(pips, dict, "pips").items()}
    return Snapshot(str(comfyui) if comfyui else None, tuple(gits), cnr, files, pips)


# --- snapshot -> lock ----------------------------------------------------------------------------

# Local version labels of the PyTorch index's builds; each lives under <torch-index>/<label>.
_TORCH_LOCAL = re.compile(r"^(cu\d+|rocm\d+(\.\d+)*|cpu|xpu)$")


def _pip_entry(key: str, value: str) -> Pin | Skipped | None:
    if value:
        local = value.startswith("file:")
        why = "local path install: the file is not part of the lock" if local else "URL install"
        return Skipped(f"{key} @ {strip(value)}", f"{why}; `comfylock add` it if it is still needed")
    line = strip_text(key.strip())  # reported: an `-e git+https://token@...` line must not leak
    if not line or line.startswith("#"):
        return None  # pip freeze's own comments
    if line.startswith("-"):
        return Skipped(line, "editable install: a lock cannot pin it")
    try:
        req = Requirement(line)
    except InvalidRequirement:
        return Skipped(line, "not a requirement line")
    exact = [s for s in req.specifier if s.operator in ("==", "===")]
    if req.url or len(req.specifier) != 1 or not exact or "*" in exact[0].version:
        return Skipped(line, "not pinned with ==")
    name = str(canonicalize_name(req.name))
    return Pin(name, f"{name}{exact[0].operator}{exact[0].version}")


def _torch_indexes(pins: list[Pin], torch_index: str) -> dict[str, str]:
    """{pin spec: index URL} for pins whose local label (+cu124, +rocm6.2, +cpu) names a PyTorch index."""
    out = {}
    for p in pins:
        try:
            local = Version(p.version or "").local
        except InvalidVersion:
            continue
        if local and _TORCH_LOCAL.match(local):
            out[p.spec] = f"{torch_index.rstrip('/')}/{local}"
    return out


def node_lines(snap: Snapshot) -> list[str]:
    """The lock's `node:` lines for the snapshot's nodes (enabled ones: disabled nodes do not run)."""
    lines = [f"core - git={snap.comfyui}"] if snap.comfyui else []
    for g in sorted(snap.git_custom_nodes, key=lambda g: g.url):
        if not g.disabled:
            name = g.url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
            lines.append(f"{name} - git={g.hash} url={g.url}")
    lines += [f"{k} - cnr={v}" for k, v in sorted(snap.cnr_custom_nodes.items())]
    return lines


def to_lock(
    snap: Snapshot, source: str, options: list[str], torch_index: str, *, no_index: bool = False
) -> tuple[Lock, list[Skipped]]:
    """The snapshot's pips as a lock; what cannot be pinned is returned, not silently dropped."""
    if snap.pips is None:
        raise InputError(
            "this snapshot has no pips (it was saved with custom nodes only)", path=source, hint=None
        )
    pins: dict[str, Pin] = {}
    skipped: list[Skipped] = []
    for key, value in snap.pips.items():
        entry = _pip_entry(key, value)
        if isinstance(entry, Skipped):
            skipped.append(entry)
        elif entry is not None and entry.name in pins:
            skipped.append(Skipped(key, f"{entry.name} is listed twice; kept {pins[entry.name].spec}"))
        elif entry is not None:
            pins[entry.name] = entry
    warnings = [f"not carried: {s.line} ({s.reason})" for s in skipped]
    options = list(options)
    if not no_index:
        for spec, url in sorted(_torch_indexes(list(pins.values()), torch_index).items()):
            if f"--extra-index-url {url}" not in options:
                options.append(f"--extra-index-url {url}")
            warnings.append(f"{spec} is a PyTorch build: {url} added as an extra index")
    meta = {"comfylock": __version__, "source": f"manager-snapshot {Path(source).name}"}
    the_lock = Lock(
        pins=tuple(sorted(pins.values(), key=lambda p: p.name)),
        options=tuple(options),
        meta=meta,
        lists={"node": tuple(node_lines(snap)), "warning": tuple(warnings)},
    )
    return the_lock, skipped


def import_snapshot(
    path: Path,
    lock_path: Path,
    *,
    options: list[str],
    torch_index: str,
    no_index: bool = False,
    dry_run: bool = False,
) -> ImportResult:
    """Read a Manager snapshot and write its pips as the lock at `lock_path` (unless dry_run)."""
    snap = read_snapshot(path)
    new, skipped = to_lock(snap, str(path), options, torch_index, no_index=no_index)
    try:
        previous = lock.pin_versions(lock.read_lock(lock_path)) if lock_path.is_file() else {}
    except LockFileError:
        previous = {}  # an unreadable old lock is replaced, as compile would
    changes = tuple(lock.diff(previous, lock.pin_versions(new)))
    if not dry_run:
        lock.write_lock(lock_path, new)
    return ImportResult(lock_path, new, changes, tuple(skipped), not dry_run)


# --- lock -> snapshot ----------------------------------------------------------------------------

_TOKEN = re.compile(r"\s+(git|url|cnr)=(\S+)$")


def parse_node_line(line: str) -> tuple[str, str, dict[str, str]]:
    """A lock `node:` line ("NAME FILE git=SHA ...") as (name, file, {git, url, cnr})."""
    tokens: dict[str, str] = {}
    rest = line.strip()
    while m := _TOKEN.search(rest):
        tokens[m.group(1)] = m.group(2)
        rest = rest[: m.start()]
    name, _, chosen = rest.rpartition(" ")
    return (name, chosen, tokens) if name else (chosen, "-", tokens)


def origin_url(folder: Path) -> str | None:
    """The URL of remote "origin" (else the first remote) in a checkout's .git/config, as the
    Manager reads it; no git binary."""
    git = folder / ".git"
    try:
        if git.is_file():  # a submodule or worktree: "gitdir: PATH"; a worktree shares commondir's config
            git = (folder / read_bytes(git).decode("utf-8").partition("gitdir:")[2].strip()).resolve()
            common = git / "commondir"
            if common.is_file():
                git = (git / read_bytes(common).decode("utf-8").strip()).resolve()
        text = read_bytes(git / "config").decode("utf-8", errors="replace")
    except (OSError, UnicodeDecodeError, InputError):
        return None
    urls: dict[str, str] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r'^\[remote\s+"([^"]*)"\]', line)
        if m:
            section = m.group(1)
        elif line.startswith("["):
            section = None
        elif section is not None and re.match(r"^url\s*=", line):
            urls.setdefault(section, line.partition("=")[2].strip())
    return urls.get("origin") or next(iter(urls.values()), None)


def _cnr_info(folder: Path) -> tuple[str, str] | None:
    """(id, version) of a node installed from the Comfy Registry: `.tracking` plus pyproject.toml."""
    tomllib = toml()

    try:
        if not (folder / ".tracking").is_file():
            return None
        project = tomllib.loads(read_bytes(folder / "pyproject.toml").decode("utf-8")).get("project", {})
        project = project if isinstance(project, dict) else {}
    except (OSError, ValueError, InputError, RecursionError):
        return None
    name, version = project.get("name"), project.get("version")
    if isinstance(name, str) and isinstance(version, str) and name.strip():
        return name.strip().lower(), version
    return None


def to_manager_snapshot(the_lock: Lock, root: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The Manager's snapshot dict for a lock (commits from its node lines, remote URLs and registry
    versions from the node folders under `root`), and notes on what it cannot express."""
    comfyui = None
    gits: dict[str, dict[str, Any]] = {}
    cnr: dict[str, str] = {}
    notes: list[str] = []
    for line in the_lock.lists.get("node", ()):
        name, _, tok = parse_node_line(line)
        if name == "core":
            comfyui = tok.get("git")
            continue
        folder = root / "custom_nodes" / name if root else None
        url = tok.get("url") or (origin_url(folder) if folder else None)
        info = None if tok.get("git") or tok.get("cnr") or folder is None else _cnr_info(folder)
        if tok.get("git") and url:
            gits[strip(url)] = {"hash": tok["git"], "disabled": False}
        elif tok.get("cnr") or info:
            node_id, version = (name, tok["cnr"]) if tok.get("cnr") else info  # type: ignore[misc]
            cnr[node_id] = version
        else:
            why = "no git remote" if tok.get("git") else "not a git checkout nor a registry install"
            notes.append(f"node {name}: {why}; the Manager cannot restore it")
    files = []
    if root is not None and (root / "custom_nodes").is_dir():
        for f in sorted((root / "custom_nodes").iterdir()):
            if f.is_file() and f.name.endswith((".py", ".py.disabled")) and f.name != "__init__.py":
                files.append({"filename": f.name, "disabled": f.name.endswith(".disabled")})
    pips: dict[str, str] = {}
    for pin in the_lock.pins:
        req = Requirement(pin.spec)
        if req.url:
            pips[req.name] = strip(req.url)  # the Manager's form for `name @ url` freeze lines
        else:
            pips[pin.spec] = ""
    if the_lock.options:
        notes.append(
            "index options (" + strip_text("; ".join(the_lock.options)) + ") have no place in a snapshot"
        )
    snapshot = {
        "comfyui": comfyui,
        "git_custom_nodes": gits,
        "cnr_custom_nodes": cnr,
        "file_custom_nodes": files,
        "pips": pips,
    }
    return snapshot, notes


def format_manager_snapshot(snapshot: dict[str, Any], *, yaml: bool = False) -> str:
    """JSON as the Manager writes it; for a .yaml file, the same JSON under `custom_nodes` (JSON is
    YAML, and the Manager picks its parser by the file's extension)."""
    return json.dumps({"custom_nodes": snapshot} if yaml else snapshot, indent=4) + "\n"
