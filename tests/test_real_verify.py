"""A real ComfyUI (../shared/real/ComfyUI: 0.3.64 with four real nodes) compiled, synced and verified,
then a sync that breaks one node on purpose and is undone by itself.

Downloads several GB (PyPI's torch) unless uv's cache holds them: runs only with
COMFYLOCK_REAL_TESTS=1 (`make test-real`); UV_CACHE_DIR, when set, is the cache used (share one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import installed

from comfylock.cli.main import main

# ../shared beside the checkout (two levels up from a worktree under wt/).
_HERE = Path(__file__).resolve()
REAL = next(
    (
        p / "shared" / "real" / "ComfyUI"
        for p in _HERE.parents[2:4]
        if (p / "shared" / "real" / "ComfyUI").is_dir()
    ),
    _HERE.parents[2] / "shared" / "real" / "ComfyUI",
)

pytestmark = [
    pytest.mark.real,
    pytest.mark.pypi,
    pytest.mark.skipif(os.environ.get("COMFYLOCK_REAL_TESTS") != "1", reason="set COMFYLOCK_REAL_TESTS=1"),
    pytest.mark.skipif(not REAL.is_dir(), reason=f"no real ComfyUI at {REAL}"),
]

BREAK = {"kornia": {"apply_first_match": [{"type": "skip", "reason": "break ComfyUI_essentials on purpose"}]}}


def test_real_comfyui_verifies_and_a_breaking_sync_undoes_itself(tmp_path, capsys, monkeypatch):
    if os.environ.get("COMFYLOCK_REAL_CACHE"):
        monkeypatch.setenv("UV_CACHE_DIR", os.environ["COMFYLOCK_REAL_CACHE"])
    root = tmp_path / "ComfyUI"
    shutil.copytree(REAL, root, ignore=shutil.ignore_patterns("venv", ".venv", "user", "comfylock.lock"))
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(venv)], check=True
    )
    args = ["--comfyui", str(root), "--python", str(venv)]
    # This machine cannot reach download.pytorch.org: PyPI's torch, chosen on purpose.
    assert main(["compile", *args, "--torch-backend", "pypi"]) == 0
    assert main(["sync", *args]) == 0
    out = capsys.readouterr().out
    assert "5 of 5 custom nodes loaded" in out, out
    assert main(["verify", *args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["started"] and {n["node"] for n in doc["nodes"] if n["loaded"]} >= {
        "ComfyUI-KJNodes",
        "ComfyUI-VideoHelperSuite",
        "ComfyUI_essentials",
        "ComfyUI-Frame-Interpolation",
    }
    policy = tmp_path / "break.json"
    policy.write_text(json.dumps(BREAK))
    assert main(["compile", *args, "--policy", str(policy)]) == 0
    capsys.readouterr()
    assert main(["sync", *args]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: ComfyUI_essentials loaded before and fails now" in out
    assert "No module named 'kornia'" in out and "packages this change names: kornia" in out
    assert "kornia" in installed(venv)  # undone by itself
