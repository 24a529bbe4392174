"""The commit a folder is checked out at, read from .git directly (no git binary, no subprocess)."""

from __future__ import annotations

from pathlib import Path

from comfylock._exceptions import InputError
from comfylock._fs import read_bytes


def _read(path: Path) -> str:
    # A node's .git is a stranger's too: a FIFO or a link to /dev/zero must not hang or fill memory.
    return read_bytes(path).decode("utf-8")


def git_commit(folder: Path) -> str | None:
    git = folder / ".git"
    try:
        if git.is_file():  # a worktree or submodule: "gitdir: PATH"
            text = _read(git).strip()
            if not text.startswith("gitdir:"):
                return None
            git = (folder / text[len("gitdir:") :].strip()).resolve()
        head = _read(git / "HEAD").strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        ref_file = git / ref
        if ref_file.is_file():
            return _read(ref_file).strip() or None
        packed = git / "packed-refs"
        if packed.is_file():
            for line in _read(packed).splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    except (OSError, UnicodeDecodeError, InputError):
        return None
    return None
