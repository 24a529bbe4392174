"""What a sync must leave alone: comfylock's own dependencies where comfylock runs from, and pip,
setuptools and wheel.

A lock is synced exactly, so whatever it leaves out is removed and whatever it pins is installed. Two
kinds of package are the exception. In the environment comfylock runs from, its own requirements (uv,
packaging, tomli-w...) must stay installed and inside the versions comfylock asks for, or the next
compile breaks: a lock that would move them is refused. Anywhere else they are ordinary packages, and
a rollback must restore exactly. pip, setuptools and wheel are kept everywhere: they are how a user
(and ComfyUI-Manager) installs anything by hand, and `uv pip sync` itself keeps them in every
environment it did not create.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock._exceptions import InputError
from comfylock._names import canon

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

    from comfylock.collect import gather as collect
    from comfylock.environment.target import Target
    from comfylock.lockfile.lock import Lock, Pin

SELF = "comfylock"
SEEDS = frozenset({"pip", "setuptools", "wheel"})


@lru_cache(maxsize=1)
def _lines() -> tuple[str, ...]:
    """comfylock's Requires-Dist lines without extras, as `importlib.metadata.requires("comfylock")`
    lists them, read from the .dist-info folder itself (as _envscan reads the target's): importing
    importlib.metadata costs a no-op sync 20 ms or more. None found (a source tree): nothing known."""
    for folder in sys.path:
        try:
            entries = os.listdir(folder or ".")
        except OSError:
            continue
        for entry in entries:
            # An installed wheel's .dist-info/METADATA, or a source tree's .egg-info/PKG-INFO
            kind = {".dist-info": "METADATA", ".egg-info": "PKG-INFO"}.get(os.path.splitext(entry)[1])
            if kind and canon(os.path.splitext(entry)[0].partition("-")[0]) == SELF:
                try:
                    text = Path(folder, entry, kind).read_text(encoding="utf-8", errors="replace")
                except OSError:
                    return ()
                head = text.partition("\n\n")[0].splitlines()
                reqs = [ln.partition(":")[2].strip() for ln in head if ln.startswith("Requires-Dist:")]
                return tuple(r for r in reqs if "extra" not in r.partition(";")[2])
    return ()


@lru_cache(maxsize=1)
def names() -> frozenset[str]:
    """The canonical names comfylock requires (any interpreter), without importing packaging: a
    no-op sync at every ComfyUI start must stay cheap."""
    return frozenset(canon(re.split(r"[^A-Za-z0-9._-]", ln.strip(), maxsplit=1)[0]) for ln in _lines())


@lru_cache(maxsize=1)
def requirements() -> Mapping[str, SpecifierSet]:
    """{canonical name: specifier} of what comfylock's installed metadata requires on this Python
    (extras and other interpreters' markers left out). Read from the metadata, not a hand-kept list."""
    from packaging.requirements import Requirement

    out: dict[str, SpecifierSet] = {}
    for line in _lines():
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate():
            out[canon(req.name)] = req.specifier
    return out


def runs_from(target: Target) -> bool:
    """Whether comfylock runs from the target environment: the same prefix (a venv's folder), so the
    same own site folders uv syncs. Compared as real paths; no sysconfig (1.5 ms on every start)."""
    return bool(target.prefix) and os.path.realpath(sys.prefix) == target.prefix


@lru_cache(maxsize=1)
def protected() -> frozenset[str]:
    """All a sync could ever keep: comfylock, its own requirements, pip, setuptools and wheel (what
    keep() gives where comfylock runs from); read on first use, not at import."""
    return frozenset({SELF, *names(), *SEEDS})


def keep(target: Target) -> frozenset[str]:
    """Packages a sync into `target` never removes (and never reports as to be removed): pip,
    setuptools and wheel everywhere (a user's way out, and what tools such as ComfyUI-Manager install
    with); comfylock and its own requirements only where it runs from."""
    return protected() if runs_from(target) else SEEDS


@dataclass(frozen=True)
class Moved:
    """A pin that would take one of comfylock's own requirements outside what comfylock needs."""

    pin: Pin
    spec: str  # what comfylock requires, e.g. "<0.14,>=0.13"


def moved(lock: Lock, target: Target) -> list[Moved]:
    """Pins of `lock` that would take one of comfylock's own requirements outside what it needs, when
    synced into the environment comfylock runs from (elsewhere: none)."""
    if not runs_from(target) or not any(p.name in names() for p in lock.pins):
        return []
    needs = requirements()
    out = []
    for pin in lock.pins:
        spec = needs.get(pin.name)
        if spec is None:
            continue
        version = pin.version
        if version is None or not spec.contains(version, prereleases=True):
            out.append(Moved(pin, str(spec)))
    return out


def blame(bad: Moved, coll: collect.Collection, lock: Lock) -> InputError:
    """The refusal of a compiled lock that moves comfylock's own `bad.pin`, naming the line that asked
    for it: a requirement on it, else one on the nearest package in the lock that needs it."""
    reqs: dict[str, list[collect.Req]] = {}
    for req in coll.requirements():
        reqs.setdefault(req.name, []).append(req)
    needed_by = {p.name: p.needed_by for p in lock.pins}
    queue, seen = [bad.pin.name], {bad.pin.name}
    while queue:
        name = queue.pop(0)
        if name in reqs:
            req = reqs[name][0]
            via = "" if name == bad.pin.name else f" (which needs {bad.pin.name})"
            return InputError(
                f"{req.source.node} asks for {req.text!r}{via}: the lock would pin {bad.pin.spec}, "
                f"outside {bad.spec} that comfylock needs in the environment it runs from",
                path=req.source.path,
                line=req.source.line,
                hint="remove or relax that line, skip the node with --skip-node, "
                "or run comfylock from another environment (pipx, uv tool)",
            )
        for up in needed_by.get(name, ()):
            if up not in seen:
                seen.add(up)
                queue.append(up)
    return InputError(
        f"the lock would pin {bad.pin.spec}, outside {bad.spec} that comfylock needs in the environment "
        "it runs from",
        hint="run comfylock from another environment (pipx, uv tool)",
    )
