"""comfylock: one committed lock file for a ComfyUI install, resolved at once with uv, synced exactly.

The pipeline's stages are subpackages (workspace, collect, policy, resolve, lockfile, environment,
explain, verify); the commands are functions in `comfylock.api`. Names below are imported on first
use, so that `comfylock --version` stays as fast as Python itself.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

_EXPORTS = {
    "ComfylockError": "._exceptions",
    "InputError": "._exceptions",
    "PolicyError": "._exceptions",
    "LockFileError": "._exceptions",
    "ResolutionError": "._exceptions",
    "UvError": "._exceptions",
    "BusyError": "._exceptions",
    "WorkspaceError": "._exceptions",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'comfylock' has no attribute {name!r}")
