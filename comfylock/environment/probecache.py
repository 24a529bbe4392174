"""The interpreter's part of the target's last answer, reused while nothing it came from changed.

Running the target costs 15-25 ms, as much as everything else in a no-op compile or sync. Its version,
platform, sys.path and own site folders depend only on the interpreter, pyvenv.cfg, .pth files and
which folders exist (see _key); what is installed is read from the folders afresh each time
(_envscan), so installing or removing packages never makes the answer stale. A file changed within
the last seconds may change again within the clock's granularity without its stamp moving, so an
answer read from such a file is not stored (git's "racy clean" rule).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from comfylock._exceptions import InputError
from comfylock._fs import read_bytes, read_json_dict, update_json_dict

_FORMAT = 4
_RACY_NS = 2_000_000_000  # coarse file system clocks (FAT: 2 s) and kernel timestamp caching


def _stamp(path: Path | str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    # ctime too: an edit that keeps the size and resets the mtime (touch -r, an archive extract)
    # still moves ctime, which no user call can set (uv keys its own interpreter cache on it).
    return [st.st_mtime_ns, st.st_size, st.st_ino, st.st_ctime_ns]


def _key(python: Path, script: str, facts: dict[str, Any]) -> dict[str, Any]:
    """Everything the interpreter's part of the answer came from. Stamped (their contents matter):
    the interpreter (a venv's link followed; on Windows also the base interpreter behind the
    launcher), pyvenv.cfg, every .pth/._pth file. Only whether it exists: each sys.path entry, each
    folder site.py would add once it exists, each folder a .pth file lists, and sitecustomize.py or
    usercustomize.py on sys.path, which may change sys.path. What is installed is not in the key: it
    is read afresh from the folders every time."""
    base = str(facts.get("base", ""))
    stamped = [str(python), str(python.parent / "pyvenv.cfg"), str(python.parent.parent / "pyvenv.cfg"), base]
    paths = [str(p) for p in facts.get("paths", ())]
    present = [*paths, *(str(c) for c in facts.get("candidates", ()))]
    for folder in {*paths, str(python.parent), str(Path(base).parent)}:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for pth in (os.path.join(folder, n) for n in names if n.endswith((".pth", "._pth"))):
            stamped.append(pth)
            present += _pth_folders(pth)
        present += [os.path.join(folder, n) for n in ("sitecustomize.py", "usercustomize.py")]
    machine = os.uname().machine if hasattr(os, "uname") else os.environ.get("PROCESSOR_ARCHITECTURE", "")
    return {
        "format": _FORMAT,
        "script": hashlib.sha256(script.encode()).hexdigest(),
        "machine": machine,  # an arm64 Mac running us under Rosetta gets x86_64 answers
        "stamps": {p: _stamp(p) for p in sorted(set(stamped))},
        "present": {p: os.path.exists(p) for p in sorted(set(present))},
    }


def _pth_folders(pth: str) -> list[str]:
    # site.py skips a listed folder that does not exist yet; once it does, sys.path changes.
    try:
        lines = [ln.strip() for ln in read_bytes(pth).decode("utf-8", errors="replace").splitlines()]
    except (OSError, InputError):
        return []
    base = os.path.dirname(pth)
    return [os.path.join(base, ln) for ln in lines if ln and not ln.startswith(("#", "import ", "import\t"))]


def load(cache: Path, python: Path, script: str) -> str | None:
    """The stored answer for `python` when every input it came from is unchanged, else None."""
    try:
        entry = read_json_dict(cache).get(str(python))
        answer = str(entry["answer"])
        if entry["key"] == _key(python, script, json.loads(answer)):
            return answer
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # absent, damaged or from another comfylock: probe again
    return None


def key_after_probe(python: Path, script: str, answer: str, started: int) -> dict[str, Any] | None:
    """The key of an answer just read, taken at once; None when an input changed shortly before the
    probe started (see above), so the answer must not be reused."""
    key = _key(python, script, json.loads(answer))
    if any(s is not None and s[0] > started - _RACY_NS for s in key["stamps"].values()):
        return None
    return key


def store(cache: Path, python: Path, key: dict[str, Any], answer: str) -> None:
    """Remember `answer` under `key` (from key_after_probe) for the next run."""
    update_json_dict(cache, str(python), {"key": key, "answer": answer})


def now_ns() -> int:
    return time.time_ns()
