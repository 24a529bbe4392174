"""A sync as one transaction with the history: record -> begin -> apply -> end."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from comfylock._exceptions import UvError
from comfylock.environment import history


@contextmanager
def recorded(
    user_dir: Path,
    before: Sequence[str],
    options: Sequence[str],
    *,
    trigger: str,
    target: dict[str, str],
    changing: Sequence[str],
    unfinished: history.Pending | None,
    unchanged: Callable[[], bool],
    failure: Callable[[UvError, str], Exception] | None = None,
) -> Iterator[history.Entry]:
    """Change the environment inside `with`: the state `before` (freeze lines) is recorded as the next
    history entry and the packages `changing` marked as under way before the body runs.

    Invariant: from the moment the body may change the environment until it has finished, the history
    holds the state before and the pending marker names what may be half-installed. So: a clean exit
    drops the marker; a UvError drops it only when `unchanged()` says uv changed nothing (putting back
    the marker of an earlier `unfinished` sync) and is raised again naming the entry to roll back to;
    any other exit (a kill, Ctrl-C) leaves the marker for the next sync to repair.
    """
    entry = history.record(user_dir, before, options, trigger=trigger, target=target)
    history.begin(user_dir, entry.id, changing)
    try:
        yield entry
    except UvError as e:
        if unchanged():
            history.end(user_dir, restore=unfinished)
        back = (
            f"the environment before this sync is history entry {entry.id}; "
            f"`comfylock rollback --to {entry.id}` restores it"
        )
        raise (failure(e, back) if failure is not None else UvError(e.message, hint=back)) from None
    history.end(user_dir)
