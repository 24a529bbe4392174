"""Files: atomic writes (a crash leaves the old file or the new one, never a partial one), and careful
reads of the small text files strangers' nodes hold (no FIFO, no huge file, UTF-8 or UTF-16 only)."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from comfylock._exceptions import InputError, WriteError

MAX_BYTES = 1 << 20  # no real requirements file comes near this; anything bigger is junk or an attack
BIG_BYTES = 64 << 20  # locks, pylocks, snapshots, caches: many times the largest real one
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


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
    raises WriteError and leaves the old file as it was. Inside `flushed_behind()` the fsyncs are done
    by a thread instead, while the caller goes on.
    """
    tmp: Path | None = None
    kept: int | None = None  # a descriptor of the new file, for flushed_behind()'s thread to fsync
    if os.path.islink(path):
        # A lock kept elsewhere (a team's repository) and linked in: replacing the link with a file
        # would leave the real one stale. The new file goes next to the target and replaces it.
        path = Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Named like mkstemp's files, without importing tempfile (and random) for it.
        tmp = path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o600)
        behind = _behind  # never set on Windows, which cannot rename a file still open
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            # A new file is 0600; a committed lock must stay as readable as it was.
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _mode(path))
            f.write(text)
            f.flush()
            kept = os.dup(f.fileno()) if behind is not None else None
            if kept is None:
                os.fsync(f.fileno())
        if not hasattr(os, "fchmod"):
            os.chmod(tmp, _mode(path))
        os.replace(tmp, path)
        tmp = None
        if behind is not None and kept is not None:
            behind.append((kept, path.parent))
            kept = None
        else:
            _sync_dir(path.parent)
        _sweep(path)
    except OSError as e:
        raise WriteError(
            f"cannot write file: {e.strerror or e}", path=path, hint="the old file is unchanged"
        ) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if kept is not None:
            os.close(kept)


