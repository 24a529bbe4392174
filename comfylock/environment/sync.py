"""Stage 6: make the target environment exactly the lock.

As in pip-tools, `plan()` computes what would change and touches nothing (so `--dry-run` is free and
testable without an environment); `apply()` only acts, through uv.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from comfylock import _progress as progress
from comfylock._names import canon, same_version
from comfylock.environment import owndeps
from comfylock.lockfile.lock import Change, Lock, format_body
from comfylock.resolve import uv as resolve
from comfylock.resolve.index import IndexOptions


@dataclass(frozen=True)
class SyncPlan:
    """What syncing a lock into an environment changes, and the text uv is handed to do it."""

    changes: tuple[Change, ...]  # installs, removals, up/downgrades; sorted by name
    kept: tuple[str, ...]  # protected packages not in the lock that stay installed
    sync_text: str  # the requirements text handed to uv: the lock's pins plus the kept packages
    # Installed again even if uv thinks they are in place: uv trusts a .dist-info folder's name, which a
    # killed sync can leave behind with the package's files half removed.
    reinstall: tuple[str, ...] = ()
    # When the plan removes nothing: the index options and just the pins it installs or changes, for
    # `uv pip install --no-deps` (see apply). Empty: the plan removes something, so uv syncs.
    install_text: str = ""

    @property
    def is_noop(self) -> bool:
        return not self.changes and not self.reinstall


def _same(installed: str | None, pinned: str | None) -> bool:
    if installed is None or pinned is None or installed == pinned:
        return installed == pinned
    same = same_version(installed, pinned)
    if same is not None:  # the common case, without packaging
        return same
    from packaging.version import InvalidVersion, Version  # only for 1.0 vs 1.0.0: rare

    try:
        return Version(installed) == Version(pinned)
    except InvalidVersion:
        return installed == pinned


def _label_only(installed: str | None, pinned: str | None) -> bool:
    """True when the two versions differ only in their local label (2.5.1+cu124 against 2.5.1): uv
    counts the installed one as satisfying the pin and would keep it, so it must be reinstalled. A
    plain version change needs no forcing, and forcing costs uv a cache refresh per package."""
    if installed is None or pinned is None or ("+" not in installed and "+" not in pinned):
        return False  # only a local label (+cu124) makes two versions differ this way
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed).public == Version(pinned).public
    except InvalidVersion:
        return True  # cannot tell: reinstalling is always correct


def _source(spec: str) -> tuple[bool, str | None]:
    """(editable, URL) of a pin: `-e name @ URL`, `name @ URL`, or a registry pin (URL None)."""
    editable = spec.startswith("-e ")
    body = spec[3:].strip() if editable else spec
    if "@" not in body:
        return editable, None
    from packaging.requirements import Requirement

    return editable, Requirement(body).url


def _split_url(url: str) -> tuple[str, str, str]:
    """(vcs, URL without credentials and fragment, revision) of a requirement URL:
    `git+https://u:p@host/r@abc#egg=x` -> ("git", "https://host/r", "abc")."""
    vcs = ""
    scheme = url.partition("://")[0]
    if "+" in scheme:
        vcs, _, _ = scheme.partition("+")
        url = url[len(vcs) + 1 :]
    parts = urlsplit(url)
    path, revision = parts.path, ""
    if vcs and "@" in path:
        path, _, revision = path.rpartition("@")
    netloc = parts.netloc.rpartition("@")[2]  # credentials never decide which source it is
    return vcs, urlunsplit((parts.scheme, netloc, path.rstrip("/"), parts.query, "")), revision


def same_source(spec: str, info: Mapping[str, object] | None) -> bool:
    """Whether an install whose direct_url.json says `info` (None: from an index) is what the pin
    `spec` asks for: a registry pin wants a registry install; a URL pin that URL (a VCS pin its
    commit), editable or not as pinned. uv itself counts a URL or editable install of the pinned
    version as satisfying a registry pin, so this is comfylock's to see."""
    editable, url = _source(spec)
    if url is None or info is None:
        return url is None and info is None
    if editable != bool(info.get("editable")):
        return False
    vcs, base, revision = _split_url(url)
    _, have_base, _ = _split_url(str(info.get("url", "")))
    if vcs != str(info.get("vcs", "")) or base != have_base:
        return False
    return not revision or revision in (info.get("commit"), info.get("revision"))


