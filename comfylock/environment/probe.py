"""Run the target interpreter once (or reuse its cached answer) and read what it says into a Target.

`subprocess` is imported inside the function that runs the interpreter: a cached answer needs no
subprocess (a no-op sync runs at every ComfyUI start).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from comfylock._exceptions import WorkspaceError
from comfylock.environment import probecache
from comfylock.environment.probe_script import PROBE_SCRIPT as _PROBE_SCRIPT
from comfylock.environment.scan import scan
from comfylock.environment.target import Target

_PROBE_HINT = "pass --python PY to choose another interpreter"


def gpu_available(torch_version: str | None, nvidia_driver: bool) -> bool:
    """True for a CUDA/ROCm torch build (local version +cuXXX/+rocmX.Y) or an NVIDIA driver present."""
    if nvidia_driver:
        return True
    local = (torch_version or "").partition("+")[2].lower()
    return local.startswith(("cu", "rocm"))


def _nvidia_driver_present() -> bool:
    # Checked in comfylock's own process: the driver belongs to the machine, not to the target venv.
    # nvidia-smi looked for on PATH as shutil.which would, without importing shutil for every probe.
    if Path("/proc/driver/nvidia/version").exists():
        return True
    names = (
        [f"nvidia-smi{ext}" for ext in os.environ.get("PATHEXT", ".EXE").split(os.pathsep)]
        if os.name == "nt"
        else ["nvidia-smi"]
    )
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        for name in names:
            path = os.path.join(folder, name)
            if folder and os.path.isfile(path) and os.access(path, os.X_OK):
                return True
    return False


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
    packages = _packages(facts)
    return Target(
        python=python,
        version=facts["version"],
        implementation=facts["implementation"],
        sys_platform=facts["sys_platform"],
        machine=facts["machine"],
        has_gpu=gpu_available(packages["visible"].get("torch"), _nvidia_driver_present()),
        own=tuple(d for d in facts.get("own", ()) if isinstance(d, str)),
        paths=tuple(d for d in facts.get("paths", ()) if isinstance(d, str)),
        prefix=str(facts.get("prefix", "")),
        **packages,
    )


def _packages(facts: dict[str, Any]) -> dict[str, Any]:
    """The Target fields that say what is installed, from a probe's answer or a scan of its folders
    (`installed` already checked to map names to versions)."""
    installed: dict[str, str] = facts["installed"]
    visible = facts.get("visible")
    if not isinstance(visible, dict) or not all(isinstance(v, str) for v in visible.values()):
        visible = installed
    direct = facts.get("direct")
    direct = direct if isinstance(direct, dict) else {}
    frozen = facts.get("frozen")
    return {
        "installed": installed,
        "visible": visible,
        "direct": {str(k): v for k, v in direct.items() if isinstance(v, dict)},
        "site_dirs": tuple(d for d in facts.get("site_dirs", ()) if isinstance(d, str)),
        "frozen": tuple(frozen)
        if isinstance(frozen, list) and all(isinstance(x, str) for x in frozen)
        else None,
    }


def probe_target(python: Path, cache: Path | None = None) -> Target:
    """Run `python` once (argument list, no shell) and read its version, platform and installed packages.

    With `cache` (a JSON file), the interpreter's part of the last answer (version, platform, sys.path,
    its own site folders) is reused while nothing it came from changed (see probecache), and what is
    installed is read from those folders in this process (see _envscan): no run of the target at all.
    """
    if cache is not None:
        answer = probecache.load(cache, python, _PROBE_SCRIPT)
        if answer is not None:
            # The interpreter and where its folders are: known. What is in them: read now, here.
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


def rescan(target: Target) -> Target:
    """`target` with its packages read again, its interpreter's facts (sys.path, site folders) kept:
    enough to see what a uv run just changed in its own site folders."""
    return replace(target, **_packages(scan(list(target.paths), list(target.own))))


def remember(target: Target) -> None:
    """Keep a freshly probed answer for the next run (probe_target with the same cache)."""
    if target.fresh is not None:
        cache, key, answer = target.fresh
        probecache.store(cache, target.python, key, answer)
