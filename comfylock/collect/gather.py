"""Stage 2: read every requirement of core, each enabled node and the user, keeping where it came from."""

from __future__ import annotations

import os
from collections.abc import Collection as AbstractSet
from collections.abc import Mapping
from pathlib import Path

from comfylock._exceptions import InputError
from comfylock._fs import real_child as _real_child
from comfylock._fs import resolve_path as _resolve
from comfylock.collect.reqfile import (
    _VARIANT,
    _Parser,
    _skip_hint,
    parse_pyproject,
    parse_requirements_file,
)
from comfylock.collect.types import CORE, USER, BadLine, Collection, IndexOption, NodeInput, Req, Source
from comfylock.workspace.config import INDEX_OPTIONS, NodeSettings
from comfylock.workspace.layout import Node, Workspace

__all__ = [
    "CORE",
    "INDEX_OPTIONS",
    "USER",
    "BadLine",
    "Collection",
    "IndexOption",
    "NodeInput",
    "NodeSettings",
    "Req",
    "Source",
    "parse_pyproject",
    "parse_requirements_file",
]


def _check_inside(path: Path, root_real: Path, node: str, parent_real: Path | None = None) -> Path:
    """The real path of `path`, refused when a link takes it out of the ComfyUI folder.

    With parent_real (path's folder, resolved and already checked) only a link needs the full check.
    """
    if parent_real is None:
        real, link = _resolve(path), True
    else:
        real, link = _real_child(parent_real, path)
    if link and not real.is_relative_to(root_real):
        raise InputError(
            f"{node}: {path.name} is a symlink pointing outside the ComfyUI folder",
            path=path,
            hint=_skip_hint(node),
        )
    return real


def _configured(parser: _Parser, source: str, root_real: Path) -> tuple[str | None, str]:
    if source == "none":
        return None, "none (config)"
    node, path = parser.node, parser.folder / source
    if Path(source).is_absolute() or not _resolve(path).is_relative_to(parser.folder_real):
        raise InputError(
            f'{node}: configured source "{source}" is not a file inside the node folder',
            path=parser.folder,
            hint="set source to a file name relative to the node folder",
        )
    if not os.path.lexists(path):
        raise InputError(f'{node}: configured source "{source}" does not exist', path=path)
    real = _check_inside(path, root_real, node)
    if Path(source).name == "pyproject.toml":
        has_deps, why = parser.read_pyproject(path)
        return source, f"{source} (config)" if has_deps else f"{source} (config) {why}"
    parser.read_file(path, real=real)
    return source, f"{source} (config)"


def _default(parser: _Parser, root_real: Path) -> tuple[str | None, str]:
    folder, node = parser.folder, parser.node
    has_pyproject = os.path.lexists(os.path.join(folder, "pyproject.toml"))  # a str: cheaper than a Path
    requirements = folder / "requirements.txt"
    if os.path.lexists(requirements):  # what ComfyUI-Manager installs
        real = _check_inside(requirements, root_real, node, parser.folder_real)
        parser.read_file(requirements, real=real)
        return "requirements.txt", "requirements.txt (wins over pyproject.toml)" if has_pyproject else (
            "requirements.txt"
        )
    try:
        variants = sorted(n for n in os.listdir(folder) if _VARIANT.fullmatch(n))
    except OSError:
        variants = []
    note = f"; {', '.join(variants)} not read (choose one with source in config)" if variants else ""
    if has_pyproject:
        _check_inside(folder / "pyproject.toml", root_real, node, parser.folder_real)
        has_deps, why = parser.read_pyproject(folder / "pyproject.toml")
        return "pyproject.toml", f"pyproject.toml {why}{note}"
    return None, f"no requirements file{note}"


def _core(root: Path, root_real: Path, settings: NodeSettings, keep_going: bool) -> NodeInput:
    parser = _Parser(CORE, root, settings.allow_options, keep_going)
    if settings.source is not None:
        return parser.result(root, *_configured(parser, settings.source, root_real))
    chosen, why = None, "no requirements file"
    if os.path.lexists(root / "requirements.txt"):
        parser.read_file(root / "requirements.txt")
        chosen, why = "requirements.txt", "requirements.txt"
    if os.path.lexists(root / "pyproject.toml"):
        has_deps, status = parser.read_pyproject(root / "pyproject.toml")
        if has_deps:  # ComfyUI may move its dependencies there; merging keeps both sources honest
            why = f"{why} + pyproject.toml {status}" if chosen else "pyproject.toml [project].dependencies"
            chosen = chosen or "pyproject.toml"
        elif chosen is not None:
            why = f"{why} (pyproject.toml {status})"
    return parser.result(root, chosen, why)


