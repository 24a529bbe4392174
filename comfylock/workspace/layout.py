"""Stage 1: find ComfyUI, its enabled custom nodes, and the Python environment they run in."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from comfylock._exceptions import WorkspaceError
from comfylock._fs import is_link
from comfylock.environment.probe_script import PROBE_SCRIPT as _PROBE_SCRIPT


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


@dataclass(frozen=True)
class Target:
    """Facts about the target interpreter, read once per run by running it (never imported here)."""

    python: Path
    version: str  # "3.11.7"
    implementation: str  # "cpython"
    sys_platform: str  # "linux", "win32", "darwin"
    machine: str  # "x86_64", "AMD64", "arm64"
    # canonical name -> version, in the target's own site folders (purelib/platlib of its prefix): what
    # `uv pip sync` installs into and removes from, so what sync, check and history compare
    installed: Mapping[str, str]
    has_gpu: bool  # an installed +cuXXX/+rocm torch, or an NVIDIA driver on this machine
    site_dirs: tuple[str, ...] = ()  # the target's own site folders (where a killed install leaves debris)
    # `uv pip freeze`'s lines when the environment holds only plain registry installs, else None
    frozen: tuple[str, ...] | None = None
    # (cache file, key, answer) of an answer read now and not cached yet; see remember()
    fresh: tuple[Path, dict[str, Any], str] | None = field(default=None, repr=False, compare=False)
    # canonical name -> version of everything the target can import, from elsewhere too (a folder a .pth
    # lists, the base site of a --system-site-packages venv): what policies read, never what sync acts on
    visible: Mapping[str, str] = field(default_factory=dict, compare=False)
    # canonical name -> its direct_url.json (url, editable, vcs, commit, revision) for URL, VCS and
    # local-path installs in the own site folders
    direct: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False)
    own: tuple[str, ...] = field(default=(), compare=False)  # the own site folders, real paths
    paths: tuple[str, ...] = field(default=(), compare=False)  # sys.path, absolute
    prefix: str = field(default="", compare=False)  # sys.prefix, real path (a venv's pyvenv.cfg is here)

    def identity(self) -> list[str | bool]:
        """What of the target decides a compile's result (the fingerprints hash it)."""
        return [
            str(self.python),
            self.version,
            self.implementation,
            self.sys_platform,
            self.machine,
            self.has_gpu,
        ]

    def meta(self) -> dict[str, str]:
        """The target as a lock header records it."""
        return {
            "python": f"{self.version} {self.implementation}",
            "platform": f"{self.sys_platform} {self.machine}",
        }

    @property
    def os(self) -> str:
        """'linux', 'windows' or 'macos', the words pip-policy.json conditions use."""
        return {"win32": "windows", "darwin": "macos"}.get(self.sys_platform, self.sys_platform)


_PROBE_HINT = "pass --python PY to choose another interpreter"


def gpu_available(torch_version: str | None, nvidia_driver: bool) -> bool:
    """True for a CUDA/ROCm torch build (local version +cuXXX/+rocmX.Y) or an NVIDIA driver present."""
    if nvidia_driver:
        return True
    local = (torch_version or "").partition("+")[2].lower()
    return local.startswith(("cu", "rocm"))


def _nvidia_driver_present() -> bool:
    # Checked in comfylock's own process: the driver belongs to the machine, not to the target venv.
    import shutil

    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _parse_probe(python: Path, stdout: str) -> Target:
    lines = stdout.strip().splitlines()
    try:
        facts = json.loads(lines[-1]) if lines else None
    except ValueError:
        facts = None
    return _target(python, facts)


def _target(python: Path, facts: Any) -> Target:
    keys = ("version", "implementation", "sys_platform", "machine")
    if (
        not isinstance(facts, dict)
        or not all(isinstance(facts.get(key), str) for key in keys)
        or not isinstance(facts.get("installed"), dict)
        or not all(isinstance(v, str) for v in facts["installed"].values())
    ):
        raise WorkspaceError(
            "the Python interpreter printed an unexpected answer", path=python, hint=_PROBE_HINT
        )
    installed: dict[str, str] = facts["installed"]
    visible = facts.get("visible")
    if not isinstance(visible, dict) or not all(isinstance(v, str) for v in visible.values()):
        visible = installed
    direct = facts.get("direct")
    direct = direct if isinstance(direct, dict) else {}
    frozen = facts.get("frozen")
    return Target(
        python=python,
        version=facts["version"],
        implementation=facts["implementation"],
        sys_platform=facts["sys_platform"],
        machine=facts["machine"],
        installed=installed,
        has_gpu=gpu_available(visible.get("torch"), _nvidia_driver_present()),
        site_dirs=tuple(d for d in facts.get("site_dirs", ()) if isinstance(d, str)),
        frozen=tuple(frozen)
        if isinstance(frozen, list) and all(isinstance(x, str) for x in frozen)
        else None,
        visible=visible,
        direct={str(k): v for k, v in direct.items() if isinstance(v, dict)},
        own=tuple(d for d in facts.get("own", ()) if isinstance(d, str)),
        paths=tuple(d for d in facts.get("paths", ()) if isinstance(d, str)),
        prefix=str(facts.get("prefix", "")),
    )


def probe_target(python: Path, cache: Path | None = None) -> Target:
    """Run `python` once (argument list, no shell) and read its version, platform and installed packages.

    With `cache` (a JSON file), the interpreter's part of the last answer (version, platform, sys.path,
    its own site folders) is reused while nothing it came from changed (see probecache), and what is
    installed is read from those folders in this process (see _envscan): no run of the target at all.
    """
    from comfylock.environment import probecache

    if cache is not None:
        answer = probecache.load(cache, python, _PROBE_SCRIPT)
        if answer is not None:
            # The interpreter and where its folders are: known. What is in them: read now, here.
            from comfylock.environment.scan import scan

            facts = json.loads(answer)
            facts.update(scan(facts["paths"], facts["own"]))
            return _target(python, facts)
    import subprocess  # here: a cached answer needs no subprocess, and sync runs at every start

    started = probecache.now_ns()
    try:
        # -I: ignore PYTHON* variables and the user site so we see what ComfyUI sees; the embedded
        # Windows build ignores PYTHONPATH anyway and accepts -I.
        done = subprocess.run(
            [str(python), "-I", "-c", _PROBE_SCRIPT], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(
            "the Python interpreter did not answer within 60s", path=python, hint=_PROBE_HINT
        ) from exc
    except OSError as exc:
        raise WorkspaceError(
            f"cannot run the Python interpreter: {exc.strerror or exc}", path=python, hint=_PROBE_HINT
        ) from exc
    if done.returncode != 0:
        last = (done.stderr or "").strip().splitlines()[-1:] or ["no error output"]
        raise WorkspaceError(
            f"the Python interpreter failed (exit {done.returncode}): {last[0]}",
            path=python,
            hint=_PROBE_HINT,
        )
    target = _parse_probe(python, done.stdout)
    if cache is None:
        return target
    answer = done.stdout.strip().splitlines()[-1]
    key = probecache.key_after_probe(python, _PROBE_SCRIPT, answer, started)
    if key is None:
        return target
    # Stored by remember() once the command has succeeded: a refused input must write nothing.
    return replace(target, fresh=(cache, key, answer))


def remember(target: Target) -> None:
    """Keep a freshly probed answer for the next run (probe_target with the same cache)."""
    if target.fresh is not None:
        from comfylock.environment import probecache

        cache, key, answer = target.fresh
        probecache.store(cache, target.python, key, answer)
