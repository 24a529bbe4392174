"""PEP 751 `pylock.<name>.toml`: writing a lock as one and reading one back as a Lock.

A pylock is written by uv (`uv pip compile --no-deps` over the lock's pins), so its `[[packages]]` are
what uv itself would install; comfylock's own data (provenance, policy actions, node commits,
fingerprint) travels under `[tool.comfylock]`, written with tomli-w and appended as a new table so uv's
text is kept byte for byte.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from comfylock._exceptions import InputError, LockFileError, UvError
from comfylock._fs import BIG_BYTES, atomic_write, read_bytes
from comfylock._names import canon
from comfylock._redact import strip_text
from comfylock.lockfile.lock import FORMAT_VERSION, Lock, Pin, Request, format_body
from comfylock.resolve import uv as resolve
from comfylock.resolve.index import IndexOptions
from comfylock.workspace.config import toml

_EMPTY_PYLOCK = 'lock-version = "1.0"\ncreated-by = "comfylock"\npackages = []\n'
# PEP 751: `pylock.toml` or `pylock.<name>.toml`, where <name> has no dots (uv refuses anything else).
_PYLOCK_NAME = re.compile(r"^pylock(?:\.(?P<name>[^.\\/]+))?\.toml$")
_LIST_KEYS = {"node": "nodes", "policy": "policy", "warning": "warnings"}


@dataclass(frozen=True)
class ExportResult:
    format: str
    path: Path | None  # None: the text went to the caller (stdout)
    packages: int
    text: str
    notes: tuple[str, ...] = ()  # what the format could not carry


# --- pylock: writing -----------------------------------------------------------------------------


def check_pylock_name(path: Path) -> None:
    if not _PYLOCK_NAME.match(path.name):
        raise InputError(
            f"{path.name!r} is not a pylock file name",
            path=path,
            hint="PEP 751 allows `pylock.toml` or `pylock.NAME.toml` with no dots in NAME",
        )


def default_pylock_path(lock_path: Path) -> Path:
    """`comfylock.lock` -> `pylock.comfylock.toml`, beside the lock."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", lock_path.stem).strip("-") or "comfylock"
    return lock_path.with_name(f"pylock.{name}.toml")


def comfylock_table(the_lock: Lock, source: str) -> dict[str, Any]:
    """`[tool.comfylock]`: everything in the lock that PEP 751's own fields cannot hold."""
    body = strip_text(format_body(the_lock.pins, the_lock.options))
    table: dict[str, Any] = {
        "lock-format": FORMAT_VERSION,
        "source": source,
        "body-sha256": hashlib.sha256(body.encode()).hexdigest(),
        "options": list(the_lock.options),
        "meta": {
            k: v for k, v in sorted(the_lock.meta.items()) if k not in ("body-sha256", "comfylock-lock")
        },
    }
    for key, name in _LIST_KEYS.items():
        table[name] = list(the_lock.lists.get(key, ()))
    packages: dict[str, Any] = {}
    for pin in the_lock.pins:
        entry: dict[str, Any] = {"spec": pin.spec}
        if pin.requested_by:
            entry["requested-by"] = [_request_table(r) for r in pin.requested_by]
        if pin.needed_by:
            entry["needed-by"] = list(pin.needed_by)
        packages[pin.name] = entry
    table["packages"] = packages
    return table


def _lock_python_version(the_lock: Lock) -> str | None:
    m = re.match(r"\s*(\d+\.\d+(?:\.\d+)?)", the_lock.meta.get("python", ""))
    return m.group(1) if m else None


def _pylock_target_args(the_lock: Lock, python: Path | None) -> list[str]:
    version = the_lock.meta.get("target-python-version")
    platform = the_lock.meta.get("target-python-platform")
    if not (version or platform):
        return ["--python", str(python)] if python is not None else []
    version = version or _lock_python_version(the_lock)
    args = ["--python-version", version] if version else []
    return args + (["--python-platform", platform] if platform else [])


