"""The api's commands around a lock that compile and sync do not cover: why, nodes, diff (they read a
lock alone; only `diff env` reads the target), export and import-snapshot. `comfylock.api` exports them.

Their modules (inspect, snapshot) are imported inside the functions: `comfylock.api` is imported by a
no-op sync at every ComfyUI start, which needs none of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock._exceptions import InputError
from comfylock._fs import atomic_write
from comfylock.commands.context import Context, command, lock_path
from comfylock.lockfile import export, pylock
from comfylock.lockfile.lock import pin_versions, read_lock
from comfylock.resolve.index import IndexOptions

if TYPE_CHECKING:
    from comfylock.explain import inspect
    from comfylock.lockfile import snapshot

Where = str | os.PathLike[str] | None


@dataclass(frozen=True)
class WhyResult:
    lock_path: Path
    why: inspect.Why
    versions: Mapping[str, str]  # every pin's version, for the chains' steps


def why(package: str, *, comfyui: Where = None, python: Where = None, lock_file: Where = None) -> WhyResult:
    """Why `package` is in the lock: the chains from the nodes that asked, and the policies."""
    from comfylock.explain import inspect

    path = lock_path(comfyui, python=python, lock_file=lock_file)
    the_lock = read_lock(path)
    return WhyResult(path, inspect.why(the_lock, package), pin_versions(the_lock))


@dataclass(frozen=True)
class NodesResult:
    lock_path: Path
    nodes: tuple[inspect.NodeInfo, ...]


def nodes(*, comfyui: Where = None, python: Where = None, lock_file: Where = None) -> NodesResult:
    """Each node the lock records: its requirement file, how many lines, what only it brings."""
    from comfylock.explain import inspect

    path = lock_path(comfyui, python=python, lock_file=lock_file)
    return NodesResult(path, tuple(inspect.nodes(read_lock(path))))


@dataclass(frozen=True)
class DiffResult:
    lock_path: Path
    old: str  # the sides as given: a lock file, "env" or "git:REV[:PATH]"
    new: str | None  # None: the lock itself
    changes: tuple[inspect.Caused, ...]


def diff(
    old: str = "env",
    new: str | None = None,
    *,
    comfyui: Where = None,
    python: Where = None,
    lock_file: Where = None,
) -> DiffResult:
    """What changes from `old` to `new` (default: from the target environment to the lock)."""
    from comfylock.environment.owndeps import protected
    from comfylock.explain import inspect

    path = lock_path(comfyui, python=python, lock_file=lock_file)
    env: dict[str, Mapping[str, str]] = {}

    def installed() -> Mapping[str, str]:
        if "env" not in env:  # the target is read only when a side is `env`, and once
            ctx = Context.open(comfyui, python=python, lock_file=lock_file)
            env["env"] = ctx.probe.read().installed
        return env["env"]

    before = inspect.read_side(old, path, installed)
    after = inspect.read_side(new, path, installed) if new else inspect.read_side(str(path), path)
    # A side without nodes is an environment (`env`, a history entry, a freeze): sync never removes
    # the protected packages, so one side lacking them is no change.
    ignore = protected() if not before.lists.get("node") or not after.lists.get("node") else frozenset()
    return DiffResult(path, old, new, tuple(inspect.diff(before, after, ignore=ignore)))


@dataclass(frozen=True)
class Exported:
    format: str  # one of export.FORMATS
    lock_path: Path
    output: Path | None  # the file written; None: `text` is for standard output
    text: str | None
    packages: int
    notes: tuple[str, ...]
    intact: bool


def export_lock(
    ctx: Context,
    format: str = "pylock",  # noqa: A002 - the option's name
    *,
    output: str | os.PathLike[str] | None = None,
    index_options: bool = True,
) -> Exported:
    """The lock as a PEP 751 pylock (written beside the lock unless `output`), a bare requirements file
    or a ComfyUI-Manager snapshot (.yaml output: its YAML form). Those two are written to `output`, or
    returned as text for standard output when it is None or '-'."""
    from comfylock.lockfile import snapshot

    the_lock = export.read_any(ctx.lock_path)
    notes: list[str] = []
    if not the_lock.intact:
        notes.append(f"{ctx.lock_path.name} was edited since comfylock wrote it")
    text: str | None = None
    if format == "pylock":
        dest = Path(output).absolute() if output else pylock.default_pylock_path(ctx.lock_path)
        result = pylock.export_pylock(
            the_lock, dest, python=ctx.ws.python, source=ctx.lock_path.name, cwd=ctx.ws.root
        )
        path: Path | None = result.path
    else:
        if format == "requirements":
            text = export.export_requirements(the_lock, index_options=index_options)
        elif format == "manager-snapshot":
            data, more = snapshot.to_manager_snapshot(the_lock, ctx.ws.root)
            notes += more
            yaml = output is not None and Path(output).suffix.lower() in (".yaml", ".yml")
            text = snapshot.format_manager_snapshot(data, yaml=yaml)
        else:
            raise InputError(
                f"unknown export format {format!r}", hint=f"use one of {', '.join(export.FORMATS)}"
            )
        path = None
        if output not in (None, "-"):
            path = Path(output).absolute()  # type: ignore[arg-type]
            atomic_write(path, text)
            text = None
    return Exported(format, ctx.lock_path, path, text, len(the_lock.pins), tuple(notes), the_lock.intact)


@command
def import_snapshot(
    ctx: Context, snapshot_file: Path, *, index: IndexOptions | None = None, dry_run: bool = False
) -> snapshot.ImportResult:
    """A ComfyUI-Manager snapshot's pips as the lock (written under the workspace lock unless
    `dry_run`); `index` (see given_index) else the config's index options are recorded in it."""
    from comfylock.lockfile import snapshot

    options = ctx.index(index, uv_env=False)
    return snapshot.import_snapshot(
        snapshot_file,
        ctx.lock_path,
        options=options.lines(),
        torch_index=ctx.config.torch_index,
        no_index=options.no_index,
        dry_run=dry_run,
    )
