"""Stage 4: the only module that runs uv. Everything else builds argument lists and reads results.

uv is always called with an argument list (never a shell) and every path it sees is one comfylock
wrote into a private temp folder or took from the workspace, never text from a node's file.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from comfylock import _progress
from comfylock._exceptions import ResolutionError, UvError
from comfylock._names import canon
from comfylock.resolve.index import IndexOptions
from comfylock.resolve.uvenv import Here as _Here
from comfylock.resolve.uvenv import child_env
from comfylock.resolve.uvenv import scratch as _tempdir

if TYPE_CHECKING:
    import subprocess

    from comfylock.resolve.types import Resolved, ResolveRequest


@functools.cache
def uv_bin() -> str:
    # In a venv (pipx, uv tool, a project's), the first place find_uv_bin looks is the venv's scripts
    # folder; looked at here without sysconfig, which costs every command that runs uv 3 ms.
    if sys.prefix != sys.base_prefix:
        here = os.path.join(
            sys.prefix, "Scripts" if os.name == "nt" else "bin", "uv.exe" if os.name == "nt" else "uv"
        )
        if os.path.isfile(here):
            return here
    from uv import find_uv_bin  # imported lazily: `comfylock --version` must not pay for it

    return os.fsdecode(find_uv_bin())


@functools.cache
def uv_version() -> str:
    # The binary is the one the `uv` package ships, so the version in its dist-info folder's name is
    # the binary's, without a subprocess (`uv --version`) or importlib.metadata (~15 ms): a no-op
    # compile must stay far below uv's own time.
    spec = importlib.util.find_spec("uv")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            names = os.listdir(os.path.dirname(folder))
        except OSError:
            continue
        found = [m.group(1) for m in map(re.compile(r"uv-([^-]+)\.dist-info").fullmatch, names) if m]
        if len(found) == 1:  # two: an interrupted upgrade; only the binary can tell
            return found[0]
        break
    out = run_uv(["--version"]).stdout.split()
    return out[1] if len(out) > 1 else "unknown"


def run_uv(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    index: IndexOptions | None = None,
    show: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run uv with `args`; `index` reaches it through its environment (never argv, see _uvenv).
    `show`: its stderr (progress bars, what it installs) goes to the user's terminal as it comes
    instead of being captured, so `proc.stderr` is None."""
    full_env, extra = child_env(os.environ if env is None else env, index)
    cmd = [uv_bin(), *args, *extra, *(_progress.uv_args() if show else ())]
    import subprocess  # not at import: a no-op sync runs no uv at all

    # uv runs in a private folder of its own unless told otherwise: whatever the current folder or its
    # parents hold (a uv.toml, a pyproject.toml) is no input, and UV_NO_CONFIG says so to uv too.
    with _tempdir() if cwd is None else _Here(cwd) as where:
        try:
            proc = subprocess.run(
                cmd,
                cwd=where,
                stdout=subprocess.PIPE,
                stderr=None if show else subprocess.PIPE,
                text=True,
                env=full_env,
                encoding="utf-8",
                errors="replace",
            )
        except OSError as e:
            raise UvError(f"cannot run uv: {e.strerror}", path=cmd[0]) from None
    if check and proc.returncode != 0:
        raise UvError(
            f"uv {args[0] if args else ''} {args[1] if len(args) > 1 else ''} failed: "
            f"{_last_error(proc.stderr, proc.returncode)}",
            details=proc.stderr,
        )
    return proc


def _last_error(stderr: str, returncode: int | None = None) -> str:
    from comfylock.resolve import uvtext  # here: a sync that succeeds reads none of uv's words

    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    said = uvtext.parse(stderr)
    if said.error:  # with every cause: "Failed to download X" alone does not say why
        return said.one_line()
    if returncode is not None and returncode < 0:  # POSIX: killed (out of memory, a kill, a reboot)
        # uv's last status line ("Resolved 50 packages") says where it was, not what went wrong.
        return f"uv was stopped by signal {-returncode}" + (f" (after: {lines[-1]})" if lines else "")
    if lines:
        return lines[-1]
    return f"uv exited with code {returncode} without a message" if returncode else "no message"


_VIA = re.compile(r"^(?P<spec>\S.*?)\s+# via (?P<via>.*)$")


def compile(request: ResolveRequest) -> list[Resolved]:
    """Resolve every input group at once with one `uv pip compile`."""
    return compile_warned(request)[0]


