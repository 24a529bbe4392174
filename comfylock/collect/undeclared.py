"""Nodes whose requirements are not declared statically: an `install.py` (ComfyUI-Manager runs it after
the requirements), a `setup.py` without a requirements file, several `requirements-*.txt` variants with
none chosen. comfylock never runs a node's code: `install.py` and `setup.py` are only parsed (ast) for
hints, the literal `pip install` arguments and the requirement files they name.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfylock._exceptions import InputError
from comfylock._fs import read_bytes
from comfylock.collect.reqfile import _VARIANT
from comfylock.collect.types import CORE, USER

_MAX_BYTES = 1_000_000  # a bigger install.py is not read for hints
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~]*")


@dataclass(frozen=True)
class Undeclared:
    node: str
    reasons: tuple[str, ...]  # what is not declared statically
    packages: tuple[str, ...] = ()  # literal `pip install` arguments found in install.py / setup.py
    files: tuple[str, ...] = ()  # requirement files install.py names

    def hint(self) -> str:
        parts = []
        if self.packages:
            parts.append(f"install.py installs {', '.join(self.packages)}")
        if self.files:
            parts.append(f"it reads {', '.join(self.files)}")
        first = self.files[0] if self.files else None
        how = f'source = "{first}"' if first else "requirements = [...]"
        if self.packages and not first:
            how = "requirements = [" + ", ".join(f'"{p}"' for p in self.packages) + "]"
        parts.append(f'declare them in config.toml: [nodes."{self.node}"] {how}')
        return "; ".join(parts)


def scan(node: str, folder: Path, chosen: str | None, declared: int = 0) -> Undeclared | None:
    """What `node` installs beyond the file comfylock read (`chosen`: that file, None when none;
    `declared`: how many requirements it gave)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    reasons: list[str] = []
    packages: list[str] = []
    files: list[str] = []
    if "install.py" in names:
        reasons.append("install.py (run by ComfyUI-Manager after the requirements)")
        found = _scan_install(folder / "install.py")
        packages += found[0]
        files += [f for f in found[1] if f != chosen]
    if "setup.py" in names and not declared:
        reasons.append("setup.py (its requirements are known only by running it)")
        packages += _setup_requires(folder / "setup.py")
    variants = sorted(n for n in names if _VARIANT.fullmatch(n) and n != "requirements.txt")
    if variants and chosen in (None, "pyproject.toml"):
        reasons.append(f"{', '.join(variants)} and none chosen")
        files += [v for v in variants if v not in files]
    if not reasons:
        return None
    return Undeclared(node, tuple(reasons), tuple(dict.fromkeys(packages)), tuple(dict.fromkeys(files)))


def _parse(path: Path) -> ast.AST | None:
    try:  # through the guarded reader: a FIFO or a huge file is no hint, never a hang
        return ast.parse(read_bytes(path, _MAX_BYTES), filename=path.name)
    except (OSError, InputError, SyntaxError, ValueError):
        return None


def _literal_words(node: ast.AST) -> list[str | None]:
    """The words of a string, f-string or list of them; None stands for a computed part."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return list(node.value.split())
    if isinstance(node, ast.JoinedStr):
        out: list[str | None] = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                out.extend(part.value.split())
            else:
                out.append(None)
        return out
    if isinstance(node, (ast.List, ast.Tuple)):
        return [w for e in node.elts for w in (_literal_words(e) or [None])]
    return [None]


def _scan_install(path: Path) -> tuple[list[str], list[str]]:
    """Literal packages after `pip install`, and requirement files named anywhere in install.py."""
    tree = _parse(path)
    if tree is None:
        return [], []
    packages: list[str] = []
    files: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            base = node.value.strip().rsplit("/", 1)[-1]
            if _VARIANT.fullmatch(base) and base not in files:
                files.append(base)
        if not isinstance(node, ast.Call):
            continue
        for arg in node.args:
            words = _literal_words(arg)
            packages += _after_install(words, files)
    return packages, files


def _after_install(words: list[str | None], files: list[str]) -> list[str]:
    out: list[str] = []
    for i, w in enumerate(words):
        if w != "install" or "pip" not in {x.strip("\"'") for x in words[:i] if x}:
            continue
        rest = words[i + 1 :]
        j = 0
        while j < len(rest):
            w2 = rest[j]
            if w2 in ("-r", "--requirement") and j + 1 < len(rest):
                if rest[j + 1] and rest[j + 1] not in files:
                    files.append(str(rest[j + 1]).strip("\"'"))
                j += 2
                continue
            if w2 and not w2.startswith("-") and _NAME.fullmatch(w2.strip("\"'")):
                out.append(w2.strip("\"'"))
            j += 1
    return out


def _setup_requires(path: Path) -> list[str]:
    """Literal strings of `install_requires=[...]` in setup.py, when it is written as a list."""
    tree = _parse(path)
    out: list[str] = []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            if isinstance(node.value, (ast.List, ast.Tuple)):
                out += [
                    e.value
                    for e in node.value.elts
                    if isinstance(e, ast.Constant) and isinstance(e.value, str)
                ]
    return out


def scan_inputs(inputs: Iterable[Any], settings: Mapping[str, Any]) -> tuple[Undeclared, ...]:
    """Every node input (collect.NodeInput) with undeclared requirements, unless config.toml's
    [nodes."X"] already says what to read (`source`) or adds (`requirements`)."""
    out = []
    for inp in inputs:
        mine = settings.get(inp.node)
        if inp.node in (CORE, USER) or (mine is not None and (mine.source or mine.requirements)):
            continue
        found = scan(inp.node, inp.path, inp.chosen, len(inp.requirements))
        if found is not None:
            out.append(found)
    return tuple(out)
