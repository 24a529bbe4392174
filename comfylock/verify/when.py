"""Whether verifying can and should run: cheap questions a sync asks after every change, kept apart
from the loader so that a sync in a folder without ComfyUI's loader imports none of it."""

from __future__ import annotations

from pathlib import Path


def is_comfyui_loader(root: Path) -> bool:
    """Whether `root` holds ComfyUI's loader, so verifying can run it: a non-empty `main.py` next to
    `nodes.py` (where ComfyUI's `load_custom_node` lives). A bare `main.py`, as in comfylock's example
    tree, is only a marker of the folder and is never run."""
    main = root / "main.py"
    try:
        return main.is_file() and main.stat().st_size > 0 and (root / "nodes.py").is_file()
    except OSError:
        return False


def wanted(root: Path, configured: bool, asked: bool | None) -> bool:
    """Verify after a sync: unless --no-verify (`asked` False) or `verify = false` in config.toml, and
    only where the folder holds ComfyUI's loader."""
    if asked is False or (asked is None and not configured):
        return False
    return is_comfyui_loader(root)
