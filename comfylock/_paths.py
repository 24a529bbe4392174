"""Paths as a lock writes them: the same inputs on two machines must give the same bytes."""

from __future__ import annotations

from pathlib import Path


def portable(path: Path, root: Path) -> str:
    """`path` relative to ComfyUI's folder (`root`), forward slashes; `~/...` for a file under the home
    folder outside it; as given (forward slashes) otherwise. A relative path is taken as it is."""
    if not path.is_absolute():
        return path.as_posix()
    if path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    real = root.resolve()  # asks the file system: only when the plain prefix did not match
    if real != root and path.is_relative_to(real):
        return path.relative_to(real).as_posix()
    try:
        home = Path.home()
    except RuntimeError:  # no home folder known (a service account)
        return path.as_posix()
    if path.is_relative_to(home):
        return "~/" + path.relative_to(home).as_posix()
    return path.as_posix()
