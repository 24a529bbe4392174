"""Names as the readers of a lock and of uv's messages compare them: canonical package names, the names a
line of free text mentions, and a requirement file as a `requested by` line records it.

Imports nothing of comfylock's. environment/scan.py spells `canonical` and NORMAL_VERSION once more,
because its source is run inside the target interpreter as it is (see probe_script); tests/test_layout.py
checks that both spell them alike."""

from __future__ import annotations

import re
from pathlib import Path

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SEPARATORS = re.compile(r"[-_.]+")
# PEP 440's normal form, as installers name a .dist-info folder and uv writes a pin. [0-9], not \d:
# packaging refuses digits other than ASCII ones.
NORMAL_VERSION = re.compile(
    "(?:[0-9]+!)?[0-9]+(?:[.][0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:[.]post[0-9]+)?(?:[.]dev[0-9]+)?"
    "(?:[+][a-z0-9]+(?:[.][a-z0-9]+)*)?"
)


def canon(name: str) -> str:
    """PEP 503's normal form. Not packaging's canonicalize_name: the no-op sync path (every ComfyUI
    start) must not pay packaging's import cost."""
    return _SEPARATORS.sub("-", name).lower()


def req_name(text: str) -> str | None:
    """The canonical name of a requirement line; None when it is not one."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return canon(Requirement(text).name)
    except InvalidRequirement:
        return None


def words(text: str) -> set[str]:
    """Every word of `text` that could be a package name, canonical (a policy line, uv's message)."""
    return {canon(w) for w in _WORD.findall(text)}


def node_file(path: Path, folder: Path | None) -> str:
    """`path` relative to its node's folder, with forward slashes; its bare name when outside it."""
    if folder is not None and path.is_relative_to(folder):
        return path.relative_to(folder).as_posix()
    return path.name


def shell_quote(name: str) -> str:
    """A name as a command line shown to the user may hold it: double quotes work in POSIX shells, cmd
    and PowerShell alike."""
    return name if re.fullmatch(r"[A-Za-z0-9._+-]+", name) else f'"{name}"'