def _shown(version: str | None, info: Mapping[str, object] | None) -> str | None:
    if version is None or info is None:
        return version
    return f"{version} ({'editable ' if info.get('editable') else ''}{info.get('url')})"


def plan(
    lock: Lock,
    installed: Mapping[str, str],
    *,
    unfinished: Iterable[str] = (),
    keep: frozenset[str] | None = None,
    direct: Mapping[str, Mapping[str, object]] | None = None,
) -> SyncPlan:
    """What syncing `lock` into an environment holding `installed` ({canonical name: version}, its own
    site folders only, as uv sees it) does.

    `unfinished`: packages an interrupted sync was changing (history.pending); they are reinstalled.
    `keep`: packages never removed (default: owndeps.protected(); api passes owndeps.keep(target),
    which keeps comfylock's own requirements only where comfylock runs from). `direct`: the
    direct_url.json of each URL, VCS or local-path install ({name: info}); such an install matches
    only a pin of that source.
    """
    direct = direct or {}
    keep = owndeps.protected() if keep is None else keep
    pins = lock.by_name()
    changes: list[Change] = []
    forced: set[str] = set()
    for name in sorted(set(pins) | set(installed)):
        pin = pins.get(name)
        have = installed.get(name)
        info = direct.get(name)
        if pin is None:
            if name not in keep:
                changes.append(Change(name, _shown(have, info), None))
            continue
        want = pin.version
        if have is None:
            changes.append(Change(name, None, want or pin.spec))
        elif not same_source(pin.spec, info):
            changes.append(Change(name, _shown(have, info), want or pin.spec))
            if want is not None:  # uv would keep the URL or editable install: it satisfies the version
                forced.add(name)
        elif want is not None and not _same(have, want):
            changes.append(Change(name, have, want))
    kept = tuple(sorted(n for n in installed if n in keep and n not in pins))
    extra = [f"{n}=={installed[n]}" for n in kept]
    body = format_body(lock.pins, lock.options)
    redo = {
        c.name
        for c in changes
        if c.new is not None and pins[c.name].version is not None and c.name not in direct
        if _label_only(c.old, c.new)
    }
    redo |= forced | {n for n in unfinished if n in pins}
    adding = sorted({c.name for c in changes if c.new is not None} | redo)
    removes = any(c.new is None for c in changes)
    lines = [*lock.options, *(pins[n].spec for n in adding)]
    install = "" if removes or not adding else "".join(f"{x}\n" for x in lines)
    text = body + "".join(f"{line}\n" for line in extra)
    return SyncPlan(tuple(changes), kept, text, tuple(sorted(redo)), install)


def apply(
    p: SyncPlan, python: Path, index: IndexOptions, *, offline: bool = False, exact: bool = False
) -> tuple[str, ...]:
    """Carry out a plan; uv's warnings. A no-op plan runs nothing.

    A plan that removes nothing hands uv only what it installs or changes (`uv pip install --no-deps`):
    uv then reads 20 pins, not a whole lock of hundreds, which makes a typical rollback about a third
    quicker. The plan names every difference, so the environment ends as `uv pip sync` would leave it;
    the caller checks that and syncs with `exact` when it does not. A plan that removes a package, and
    `exact`, use `uv pip sync` with the whole lock."""
    if p.is_noop:
        return ()
    if progress.mode() != "off":  # only said when shown: the question costs a run of uv
        changing = {c.name for c in p.changes if c.new is not None} | set(p.reinstall)
        pins = [line.strip() for line in p.sync_text.splitlines() if "==" in line and " @ " not in line]
        asked = [pin for pin in pins if canon(pin.partition("==")[0]) in changing]
        for what in needs_build(asked, python, index):
            progress.note(
                f"{what} has no wheel for this platform: building from source "
                "(needs its build tools, often a C/C++ compiler and cmake; can take minutes)"
            )
    what = f"{_doing(p)} with uv" if progress.mode() != "off" else ""  # words only when shown
    partial = bool(p.install_text) and not exact
    text = p.install_text if partial else p.sync_text
    proc = resolve.sync(
        text, python, index, offline=offline, reinstall=p.reinstall, what=what, exact=not partial
    )
    # uv's warnings, when it did not draw them on the terminal itself
    if not proc.stderr or "warning" not in proc.stderr:
        return ()
    from comfylock.resolve import uvtext

    return uvtext.parse(proc.stderr).warnings


