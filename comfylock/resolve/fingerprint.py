"""A hash of everything that decides a compile's result, so an unchanged install is not resolved again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from comfylock import __version__
from comfylock._paths import portable
from comfylock.collect import gather as collect
from comfylock.environment.target import Target
from comfylock.policy import apply as policy
from comfylock.resolve import uv as resolve
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.config import Config


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
    *,
    root: Path | None = None,
    installed: Mapping[str, str] | None = None,
    has_gpu: bool | None = None,
) -> str:
    """What decides a compile's result, hashed: the requirements as parsed (file, line, text without
    comments, constraint or not), the index options nodes give, the merged policy, the target, the
    installed versions policies read, the index options, and the uv and comfylock versions.

    Paths are written relative to `root` (ComfyUI's folder; `~/...` outside it under the home folder),
    so the same inputs on two machines give the same fingerprint. `installed` and `has_gpu` stand in for
    the target's own (a lock records the environment as its sync will leave it: `_settle`).
    """
    h = hashlib.sha256()

    def where(path: Path | str) -> str:
        return portable(Path(path), root) if root is not None else str(path)

    lines = []
    for inp in coll.inputs:
        if inp.node == collect.USER and not (inp.requirements or inp.index_options or inp.bad_lines):
            continue  # an empty list of your own (after `comfylock remove` of the last) is no list
        lines.append(
            (
                inp.node,
                inp.chosen,
                [where(f) for f in inp.files],
                [(where(r.source.path), r.source.line, r.text, r.constraint) for r in inp.requirements],
                [(o.option, o.value, where(o.source.path), o.source.line) for o in inp.index_options],
                [(where(b.source.path), b.source.line, b.text) for b in inp.bad_lines],
            )
        )
    names = policy_names(pol.entries)
    have = target.visible if installed is None else installed
    identity = target.identity()
    identity[0] = where(target.python)
    if has_gpu is not None:
        identity[-1] = has_gpu
    state = {
        "comfylock": __version__,
        "uv": resolve.uv_version(),
        "inputs": lines,
        "policy": pol.digest(),
        "target": [*identity, python_version, python_platform],
        "installed": {n: have.get(n) for n in names},
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