def export_pylock(
    the_lock: Lock,
    out: Path,
    *,
    python: Path | None = None,
    index: IndexOptions | None = None,
    source: str = "comfylock.lock",
    cwd: Path | None = None,
) -> ExportResult:
    """Write `out` (a PEP 751 pylock) for the lock's pins, for the lock's target (a cross-compiled
    lock's --python-version/--python-platform, else the `python` interpreter). uv's cache answers
    first; the index is asked only when the cache cannot."""
    tomllib = toml()
    import tomli_w

    out = out.absolute()
    check_pylock_name(out)
    index = index or IndexOptions.from_lines(the_lock.options)
    out.parent.mkdir(parents=True, exist_ok=True)
    # uv writes paths relative to its output file, so it writes into the destination folder (under a
    # temporary pylock name of its own) rather than into a temp folder the result is later moved from.
    text = _EMPTY_PYLOCK
    if the_lock.pins:  # uv refuses to compile nothing
        pins = "".join(f"{p.spec}\n" for p in the_lock.pins)
        text = resolve.pylock(pins, out, _pylock_target_args(the_lock, python), index, cwd=cwd)
    _check_packages(text, the_lock, out)
    extra = tomli_w.dumps({"tool": {"comfylock": comfylock_table(the_lock, source)}})
    full = (
        f"# Exported by comfylock from {source}: `comfylock sync --lock {out.name}` "
        f"or `uv pip sync {out.name}` installs it.\n" + text.rstrip("\n") + "\n\n" + extra
    )
    full = strip_text(full)  # as in the lock itself: credentials in URLs never reach a shared file
    tomllib.loads(full)  # the appended table must leave a valid document; a bug here must not ship
    atomic_write(out, full)
    return ExportResult("pylock", out, len(the_lock.pins), full)


def _check_packages(text: str, the_lock: Lock, out: Path) -> None:
    tomllib = toml()
    names = {canon(p.get("name", "")) for p in tomllib.loads(text).get("packages", [])}
    missing = sorted(set(the_lock.by_name()) - names)
    if missing:
        raise UvError(f"uv left {', '.join(missing[:5])} out of the pylock", path=out)


# --- pylock: reading -----------------------------------------------------------------------------


