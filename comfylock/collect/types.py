"""The value types of stage 2 (collect): a requirement and its provenance, and what each node asks
for. A leaf: the parser (_reqfile) and collect build them, every later stage reads them."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

CORE = "core"  # the node name given to ComfyUI's own requirements
USER = "user"  # the node name given to the user's own requirements (comfylock add)


@dataclass(frozen=True)
class Source:
    """Where one requirement was written: node name, file (absolute), 1-based line number."""

    node: str
    path: Path
    line: int


@dataclass(frozen=True)
class Req:
    """A parsed requirement and its provenance. `text` is the logical line as written (stripped)."""

    requirement: Requirement
    source: Source
    text: str
    constraint: bool = False  # came from a `-c` include: narrows, never adds a package
    # Set when a policy rewrote the line (replace) or added to it (install_with): which policy.
    # `requirement` is then what the policy made of it, `text` still the line as the node wrote it.
    policy: str | None = None

    @property
    def name(self) -> NormalizedName:
        return _canonical(self.requirement.name)


# Asked twice per requirement by every policy pass; a thousand nodes name the same few hundred packages.
_canonical = lru_cache(maxsize=4096)(canonicalize_name)


@dataclass(frozen=True)
class IndexOption:
    """An index option from an allowed node's file, e.g. ('--extra-index-url', 'https://...')."""

    option: str  # long form: --index-url, --extra-index-url, --find-links, --trusted-host, --pre
    value: str | None
    source: Source


@dataclass(frozen=True)
class BadLine:
    """A line skipped because the user asked to keep going past bad lines."""

    source: Source
    text: str
    reason: str


@dataclass(frozen=True)
class NodeInput:
    """What one node (or core, or the user) asks for."""

    node: str
    path: Path  # the node folder (ComfyUI root for core, comfylock's user dir for the user)
    chosen: str | None  # relative file name read, e.g. "requirements.txt", "pyproject.toml"; None: nothing
    why: str  # one line: why this file was chosen ("requirements.txt wins over pyproject.toml", ...)
    requirements: tuple[Req, ...]
    index_options: tuple[IndexOption, ...] = ()
    files: tuple[Path, ...] = ()  # every file read, includes too (the fingerprint hashes them)
    bad_lines: tuple[BadLine, ...] = ()
    digests: tuple[str, ...] = ()  # sha256 of each of `files` as it was parsed


@dataclass(frozen=True)
class Collection:
    """Everything collect read: each input (core, the nodes, the user) with its requirements."""

    inputs: tuple[NodeInput, ...] = field(default_factory=tuple)  # core first, nodes by name, user last

    def requirements(self) -> list[Req]:
        return [r for i in self.inputs for r in i.requirements]
