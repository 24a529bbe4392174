"""What policy conditions read about the target environment, and how a condition is evaluated.

Also the version helpers the policy modules share: checking a file, evaluating a condition and pinning
an installed version all need to know whether a string is a PEP 440 version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from comfylock._exceptions import PolicyError

CONDITION_TYPES = ("installed", "platform")
# Manager's own code compares against platform.system(); sys.platform spellings are accepted too.
OS_NAMES = {"linux": "linux", "windows": "windows", "win32": "windows", "macos": "macos", "darwin": "macos"}


def normalize_os(name: str) -> str | None:
    """'linux', 'windows' or 'macos' for any accepted spelling, None for an unknown one."""
    return OS_NAMES.get(name.lower())


def parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def exact_pin(name: str, version: str) -> str:
    """The requirement that keeps `name` at exactly `version`."""
    if parse_version(version) is None:
        return f"{name}==={version}"  # arbitrary equality: the only way to pin a non-PEP 440 version
    return f"{name}=={version}"


def local_tag(version: str) -> str | None:
    """The local part of a version ('cu124' of '2.5.1+cu124'), if any."""
    parsed = parse_version(version)
    return parsed.local if parsed is not None else None


@lru_cache(maxsize=512)
def _specifier(spec: str) -> SpecifierSet | None:
    try:
        return SpecifierSet(spec)
    except InvalidSpecifier:
        return None


def matches(spec: str, version: str) -> bool:
    specifier, parsed = _specifier(spec), parse_version(version)
    # Installed dev/nightly builds (torch 2.6.0.dev...) must still satisfy ">=2.0".
    return specifier is not None and parsed is not None and specifier.contains(parsed, prereleases=True)


@dataclass(frozen=True)
class Facts:
    """What conditions read, about the TARGET environment."""

    installed: Mapping[str, str]  # canonical name -> installed version
    os: str  # "linux" | "windows" | "macos" ("win32"/"darwin" accepted and normalized)
    has_gpu: bool  # an NVIDIA (CUDA) GPU, as Manager's torch.cuda.is_available() check means it
    comfyui_version: str | None

    def __post_init__(self) -> None:
        os_name = normalize_os(self.os)
        if os_name is None:
            raise ValueError(f"unknown os {self.os!r} (expected one of linux, windows, macos)")
        object.__setattr__(self, "os", os_name)
        object.__setattr__(self, "installed", {canonicalize_name(k): v for k, v in self.installed.items()})


def holds(cond: Mapping[str, Any] | None, package: str, facts: Facts, *, origin: str | None = None) -> bool:
    """Whether an entry of `package`'s policy with this condition applies on the target."""
    if cond is None:
        return True
    kind = cond.get("type")
    if kind == "installed":
        version = facts.installed.get(canonicalize_name(cond.get("package") or package))
        return version is not None and ("spec" not in cond or matches(cond["spec"], version))
    if kind == "platform":
        if "os" in cond and normalize_os(str(cond["os"])) != facts.os:
            return False
        if "has_gpu" in cond and bool(cond["has_gpu"]) != facts.has_gpu:
            return False
        if "comfyui_version" in cond:
            version = facts.comfyui_version
            return version is not None and matches(cond["comfyui_version"], version)
        return True
    # load_policy rejects these; a Policy built by hand must not turn a typo into "never".
    raise PolicyError(
        f"{package}: unknown condition type {kind!r}",
        path=origin,
        hint=f"expected one of {', '.join(CONDITION_TYPES)}",
    )
