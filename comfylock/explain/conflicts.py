"""Which lines of which nodes cannot hold together, with uv as the oracle.

uv's message ("you require numpy<2 and numpy>=2") quotes requirements but never names a file. Its words
point at suspects; resolving subsets of the input groups with uv's warm cache proves which of them
conflict and that none can be left out (QuickXplain, Junker 2004: O(k log n) resolutions for k culprits
among n groups). Every extra resolution counts against a budget and the report says how many it took.
The logic runs over a callback, so it is testable without uv and drivable with real uv.

This module is the public face: the report's types and the search come from `_explain_terms` and
`_explain_search`; here are the printing, and the glue that drives the search with real uv.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from comfylock._exceptions import ResolutionError
from comfylock._names import node_file
from comfylock.collect.gather import CORE, USER
from comfylock.explain.search import attribute
from comfylock.explain.terms import (
    DEFAULT_BUDGET,
    POLICY,
    POLICY_FILE,
    Attribution,
    Groups,
    Line,
    ResolveFn,
    WayOut,
    required_terms,
)
from comfylock.lockfile.lock import Pin
from comfylock.resolve import uv as resolve

__all__ = [
    "CORE",
    "DEFAULT_BUDGET",
    "POLICY",
    "POLICY_FILE",
    "USER",
    "Attribution",
    "Groups",
    "Line",
    "ResolveFn",
    "WayOut",
    "attribute",
    "explain_failure",
    "format_attribution",
    "required_terms",
    "resolver_for",
    "to_json",
    "with_attribution",
]


# --- printing ------------------------------------------------------------------------------------


def _where(ln: Line) -> str:
    return (
        f"{ln.node}: {ln.file}:{ln.line}: {ln.text}" if ln.line else f"{ln.node}: {ln.file or '-'}: {ln.text}"
    )


def format_attribution(a: Attribution, *, explanation: bool = True) -> list[str]:
    """The report as printed lines: culprits with their lines, ways out, then (optionally) uv's words."""
    how = f"{a.resolutions_used} extra resolution{'s' if a.resolutions_used != 1 else ''}"
    if a.groups:
        stop = "" if a.complete else f"; not proven minimal: {a.note}"
        out = [f"cannot hold together: {', '.join(a.groups)} (found with {how}{stop})"]
    else:
        out = [f"could not narrow the conflict down ({how}{'; ' + a.note if a.note else ''})"]
    out += [f"  {_where(ln)}" for ln in a.lines]
    for g, others in a.also.items():
        out.append(f"  on {g}'s side too:")
        out += [f"    {_where(ln)}" for ln in others]
    out += ["ways out:"] if a.ways_out else []
    for w in a.ways_out:
        status = "checked: resolves" if w.verified else w.note or "not checked"
        if w.kind == "force-version":
            out += [f"  add to {POLICY_FILE} ({status}):", f"    {w.text}"]
        else:
            out.append(f"  {w.text}  ({status})")
        out += [f"    {w.note}"] if w.verified and w.note else []
    if explanation and a.explanation.strip():
        out += ["uv says:", *(f"  {ln}" for ln in a.explanation.strip().splitlines())]
    return out


def to_json(a: Attribution) -> dict[str, Any]:
    """The same report for tools (what `compile --json` prints under "attribution")."""
    data = dataclasses.asdict(a)
    data["also"] = {k: [dataclasses.asdict(ln) for ln in v] for k, v in a.also.items()}
    return data


# --- driving it with real uv ---------------------------------------------------------------------

_CACHE_MISS = ("not found in the cache", "network was disabled", "network connectivity is disabled")


def resolver_for(request: Any) -> ResolveFn:
    """A ResolveFn resolving like `request` (a resolve.ResolveRequest: same target, index, flags,
    overrides, preferences) with other inputs. Offline first, since the failed compile warmed uv's
    cache; online again only when the cache lacks something and the user did not ask for --offline."""

    def run(
        inputs: Mapping[str, Sequence[str]], *, constraints: Sequence[str] = (), overrides: Sequence[str] = ()
    ) -> Mapping[str, str]:
        req = dataclasses.replace(
            request,
            inputs=dict(inputs),
            constraints=tuple(constraints),
            overrides=(*request.overrides, *overrides),
            offline=True,
        )
        try:
            out = resolve.compile(req)
        except ResolutionError as e:
            if request.offline or not any(m in e.explanation for m in _CACHE_MISS):
                raise
            out = resolve.compile(dataclasses.replace(req, offline=False))
        return {r.name: v for r in out if (v := Pin(r.name, r.spec).version)}

    return run


def explain_failure(
    error: ResolutionError,
    requirements: Iterable[Any],
    request: Any,
    *,
    folders: Mapping[str, Path] | None = None,
    installed: Mapping[str, str] | None = None,
    budget: int = DEFAULT_BUDGET,
    resolve_fn: ResolveFn | None = None,
) -> Attribution:
    """Attribute a failed compile. `requirements`: the records resolved (collect.Req or the policy's
    equivalents: .requirement, .source(node, path, line), .text, .constraint); `request`: the
    resolve.ResolveRequest that failed; `folders`: node -> folder, for file names."""
    folders = folders or {}
    sources: dict[tuple[str, str], Line] = {}
    node_constraints: dict[str, list[str]] = {}
    for r in requirements:
        g, text = r.source.node, str(r.requirement)
        sources.setdefault(
            (g, text), Line(g, node_file(Path(r.source.path), folders.get(g)), r.source.line, r.text)
        )
        if r.constraint:
            node_constraints.setdefault(g, []).append(text)
    rest = list(request.constraints)
    for t in (t for lines in node_constraints.values() for t in lines):
        if t in rest:
            rest.remove(t)
    fn = resolve_fn or resolver_for(request)
    cons = {**node_constraints, POLICY: rest}
    return attribute(
        request.inputs,
        fn,
        budget,
        explanation=error.explanation,
        sources=sources,
        constraints=cons,
        installed=installed,
    )


def with_attribution(error: ResolutionError, a: Attribution) -> ResolutionError:
    """The error to raise: same message, the culprits in the hint, the report as `involved` lines (what
    cli.main prints before uv's explanation) and the Attribution itself (for --json)."""
    hint = f"involved: {', '.join(a.groups)}; ways out below" if a.groups else error.hint
    return ResolutionError(
        error.message,
        explanation=error.explanation,
        packages=error.packages,
        hint=hint,
        attribution=a,
        involved=format_attribution(a, explanation=False),
    )
