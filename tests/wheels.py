"""Tiny hand-written wheels for hermetic tests: a zip with METADATA, WHEEL, RECORD (about 1 ms each)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from collections.abc import Iterable
from pathlib import Path

_DATE = (2020, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    requires: Iterable[str] = (),
    *,
    top_level: str | None = None,
    tag: str = "py3-none-any",
    body: str | None = None,
) -> Path:
    """Write NAME-VERSION-TAG.whl into `folder`; byte-identical for the same arguments. `body`: the
    text of its module's __init__.py (default: only __version__)."""
    dist = name.replace("-", "_").replace(".", "_")
    info = f"{dist}-{version}.dist-info"
    module = top_level or dist.lower()
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{module}/__init__.py": (body if body is not None else f"__version__ = {version!r}\n").encode(),
        f"{info}/METADATA": meta.encode(),
        f"{info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: comfylock-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
        f"{info}/top_level.txt": f"{module}\n".encode(),
    }
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for p, d in files.items():
            z.writestr(zipfile.ZipInfo(p, _DATE), d)
    return path


def make_index(folder: Path, spec: dict[str, dict[str, Iterable[str]]]) -> Path:
    """`spec` = {name: {version: [requires...]}} -> a --find-links folder of wheels."""
    for name, versions in spec.items():
        for version, requires in versions.items():
            make_wheel(folder, name, version, requires)
    return folder