class _Flusher:
    """fsyncs, in a thread, the files written inside flushed_behind() (descriptors kept open)."""

    def __init__(self) -> None:
        import queue  # here: only a sync flushes behind, and every command imports this module

        self.items: queue.SimpleQueue[tuple[int, Path] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def append(self, item: tuple[int, Path]) -> None:
        self.items.put(item)

    def run(self) -> None:
        while (item := self.items.get()) is not None:  # in order; None: close() was called
            fd, folder = item
            _fsync_and_close(fd)
            _sync_dir(folder)

    def close(self) -> None:
        self.items.put(None)
        self.thread.join()


_behind: _Flusher | None = None


@contextlib.contextmanager
def flushed_behind() -> Iterator[None]:
    """Files written inside are in place at once (renamed: a killed process leaves them whole) and are
    made durable on disk (fsync) by a thread while the block goes on; leaving the block waits for it.

    For the bookkeeping a sync writes just before uv runs: fsync costs 5-30 ms a file on a slow disk,
    as much as uv's whole offline sync, and here it overlaps with uv instead of coming before it. What
    is given up is the order against a power cut in those milliseconds, and uv's own writes to the
    environment are not flushed at all, so the environment itself is no safer then.
    """
    global _behind
    if _behind is not None or os.name == "nt":  # nested: the outer block flushes
        yield
        return
    _behind = _Flusher()
    try:
        yield
    finally:
        flusher, _behind = _behind, None
        flusher.close()


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
    _fsync_and_close(fd)


def _fsync_and_close(fd: int) -> None:
    """Flush `fd` to disk as far as the system allows (a folder cannot be fsynced on Windows), then
    close it: a failed flush is no reason to fail a write that has already happened."""
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_link(st: os.stat_result) -> bool:
    """A symlink, or a Windows junction: a reparse point that is not S_ISLNK yet may point anywhere."""
    return stat.S_ISLNK(st.st_mode) or bool(
        getattr(st, "st_file_attributes", 0) & stat.FILE_ATTRIBUTE_REPARSE_POINT
    )


def file_digest(path: Path | str) -> str | None:
    """sha256 of a file's bytes; None when it cannot be read or is no file read_bytes would read (the
    parse that follows then names the problem)."""
    try:
        return hashlib.sha256(read_bytes(path)).hexdigest()
    except (OSError, InputError):
        return None


def read_json_dict(path: Path) -> dict[str, Any]:
    """A JSON object from a cache file comfylock keeps; {} when absent, damaged or not an object."""
    try:
        data = json.loads(read_bytes(path, BIG_BYTES).decode("utf-8"))
    except (OSError, ValueError, InputError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def update_json_dict(path: Path, key: str, value: Any) -> None:
    """Set one key of such a cache file. A failure is ignored: a cache only saves time, and a
    read-only install must still work."""
    data = read_json_dict(path)
    data[key] = value
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(data, sort_keys=True) + "\n")
    except (OSError, WriteError):
        pass


def resolve_path(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: symlink loop on Python < 3.13
        raise InputError(f"cannot resolve path: {e}", path=path) from None


def real_child(parent_real: Path, path: Path) -> tuple[Path, bool]:
    """path.resolve() when path's parent resolves to parent_real, and whether path itself is a link.

    One lstat instead of realpath's one per component: a tree has hundreds of nodes and files.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return resolve_path(path), True  # missing or unreadable: resolve() gives its answer or error
    link = is_link(st)
    return (resolve_path(path) if link else parent_real / path.name), link


def read_bytes(path: Path | str, limit: int = MAX_BYTES) -> bytes:
    """The whole of a regular file of at most `limit` bytes: the one reader for every file comfylock
    reads that someone else could have put there. A FIFO, a device (a link to /dev/zero), a folder
    or a file over the limit is an InputError naming the file, never a hang or a MemoryError."""
    try:
        # Non-blocking, then fstat: a FIFO must not hang us and a 50 MB file is not worth reading,
        # and one lookup of the path (not a stat, then an open) matters with a thousand nodes.
        fd = os.open(path, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InputError("not a regular file", path=path)
            if st.st_size > limit:
                raise InputError(f"file is {st.st_size} bytes; over {_size(limit)} is refused", path=path)
            # Sized raw reads: read(limit + 1) would allocate the whole limit per file, and a buffered
            # file object costs more than the read; a thousand nodes make both count.
            data = b""
            while len(data) <= limit:
                chunk = os.read(fd, 1 << 16 if data else st.st_size + 1)  # more only if it grew
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
    except OSError as e:
        try:
            exists_irregular = not stat.S_ISREG(os.stat(path).st_mode)
        except OSError:
            exists_irregular = False
        if exists_irregular:  # a folder on Windows, a socket or a device nobody may open
            raise InputError("not a regular file", path=path) from None
        if isinstance(e, FileNotFoundError):
            raise
        raise InputError(f"cannot read file: {e.strerror or e}", path=path) from None
    if len(data) > limit:
        raise InputError(f"file is over {_size(limit)}; refused", path=path)
    return data


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def read_text_file(path: Path) -> tuple[str, str]:
    """Decode a small text file: UTF-8 (BOM or not) or UTF-16 with a BOM; anything else is refused.

    Returns (text, sha256 of the bytes read): the fingerprints hash what was parsed, not a later read.
    """
    try:
        data = read_bytes(path)
    except FileNotFoundError as e:
        raise InputError(f"cannot read file: {e.strerror or e}", path=path) from None
    codec = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8-sig"
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as e:
        kind = "UTF-16" if codec == "utf-16" else "UTF-8"
        raise InputError(
            f"not a text file: not {kind} (bad byte at offset {e.start})", path=path, hint="save it as UTF-8"
        ) from None
    if "\0" in text:
        raise InputError("not a text file (it contains NUL bytes)", path=path)
    return text, hashlib.sha256(data).hexdigest()
