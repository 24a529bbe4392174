"""Atomic file writes: a crash leaves the old file or the new one, never a partial one."""

from __future__ import annotations

import glob
import os
import stat
import time
from pathlib import Path

from ._exceptions import ComfylockError


class WriteError(ComfylockError):
    """A file comfylock must write could not be written (disk full, no permission); the old one stays."""

    exit_code = 1


def _mode(path: Path) -> int:
    """The existing file's permissions, else what a plain open() would give (0o666 less the umask)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder, fsync, then os.replace.

    os.replace is atomic on POSIX and on Windows (MoveFileEx with REPLACE_EXISTING) as long as both
    names are on one volume, which the same folder guarantees. A failure (disk full, read-only folder)
    raises WriteError and leaves the old file as it was.
    """
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            # mkstemp makes 0600 files; a committed lock must stay as readable as it was.
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _mode(path))
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
        tmp = None
        _sync_dir(path.parent)
        _sweep(path)
    except OSError as e:
        raise WriteError(
            f"cannot write file: {e.strerror or e}", path=path, hint="the old file is unchanged"
        ) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


STALE_AFTER = 3600.0  # seconds; a write takes milliseconds, so an older temp file was orphaned by a crash


def _sweep(path: Path) -> None:
    """Remove temp files an interrupted write of `path` left behind (a kill between mkstemp and replace)."""
    cutoff = time.time() - STALE_AFTER
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def _sync_dir(folder: Path) -> None:
    # The rename itself survives a power cut only once the folder is flushed (POSIX); Windows has no
    # directory handles to flush and its rename is journaled.
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
