"""Before a sync downloads a lot, say how much and of what; warn when CUDA packages are about to land on
a machine without an NVIDIA GPU.

Sizes come from the index's PEP 691 JSON pages (`Accept: application/vnd.pypi.simple.v1+json`, which
PyPI serves with every file's size), asked only for the packages the sync adds or changes that are
known to be large (LARGE: torch, nvidia-*, ...), in parallel, with a short timeout: an estimate, never
a reason to fail. Local wheel folders are measured on disk, every package. The wheel counted is the
largest of that version that fits the target's platform.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from comfylock._names import canon
from comfylock.environment.target import Target
from comfylock.lockfile.lock import Change
from comfylock.resolve.index import IndexOptions

THRESHOLD = 300 * 1024 * 1024  # say it above this many bytes
# CUDA libraries (nvidia-cublas-cu12, nvidia-cudnn-cu12...), not the small NVIDIA tools (nvidia-ml-py:
# NVML bindings that ComfyUI-Manager and monitors use on any machine).
_CUDA = re.compile(r"nvidia-(?!ml-py|pyindex).*|.*-cu\d+")
# Packages whose wheels run to hundreds of MB (or add up to that): the only ones asked of a remote index.
LARGE = re.compile(
    r"torch|torchvision|torchaudio|triton(-windows)?|xformers|nvidia-.*|cupy.*|tensorflow.*|jaxlib|"
    r"onnxruntime.*|opencv.*|llvmlite|scipy|numpy|pyarrow|transformers|bitsandbytes|mediapipe|"
    r"tensorrt.*|flash-attn|deepspeed|paddlepaddle.*|av|dlib|spandrel|kornia-rs"
)


def cuda_packages(changes: Iterable[Change]) -> list[str]:
    """Packages a sync installs that only make sense with an NVIDIA GPU (nvidia-*, +cuXXX builds)."""
    out = []
    for c in changes:
        if c.new is None:
            continue
        if _CUDA.fullmatch(c.name) or re.search(r"\+cu\d+", c.new):
            out.append(f"{c.name} {c.new}")
    return out


def cuda_warning(changes: Iterable[Change], has_nvidia: bool) -> str | None:
    found = [] if has_nvidia else cuda_packages(changes)
    if not found:
        return None
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    torch_build = any(re.match(r"torch\w* \S+\+cu", f) or f.startswith("nvidia-") for f in found)
    hint = "compile with --torch-backend cpu for the CPU build" if torch_build else "they need an NVIDIA GPU"
    what = "CUDA package is" if len(found) == 1 else "CUDA packages are"
    return (
        f"{len(found)} {what} about to be installed on a machine with no NVIDIA GPU "
        f"({', '.join(found[:3])}{more}); {hint}"
    )


@dataclass(frozen=True)
class Size:
    name: str
    version: str
    bytes: int


def _fits(filename: str, py: str, platform: str, machine: str) -> bool:
    if not filename.endswith(".whl"):
        return False
    parts = filename[:-4].split("-")
    if len(parts) < 5:
        return False
    pytag, plat = parts[-3], parts[-1]
    if not any(t.startswith(("py3", py)) or t == "py2.py3" for t in pytag.split(".")):
        return False
    if plat == "any":
        return True
    words = {"linux": "linux", "win32": "win", "darwin": "macosx"}
    arch = {"amd64": ("amd64", "x86_64"), "x86_64": ("x86_64", "amd64"), "arm64": ("arm64", "aarch64")}
    archs = arch.get(machine.lower(), (machine.lower(),))
    return words.get(platform, platform) in plat and any(a in plat for a in archs + ("universal2",))


def pick_size(files: Sequence[tuple[str, int]], version: str, py: str, platform: str, machine: str) -> int:
    """The largest wheel of `version` among (filename, size) that fits the target; 0 when none."""
    fits = [
        size for name, size in files if _version_of(name) == version and _fits(name, py, platform, machine)
    ]
    return max(fits, default=0)


def _version_of(filename: str) -> str:
    parts = filename.split("-")
    return parts[1] if len(parts) > 1 else ""


def index_files(index_url: str, name: str, timeout: float = 5.0) -> list[tuple[str, int]]:
    """(filename, size) of a project's files on a PEP 691 index; [] when it cannot say."""
    import urllib.request

    url = f"{index_url.rstrip('/')}/{canon(name)}/"
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - the lock's own index
            data = json.loads(r.read())
    except (OSError, ValueError):
        return []
    return [(f["filename"], int(f["size"])) for f in data.get("files", ()) if isinstance(f.get("size"), int)]


def folder_files(folders: Iterable[str]) -> list[tuple[str, int]]:
    out = []
    for folder in folders:
        path = Path(folder)
        if path.is_dir():
            out.extend((p.name, p.stat().st_size) for p in path.glob("*.whl"))
    return out


def estimate(
    changes: Iterable[Change],
    lookup: Callable[[str], list[tuple[str, int]]],
    py: str,
    platform: str,
    machine: str,
) -> list[Size]:
    """The download size of each package the sync adds or changes, largest first."""
    todo = [c for c in changes if c.new is not None and "@" not in c.new]
    with ThreadPoolExecutor(max_workers=8) as pool:
        listed = list(pool.map(lambda c: lookup(c.name), todo))
    sizes = [
        Size(c.name, str(c.new), pick_size(files, str(c.new), py, platform, machine))
        for c, files in zip(todo, listed, strict=True)
    ]
    return sorted((s for s in sizes if s.bytes), key=lambda s: (-s.bytes, s.name))


def size_note(sizes: Sequence[Size]) -> str | None:
    total = sum(s.bytes for s in sizes)
    if total < THRESHOLD:
        return None
    top = ", ".join(f"{s.name} {_mb(s.bytes)}" for s in sizes[:5])
    return f"this sync downloads about {_mb(total)} (less what uv's cache holds); largest: {top}"


def _mb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def preflight(
    changes: Sequence[Change],
    index_url: str | None,
    no_index: bool,
    find_links: Sequence[str],
    target: tuple[str, str, str],
    has_nvidia: bool,
) -> list[str]:
    """The notes to print before a sync: its download size when large, CUDA packages without a GPU.
    `target`: (python version "3.11.7", sys.platform, machine)."""
    notes = []
    warning = cuda_warning(changes, has_nvidia)
    if warning:
        notes.append(warning)
    local = folder_files(f for f in find_links if "://" not in f)
    remote = None if no_index else (index_url or "https://pypi.org/simple")
    if remote is not None and not remote.startswith(("http://", "https://")):
        remote = None

    def lookup(name: str) -> list[tuple[str, int]]:
        mine = [(f, s) for f, s in local if canon(f.split("-")[0]) == name]
        # An index's page lists every file of every version (numpy's: 2 MB), so only the packages
        # that make a download large are asked about; the rest add little to the total.
        return mine or (index_files(remote, name) if remote and LARGE.fullmatch(name) else [])

    major, minor = target[0].split(".")[:2]
    note = size_note(estimate(changes, lookup, f"cp{major}{minor}", target[1], target[2]))
    if note:
        notes.insert(0, note)
    return notes


def announce(
    changes: Sequence[Change], index: IndexOptions, target: Target, say: Callable[[str], None]
) -> None:
    """Say the preflight notes of a sync."""
    from comfylock.resolve.torch_backend import detect

    for note in preflight(
        changes,
        index.index_url,
        index.no_index,
        index.find_links,
        (target.version, target.sys_platform, target.machine),
        bool(cuda_packages(changes)) and detect().kind == "nvidia",  # asked only when it matters
    ):
        say(note)
