"""The search behind explain.attribute: resolve subsets of the input groups (memoized, counted against a
budget) until the smallest set that still conflicts is known (QuickXplain), then try the ways out.
It runs over a ResolveFn callback, so it is testable without uv and drivable with real uv.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement

from comfylock._exceptions import ResolutionError
from comfylock._names import canon, req_name, words
from comfylock._names import shell_quote as _quote
from comfylock.collect.gather import CORE, USER
from comfylock.explain.terms import (
    DEFAULT_BUDGET,
    DEPENDS,
    POLICY,
    Attribution,
    Drop,
    Groups,
    Line,
    ResolveFn,
    WayOut,
    allows,
    cause,
    required_terms,
    same,
    term_names,
)


class _Stop(Exception):
    """The budget ran out, or uv failed for another reason than a conflict."""


@dataclass
class _Trial:
    ok: bool
    pins: Mapping[str, str]
    error: ResolutionError | None = None


class _Oracle:
    """Runs the callback on sets of groups, memoized and counted."""

    def __init__(self, inputs: Groups, constraints: Groups, fn: ResolveFn, budget: int) -> None:
        self.inputs, self.constraints, self.fn, self.budget = inputs, constraints, fn, budget
        self.used, self.failure = 0, ""
        self.memo: dict[tuple[frozenset[str], Drop, tuple[str, ...]], _Trial] = {}

    def run(self, groups: Iterable[str], drop: Drop = frozenset(), over: tuple[str, ...] = ()) -> _Trial:
        key = (frozenset(groups), drop, over)
        if key in self.memo:
            return self.memo[key]
        if self.used >= self.budget or self.failure:
            raise _Stop
        self.used += 1
        ins = {g: [t for t in v if (g, t) not in drop] for g, v in self.inputs.items() if g in key[0]}
        # A group's `-c` lines go with it; the POLICY key is not a group and stays in every trial.
        keep = [g for g in self.constraints if g in key[0] or g not in self.inputs]
        cons = [t for g in keep for t in self.constraints[g] if (g, t) not in drop]
        try:
            pins = self.fn({g: v for g, v in ins.items() if v}, constraints=cons, overrides=over)
            trial = _Trial(True, dict(pins or {}))
        except ResolutionError as e:
            trial = _Trial(False, {}, e)
        except Exception as e:  # noqa: BLE001 - uv failing otherwise ends the search, keeping what is known
            self.failure = str(e) or type(e).__name__
            raise _Stop from None
        self.memo[key] = trial
        return trial

    def conflicts(self, groups: Iterable[str]) -> bool:
        return not self.run(groups).ok

    def smallest_known(self, order: list[str]) -> list[str] | None:
        bad = [k[0] for k, t in self.memo.items() if not t.ok and not k[1] and not k[2]]
        return sorted(min(bad, key=len), key=order.index) if bad else None


def _quickxplain(oracle: _Oracle, candidates: list[str]) -> list[str]:
    """A minimal conflicting subset of `candidates` (which conflict as a whole). Earlier candidates are
    preferred, so with the suspects first the search rarely resolves the rest."""

    def qx(background: list[str], changed: bool, c: list[str]) -> list[str]:
        if changed and oracle.conflicts(background):
            return []
        if len(c) == 1:
            return list(c)
        c1, c2 = c[: len(c) // 2], c[len(c) // 2 :]
        d2 = qx(background + c1, True, c2)
        return qx(background + d2, bool(d2), c1) + d2

    return qx([], False, candidates)


def attribute(
    inputs: Groups,
    resolve_fn: ResolveFn,
    budget: int = DEFAULT_BUDGET,
    *,
    explanation: str = "",
    sources: Mapping[tuple[str, str], Line] | None = None,
    constraints: Groups | None = None,
    installed: Mapping[str, str] | None = None,
) -> Attribution:
    """The smallest set of groups whose requirements conflict, the lines that take part, and ways out
    that resolve. `inputs` are the groups as handed to uv (group -> lines), known to conflict as a
    whole; `constraints` maps a group to its `-c` lines (the POLICY key: in every trial); `sources`
    maps (group, line) to where it was written; `installed` is the target's {name: version}."""
    return _Search(
        inputs, resolve_fn, budget, explanation, sources or {}, constraints or {}, installed or {}
    ).run()


