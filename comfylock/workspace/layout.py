"""Stage 1: find ComfyUI, its enabled custom nodes, and the Python environment they run in."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from comfylock._exceptions import WorkspaceError
from comfylock._fs import is_link


@dataclass(frozen=True)
class Node:
    """One enabled custom node folder under custom_nodes/."""

    name: str
    path: Path
    # Whether path is a symlink or junction, as listing the folder told (None: not known); collect
    # then needs no system call of its own to know the folder is where it seems.
    link: bool | None = field(default=None, compare=False)


# comfylock's own policy, merged below the user's; the no-op check watches it like the workspace's files.
SHIPPED_POLICY = Path(__file__).parent.parent / "policy" / "pip-policy.json"


@dataclass(frozen=True)
class Workspace:
    """One ComfyUI install. Every file comfylock keeps in it is named here and nowhere else: the quick
    no-op check watches these very paths, so a name spelled twice could drift and keep a stale lock
    "up to date"."""

    root: Path  # the ComfyUI folder, absolute
    nodes: tuple[Node, ...]  # enabled node folders, sorted by name (case-insensitive, then exact)
    python: Path  # the target interpreter, absolute

    USER_DIR: ClassVar[tuple[str, ...]] = ("user", "comfylock")  # below the ComfyUI folder
    USER_POLICY: ClassVar[str] = "pip-policy.user.json"
    USER_REQUIREMENTS: ClassVar[str] = "requirements.txt"
    CONFIG: ClassVar[str] = "config.toml"
    LOCK: ClassVar[str] = "comfylock.lock"
    HISTORY: ClassVar[str] = "history"
    PROBE_CACHE: ClassVar[str] = ".target-cache.json"
    COMPILE_CACHE: ClassVar[str] = ".compile-cache.json"

    @property
    def user_dir(self) -> Path:
        """comfylock's own folder inside ComfyUI's user folder: history, config, user requirements."""
        return self.root.joinpath(*self.USER_DIR)

    @property
    def user_policy(self) -> Path:
        """The user's pip-policy.json, above the shipped one and below --policy files."""
        return self.user_dir / self.USER_POLICY

    @property
    def user_requirements(self) -> Path:
        """The user's own requirements (`comfylock add`)."""
        return self.user_dir / self.USER_REQUIREMENTS

    @property
    def config_file(self) -> Path:
        return self.user_dir / self.CONFIG

    @property
    def history_dir(self) -> Path:
        return self.user_dir / self.HISTORY

    @property
    def probe_cache(self) -> Path:
        """Where the target interpreter's last answer is kept (disposable; see probecache)."""
        return self.user_dir / self.PROBE_CACHE

    @property
    def compile_cache(self) -> Path:
        """What the last compile of each lock read (disposable; see _quick)."""
        return self.user_dir / self.COMPILE_CACHE

    @property
    def default_lock(self) -> Path:
        return self.root / self.LOCK

    @property
    def version_files(self) -> tuple[Path, ...]:
        """ComfyUI's files its version is read from, in the order they are tried."""
        return (self.root / "comfyui_version.py", self.root / "pyproject.toml")

    @property
    def core_requirements(self) -> Path:
        return self.root / "requirements.txt"


# The user's policy file as messages name it: relative to the ComfyUI folder, forward slashes.
USER_POLICY_FILE = "/".join((*Workspace.USER_DIR, Workspace.USER_POLICY))


def _is_comfyui(path: Path) -> bool:
    """A ComfyUI folder has custom_nodes/ plus one of the files every checkout or portable build ships."""
    return (path / "custom_nodes").is_dir() and (
        (path / "main.py").is_file() or (path / "requirements.txt").is_file() or (path / "comfy").is_dir()
    )


def _not_comfyui(path: Path, hint: str) -> WorkspaceError:
    return WorkspaceError(
        f"{path} is not a ComfyUI folder: looked for custom_nodes/ beside main.py or requirements.txt",
        hint=hint,
    )


_FIND_HINT = "pass --comfyui DIR or set COMFYUI_PATH"


def find_comfyui(explicit: str | os.PathLike[str] | None, cwd: Path, environ: Mapping[str, str]) -> Path:
    """The ComfyUI folder: `explicit`, else `cwd` (or its ComfyUI/) or the nearest folder above it that is
    one (as git finds its repository: `custom_nodes/Some-Node` works), else $COMFYUI_PATH; resolved."""
    cwd = Path(cwd).absolute()
    if explicit is not None:
        path = cwd / Path(explicit).expanduser()
        if _is_comfyui(path):
            return path.resolve()
        # Windows users often point at ComfyUI_windows_portable itself; name the folder they meant.
        hint = f"did you mean {path / 'ComfyUI'}?" if _is_comfyui(path / "ComfyUI") else _FIND_HINT
        raise _not_comfyui(path, hint)
    # Also accept the portable build's outer folder, where its run_*.bat files (and users' shells) live.
    for path in (cwd, cwd / "ComfyUI", *cwd.parents):
        if _is_comfyui(path):
            return path.resolve()
    from_env = environ.get("COMFYUI_PATH", "")
    if not from_env:
        raise _not_comfyui(cwd, _FIND_HINT)
    path = cwd / Path(from_env).expanduser()
    if not _is_comfyui(path):
        raise _not_comfyui(path, "COMFYUI_PATH points here; pass --comfyui DIR or fix COMFYUI_PATH")
    return path.resolve()