def _node(
    node: Node, root_real: Path, parent_real: Path, settings: NodeSettings, keep_going: bool
) -> NodeInput:
    if node.link is False:  # the listing said so: no system call needed
        folder_real = parent_real / node.path.name
    else:
        folder_real, _ = _real_child(parent_real, node.path)
    parser = _Parser(node.name, node.path, settings.allow_options, keep_going, folder_real)
    if not parser.folder_real.is_relative_to(root_real):
        raise InputError(
            f"{node.name}: node folder is a symlink pointing outside the ComfyUI folder",
            path=node.path,
            hint=_skip_hint(node.name),
        )
    if settings.source is not None:
        chosen, why = _configured(parser, settings.source, root_real)
    else:
        chosen, why = _default(parser, root_real)
    if settings.requirements and settings.config_path is not None:
        # Declared by the user for a node that installs them another way (install.py, setup.py).
        for line, text in settings.requirements:
            parser.requirement_line(text, Source(node.name, settings.config_path, line), False)
        why += f" + {len(settings.requirements)} from config.toml requirements"
    return parser.result(node.path, chosen, why)


def _user(ws: Workspace, path: Path, settings: NodeSettings, keep_going: bool) -> NodeInput:
    if not os.path.lexists(path):
        return NodeInput(USER, ws.user_dir, None, "no user requirements file", ())
    parser = _Parser(USER, path.parent, settings.allow_options, keep_going)
    parser.read_file(path)
    chosen = str(path.relative_to(ws.user_dir)) if path.is_relative_to(ws.user_dir) else path.name
    return parser.result(ws.user_dir, chosen, f"{chosen} (comfylock's user requirements)")


def _display(path: Path, root: Path, root_real: Path) -> Path:
    for base in (root, root_real):
        if path.is_relative_to(base):
            return path.relative_to(base)
    return path


def collect(
    ws: Workspace,
    *,
    settings: Mapping[str, NodeSettings] | None = None,
    skip_nodes: AbstractSet[str] = frozenset(),
    keep_going: bool = False,
    user_requirements: Path | None = None,
) -> Collection:
    """Read core, every enabled node (minus skip_nodes) and the user file; no subprocess, no network.

    A node reads requirements.txt when present, else static pyproject dependencies, unless its
    NodeSettings.source says otherwise. The user input is present only when user_requirements is given.
    """
    settings = settings or {}
    root_real = _resolve(ws.root)
    inputs: list[NodeInput] = []
    from comfylock import _progress as progress

    try:
        with progress.step("reading the requirements of custom nodes", total=len(ws.nodes)):
            inputs.append(_core(ws.root, root_real, settings.get(CORE, NodeSettings()), keep_going))
            inputs += _nodes(ws, root_real, settings, skip_nodes, keep_going)
        if user_requirements is not None:
            inputs.append(_user(ws, user_requirements, settings.get(USER, NodeSettings()), keep_going))
    except InputError as e:
        if isinstance(e.path, Path):  # absolute inside; shown relative to ComfyUI
            e.path = _display(e.path, ws.root, root_real)
        raise
    return Collection(tuple(inputs))


def _nodes(
    ws: Workspace,
    root_real: Path,
    settings: Mapping[str, NodeSettings],
    skip_nodes: AbstractSet[str],
    keep_going: bool,
) -> list[NodeInput]:
    from comfylock import _progress as progress

    parents: dict[Path, Path] = {}  # custom_nodes/ resolved once, not once per node
    inputs: list[NodeInput] = []
    for node in ws.nodes:
        progress.advance()
        if node.name in skip_nodes or node.path.name in skip_nodes:
            continue
        parent = node.path.parent
        if parent not in parents:
            parents[parent] = _resolve(parent)
        nset = settings.get(node.name, NodeSettings())
        inputs.append(_node(node, root_real, parents[parent], nset, keep_going))
    return inputs