class _Search:
    def __init__(
        self,
        inputs: Mapping[str, Sequence[str]],
        fn: ResolveFn,
        budget: int,
        explanation: str,
        sources: Mapping[tuple[str, str], Line],
        constraints: Mapping[str, Sequence[str]],
        installed: Mapping[str, str],
    ) -> None:
        self.groups = [g for g in inputs if inputs[g] or constraints.get(g)]
        self.inputs = {g: list(inputs[g]) for g in self.groups}
        self.constraints = {g: list(v) for g, v in constraints.items()}
        self.oracle = _Oracle(self.inputs, self.constraints, fn, budget)
        self.explanation, self.sources, self.installed = explanation, sources, installed
        self.terms = required_terms(explanation)
        names = {n for g in self.groups for t in self._items(g) if (n := req_name(t))}
        self.named = names & words(explanation)
        # The package uv keeps coming back to: "scipy depends on numpy<1.28 ... you require numpy>=2".
        count: dict[str, int] = {}
        for n in (canon(t.name) for t in [*self.terms, *required_terms(explanation, DEPENDS)]):
            count[n] = count.get(n, 0) + 1
        self.heart = sorted(count, key=lambda n: -count[n])

    def _items(self, g: str) -> list[str]:
        return [*self.inputs.get(g, ()), *self.constraints.get(g, ())]

    def _exact(self, g: str, terms: Sequence[Requirement] | None = None) -> list[str]:
        return [
            t
            for t in self._items(g)
            if any(same(t, term) for term in (self.terms if terms is None else terms))
        ]

    def _involved(self, g: str) -> list[str]:
        return self._exact(g) or [t for t in self._items(g) if req_name(t) in self.named] or self._items(g)

    def _line(self, g: str, text: str) -> Line:
        if g == POLICY:
            return Line("policy", "pip-policy", 0, text)
        return self.sources.get((g, text), Line(g, "", 0, text))

    def run(self) -> Attribution:
        culprits, complete, note = self._find()
        lines = [self._line(g, t) for g in culprits for t in self._involved(g)]
        also: dict[str, list[tuple[str, str]]] = {}
        ways = self._ways_out(culprits, lines, also) if culprits else []
        sides = {g: tuple(self._line(o, t) for o, t in pairs) for g, pairs in also.items()}
        heart = tuple(n for n in self.heart if any(req_name(ln.text) == n for ln in lines)) or tuple(
            self.heart[:1]
        )
        if self.oracle.failure and not note:
            note = f"uv failed during the search: {self.oracle.failure}"
        return Attribution(
            tuple(culprits),
            tuple(lines),
            self.oracle.used,
            self.explanation,
            tuple(ways),
            heart,
            sides,
            complete,
            note,
        )

    def _find(self) -> tuple[list[str], bool, str]:
        exact = [g for g in self.groups if self._exact(g)]
        base = [g for g in (CORE, USER) if g in self.groups and g not in exact]
        named = [
            g
            for g in self.groups
            if g not in exact and any(req_name(t) in self.named for t in self._items(g))
        ]
        rank = {g: 0 if g in exact else 1 if g in base or g in named else 2 for g in self.groups}
        ordered = sorted(self.groups, key=lambda g: rank[g])  # suspects first: QuickXplain prefers them
        tried: set[frozenset[str]] = set()
        try:
            for cand in (exact, exact + base, exact + base + named, ordered):
                if cand and frozenset(cand) not in tried:
                    tried.add(frozenset(cand))
                    if self.oracle.conflicts(cand):
                        found = _quickxplain(self.oracle, [g for g in ordered if g in cand])
                        return sorted(found, key=self.groups.index), True, ""
            return [], False, "the conflict did not come back when resolving again"
        except _Stop:
            reason = f"uv failed during the search: {self.oracle.failure}" if self.oracle.failure else ""
            known = self.oracle.smallest_known(self.groups)
            return known or exact or list(self.groups), False, reason or "resolution budget used up"

    def _try(
        self, groups: Iterable[str], drop: Iterable[tuple[str, str]] = (), over: str = ""
    ) -> _Trial | None:
        try:
            return self.oracle.run(groups, frozenset(drop), (over,) if over else ())
        except _Stop:
            return None

    def _same_conflict(self, trial: _Trial) -> bool:
        return bool(trial.error and term_names(required_terms(trial.error.explanation)) & set(self.heart))

    def _judge(self, kind: str, text: str, trial: _Trial | None, note: str = "") -> WayOut | None:
        if trial is None:
            return WayOut(
                kind, text, False, "not checked: " + (self.oracle.failure or "resolution budget used up")
            )
        if trial.ok:
            return WayOut(kind, text, True, note)
        if self._same_conflict(trial):
            return None  # it does not get past this conflict: not a way out
        return WayOut(kind, text, False, f"gets past this conflict; another remains: {cause(trial.error)}")

    def _skip(self, g: str, culprits: list[str]) -> tuple[list[str], list[tuple[str, str]], _Trial | None]:
        """Leave out `g` and every node on its side: those asking the same, then those the next failure
        names exactly (Impact-Pack's numpy<2 once segment-anything-2's numpy<=1.26.4 is gone). Returns
        the nodes to skip, the (node, line) pairs that put the others on that side, and the last trial."""
        terms: Sequence[Requirement] = [Requirement(t) for t in self._involved(g) if req_name(t)]
        theirs = [t for c in culprits if c != g for t in self._involved(c)]  # the other side's lines
        skip, side = [g], []
        while True:
            for o in self.groups:
                if o not in skip + culprits and o not in (CORE, USER) and (hits := self._exact(o, terms)):
                    skip.append(o)
                    side += [(o, t) for t in hits]
            trial = self._try(o for o in self.groups if o not in skip)
            if trial is None or trial.ok or not self._same_conflict(trial):
                return skip, side, trial
            said = required_terms(trial.error.explanation if trial.error else "")
            terms = [t for t in said if not any(same(line, t) for line in theirs)]
            if not any(self._exact(o, terms) for o in self.groups if o not in skip + culprits + [CORE, USER]):
                return skip, side, trial

    def _ways_out(
        self, culprits: list[str], lines: list[Line], also: dict[str, list[tuple[str, str]]]
    ) -> list[WayOut]:
        ways: list[WayOut | None] = []
        sides: list[Mapping[str, str]] = []  # results with one side of the conflict left out
        # Pins a policy made (keep the installed version, ...) give way to --upgrade-package.
        pinned = [t for t in self.constraints.get(POLICY, ()) if req_name(t) in self.named]
        if pinned:
            names = sorted({n for t in pinned if (n := req_name(t))})
            trial = self._try(self.groups, drop=((POLICY, t) for t in pinned))
            cmd = "comfylock compile " + " ".join(f"--upgrade-package {n}" for n in names)
            ways.append(way := self._judge("upgrade-package", cmd, trial))
            if way is not None and way.verified:
                lines.extend(self._line(POLICY, t) for t in pinned)
        for g in sorted(culprits, key=lambda g: (g == CORE, g == USER)):
            if g == USER:
                names = sorted({n for t in self._involved(g) if (n := req_name(t))})
                trial = self._try(
                    self.groups, drop=((USER, t) for t in self._items(USER) if req_name(t) in names)
                )
                ways.append(self._judge("remove", "comfylock remove " + " ".join(names), trial))
            elif g == CORE:  # core cannot be left out; resolving without it only tells the other side
                trial = None if sides else self._try(o for o in self.groups if o != CORE)
            else:
                skip, side, trial = self._skip(g, culprits)
                if side:
                    also[g] = side
                cmd = "comfylock compile " + " ".join(f"--skip-node {_quote(n)}" for n in skip)
                ways.append(self._judge("skip-node", cmd, trial))
            if trial is not None and trial.ok:
                sides.append(trial.pins)
        side_lines = [self._line(o, t) for pairs in also.values() for o, t in pairs]
        return [w for w in ways if w is not None] + self._force(sides, lines + side_lines)

    def _force(self, sides: list[Mapping[str, str]], lines: list[Line]) -> list[WayOut]:
        """force_version for the heart of the conflict at a version one side resolved to (the installed
        one first, so the environment does not move)."""
        split = [n for n in self.heart if len({s.get(n) for s in sides}) > 1]  # where the sides disagree
        if not (split or self.heart):
            return []
        pkg = (split or self.heart)[0]
        have, versions = self.installed.get(pkg), [s[pkg] for s in sides if pkg in s]
        versions = [have, *versions] if have and (have in versions or not versions) else versions
        out = []
        for v in list(dict.fromkeys(versions))[:2]:
            losers = [
                f"{ln.node}'s {ln.text}"
                for ln in lines
                if req_name(ln.text) == pkg and not allows(ln.text, v)
            ]
            rule = {"type": "force_version", "version": v, "reason": "comfylock: settles a conflict"}
            trial = self._try(self.groups, over=f"{pkg}=={v}")
            note = f"overrides {', '.join(losers)} (may break it)" if losers else ""
            if way := self._judge(
                "force-version", json.dumps({pkg: {"apply_first_match": [rule]}}), trial, note
            ):
                out.append(way)
        return out


# --- printing ------------------------------------------------------------------------------------
