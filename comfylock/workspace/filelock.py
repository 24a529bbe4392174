"""One comfylock at a time per ComfyUI: an OS file lock on `<user_dir>/.lock`.

The lock is the kernel's (`fcntl.flock` on POSIX, `msvcrt.locking` on Windows), so it is released
when its holder exits or is killed: there is no stale lock to clean up after a crash. The holder
writes its pid into the file only so a waiting process can say whom it waits for.

Re-entrant within one thread (rollback runs sync inside its own lock); another thread or process
waits. The file is never deleted: removing a lock file while others hold it open breaks the lock.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from comfylock._exceptions import BusyError, ComfylockError

LOCK_NAME = ".lock"
_POLL = 0.1  # seconds between tries while waiting; a sync takes seconds, so this costs nothing
# Windows locks are mandatory: a locked byte cannot be read. Lock one byte far past the pid text so a
# waiting process can still read who holds it.
_WIN_OFFSET = 1 << 30

_F = TypeVar("_F", bound=Callable[..., Any])

_held: dict[tuple[str, int], int] = {}  # (lock file, thread id) -> depth
_held_guard = threading.Lock()

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def holder(folder: Path) -> int | None:
    """The pid written by the last process that took the lock (it may have exited since)."""
    try:
        text = (folder / LOCK_NAME).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    first = text.split()[:1]
    return int(first[0]) if first and first[0].isdigit() else None


def _who(folder: Path) -> str:
    pid = holder(folder)
    return f"pid {pid}" if pid is not None else "pid unknown"


@contextmanager
def workspace_lock(
    folder: Path,
    *,
    wait: bool = True,
    timeout: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the lock on `folder` (comfylock's user dir) for the duration of the `with` block.

    When another process holds it: with `wait`, call `on_wait` (default: print to stderr) once with
    "waiting for another comfylock (pid N) on <folder>..." and wait, up to `timeout` seconds if given;
    without `wait`, or when the timeout passes, raise BusyError.
    """
    path = folder / LOCK_NAME
    key = (os.path.normcase(os.path.abspath(path)), threading.get_ident())
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[key] -= 1
        return

    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_APPEND-free read/write open that never truncates: truncating before holding the lock
        # would erase the holder's pid.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o644)
    except OSError as e:
        raise ComfylockError(
            f"cannot create the lock file: {e.strerror or e}",
            path=path,
            hint="comfylock needs write access to this folder",
        ) from None
    try:
        _acquire(fd, folder, wait, timeout, on_wait or _stderr)
        try:
            _write_pid(fd)
            with _held_guard:
                _held[key] = 1
            try:
                yield
            finally:
                with _held_guard:
                    del _held[key]
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _acquire(
    fd: int, folder: Path, wait: bool, timeout: float | None, on_wait: Callable[[str], None]
) -> None:
    if _try_lock(fd):
        return
    busy = f"another comfylock ({_who(folder)}) is working on {folder}"
    if not wait:
        raise BusyError(busy, hint="try again when it has finished")
    on_wait(f"waiting for another comfylock ({_who(folder)}) on {folder}...")
    deadline = None if timeout is None else time.monotonic() + timeout
    while not _try_lock(fd):
        if deadline is not None and time.monotonic() >= deadline:
            raise BusyError(f"{busy}; gave up after {timeout:g}s", hint="try again when it has finished")
        time.sleep(_POLL)


def _write_pid(fd: int) -> None:
    # Best effort: the pid is only for the waiting message; the lock itself is what protects.
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except OSError:
        pass


def locked(fn: _F) -> _F:
    """Run an api command (first argument: an api.Context) under its ComfyUI's workspace lock.

    A dry run changes nothing, so it does not wait for anyone.
    """

    @functools.wraps(fn)
    def wrapper(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("dry_run"):
            return fn(ctx, *args, **kwargs)
        with workspace_lock(ctx.ws.user_dir):
            return fn(ctx, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
