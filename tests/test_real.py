"""Against PyPI and the real corpus: skipped when either is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import CORPUS

from comfylock.cli.main import main
from comfylock.lockfile.lock import read_lock

pytestmark = pytest.mark.pypi


@pytest.mark.corpus
def test_corpus_compiles_against_pypi(tmp_path, pypi_env, capsys):
    lock = tmp_path / "corpus.lock"
    code = main(
        [
            "compile",
            "--comfyui",
            str(CORPUS),
            "--python",
            sys.executable,
            "--lock",
            str(lock),
            "--python-version",
            "3.11",
            "--python-platform",
            "x86_64-unknown-linux-gnu",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    pins = read_lock(lock).by_name()
    assert len(pins) > 150
    # One OpenCV and one ONNX Runtime, whatever the nodes asked for (the default policy).
    assert len([n for n in pins if n.startswith("opencv")]) == 1
    assert len([n for n in pins if n.startswith("onnxruntime")]) == 1
    assert {r.node for r in pins["numpy"].requested_by} >= {"core", "ComfyUI-Impact-Pack"}


def test_comfylock_survives_sync_of_its_own_environment(tmp_path, pypi_env):
    """comfylock installed in a venv, syncing that same venv to a lock that does not list it."""
    env = tmp_path / "own"
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(env)], check=True
    )
    py = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", str(py), str(repo)], check=True
    )
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "requirements.txt").write_text("six\n")
    clean = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    for args in (["compile"], ["sync"], ["check"], ["--version"]):
        cmd = [str(py), "-m", "comfylock", *args]
        if args != ["--version"]:
            cmd += ["--comfyui", str(root)]  # no --python: the target is comfylock's own interpreter
        proc = subprocess.run(cmd, capture_output=True, text=True, env=clean)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert shutil.which("comfylock", path=str(py.parent))
    assert "six" in read_lock(root / "comfylock.lock").by_name()