def _doing(p: SyncPlan) -> str:
    """What uv is about to do, in words: "installing 4 packages", "changing 5 packages (3 installed,
    1 upgraded, 1 removed)"."""
    kinds: dict[str, int] = {}
    for c in p.changes:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    changed = {c.name for c in p.changes}
    redo = len([r for r in p.reinstall if r not in changed])
    if redo:
        kinds["reinstalled"] = redo
    n = sum(kinds.values())
    noun = "package" if n == 1 else "packages"
    verbs = {"added": "installing", "removed": "removing", "upgraded": "upgrading"}
    verbs |= {"downgraded": "downgrading", "reinstalled": "reinstalling"}
    if len(kinds) == 1 and next(iter(kinds)) in verbs:
        return f"{verbs[next(iter(kinds))]} {n} {noun}"
    words = {"added": "installed"}
    return f"changing {n} {noun} (" + ", ".join(f"{k} {words.get(w, w)}" for w, k in kinds.items()) + ")"


def needs_build(pins: list[str], python: Path, index: IndexOptions) -> list[str]:
    """Which of `pins` ("name==version") have no wheel for the target, so installing them builds from
    source ("name version" each). Asked of uv's cache only: cheap after a compile, and nothing when
    the cache cannot tell."""
    text = resolve.target_pylock(pins, python, index) if pins else None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        packages = tomllib.loads(text).get("packages", []) if text else []
    except ValueError:
        return []
    return [
        f"{p.get('name')} {p.get('version')}"
        for p in packages
        if isinstance(p, dict) and "sdist" in p and not p.get("wheels")
    ]


def remove_torn(site_dirs: Iterable[str | Path], unfinished: Iterable[str]) -> list[Path]:
    """Clear what a killed uv left half-written of the packages it was changing (history.pending).

    uv writes a package's RECORD last and in place, and deletes files before its .dist-info folder, so
    a kill can leave a .dist-info without METADATA, INSTALLER or RECORD, or with a RECORD that is empty
    or cut short. uv still counts such a folder as installed but cannot uninstall it (it fails on a bad
    RECORD), so a plain sync or rollback would not repair it. Each one found in `site_dirs` (the target's
    own site folders, where uv installs; never a folder a .pth lists) for an `unfinished` package has
    the files its RECORD does list removed, inside the environment only, and then goes itself; the sync
    that follows installs the package whole. Folders of other packages are never touched.
    """
    wanted = {canon(n) for n in unfinished}
    removed: list[Path] = []
    for folder in dict.fromkeys(Path(d) for d in site_dirs):
        try:
            infos = sorted(p for p in folder.iterdir() if p.name.endswith(".dist-info") and p.is_dir())
        except OSError:
            continue
        for info in infos:
            if canon(info.name.partition("-")[0]) not in wanted:
                continue
            listed, complete = _record(info)
            whole = complete and (info / "METADATA").is_file() and (info / "INSTALLER").is_file()
            # uv removes a package's files before its .dist-info: a kill then leaves a whole RECORD
            # listing files that are gone.
            if whole and all(os.path.lexists(info.parent / rel) for rel in listed):
                continue  # whole: uv uninstalls or reinstalls it itself
            _remove_listed(info.parent, listed)
            import shutil  # here: importing comfylock.api must not pay for its compression modules

            shutil.rmtree(info, ignore_errors=True)
            removed.append(info)
    return removed


def _record(info: Path) -> tuple[list[str], bool]:
    """The paths a RECORD lists, and whether it is whole (present, not empty, not cut short)."""
    try:
        text = (info / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [], False
    import csv  # only a killed sync's debris is read this way

    rows = [row for row in csv.reader(text.splitlines()) if row]
    good = [row[0] for row in rows if len(row) == 3]
    return good, bool(rows) and len(good) == len(rows) and text.endswith("\n")


def _remove_listed(site: Path, paths: Iterable[str]) -> None:
    # A RECORD comes from a wheel, so a path in it may try to climb out: only files inside the
    # environment (the folder holding pyvenv.cfg, else the site folder itself) are removed.
    env = next((p for p in site.parents if (p / "pyvenv.cfg").is_file()), site).resolve()
    for rel in paths:
        path = Path(os.path.normpath(site / rel))
        try:
            if path.parent.resolve().is_relative_to(env) and (path.is_symlink() or path.is_file()):
                path.unlink()
        except OSError:
            pass
