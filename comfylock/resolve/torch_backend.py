"""Which PyTorch build fits this machine, for a target that has no torch yet.

`pick()` is pure: hardware facts in, a backend out (`cpu`, `cu124`, `rocm6.2`, `pypi`). `detect()` reads
the machine: `COMFYLOCK_TEST_GPU` first (tests set the hardware with it: `none`, `nvidia:12.4`,
`rocm:6.2`, `macos`), then `nvidia-smi`, `/proc/driver/nvidia/version`, ROCm's version file. The
builds come from `<torch-index>/<backend>` (config.toml's torch-index), the same place `+cuXXX` pins of
an installed torch are fetched from.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from comfylock._exceptions import InputError

TEST_ENV = "COMFYLOCK_TEST_GPU"
BACKEND_ENV = "COMFYLOCK_TORCH_BACKEND"  # the default when neither --torch-backend nor config.toml says
FAMILY = frozenset({"torch", "torchvision", "torchaudio"})
_BACKEND = re.compile(r"auto|cpu|pypi|cu\d{3}|rocm\d+\.\d+(\.\d+)?|xpu")
# The CUDA builds the PyTorch index has served, oldest first; a driver runs builds up to its own CUDA.
CUDA_TAGS = ((11, 8), (12, 1), (12, 4), (12, 6), (12, 8), (12, 9), (13, 0))
# The oldest Linux driver of each CUDA release (NVIDIA's CUDA toolkit release notes, table 3).
DRIVER_CUDA = (
    ((580, 65), (13, 0)),
    ((575, 51), (12, 9)),
    ((570, 26), (12, 8)),
    ((560, 28), (12, 6)),
    ((550, 54), (12, 4)),
    ((530, 30), (12, 1)),
    ((520, 61), (11, 8)),
)


@dataclass(frozen=True)
class Hardware:
    """The GPU this machine has, as detect() read it."""

    kind: str  # "none", "nvidia", "rocm", "macos"
    version: tuple[int, int] | None = None  # CUDA (from the driver) or ROCm version
    how: str = ""  # where it was read, for messages

    def describe(self) -> str:
        v = ".".join(map(str, self.version)) if self.version else ""
        names = {"none": "no GPU", "nvidia": f"NVIDIA, CUDA {v}", "rocm": f"AMD ROCm {v}", "macos": "macOS"}
        return names[self.kind] + (f" ({self.how})" if self.how else "")


def check(value: str, where: str = "--torch-backend") -> str:
    if not _BACKEND.fullmatch(value):
        raise InputError(
            f"{where}: unknown torch backend {value!r}",
            hint="use auto, cpu, pypi, cuXXX (cu126) or rocmX.Y (rocm6.2)",
        )
    return value


def _version(text: str) -> tuple[int, int] | None:
    m = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def cuda_of_driver(driver: str) -> tuple[int, int] | None:
    """The newest CUDA a Linux driver version (550.54.14) runs."""
    v = _version(driver)
    if v is None:
        return None
    return next((cuda for low, cuda in DRIVER_CUDA if v >= low), None)


def pick(requested: str, hw: Hardware) -> str:
    """The backend for `requested` (auto or explicit) on `hw`."""
    if requested != "auto":
        return requested
    if hw.kind == "macos":
        return "pypi"  # PyPI's macOS wheels are the Metal (MPS) build
    if hw.kind == "nvidia" and hw.version:
        fits = [t for t in CUDA_TAGS if t <= hw.version]
        return f"cu{fits[-1][0]}{fits[-1][1]}" if fits else "cpu"
    if hw.kind == "rocm" and hw.version:
        return f"rocm{hw.version[0]}.{hw.version[1]}"
    return "cpu"


def from_test_env(value: str) -> Hardware:
    kind, _, version = value.partition(":")
    if kind not in ("none", "nvidia", "rocm", "macos"):
        raise InputError(f"{TEST_ENV}={value!r}: expected none, nvidia:X.Y, rocm:X.Y or macos")
    return Hardware(kind, _version(version) if version else None, TEST_ENV)


def detect(environ: Mapping[str, str] | None = None, platform: str | None = None) -> Hardware:
    environ = os.environ if environ is None else environ
    if environ.get(TEST_ENV):
        return from_test_env(environ[TEST_ENV])
    platform = platform or sys.platform
    if platform == "darwin":
        return Hardware("macos")
    cuda = _nvidia_smi()
    if cuda is not None:
        return Hardware("nvidia", cuda, "nvidia-smi")
    try:
        text = Path("/proc/driver/nvidia/version").read_text(encoding="utf-8", errors="replace")
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+)", text)
        if m and cuda_of_driver(m.group(1)):
            return Hardware("nvidia", cuda_of_driver(m.group(1)), "/proc/driver/nvidia/version")
    except OSError:
        pass
    for path in (
        Path("/opt/rocm/.info/version"),
        Path(environ.get("ROCM_PATH", "/opt/rocm")) / ".info/version",
    ):
        try:
            rocm = _version(path.read_text(encoding="utf-8"))
        except OSError:
            continue
        if rocm:
            return Hardware("rocm", rocm, str(path))
    return Hardware("none")


def _nvidia_smi() -> tuple[int, int] | None:
    """The CUDA version nvidia-smi's header prints ("CUDA Version: 12.4"), when it runs."""
    import subprocess  # here: only the GPU question asks it, not every read of config.toml

    try:
        done = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", done.stdout)
    return _version(m.group(1)) if m and done.returncode == 0 else None


