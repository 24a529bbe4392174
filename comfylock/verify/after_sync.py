"""A sync that proves the nodes still load: verify after changing packages, compare with the state
before, and say what to undo. The undoing itself is a rollback, done by the api (one sync code path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from comfylock.lockfile.lock import Change
from comfylock.verify import loader as _verify
from comfylock.verify import state as _verify_state
from comfylock.verify.loader import VerifyResult
from comfylock.verify.state import Regression
from comfylock.verify.when import is_comfyui_loader


@dataclass(frozen=True)
class SyncCheck:
    """What verifying after a sync found."""

    after: VerifyResult
    before: VerifyResult | None  # the baseline: None for the first verify of an environment
    regressions: tuple[Regression, ...] = ()
    undo: Any = None  # api.SyncResult of the automatic rollback, when there was one
    undo_error: str | None = None  # why the automatic rollback failed


def verify_state(
    root: Path, python: Path, user_dir: Path, installed: Mapping[str, str], timeout: float
) -> VerifyResult:
    """Run ComfyUI's loader and keep the result under the state it describes."""
    result = _verify.run(root, python, timeout=timeout)
    _verify_state.save(user_dir, _verify_state.state_key(installed), result)
    return result


def check(
    root: Path,
    python: Path,
    user_dir: Path,
    *,
    before_installed: Mapping[str, str],
    after_installed: Mapping[str, str],
    changes: Sequence[Change],
    entry_path: Path | None,
    timeout: float,
) -> SyncCheck:
    """Verify the environment a sync just made, against what was known to load before it."""
    before = _verify_state.load_state(user_dir, _verify_state.state_key(before_installed))
    if before is not None and entry_path is not None:
        _verify_state.attach(entry_path, before)
    after = verify_state(root, python, user_dir, after_installed, timeout)
    return SyncCheck(after, before, tuple(_verify_state.regressions(before, after, changes)))


def report_json(c: SyncCheck | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "baseline": c.before is not None,
        "result": c.after.to_json(),
        "regressions": [
            {"node": r.node, "error": r.error, "packages": list(r.blamed), "named_in_traceback": r.named}
            for r in c.regressions
        ],
        "rolled_back": c.undo is not None,
        "rollback_history_entry": c.undo.entry.id if c.undo is not None and c.undo.entry else None,
        "rollback_error": c.undo_error,
    }


def after_sync(
    ctx: Any,
    before_installed: Mapping[str, str],
    changes: Sequence[Change],
    entry_path: Path,
    undo: Callable[[], Any],
) -> SyncCheck:
    """Verify after a sync (`ctx`: its api.Context); on a regression call `undo` (the rollback)."""
    from comfylock._exceptions import UvError

    ws = ctx.ws
    found = check(
        ws.root,
        ws.python,
        ws.user_dir,
        before_installed=before_installed,
        after_installed=ctx.probe.read().installed,
        changes=changes,
        entry_path=entry_path,
        timeout=ctx.config.verify_timeout,
    )
    if not found.regressions:
        return found
    try:
        undone = undo()
    except UvError as e:
        return replace(found, undo_error=e.message)
    if undone.entry is not None:  # it records the broken state: keep what loaded there beside it
        _verify_state.attach(undone.entry.path, found.after)
    return replace(found, undo=undone)


def verify_here(ctx: Any, timeout: float | None) -> VerifyResult:
    """`comfylock verify` (`ctx`: an api.Context): refused where there is no ComfyUI loader to run."""

    ws = ctx.ws
    if not is_comfyui_loader(ws.root):
        raise _verify.VerifyError(
            "this folder has no ComfyUI loader to run (main.py is empty or nodes.py is missing)",
            path=ws.root,
            hint="run verify in a ComfyUI checkout",
        )
    installed = ctx.probe.read().installed
    return verify_state(ws.root, ws.python, ws.user_dir, installed, timeout or ctx.config.verify_timeout)
