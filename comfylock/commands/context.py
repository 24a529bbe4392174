"""The api's context: one ComfyUI as a command sees it, the lock it works on, and how a command that
changes files runs (under the workspace lock, keeping the target's fresh answer once it succeeded)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from comfylock.environment.probe import probe_target, remember
from comfylock.environment.target import Target
from comfylock.resolve.index import IndexOptions
from comfylock.resolve.uvenv import CONSUMED, ignored
from comfylock.workspace.config import Config, load_config
from comfylock.workspace.filelock import locked
from comfylock.workspace.layout import Workspace, open_workspace

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Context:
    """Everything a command reads about one ComfyUI, read once."""

    ws: Workspace
    config: Config
    lock_path: Path

    @classmethod
    def open(
        cls,
        comfyui: str | os.PathLike[str] | None = None,
        *,
        python: str | os.PathLike[str] | None = None,
        lock_file: str | os.PathLike[str] | None = None,
    ) -> Context:
        ws = open_workspace(comfyui, python)
        return cls(ws, load_config(ws.user_dir), choose_lock(lock_file, lambda: ws.default_lock))

    def index(self, given: IndexOptions | None = None, *, uv_env: bool = True) -> IndexOptions:
        """The index options a command uses: `given` (see `given_index`), else the config's, else (with
        `uv_env`) uv's own variables."""
        if given:  # an empty IndexOptions gives nothing either
            return given
        if not uv_env:
            return self.config.index
        return self.config.index or IndexOptions.from_env(os.environ)

    @functools.cached_property
    def probe(self) -> TargetProbe:
        """The target interpreter, read through its cache; what a command read fresh is kept when the
        command succeeds (see `command`)."""
        return TargetProbe(self.ws)


def given_index(
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    find_links: Sequence[str] = (),
    no_index: bool = False,
    *,
    cwd: Path | None = None,
) -> IndexOptions | None:
    """Index options as a user gives them (command line), relative --find-links folders anchored at
    `cwd` (default: the current folder), where they were typed; None when none is given."""
    if not (index_url or extra_index_urls or find_links or no_index):
        return None
    given = IndexOptions(index_url, tuple(extra_index_urls), tuple(find_links), no_index)
    return given.anchored(cwd or Path.cwd())


def lock_path(
    comfyui: str | os.PathLike[str] | None = None,
    *,
    python: str | os.PathLike[str] | None = None,
    lock_file: str | os.PathLike[str] | None = None,
) -> Path:
    """The lock a command that reads only a lock works on: `lock_file` needs no ComfyUI folder."""
    return choose_lock(lock_file, lambda: open_workspace(comfyui, python).default_lock)


def command(fn: _F) -> _F:
    """An api command that may change files: run under the workspace lock, and the target's answer
    read fresh kept for the next run once it succeeded (never on a dry run, which writes nothing)."""

    @functools.wraps(fn)
    def keeping(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        result = fn(ctx, *args, **kwargs)
        if not kwargs.get("dry_run"):
            ctx.probe.keep()
        return result

    return locked(keeping)  # type: ignore[return-value]


def env_warnings(index_from_env: bool = True) -> tuple[str, ...]:
    """The user's UV_* variables uv will not see (see resolve.uvenv); uv's index variables too when the
    command line or config.toml gave the index settings."""
    unused = [] if index_from_env else sorted(k for k in CONSUMED if os.environ.get(k))
    return (
        *ignored(os.environ),
        *(f"{k} is ignored: the index settings of the command line or config.toml win" for k in unused),
    )


def choose_lock(lock_file: str | os.PathLike[str] | None, default: Callable[[], Path]) -> Path:
    """The one place the lock path is decided: `lock_file` made absolute, else `default()` (called only
    then, so a command given a lock alone needs no ComfyUI folder)."""
    return Path(lock_file).absolute() if lock_file else default()


class TargetProbe:
    """The one way a command reads the target interpreter: `read()` (its facts, what is installed
    read afresh) and `keep()` (once the command has succeeded).

    Invariant: every read goes through the workspace's probe cache, so the interpreter runs only when
    its cached answer no longer holds; an answer that needed such a run is stored for the next run
    only by `keep()`, so a command that fails or refuses its input writes nothing, and not at all
    after `forget()` (a sync that changed the environment calls it). A probe is mutable
    (it collects the fresh answers of one command) and belongs to one api.Context.
    """

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._fresh: list[Target] = []

    def read(self) -> Target:
        target = probe_target(self._ws.python, self._ws.probe_cache)
        if target.fresh is not None:
            self._fresh.append(target)
        return target

    def forget(self) -> None:
        """Drop what was read fresh: it was read before the command changed the environment."""
        self._fresh = []

    def keep(self) -> None:
        """Store what was read fresh (the last answer wins), then forget it."""
        fresh, self._fresh = self._fresh, []
        if fresh:
            remember(fresh[-1])
