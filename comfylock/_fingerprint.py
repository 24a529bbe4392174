"""A hash of everything that decides a compile's result, so an unchanged install is not resolved again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any

from . import __version__, collect, policy, resolve
from ._fs import file_digest
from .config import Config
from .resolve import IndexOptions
from .workspace import Target


def policy_names(entries: Mapping[str, Any]) -> list[str]:
    """The packages whose installed version a policy reads: `installed` conditions and pins."""
    return sorted(set(_policy_names(entries)))


def _policy_names(entries: Mapping[str, Any]) -> Iterator[str]:
    from packaging.utils import canonicalize_name

    def walk(owner: str, value: Any) -> Iterator[str]:
        if isinstance(value, dict):
            if value.get("type") == "installed":
                yield str(canonicalize_name(value.get("package") or owner))
            pinned = value.get("pinned_packages")
            if isinstance(pinned, list):
                yield from (str(canonicalize_name(x)) for x in pinned if isinstance(x, str))
            for v in value.values():
                yield from walk(owner, v)
        elif isinstance(value, list):
            for v in value:
                yield from walk(owner, v)

    for name, sections in entries.items():
        yield from walk(name, sections)


def fingerprint(
    coll: collect.Collection,
    pol: policy.Policy,
    target: Target,
    index: IndexOptions,
    cfg: Config,
    python_version: str | None,
    python_platform: str | None,
    comfyui_version: str | None = None,
) -> str:
    h = hashlib.sha256()
    files = []
    for inp in coll.inputs:
        # The bytes collect parsed: hashing the files again could see a later edit.
        parsed = dict(zip(inp.files, inp.digests, strict=False))
        for f in inp.files:
            files.append((inp.node, inp.chosen, str(f), parsed.get(f) or file_digest(f) or "missing"))
    names = policy_names(pol.entries)
    state = {
        "comfylock": __version__,
        "uv": resolve.uv_version(),
        "nodes": [(i.node, i.chosen, len(i.requirements)) for i in coll.inputs],
        "files": files,
        "policy": pol.digest(),
        "target": [*target.identity(), python_version, python_platform],
        "installed": {n: target.installed.get(n) for n in names},
        "index": index.args(),
        "torch_index": cfg.torch_index,
        "comfyui_version": comfyui_version,  # policy conditions may read it
        "settings": sorted(
            (k, v.source, sorted(v.allow_options), [r for _, r in v.requirements])
            for k, v in cfg.nodes.items()
        ),
    }
    h.update(json.dumps(state, sort_keys=True, default=str).encode())
    return h.hexdigest()
