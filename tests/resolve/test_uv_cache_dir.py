"""uv's cache folder found without running uv where uv's storage reference says it is, and uv asked
otherwise; both give what `uv cache dir` says."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from comfylock.resolve import uv as resolve


def test_cache_dir_agrees_with_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c" / "archive-v0").mkdir(parents=True)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "c"))
    resolve.cache_dir.cache_clear()  # one answer a process
    said = subprocess.run([resolve.uv_bin(), "cache", "dir"], capture_output=True, text=True, check=True)
    assert resolve.cache_dir() == Path(said.stdout.strip()) == tmp_path / "c"
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty"))  # no archive: uv is asked
    resolve.cache_dir.cache_clear()
    assert resolve.cache_dir() == tmp_path / "empty"
    resolve.cache_dir.cache_clear()


@pytest.mark.skipif(os.name == "nt", reason="the POSIX defaults")
def test_default_cache_dir_follows_uvs_storage_reference() -> None:
    d = resolve._default_cache_dir
    assert d({"UV_CACHE_DIR": "/u", "XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/u")
    assert d({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/uv")
    assert d({"HOME": "/h"}) == Path("/h/.cache/uv")
    assert d({"UV_CACHE_DIR": "relative"}) is None  # uv reads it against its own folder
