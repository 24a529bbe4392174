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


_PLAIN = re.compile(r"[0-9]+(?:[.][0-9]+)*")  # a release with no epoch, pre, post, dev or local part
_NORMAL_PARTS = re.compile(r"((?:[0-9]+!)?)([0-9]+(?:[.][0-9]+)*)(.*)")
_ZEROS = re.compile(r"(?<![0-9])0+(?=[0-9])")


def _trimmed(release: str) -> tuple[int, ...]:
    parts = [int(p) for p in release.split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # 1.0 == 1.0.0, as packaging compares them
        parts.pop()
    return tuple(parts)


def release(version: str) -> tuple[int, ...] | None:
    """A plain release (`1.26.4`) as packaging orders it, without packaging's import cost; None for
    any other version, which packaging must compare."""
    return _trimmed(version) if _PLAIN.fullmatch(version) else None


def same_version(a: str, b: str) -> bool | None:
    """Whether two versions are equal as packaging compares them, when both are in PEP 440's normal
    form (as .dist-info folders and uv's pins write them): there only the release's trailing zeros
    may differ between equal versions. None: packaging must decide."""
    if not (NORMAL_VERSION.fullmatch(a) and NORMAL_VERSION.fullmatch(b)):
        return None
    ma, mb = _NORMAL_PARTS.fullmatch(a), _NORMAL_PARTS.fullmatch(b)
    if ma is None or mb is None:
        return None
    return _parts(ma) == _parts(mb)


def _parts(m: re.Match[str]) -> tuple[int, tuple[int, ...], str, str]:
    epoch = int(m[1][:-1]) if m[1] else 0
    suffix, _, local = m[3].partition("+")
    # rc01 == rc1; a local label's all-digit parts are numbers too (+01 == +1), its others text
    label = ".".join(str(int(x)) if x.isdigit() else x for x in local.split(".")) if local else ""
    return epoch, _trimmed(m[2]), _ZEROS.sub("", suffix), label


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
