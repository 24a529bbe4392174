"""comfylock's own settings for one ComfyUI: `<comfyui>/user/comfylock/config.toml`.

torch-index = "https://download.pytorch.org/whl"   # where +cuXXX builds of installed torch live
torch-backend = "auto"     # the build a target without torch gets: auto, cpu, pypi, cu126, rocm6.2...
[index]                                             # defaults for every compile and sync
index-url = "https://pypi.org/simple"
extra-index-url = ["https://..."]
find-links = ["/wheels"]
[nodes."ComfyUI-Frame-Interpolation"]
source = "requirements-no-cupy.txt"                  # or "pyproject.toml", "requirements.txt", "none"
allow-options = ["--extra-index-url"]               # index options this node's file may set
skip = true                                          # leave the node out, as --skip-node does
requirements = ["cupy-wheel"]                        # what the node installs without declaring it
verify = true            # sync and rollback run ComfyUI's loader afterwards (false: as --no-verify)
verify-timeout = 300     # seconds before a hung load is stopped
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from comfylock._exceptions import InputError
from comfylock._fs import read_bytes
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.layout import Workspace

DEFAULT_TORCH_INDEX = "https://download.pytorch.org/whl"
# Options a node's file may carry that change where EVERY package comes from; a node may only use them
# when the user allows that node by name (NodeSettings.allow_options).
INDEX_OPTIONS = frozenset(
    {"--index-url", "--extra-index-url", "--find-links", "--trusted-host", "--pre", "--no-index"}
)
CONFIG_NAME = Workspace.CONFIG


@dataclass(frozen=True)
class NodeSettings:
    """Per-node settings: [nodes."NAME"] in config.toml."""

    source: str | None = None  # file to read instead of the default choice, or "none"
    allow_options: frozenset[str] = frozenset()  # INDEX_OPTIONS this node may use
    # (line in config.toml, requirement) the user declares for a node that does not (install.py...)
    requirements: tuple[tuple[int, str], ...] = ()
    config_path: Path | None = None


@dataclass(frozen=True)
class Config:
    """config.toml as read: per-node settings, skipped nodes, index options and switches."""

    nodes: dict[str, NodeSettings] = field(default_factory=dict)
    skip: frozenset[str] = frozenset()
    index: IndexOptions = field(default_factory=IndexOptions)
    torch_index: str = DEFAULT_TORCH_INDEX
    path: Path | None = None
    sha: str | None = None  # sha256 of the bytes read (the quick no-op check hashes what was parsed)
    verify: bool = True  # sync and rollback verify that ComfyUI's nodes still load
    verify_timeout: float = 300.0
    torch_backend: str | None = None  # None: COMFYLOCK_TORCH_BACKEND, else auto (_torch_backend.asked)


def _strings(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise InputError(f"{key} must be a string or a list of strings", path=path)


def _line_of(raw: bytes, text: str) -> int:
    """The line of config.toml where `text` is written (for a requirement's provenance); 1 if unseen."""
    for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if f'"{text}"' in line or f"'{text}'" in line:
            return number
    return 1


def toml() -> ModuleType:
    """tomllib (tomli before 3.11), imported when a TOML file is read, not by every command."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def load_config(user_dir: Path) -> Config:
    path = user_dir / CONFIG_NAME
    if not path.is_file():
        return Config()
    tomllib = toml()
    try:
        raw = read_bytes(path)
        data = tomllib.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InputError("nested too deeply to be a config file", path=path, line=1) from None
    except OSError as e:
        raise InputError(f"cannot read the config: {e.strerror or e}", path=path) from None
    except UnicodeDecodeError as e:
        raise InputError("not UTF-8 text", path=path, line=raw.count(b"\n", 0, e.start) + 1) from None
    except tomllib.TOMLDecodeError as e:
        at = re.search(r"line (\d+)", str(e))
        raise InputError(f"invalid TOML: {e}", path=path, line=int(at.group(1)) if at else None) from None
    known = {"torch-index", "torch-backend", "index", "nodes", "verify", "verify-timeout"}
    for key in data:
        if key not in known:
            raise InputError(
                f"unknown key {key!r}", path=path, hint=f"expected one of {', '.join(sorted(known))}"
            )
    nodes: dict[str, NodeSettings] = {}
    skip = set()
    for name, table in data.get("nodes", {}).items():
        if not isinstance(table, dict):
            raise InputError(f"[nodes.{name!r}] must be a table", path=path)
        allow = frozenset(_strings(table.get("allow-options", []), path, f"nodes.{name}.allow-options"))
        bad = allow - INDEX_OPTIONS
        if bad:
            raise InputError(
                f"nodes.{name}.allow-options: unknown option {sorted(bad)[0]!r}",
                path=path,
                hint=f"expected some of {', '.join(sorted(INDEX_OPTIONS))}",
            )
        source = table.get("source")
        if source is not None and not isinstance(source, str):
            raise InputError(f"nodes.{name}.source must be a string", path=path)
        reqs = _strings(table.get("requirements", []), path, f"nodes.{name}.requirements")
        nodes[name] = NodeSettings(source, allow, tuple((_line_of(raw, r), r) for r in reqs), path)
        if table.get("skip") is True:
            skip.add(name)
    idx = data.get("index", {})
    index = IndexOptions(
        index_url=idx.get("index-url"),
        extra_index_urls=_strings(idx.get("extra-index-url", []), path, "index.extra-index-url"),
        find_links=_strings(idx.get("find-links", []), path, "index.find-links"),
        no_index=bool(idx.get("no-index", False)),
    ).anchored(path.parent)
    torch_index = data.get("torch-index", DEFAULT_TORCH_INDEX)
    if not isinstance(torch_index, str):
        raise InputError("torch-index must be a string", path=path)
    verify = data.get("verify", True)
    if not isinstance(verify, bool):
        raise InputError("verify must be true or false", path=path)
    timeout = data.get("verify-timeout", 300.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise InputError("verify-timeout must be a positive number of seconds", path=path)
    backend = data.get("torch-backend")
    if backend is not None and not isinstance(backend, str):
        raise InputError("torch-backend must be a string", path=path)
    if backend is not None:
        from comfylock.resolve.torch_backend import check

        try:
            check(backend, "torch-backend")
        except InputError as e:
            raise InputError(e.message, path=path, hint=e.hint) from None
    sha = hashlib.sha256(raw).hexdigest()
    return Config(nodes, frozenset(skip), index, torch_index, path, sha, verify, float(timeout), backend)
