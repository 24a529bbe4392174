"""What a Python environment holds, read from its folders alone (no import, no metadata library).

This file is also the first half of the script comfylock runs inside the target interpreter (see
_probe_script), so it keeps to Python 3.8 and the standard library and defines only functions. Once
the target has said what its sys.path and own site folders are, comfylock runs `scan` itself: an
install changes what is in the folders, not where they are, so no new run of the target is needed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

# PEP 440's normal form, as installers name a .dist-info folder and uv writes a pin. [0-9], not \d:
# packaging refuses digits other than ASCII ones. This and `canonical` are comfylock._names's too,
# spelled again because this file must stand alone; tests/test_layout.py keeps the two alike.
NORMAL_VERSION = re.compile(
    "(?:[0-9]+!)?[0-9]+(?:[.][0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:[.]post[0-9]+)?(?:[.]dev[0-9]+)?"
    "(?:[+][a-z0-9]+(?:[.][a-z0-9]+)*)?"
)


_SEPARATORS = re.compile(r"[-_.]+")


def canonical(name: str) -> str:
    """PEP 503's normal form, as packaging's canonicalize_name gives it (here too, standalone)."""
    return _SEPARATORS.sub("-", name).lower()


def _read_name_version(folder: str, entry: str) -> tuple[str, str]:
    fields: dict[str, str] = {}
    for meta in ("METADATA", "PKG-INFO"):
        try:
            with open(os.path.join(folder, entry, meta), encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.strip():
                        break
                    key, _, value = line.partition(":")
                    fields.setdefault(key.strip(), value.strip())
            break
        except OSError:
            continue
    return fields.get("Name", ""), fields.get("Version", "")


def _lister() -> Callable[[str], list[str] | None]:
    """os.listdir, sorted, once per folder per scan (the own folders are on sys.path too)."""
    seen: dict[str, list[str] | None] = {}

    def listing(folder: str) -> list[str] | None:
        if folder not in seen:
            try:
                seen[folder] = sorted(os.listdir(folder))
            except OSError:
                seen[folder] = None
        return seen[folder]

    return listing


def _installed(
    paths: list[str], listing: Callable[[str], list[str] | None]
) -> tuple[dict[str, str], list[str]]:
    """Distributions from their *.dist-info / *.egg-info folder names, the first on sys.path winning as
    it does for import, and the folders that could be listed. Only a name without a version is opened:
    importlib.metadata, parsing every METADATA file, costs more than the rest of a no-op compile."""
    installed: dict[str, str] = {}
    listed: list[str] = []
    for folder in paths:
        entries = listing(folder)
        if entries is None:
            continue
        listed.append(folder)
        for entry in entries:
            stem, _, kind = entry.rpartition(".")
            if kind not in ("dist-info", "egg-info"):
                continue
            name, _, rest = stem.partition("-")
            version = rest.split("-")[0]
            if not version:
                name, version = _read_name_version(folder, entry)
            if name and version:
                installed.setdefault(canonical(name), version)
    return installed, listed


def _frozen(
    own: list[str], direct: dict[str, dict[str, object]], listing: Callable[[str], list[str] | None]
) -> list[str] | None:
    """`uv pip freeze`'s lines for the environment's own folders (where uv installs, and what it lists)
    when every distribution there is a plain registry install; None when a line would have to say more
    (a URL, VCS or editable install, a legacy egg, two versions of one name, an odd version)."""
    frozen: list[str] = []
    names: set[str] = set()
    for folder in own:
        entries = listing(folder) or []
        for entry in entries:
            stem, _, kind = entry.rpartition(".")
            if kind in ("egg-link", "egg-info") or entry.startswith("__editable__"):
                return None
            if kind != "dist-info":
                continue
            name, _, version = stem.partition("-")
            name = canonical(name)
            if not NORMAL_VERSION.fullmatch(version) or name in names or name in direct:
                return None
            names.add(name)
            frozen.append(name + "==" + version)
    return sorted(frozen)


def _direct(own: list[str], listing: Callable[[str], list[str] | None]) -> dict[str, dict[str, object]]:
    """{name: what its direct_url.json (PEP 610) says} for the URL, VCS and local-path installs in the
    environment's own folders: a registry pin of the same version is not them (uv keeps them then)."""
    out: dict[str, dict[str, object]] = {}
    for folder in own:
        entries = listing(folder) or []
        for entry in entries:
            stem, _, kind = entry.rpartition(".")
            if kind != "dist-info":
                continue
            try:
                with open(os.path.join(folder, entry, "direct_url.json"), encoding="utf-8") as f:
                    data = json.loads(f.read(1 << 16))
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or not isinstance(data.get("url"), str):
                continue
            vcs = data.get("vcs_info") if isinstance(data.get("vcs_info"), dict) else {}
            folder_info = data.get("dir_info") if isinstance(data.get("dir_info"), dict) else {}
            out.setdefault(
                canonical(stem.partition("-")[0]),
                {
                    "url": data["url"],
                    "editable": folder_info.get("editable") is True,
                    "vcs": str(vcs.get("vcs", "")),
                    "commit": str(vcs.get("commit_id", "")),
                    "revision": str(vcs.get("requested_revision", "")),
                },
            )
    return out


def _egg_version(project: str, name: str, listing: Callable[[str], list[str] | None]) -> str:
    for info in listing(project) or []:
        stem, _, kind = info.rpartition(".")
        if kind == "egg-info" and canonical(stem.partition("-")[0]) == name:
            return _read_name_version(project, info)[1]
    return ""


def _egg_links(
    own: list[str], listing: Callable[[str], list[str] | None]
) -> dict[str, tuple[str, dict[str, object]]]:
    """{name: (version, info)} of legacy editable installs (`setup.py develop`): a NAME.egg-link file in
    an own folder naming the project folder, whose NAME.egg-info holds the version. uv lists them
    (`-e PATH`) and a sync removes them like any other package, so they are the environment's."""
    out: dict[str, tuple[str, dict[str, object]]] = {}
    for folder in own:
        for entry in listing(folder) or []:
            stem, _, kind = entry.rpartition(".")
            if kind != "egg-link":
                continue
            try:
                with open(os.path.join(folder, entry), encoding="utf-8", errors="replace") as f:
                    project = os.path.join(folder, f.read(4096).splitlines()[0].strip())
            except (OSError, IndexError):
                continue
            name = canonical(stem)
            version = _egg_version(project, name, listing)
            if version:
                path = os.path.normpath(project)
                url = "file://" + ("" if path.startswith("/") else "/") + path.replace(os.sep, "/")
                out.setdefault(name, (version, {"url": url, "path": path, "editable": True}))
    return out


def scan(paths: list[str], own: list[str]) -> dict[str, object]:
    """What an environment whose sys.path is `paths` (absolute) and whose own site folders are `own`
    holds. `installed`, `direct`, `site_dirs` and `frozen` are its own folders alone: what `uv pip sync`
    and `uv pip freeze` act on and list. A folder a .pth file lists, the base interpreter's site under
    --system-site-packages or a user site is someone else's; it shows in `visible` (what the target
    can import, which policies read) only."""
    listing = _lister()
    installed, listed = _installed(own, listing)
    visible, _ = _installed(paths, listing)
    direct = _direct(own, listing)
    for name, (version, info) in _egg_links(own, listing).items():
        installed.setdefault(name, version)
        direct.setdefault(name, info)
    return {
        "installed": installed,
        "visible": visible,
        "direct": direct,
        "site_dirs": listed,
        "frozen": _frozen(own, direct, listing),
    }
