"""Stage 6: make the target environment exactly the lock.

As in pip-tools, `plan()` computes what would change and touches nothing (so `--dry-run` is free and
testable without an environment); `apply()` only acts, through uv.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from . import resolve
from .lock import Change, Lock, format_body
from .resolve import IndexOptions

# Never removed from the environment comfylock or uv runs in, nor pip (a user's way out). uv itself
# leaves pip, setuptools and wheel alone; it would remove the rest, so they are kept by pinning their
# installed versions into what uv syncs to.
PROTECTED = frozenset({"comfylock", "uv", "packaging", "tomli-w", "tomli", "pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class SyncPlan:
    changes: tuple[Change, ...]  # installs, removals, up/downgrades; sorted by name
    kept: tuple[str, ...]  # protected packages not in the lock that stay installed
    sync_text: str  # the requirements text handed to uv: the lock's pins plus the kept packages

    @property
    def is_noop(self) -> bool:
        return not self.changes


def _same(installed: str | None, pinned: str | None) -> bool:
    if installed is None or pinned is None:
        return installed == pinned
    try:
        return Version(installed) == Version(pinned)
    except InvalidVersion:
        return installed == pinned


def plan(lock: Lock, installed: Mapping[str, str]) -> SyncPlan:
    """What syncing `lock` into an environment holding `installed` ({canonical name: version}) does."""
    pins = lock.by_name()
    changes: list[Change] = []
    for name in sorted(set(pins) | set(installed)):
        pin = pins.get(name)
        have = installed.get(name)
        if pin is None:
            if name not in PROTECTED:
                changes.append(Change(name, have, None))
            continue
        want = pin.version
        if want is None:
            # A URL pin: the installed version cannot tell which URL it came from; uv decides.
            if have is None:
                changes.append(Change(name, None, pin.spec))
        elif not _same(have, want):
            changes.append(Change(name, have, want))
    kept = tuple(sorted(n for n in installed if n in PROTECTED and n not in pins))
    extra = [f"{n}=={installed[n]}" for n in kept]
    body = format_body(lock.pins, lock.options)
    return SyncPlan(tuple(changes), kept, body + "".join(f"{line}\n" for line in extra))


def apply(p: SyncPlan, python: Path, index: IndexOptions, *, offline: bool = False) -> None:
    """Carry out a plan with `uv pip sync`. A no-op plan runs nothing."""
    if p.is_noop:
        return
    resolve.sync(p.sync_text, python, index, offline=offline)


def installed_from_freeze(lines: list[str]) -> dict[str, str]:
    """{name: version} from `uv pip freeze` lines; URL installs map to their spec."""
    out: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        if "==" in line:
            name, _, version = line.partition("==")
            out[str(canonicalize_name(name.strip()))] = version.strip()
        elif " @ " in line:
            out[str(canonicalize_name(line.split(" @ ")[0]))] = line
    return out
