"""What a resolution is asked (ResolveRequest) and what it answers (Resolved): value types passed between
the planners and resolve.uv, the one module that runs uv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from comfylock.resolve.index import IndexOptions


@dataclass(frozen=True)
class ResolveRequest:
    """One `uv pip compile`: the input groups, constraints, preferences and flags."""

    inputs: Mapping[str, Sequence[str]]  # group (node name) -> requirement lines
    python: Path | None = None
    constraints: Sequence[str] = ()
    overrides: Sequence[str] = ()
    excludes: Sequence[str] = ()
    index: IndexOptions = field(default_factory=IndexOptions)
    preferences: str | None = None  # text of the previous lock: uv keeps its pins where it can
    upgrade: bool = False
    upgrade_packages: Sequence[str] = ()
    offline: bool = False
    refresh: bool = False
    python_version: str | None = None
    python_platform: str | None = None


@dataclass(frozen=True)
class Resolved:
    """One package of uv's answer: its pin, the groups that asked for it, and its parents."""

    name: str  # canonical
    spec: str  # "numpy==1.26.4" or "foo @ https://..."
    groups: tuple[str, ...]  # input groups that asked for it directly
    parents: tuple[str, ...]  # packages that depend on it
