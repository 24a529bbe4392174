"""What verify found, kept per environment state, and what a sync changed that broke a node.

A result is stored under a digest of the installed packages (`user/comfylock/verify/<digest>.json`),
so the next sync knows which nodes loaded before it; the result of the state a history entry records
is also kept beside the entry (`history/NNNN.verify.json`). Everything here but save/load is pure.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from comfylock._fs import atomic_write
from comfylock._names import canon
from comfylock.lockfile.lock import Change
from comfylock.verify.loader import NodeResult, VerifyResult

# Import names that differ from the distribution that provides them (the common ones in ComfyUI nodes).
PROVIDERS = {
    "cv2": "opencv-contrib-python-headless",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "dateutil": "python-dateutil",
    "google.protobuf": "protobuf",
    "bs4": "beautifulsoup4",
    "fitz": "pymupdf",
    "git": "gitpython",
    "jwt": "pyjwt",
    "Crypto": "pycryptodome",
    "websocket": "websocket-client",
    "dotenv": "python-dotenv",
    "attr": "attrs",
    "serial": "pyserial",
    "magic": "python-magic",
    "onnxruntime": "onnxruntime",
    "mediapipe": "mediapipe",
    "insightface": "insightface",
    "rembg": "rembg[cpu]",
    "torchvision": "torchvision",
    "torchaudio": "torchaudio",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "omegaconf": "omegaconf",
    "huggingface_hub": "huggingface-hub",
}


def provider(module: str) -> str | None:
    """The requirement that provides `module` (a dotted import name), where it is known."""
    top = module.split(".")[0]
    return PROVIDERS.get(module) or PROVIDERS.get(top)


def state_key(installed: Mapping[str, str]) -> str:
    """A digest of an environment's packages: equal for the same names and versions."""
    text = "\n".join(f"{canon(n)}=={v}" for n, v in sorted(installed.items(), key=lambda kv: canon(kv[0])))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _dir(user_dir: Path) -> Path:
    return user_dir / "verify"


def save(user_dir: Path, key: str, result: VerifyResult) -> Path:
    """Keep `result` for the environment state `key` (state_key)."""
    return _write(_dir(user_dir) / f"{key}.json", result)


def _write(path: Path, result: VerifyResult) -> Path:
    atomic_write(path, json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def load(path: Path) -> VerifyResult | None:
    """A stored result; None when absent or unreadable (a baseline is a help, never a requirement)."""
    try:
        return VerifyResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_state(user_dir: Path, key: str) -> VerifyResult | None:
    return load(_dir(user_dir) / f"{key}.json")


def attach(entry_path: Path, result: VerifyResult) -> Path:
    """Keep `result` beside the history entry recording the same state."""
    return _write(entry_path.with_suffix(".verify.json"), result)


def of_entry(entry_path: Path) -> VerifyResult | None:
    return load(entry_path.with_suffix(".verify.json"))


@dataclass(frozen=True)
class Regression:
    node: str
    error: str
    blamed: tuple[str, ...]  # packages this sync changed that its traceback names (else all changes)
    named: bool  # True when the traceback named them; False: every change is listed


# Stands for "ComfyUI itself" when it started before a sync and does not after.
CORE = "ComfyUI"


def regressions(
    before: VerifyResult | None, after: VerifyResult, changes: Sequence[Change]
) -> list[Regression]:
    """Nodes that loaded before and fail now (or ComfyUI that started before and does not now).
    Without a baseline nothing is a regression: the first verify only reports."""
    if before is None:
        return []
    out = []
    if before.started and not after.started and not after.failed:
        out.append(_blame(NodeResult(CORE, False, error=after.error or "did not start"), after, changes))
    for node in after.failed:
        was = before.node(node.name)
        if was is not None and was.loaded:
            out.append(_blame(node, after, changes))
    return out


def _blame(node: NodeResult, after: VerifyResult, changes: Sequence[Change]) -> Regression:
    text = node.traceback or node.error or ""
    if node.name == CORE:
        text = after.output or text
    names = [c.name for c in changes if _mentions(text, c.name)]
    error = node.error or "import failed"
    return Regression(node.name, error, tuple(names or (c.name for c in changes)), bool(names))


def _mentions(text: str, name: str) -> bool:
    """Whether a traceback mentions a package: its import name (underscored) as a path part, a module or
    a word. Dist names with dashes are imported with underscores; `opencv-*` is `cv2` (PROVIDERS)."""
    candidates = {
        name,
        name.replace("-", "_"),
        *(m for m, d in PROVIDERS.items() if canon(d.split("[")[0]) == name),
    }
    for c in candidates:
        if re.search(rf"(?<![\w.-]){re.escape(c.split('.')[0])}(?![\w-])", text, re.IGNORECASE):
            return True
    return False
