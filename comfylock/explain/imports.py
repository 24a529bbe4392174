"""The conflicts the resolver cannot see: two distributions that install the same top-level import and
overwrite each other's files (opencv-python next to opencv-python-headless). Known families say so up
front; otherwise the dist-info folders found installed or in uv's cache tell, by their RECORD files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from comfylock._names import canon
from comfylock.lockfile.graph import owners
from comfylock.lockfile.lock import Lock


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
            name = canon(name)
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
        ds = tuple(sorted(dists))
        if len(ds) < 2:
            continue
        severity, reason = _clash(module, ds, family.get(module), found)
        if not severity:
            continue
        keep = _keep(family.get(module), ds, who)
        rule = {"type": "replace", "replacement": keep, "reason": f"one distribution for `import {module}`"}
        snippet = {d: {"apply_first_match": [rule]} for d in ds if d != keep}
        asked = {d: tuple(sorted(who.get(d, ()))) for d in ds}
        out.append(Duplicate(module, ds, severity, reason, asked, keep, json.dumps(snippet)))
    return out


def _clash(
    module: str, dists: Sequence[str], fam: Family | None, found: Mapping[str, DistFiles]
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