def compile_warned(request: ResolveRequest) -> tuple[list[Resolved], tuple[str, ...]]:
    """compile(), with uv's warnings ("`foo==1.0` does not have an extra named `bar`") as lines."""
    if not any(request.inputs.values()):
        return [], ()  # uv refuses to run without inputs; nothing asked for is an empty lock
    with _tempdir() as tmp:
        d = Path(tmp)
        # Files are named by position, not by node name: a hostile folder name never reaches uv.
        groups: dict[str, str] = {}
        # Not --quiet: it hides uv's warnings too. The resolution uv then prints on stdout is not read.
        args = [
            "pip",
            "compile",
            "--no-progress",
            "--annotation-style",
            "line",
            "--no-header",
            "--output-file",
            "out.txt",
        ]
        for i, (group, lines) in enumerate(request.inputs.items()):
            name = f"in{i:04d}.txt"
            (d / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
            groups[name] = group
            args.append(name)
        for flag, lines, fname in (
            ("--constraints", request.constraints, "constraints.txt"),
            ("--overrides", request.overrides, "overrides.txt"),
            ("--excludes", request.excludes, "excludes.txt"),
        ):
            if lines:
                (d / fname).write_text("\n".join(lines) + "\n", encoding="utf-8")
                args += [flag, fname]
        if request.preferences:
            (d / "out.txt").write_text(_preferences(request.preferences), encoding="utf-8")
        args += _target_args(request.python, request.python_version, request.python_platform)
        if request.upgrade:
            args.append("--upgrade")
        for pkg in request.upgrade_packages:
            args += ["--upgrade-package", pkg]
        if request.offline:
            args.append("--offline")
        if request.refresh:
            args.append("--refresh")
        count = sum(len(lines) for lines in request.inputs.values())
        how = " from uv's cache" if request.offline else ""
        with _progress.step(f"resolving {count} requirements of {len(groups)} inputs with uv{how}"):
            proc = run_uv(args, cwd=d, check=False, index=request.index)
        if proc.returncode != 0:
            raise _failure(proc.stderr, proc.returncode)
        from comfylock.resolve import uvtext

        warnings = uvtext.parse(proc.stderr).warnings
        return _parse_output((d / "out.txt").read_text(encoding="utf-8"), groups), warnings


def _target_args(python: Path | None, version: str | None, platform: str | None) -> list[str]:
    args: list[str] = []
    if version or platform:
        if version:
            args += ["--python-version", version]
        if platform:
            args += ["--python-platform", platform]
    elif python is not None:
        args += ["--python", str(python)]
    return args


def _preferences(lock_text: str) -> str:
    # uv reads an existing output file as preferences; give it only pins so nothing in comfylock's
    # header or annotations can make it fail to parse.
    keep = [
        ln.split(" #")[0].rstrip()
        for ln in lock_text.splitlines()
        if ln and not ln.startswith((" ", "#", "-"))
    ]
    return "\n".join(keep) + "\n"


def _parse_output(text: str, groups: Mapping[str, str]) -> list[Resolved]:
    from comfylock.resolve.types import Resolved

    out: list[Resolved] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("-"):
            continue
        m = _VIA.match(line)
        spec, via = (m["spec"].strip(), m["via"]) if m else (line.split(" #")[0].strip(), "")
        direct, parents = [], []
        for item in (v.strip() for v in via.split(",")):
            if item.startswith("-r "):
                g = groups.get(item[3:].strip())
                if g is not None:
                    direct.append(g)
            elif item and not item.startswith("-"):
                parents.append(canon(item))
        name = re.split(r"[\s=<>!~;@\[]", spec, maxsplit=1)[0]
        out.append(Resolved(canon(name), spec, tuple(direct), tuple(sorted(parents))))
    return sorted(out, key=lambda r: r.name)


def _failure(stderr: str, returncode: int | None = None) -> Exception:
    from comfylock.resolve import uvtext

    text = stderr.strip()
    if "No solution found" in text or "unsatisfiable" in text:
        explanation = "\n".join(ln for ln in text.splitlines() if not ln.startswith("warning:"))
        return ResolutionError(
            "the requirements cannot be satisfied together",
            explanation=explanation,
            packages=uvtext.conflict_names(explanation),
        )
    return UvError(f"uv pip compile failed: {_last_error(text, returncode)}", details=text)


def sync(
    lock_text: str,
    python: Path,
    index: IndexOptions,
    *,
    offline: bool = False,
    dry_run: bool = False,
    reinstall: Sequence[str] = (),
    what: str = "syncing the environment",
    exact: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`uv pip sync` the target environment to exactly `lock_text` (a requirements file); without
    `exact`, `uv pip install --no-deps` of just its pins (nothing else changes). On a terminal uv draws
    its own progress (downloads, builds, installs) there; `what` names the step."""
    with _tempdir() as tmp:
        f = Path(tmp) / "sync.txt"
        f.write_text(lock_text, encoding="utf-8")
        if exact:  # without --allow-empty-requirements uv leaves the environment alone for no pins
            args = ["pip", "sync", str(f), "--allow-empty-requirements", "--python", str(python)]
        else:
            args = ["pip", "install", "--no-deps", "-r", str(f), "--python", str(python)]
        if offline:
            args.append("--offline")
        if dry_run:
            args.append("--dry-run")
        for name in reinstall:
            args += ["--reinstall-package", name]
        show = _progress.passthrough() and not dry_run
        with _progress.step(what, uv_draws=show):  # uv's folder: this private one, holding only `f`
            proc = run_uv(args, cwd=Path(tmp), check=False, index=index, show=show)
        if proc.returncode != 0:
            stderr = proc.stderr or ""
            why = "its message is above" if show else _last_error(stderr, proc.returncode)
            raise UvError(f"uv pip {args[1]} failed: {why}", details=stderr)
        return proc


def target_pylock(pins: Sequence[str], python: Path, index: IndexOptions) -> str | None:
    """The PEP 751 pylock uv writes for exactly `pins` and the target, from its cache alone (None when
    the cache cannot tell). It lists only the wheels the target can install."""
    with _tempdir() as tmp:
        d = Path(tmp)
        (d / "pins.txt").write_text("".join(f"{p}\n" for p in pins), encoding="utf-8")
        args = ["pip", "compile", "pins.txt", "--no-deps", "--no-header", "--quiet", "--offline"]
        args += ["--output-file", "pylock.toml", "--python", str(python)]
        if run_uv(args, cwd=d, check=False, index=index).returncode != 0:
            return None
        return (d / "pylock.toml").read_text(encoding="utf-8")


def pylock(
    pins: str, out: Path, target_args: Sequence[str], index: IndexOptions, *, cwd: Path | None = None
) -> str:
    """The PEP 751 text uv writes for exactly `pins` (no dependencies followed), cache first."""
    import secrets

    # uv writes paths relative to its output file, so it writes into the destination folder (under a
    # temporary pylock name of its own) rather than into a temp folder the result is later moved from.
    scratch = out.with_name(f"pylock.comfylock-tmp-{secrets.token_hex(6)}.toml")
    with _tempdir() as tmp:
        req = Path(tmp) / "pins.txt"
        req.write_text(pins, encoding="utf-8")
        args = [
            "pip",
            "compile",
            str(req),
            "--no-deps",
            "--no-header",
            "--quiet",
            "--output-file",
            str(scratch),
            *target_args,
        ]
        try:
            proc = run_uv([*args, "--offline"], cwd=cwd, check=False, index=index)
            if proc.returncode != 0:
                proc = run_uv(args, cwd=cwd, check=False, index=index)
            if proc.returncode != 0:
                raise UvError(
                    f"uv could not write the pylock: {_last_error(proc.stderr, proc.returncode)}",
                    details=proc.stderr,
                )
            return scratch.read_text(encoding="utf-8")
        finally:
            scratch.unlink(missing_ok=True)


def pip_check(python: Path) -> str:
    """`uv pip check` of the target: its report (uv prints it on stderr and exits 1 on problems)."""
    with _progress.step("checking that installed packages' requirements hold (uv pip check)"):
        proc = run_uv(["pip", "check", "--python", str(python)], check=False)
    if proc.returncode not in (0, 1):
        raise UvError(f"uv pip check failed: {_last_error(proc.stderr, proc.returncode)}")
    return proc.stderr


@functools.cache
def cache_dir() -> Path:
    """uv's cache folder (UV_CACHE_DIR, or the platform default)."""
    known = _default_cache_dir(os.environ)
    if known is not None and (known / "archive-v0").is_dir():
        return known
    return Path(run_uv(["cache", "dir"]).stdout.strip())  # uv's answer costs a run of uv: 15-20 ms


def _default_cache_dir(environ: Mapping[str, str]) -> Path | None:
    """Where uv's storage reference puts its cache: UV_CACHE_DIR, else $XDG_CACHE_HOME/uv or
    ~/.cache/uv (Linux, macOS), %LOCALAPPDATA%\\uv\\cache (Windows). None: only uv can tell (a
    relative path, which uv reads against its own folder)."""
    if environ.get("UV_CACHE_DIR"):
        given = Path(environ["UV_CACHE_DIR"])
    elif os.name == "nt":
        given = Path(environ.get("LOCALAPPDATA", ""), "uv", "cache")
    elif environ.get("XDG_CACHE_HOME"):
        given = Path(environ["XDG_CACHE_HOME"], "uv")
    else:
        given = Path(environ.get("HOME") or os.path.expanduser("~"), ".cache", "uv")
    return given if given.is_absolute() else None


def freeze(python: Path) -> list[str]:
    """The target environment as requirement lines (`uv pip freeze`), URLs and VCS SHAs included."""
    return run_uv(["pip", "freeze", "--python", str(python)]).stdout.splitlines()