def _node_sort_key(node: Node) -> tuple[str, str]:
    # casefold first so Linux (case-sensitive listing) and Windows/macOS agree; exact name breaks ties.
    return (node.name.casefold(), node.name)


RESERVED_NAMES = frozenset({"core", "user"})  # collect.CORE and collect.USER


def find_nodes(root: Path) -> tuple[Node, ...]:
    """Enabled node folders directly under custom_nodes/, in a stable order on every OS.

    Skipped: `*.disabled` (ComfyUI-Manager's convention), hidden folders (which also covers Manager's
    custom_nodes/.disabled/), __pycache__, and single-file `*.py` nodes, which cannot carry requirements.
    A folder symlinked from elsewhere is still a node ComfyUI loads, so it is kept with its path as seen
    under custom_nodes/ (not resolved); collect decides what it may read through it.
    """
    custom = root / "custom_nodes"
    nodes = []
    try:
        with os.scandir(custom) as listing:  # one call: the entries' types come with the names
            for entry in listing:
                name = entry.name
                if name.startswith(".") or name == "__pycache__" or name.endswith(".disabled"):
                    continue
                # is_dir() follows symlinks, so linked node folders count; dangling, looping or
                # otherwise broken links drop out, as they would for ComfyUI.
                try:
                    if not entry.is_dir():
                        continue
                    link = _is_link(entry)
                    # A junction's own attributes say "folder" even when its target is gone.
                    if link and not entry.is_symlink() and not os.path.isdir(entry.path):
                        continue
                except OSError:
                    continue
                # "core" and "user" name ComfyUI's and the user's own requirements; a node folder so
                # named is known by its path, which no folder name can spell (it holds a '/').
                ident = f"custom_nodes/{name}" if name in RESERVED_NAMES else name
                nodes.append(Node(name=ident, path=custom / name, link=link))
    except OSError as exc:
        raise WorkspaceError(f"cannot list custom nodes: {exc.strerror or exc}", path=custom) from exc
    return tuple(sorted(nodes, key=_node_sort_key))


def _is_link(entry: os.DirEntry[str]) -> bool:
    # A Windows junction is a reparse point but not a symlink; it may point anywhere, like one.
    if entry.is_symlink():
        return True
    if os.name != "nt":  # elsewhere stat() would cost a system call the listing already saved
        return False
    return is_link(entry.stat(follow_symlinks=False))


def _venv_python(venv: Path, windows: bool) -> Path | None:
    """The interpreter inside a virtual environment folder, or None when it has none."""
    names = ("Scripts/python.exe",) if windows else ("bin/python", "bin/python3")
    for name in names:
        candidate = venv / name
        # Existence only: running or resolving it here would be slow and (see find_python) wrong.
        if candidate.is_file():
            return candidate
    return None


def find_python(
    root: Path,
    explicit: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    *,
    windows: bool = sys.platform == "win32",
    current: str = sys.executable,
) -> Path:
    """The interpreter ComfyUI runs under, absolute but with symlinks kept.

    Order: `explicit` (an interpreter or a venv folder), $VIRTUAL_ENV, <root>/venv, <root>/.venv, the
    portable build's <root>/../python_embeded/python.exe, then `current` (the Python running comfylock).

    Never resolve(): venv/bin/python is usually a symlink to the base interpreter, and Python finds its
    venv from the path it was started by (pyvenv.cfg beside it). Resolving would run the base Python,
    and packages would then be read from and installed into the wrong environment.
    """
    if explicit is not None:
        path = Path(explicit).expanduser().absolute()
        if path.is_dir():
            found = _venv_python(path, windows)
            if found is None:
                want = "Scripts/python.exe" if windows else "bin/python"
                raise WorkspaceError(
                    f"no Python interpreter in this folder: looked for {want}",
                    path=path,
                    hint="--python PY takes an interpreter or a virtual environment folder",
                )
            return found
        if path.is_file():
            return path
        # Windows users type `venv\Scripts\python` as they would in a shell.
        if windows and not path.suffix and path.with_suffix(".exe").is_file():
            return path.with_suffix(".exe")
        raise WorkspaceError("Python interpreter not found", path=path, hint="check --python PY")

    venvs = [Path(environ["VIRTUAL_ENV"]).expanduser().absolute()] if environ.get("VIRTUAL_ENV") else []
    venvs += [root / "venv", root / ".venv"]
    for venv in venvs:
        found = _venv_python(venv, windows)
        if found is not None:
            return found
    # Only Windows portable installs have this, but a copied or mounted tree may be probed from anywhere.
    embedded = root.parent / "python_embeded" / "python.exe"
    if embedded.is_file():
        return embedded
    if not current:  # sys.executable is empty when Python cannot tell where it was started from
        raise WorkspaceError(
            "no Python interpreter found for this ComfyUI", path=root, hint="pass --python PY"
        )
    return Path(current).absolute()


def open_workspace(
    comfyui: str | os.PathLike[str] | None = None,
    python: str | os.PathLike[str] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Workspace:
    environ = os.environ if environ is None else environ
    root = find_comfyui(comfyui, cwd or Path.cwd(), environ)
    return Workspace(root=root, nodes=find_nodes(root), python=find_python(root, python, environ))
