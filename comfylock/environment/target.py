"""The target interpreter as comfylock sees it: a value made by the probe (environment.probe) and read by
every stage after the workspace. Imports nothing of comfylock's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Target:
    """Facts about the target interpreter, read once per run by running it (never imported here)."""

    python: Path
    version: str  # "3.11.7"
    implementation: str  # "cpython"
    sys_platform: str  # "linux", "win32", "darwin"
    machine: str  # "x86_64", "AMD64", "arm64"
    # canonical name -> version, in the target's own site folders (purelib/platlib of its prefix): what
    # `uv pip sync` installs into and removes from, so what sync, check and history compare
    installed: Mapping[str, str]
    has_gpu: bool  # an installed +cuXXX/+rocm torch, or an NVIDIA driver on this machine
    site_dirs: tuple[str, ...] = ()  # the target's own site folders (where a killed install leaves debris)
    # `uv pip freeze`'s lines when the environment holds only plain registry installs, else None
    frozen: tuple[str, ...] | None = None
    # (cache file, key, answer) of an answer read now and not cached yet; see remember()
    fresh: tuple[Path, dict[str, Any], str] | None = field(default=None, repr=False, compare=False)
    # canonical name -> version of everything the target can import, from elsewhere too (a folder a .pth
    # lists, the base site of a --system-site-packages venv): what policies read, never what sync acts on
    visible: Mapping[str, str] = field(default_factory=dict, compare=False)
    # canonical name -> its direct_url.json (url, editable, vcs, commit, revision) for URL, VCS and
    # local-path installs in the own site folders
    direct: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    own: tuple[str, ...] = field(default=(), compare=False)  # the own site folders, real paths
    paths: tuple[str, ...] = field(default=(), compare=False)  # sys.path, absolute
    prefix: str = field(default="", compare=False)  # sys.prefix, real path (a venv's pyvenv.cfg is here)

    def identity(self) -> list[str | bool]:
        """What of the target decides a compile's result (the fingerprints hash it)."""
        return [
            str(self.python),
            self.version,
            self.implementation,
            self.sys_platform,
            self.machine,
            self.has_gpu,
        ]

    def meta(self) -> dict[str, str]:
        """The target as a lock header records it."""
        return {
            "python": f"{self.version} {self.implementation}",
            "platform": f"{self.sys_platform} {self.machine}",
        }

    @property
    def os(self) -> str:
        """'linux', 'windows' or 'macos', the words pip-policy.json conditions use."""
        return {"win32": "windows", "darwin": "macos"}.get(self.sys_platform, self.sys_platform)