def read_pylock(path: Path, environment: Mapping[str, str] | None = None) -> Lock:
    """A pylock as a Lock: `[[packages]]` become pins (packages whose `marker` does not hold in
    `environment`, default this interpreter, are left out) and `[tool.comfylock]`, when present, gives
    back provenance, header keys and index options. Without it, local wheel folders become
    --find-links; everything else comes from the configured index at sync time."""
    tomllib = toml()
    try:
        text = read_bytes(path, BIG_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise LockFileError("no pylock file", path=path) from None
    except InputError as e:
        raise LockFileError(e.message, path=path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise LockFileError(f"cannot read pylock file: {e}", path=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LockFileError(f"invalid TOML: {e}", path=path) from None
    except RecursionError:
        raise LockFileError("TOML nested too deeply to be a pylock", path=path, line=1) from None
    version = str(data.get("lock-version", ""))
    if not version.startswith("1."):
        raise LockFileError(
            f"lock-version {version or 'missing'!r} is not a PEP 751 version this comfylock reads (1.x)",
            path=path,
        )
    tool = _table(data.get("tool", {}), "tool", path).get("comfylock", {})
    tool = _table(tool, "tool.comfylock", path)
    known = _table(tool.get("packages", {}), "tool.comfylock.packages", path)
    raw = data.get("packages", [])
    if not isinstance(raw, list):
        raise LockFileError("packages must be an array of tables", path=path)
    pins: dict[str, Pin] = {}
    links: list[str] = []
    for i, pkg in enumerate(raw, start=1):
        pkg = _table(pkg, f"packages[{i}]", path)
        if not _marker_holds(pkg.get("marker"), environment, path):
            continue
        pin = _pin(pkg, known, path, i, links)
        if pin.name in pins:
            raise LockFileError(f"{pin.name} is listed twice for this environment", path=path)
        pins[pin.name] = pin
    options = tool.get("options")
    if not (isinstance(options, list) and all(isinstance(o, str) for o in options)):
        options = [f"--find-links {d}" for d in dict.fromkeys(links)]
    ordered = tuple(sorted(pins.values(), key=lambda p: p.name))
    meta = _strings(tool.get("meta", {}), "tool.comfylock.meta", path)
    if not tool:
        meta["source"] = f"pylock {path.name}"
    lists = {}
    for key, name in _LIST_KEYS.items():
        values = tool.get(name, [])
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            lists[key] = tuple(values)
    expected = tool.get("body-sha256")
    intact = expected is None or (
        hashlib.sha256(strip_text(format_body(ordered, options)).encode()).hexdigest() == expected
    )
    return Lock(pins=ordered, options=tuple(options), meta=meta, lists=lists, intact=intact)


def _table(value: Any, what: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise LockFileError(f"{what} must be a table", path=path)
    return value


def _list(value: Any, what: str, path: Path) -> list[Any]:
    if not isinstance(value, list):
        raise LockFileError(f"{what} must be an array", path=path)
    return value


def _strings(value: Any, what: str, path: Path) -> dict[str, str]:
    table = _table(value, what, path)
    return {str(k): str(v) for k, v in table.items() if isinstance(v, (str, int, float))}


def _marker_holds(marker: Any, environment: Mapping[str, str] | None, path: Path) -> bool:
    if marker is None:
        return True
    from packaging.markers import InvalidMarker, Marker

    try:
        return Marker(str(marker)).evaluate(dict(environment) if environment else None)
    except InvalidMarker as e:
        raise LockFileError(f"invalid marker {marker!r}: {e}", path=path) from None


def _file_url(location: str, base: Path) -> str:
    p = Path(location)
    return (p if p.is_absolute() else base / p).absolute().as_uri()


def _pin(pkg: dict[str, Any], known: dict[str, Any], path: Path, i: int, links: list[str]) -> Pin:
    from packaging.requirements import InvalidRequirement, Requirement

    name = pkg.get("name")
    if not isinstance(name, str) or not name:
        raise LockFileError(f"packages[{i}] has no name", path=path)
    cname = canon(name)
    version = pkg.get("version")
    base = path.parent.absolute()
    spec: str | None = None
    vcs, archive, directory = pkg.get("vcs"), pkg.get("archive"), pkg.get("directory")
    if isinstance(vcs, dict):
        url = vcs.get("url") or _file_url(str(vcs.get("path", "")), base)
        rev = vcs.get("commit-id") or vcs.get("requested-revision")
        spec = f"{cname} @ {vcs.get('type', 'git')}+{url}" + (f"@{rev}" if rev else "")
    elif isinstance(archive, dict):
        spec = f"{cname} @ " + (archive.get("url") or _file_url(str(archive.get("path", "")), base))
    elif isinstance(directory, dict):
        if directory.get("editable"):
            raise LockFileError(
                f"{cname} is an editable directory install, which a lock cannot pin", path=path
            )
        spec = f"{cname} @ {_file_url(str(directory.get('path', '')), base)}"
    elif isinstance(version, str) and version:
        spec = f"{cname}=={version}"
        for dist in [*_list(pkg.get("wheels", []), f"packages[{i}].wheels", path), pkg.get("sdist")]:
            url = dist.get("url", "") if isinstance(dist, dict) else ""
            url = url if isinstance(url, str) else ""
            if url.startswith("file:"):
                from urllib.request import url2pathname  # only here: it costs 20 ms to import

                links.append(str(Path(url2pathname(urlsplit(url).path)).parent))
            elif isinstance(dist, dict) and "path" in dist:
                links.append(str((base / str(dist["path"])).parent))
    if spec is None:
        raise LockFileError(f"{cname} has neither a version nor a source this comfylock can pin", path=path)
    entry = known.get(cname)
    entry = entry if isinstance(entry, dict) else {}
    spec = _original_spec(entry.get("spec"), spec, cname)
    where = f"tool.comfylock.packages.{cname}"
    asked = _list(entry.get("requested-by", []), f"{where}.requested-by", path)
    requests = tuple(_request(r) for r in asked if isinstance(r, dict))
    needers = _list(entry.get("needed-by", []), f"{where}.needed-by", path)
    needed = tuple(str(n) for n in needers if isinstance(n, str))
    try:
        Requirement(spec)
    except InvalidRequirement as e:
        raise LockFileError(f"packages[{i}]: not a valid pin {spec[:80]!r}: {e}", path=path) from None
    return Pin(cname, spec, requests, needed)


def _request_table(r: Request) -> dict[str, Any]:
    out: dict[str, Any] = {"node": r.node, "file": r.file, "line": r.line, "text": r.text}
    if r.rewritten is not None:  # the policy's rewrite of the line as written (see lock.Request)
        out["rewritten"] = r.rewritten
        out["policy"] = r.policy or ""
    return out


def _request(r: dict[str, Any]) -> Request:
    line = r.get("line")
    rewritten, policy = r.get("rewritten"), r.get("policy")
    return Request(
        str(r.get("node", "?")),
        str(r.get("file", "?")),
        line if isinstance(line, int) else 0,
        str(r.get("text", "")),
        rewritten if isinstance(rewritten, str) else None,
        policy if isinstance(policy, str) and isinstance(rewritten, str) else None,
    )


def _original_spec(original: Any, made: str, name: str) -> str:
    """comfylock's own spec text when it still says what `[[packages]]` says (a later edit of the
    version wins, and the body hash then marks the lock as edited)."""
    if not isinstance(original, str):
        return made
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        old, new = Requirement(original), Requirement(made)
    except InvalidRequirement:
        return made
    if canon(old.name) != name or (old.url is None) != (new.url is None):
        return made
    if old.url is not None:
        return original
    return original if str(old.specifier) == str(new.specifier) else made
