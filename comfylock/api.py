"""The Python API: each command of the CLI as a function returning a typed result.

Tools such as ComfyUI-Manager or comfy-cli can call these directly; `cli.py` only parses arguments,
calls them and prints what they return.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from comfylock._exceptions import InputError as InputError
from comfylock._fs import atomic_write
from comfylock.commands.context import Context as Context
from comfylock.commands.context import command as _command
from comfylock.commands.context import given_index as given_index
from comfylock.commands.context import lock_path as lock_path
from comfylock.resolve.index import IndexOptions as IndexOptions
from comfylock.workspace.layout import Workspace

# The commands' modules are imported on first use (__getattr__, at the end), and compile's own stages
# inside compile (see commands/compile.py): each command pays only for its own imports.
if TYPE_CHECKING:
    from comfylock.commands.check import CheckReport
    from comfylock.commands.compile import CompileResult as CompileResult
    from comfylock.commands.compile import compile as compile  # noqa: A004 - the command's name

    # What __getattr__ (at the end) gives, for type checkers; `X as X` marks each as exported.
    from comfylock.commands.lock_tools import DiffResult as DiffResult
    from comfylock.commands.lock_tools import Exported as Exported
    from comfylock.commands.lock_tools import NodesResult as NodesResult
    from comfylock.commands.lock_tools import WhyResult as WhyResult
    from comfylock.commands.lock_tools import diff as diff
    from comfylock.commands.lock_tools import export_lock as export_lock
    from comfylock.commands.lock_tools import import_snapshot as import_snapshot
    from comfylock.commands.lock_tools import nodes as nodes
    from comfylock.commands.lock_tools import why as why
    from comfylock.commands.policy_tools import PolicyCheck as PolicyCheck
    from comfylock.commands.policy_tools import PolicyFile as PolicyFile
    from comfylock.commands.policy_tools import PolicyPackage as PolicyPackage
    from comfylock.commands.policy_tools import PolicyShow as PolicyShow
    from comfylock.commands.policy_tools import policy_check as policy_check
    from comfylock.commands.policy_tools import policy_show as policy_show
    from comfylock.commands.rollback import RollbackInfo as RollbackInfo
    from comfylock.commands.rollback import rollback as rollback
    from comfylock.commands.rollback import rolled_back as rolled_back
    from comfylock.commands.sync import SyncResult as SyncResult
    from comfylock.commands.sync import sync_env as sync_env
    from comfylock.commands.sync import verify as verify
    from comfylock.environment import history
    from comfylock.environment.sync import SyncPlan


# The user's files, for callers that imported them from here; Workspace names every file.
USER_REQUIREMENTS = Workspace.USER_REQUIREMENTS
USER_POLICY = Workspace.USER_POLICY


# --- rollback, history, check ------------------------------------------------------------------


def list_history(ctx: Context) -> list[history.Entry]:
    from comfylock.environment import history

    return history.entries(ctx.ws.user_dir)


def check(ctx: Context) -> SyncPlan:
    """What differs between the target environment and the lock (an empty plan: they match)."""
    from comfylock.environment import history
    from comfylock.environment import state as _envstate
    from comfylock.lockfile import export

    target = ctx.probe.read()
    unfinished = history.pending(ctx.ws.user_dir)
    return _envstate.plan(
        export.read_any(ctx.lock_path, export.marker_environment(target)), target, unfinished
    )


def check_report(ctx: Context) -> CheckReport:
    """check(), plus whether the lock is stale (as compile decides it) and what `uv pip check` finds
    broken, apart from what the lock's policies do on purpose (see `_check`)."""
    from comfylock.commands.check import check_report as report

    return report(ctx)


# --- the user's own requirements -----------------------------------------------------------------


@_command
def add(ctx: Context, specs: Sequence[str]) -> list[str]:
    """Add requirements to the user's own list: a package's earlier line is replaced in place, a new
    one goes at the end; comments and order stay."""
    from comfylock.collect.userreqs import UserFile

    f = UserFile(ctx.ws.user_requirements)
    for spec in specs:
        f.add(spec)
    atomic_write(f.path, f.text())
    return f.requirements()


@_command
def remove(ctx: Context, names: Sequence[str]) -> list[str]:
    from comfylock.collect.userreqs import UserFile

    f = UserFile(ctx.ws.user_requirements)
    f.remove(names)
    atomic_write(f.path, f.text())
    return f.requirements()


# The other commands, from their own modules (see the note at the imports).
_ELSEWHERE = {
    **dict.fromkeys(
        (
            "DiffResult",
            "Exported",
            "NodesResult",
            "WhyResult",
            "diff",
            "export_lock",
            "import_snapshot",
            "nodes",
            "why",
        ),
        "comfylock.commands.lock_tools",
    ),
    **dict.fromkeys(
        ("PolicyCheck", "PolicyFile", "PolicyPackage", "PolicyShow", "policy_check", "policy_show"),
        "comfylock.commands.policy_tools",
    ),
    **dict.fromkeys(("RollbackInfo", "rollback", "rolled_back"), "comfylock.commands.rollback"),
    **dict.fromkeys(("CompileResult", "compile"), "comfylock.commands.compile"),
    **dict.fromkeys(("SyncResult", "sync_env", "verify"), "comfylock.commands.sync"),
}


def __getattr__(name: str) -> Any:
    if name in _ELSEWHERE:
        return getattr(importlib.import_module(_ELSEWHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
