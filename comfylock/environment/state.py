"""The target environment as sync, check and history see it: its own site-packages, what `uv pip
freeze` records of it, and the plan to sync a lock into it (see _owndeps for what is kept)."""

from __future__ import annotations

from pathlib import Path

from comfylock._exceptions import InputError
from comfylock.environment import history, sync
from comfylock.environment.owndeps import keep, moved
from comfylock.environment.target import Target
from comfylock.lockfile.lock import Lock, pin_name
from comfylock.resolve import uv as resolve


def freeze(target: Target) -> list[str]:
    """The environment as `uv pip freeze` lists it: from the probe when it holds only plain registry
    installs (the environment is read once a run), else from uv (URLs, editables, legacy installs).
    uv lists an editable install as `-e URL`; the name its direct_url.json belongs to is written in
    (`-e name @ URL`, which uv pip sync reads) so a history entry can pin it."""
    if target.frozen is not None:
        return list(target.frozen)
    editables = {str(i.get("url")): n for n, i in target.direct.items() if i.get("editable")}
    editables |= {str(i["path"]): n for n, i in target.direct.items() if i.get("editable") and i.get("path")}
    out = []
    for line in resolve.freeze(target.python):
        url = line[3:].strip() if line.startswith("-e ") else None
        if url in editables:  # a legacy one (`-e PATH`) is recorded by its URL too
            name = editables[url]
            line = f"-e {name} @ {target.direct[name]['url']}"
        out.append(line)
    return out


def plan(the_lock: Lock, target: Target, unfinished: history.Pending | None) -> sync.SyncPlan:
    return sync.plan(
        the_lock,
        target.installed,
        unfinished=unfinished.packages if unfinished else (),
        keep=keep(target),
        direct=target.direct,
    )


def refuse_moving_own(the_lock: Lock, target: Target, path: Path) -> None:
    """A lock that would move comfylock's own requirements in the environment it runs from is refused
    before anything changes (a downgraded uv breaks every later command)."""
    bad = moved(the_lock, target)
    if bad:
        where = pin_line(path, bad[0].pin.name)
        raise InputError(
            f"{bad[0].pin.spec} would replace comfylock's own {bad[0].pin.name} ({bad[0].spec} needed) "
            "in the environment comfylock runs from",
            path=path,
            line=where,
            hint="run comfylock from another environment (pipx, uv tool) to manage this one",
        )


def pin_line(path: Path, name: str) -> int | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for n, line in enumerate(lines, start=1):
        text = line.strip().removeprefix("-e ").strip()
        if text and not text.startswith("#") and pin_name(text.split(" #")[0].strip()) == name:
            return n
    return None