def wanted(requested: Iterable[str], installed: Mapping[str, str]) -> bool:
    """Choose a build only when a node or core asks for a torch-family package by name and the target
    has none installed yet (an installed build is kept by the default policy, index and all)."""
    return bool(FAMILY & set(requested)) and not (FAMILY & set(installed))


def index_url(torch_index: str, backend: str) -> str | None:
    return None if backend == "pypi" else f"{torch_index.rstrip('/')}/{backend}"


@dataclass(frozen=True)
class Choice:
    """The torch build chosen for a target without torch, and where it comes from."""

    backend: str  # what the lock header records: cpu, cu124, rocm6.2, pypi
    url: str | None  # the extra index the build comes from; None: PyPI
    hardware: str  # what was detected, for the report
    warning: str | None = None


def choose(
    requested: str,
    torch_index: str,
    names: Iterable[str],
    installed: Mapping[str, str],
    *,
    other_platform: bool = False,
    offline: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Choice | None:
    """The torch build for a compile, or None when none is to be chosen (torch installed already, or
    nobody asks for it, or `auto` when compiling for another platform: this machine says nothing).

    With `auto`, an index that cannot be reached (download.pytorch.org from a machine without access)
    falls back to PyPI with a warning; an explicitly chosen backend fails instead."""
    if not wanted(names, installed) or (requested == "auto" and other_platform):
        return None
    hw = detect(environ)
    backend = pick(requested, hw)
    url = index_url(torch_index, backend)
    if url is None or offline:
        return Choice(backend, url, hw.describe())
    why = reach(url, os.environ if environ is None else environ)
    if why is None:
        return Choice(backend, url, hw.describe())
    if requested != "auto":
        raise InputError(
            f"the {backend} torch builds' index {url} cannot be reached: {why}",
            hint="set torch-index in config.toml to a reachable mirror, or pass --torch-backend pypi",
        )
    return Choice(
        "pypi",
        None,
        hw.describe(),
        f"torch: {url} cannot be reached ({why}), so torch comes from PyPI (its Linux/Windows build is "
        "the CUDA one, several GB); set torch-index in config.toml to a mirror, or pass "
        "--torch-backend pypi to choose this on purpose",
    )


def reach(url: str, environ: Mapping[str, str]) -> str | None:
    """Why `url`'s host or folder cannot be reached (None: it can, or a proxy decides). A DNS lookup
    and a TCP connect of at most 5 s, so an unreachable index costs seconds, not uv's retries."""
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    if parts.scheme == "file":
        folder = Path(unquote(parts.path.lstrip("/") if os.name == "nt" else parts.path))
        return None if folder.is_dir() else f"no folder {folder}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if any(environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return None
    import socket

    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=5).close()
    except OSError as e:
        return "host not found" if isinstance(e, socket.gaierror) else (e.strerror or str(e))
    return None


def for_compile(
    requested: str,
    torch_index: str,
    names: Iterable[str],
    installed: Mapping[str, str],
    previous_meta: Mapping[str, str] | None,
    previous_torch: str | None,
    *,
    other_platform: bool = False,
    offline: bool = False,
) -> Choice | None:
    """choose(), made sticky: once a lock's chosen build is installed (the environment's torch is the
    lock's pin), the next compile keeps that choice and its index, so compiling after the sync gives
    the same lock (without this the torch index would leave the inputs and the lock would change).
    Offline, the previous lock's choice is kept too."""
    kept = (previous_meta or {}).get("torch-backend")
    torch_now = installed.get("torch")
    synced = torch_now is not None and torch_now == previous_torch
    # Offline (and `check`, which never goes online) cannot ask whether the index answers: the lock's
    # own choice stands, so both see the inputs the last compile saw.
    if kept and _BACKEND.fullmatch(kept) and (synced or offline):
        return Choice(kept, index_url(torch_index, kept), "kept from the lock")
    return choose(requested, torch_index, names, installed, other_platform=other_platform, offline=offline)


def asked(given: str | None, configured: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The backend a compile asks for: --torch-backend, else config.toml's torch-backend, else
    $COMFYLOCK_TORCH_BACKEND (a fleet's or a test suite's default), else auto."""
    if given or configured:
        return str(given or configured)
    env = (os.environ if environ is None else environ).get(BACKEND_ENV)
    return check(env, BACKEND_ENV) if env else "auto"
