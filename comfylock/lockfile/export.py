"""The lock in other tools' formats and back: a bare requirements file, reading any lock (a comfylock
lock, a requirements file or a pylock, see lockfile.pylock), and telling whether a lock was made for
the machine it is about to be synced on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from comfylock._redact import strip_text
from comfylock.environment.target import Target
from comfylock.lockfile.lock import Lock, read_lock

FORMATS = ("pylock", "requirements", "manager-snapshot")


# --- requirements --------------------------------------------------------------------------------


def export_requirements(the_lock: Lock, *, index_options: bool = True) -> str:
    """The pins as a bare requirements file: no header, no annotations; index options first (pip
    reads them from the file too) unless `index_options` is False."""
    lines = list(the_lock.options) if index_options else []
    if lines:
        lines.append("")
    lines += [p.spec for p in the_lock.pins]
    return strip_text("\n".join(lines) + "\n") if lines else ""


# --- reading any lock, for a target -------------------------------------------------------------


def is_pylock(path: Path) -> bool:
    """Whether `path` names a pylock file (read as such by read_any)."""
    return path.name.startswith("pylock") and path.name.endswith(".toml")


def read_any(path: Path, environment: Mapping[str, str] | None = None) -> Lock:
    """A comfylock lock, a plain `name==version` requirements file, or a pylock (by its name)."""
    if is_pylock(path):  # its reader imported only then: a sync of a comfylock lock needs none of it
        from comfylock.lockfile.pylock import read_pylock

        return read_pylock(path, environment)
    return read_lock(path)


def marker_environment(target: Target) -> dict[str, str]:
    """The PEP 508 marker values of the target interpreter, for a pylock's per-package markers."""
    release = ".".join(target.version.split(".")[:2])
    return {
        "python_version": release,
        "python_full_version": target.version,
        "implementation_name": target.implementation,
        "platform_python_implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(
            target.implementation, target.implementation
        ),
        "sys_platform": target.sys_platform,
        "platform_machine": target.machine,
        "platform_system": {"win32": "Windows", "darwin": "Darwin", "linux": "Linux"}.get(
            target.sys_platform, target.sys_platform.capitalize()
        ),
        "os_name": "nt" if target.sys_platform == "win32" else "posix",
    }


# --- is this lock for this machine? --------------------------------------------------------------

_MACHINES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "x86", "i686": "x86"}
# uv's bare names stand for its default triple of each OS.
_ALIASES = {"linux": ("linux", "x86_64"), "windows": ("win32", "x86_64"), "macos": ("darwin", "aarch64")}
# The OS part of a triple ("x86_64-pc-windows-msvc", "x86_64-manylinux_2_28") -> sys.platform.
_OS_WORDS = (("windows", "win32"), ("darwin", "darwin"), ("android", "android"), ("ios", "ios"),
             ("pyodide", "emscripten"), ("linux", "linux"))  # fmt: skip


def machine(value: str) -> str:
    v = value.strip().lower()
    return _MACHINES.get(v, v)


def platform_of(value: str) -> tuple[str | None, str | None]:
    """(sys_platform, machine) of a uv --python-platform value, or of a lock's "linux x86_64";
    (None, None) for a value this comfylock does not know (then no platform check is made)."""
    v = value.strip().lower()
    if v in _ALIASES:
        return _ALIASES[v]
    if " " in v:  # comfylock's own "sys_platform machine"
        plat, _, arch = v.partition(" ")
        return plat, machine(arch)
    arch, _, rest = v.partition("-")
    for word, plat in _OS_WORDS:
        if word in rest:
            return plat, machine(arch)
    return None, None


def _minor(version: str) -> str | None:
    m = re.match(r"\s*(\d+)\.(\d+)", version)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def check_target(the_lock: Lock, target: Target) -> str | None:
    """A one-line message when `the_lock` was made for another Python (major.minor) or platform than
    `target`; None when they match or the lock does not say what it was made for."""
    meta = the_lock.meta
    want_py = _minor(meta.get("target-python-version") or meta.get("python", ""))
    want_plat, want_arch = platform_of(meta.get("target-python-platform") or meta.get("platform", ""))
    have_py = _minor(target.version)
    have_arch = machine(target.machine)
    wrong = []
    if want_py and have_py and want_py != have_py:
        wrong.append(f"Python {want_py}, not {have_py}")
    if want_plat and (want_plat, want_arch) != (target.sys_platform, have_arch):
        wrong.append(f"{want_plat} {want_arch}, not {target.sys_platform} {have_arch}")
    if not wrong:
        return None
    return "the lock was made for " + " and ".join(wrong)
