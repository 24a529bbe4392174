"""Cache first: with a previous lock, compile asks uv's cache (--offline) and goes to the index only
when the cache cannot answer. The index here is a real HTTP server on the loopback address, so uv's
cache behaves as with PyPI (a --find-links folder on disk would always answer offline)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import LocalIndex
from wheels import make_wheel

from comfylock import api


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "served"
    folder.mkdir()
    served = LocalIndex(folder)
    try:
        yield served.root, folder
    finally:
        served.stop()


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))


def compile_(root: Path, venv: Path, url: str, **kw: object) -> api.CompileResult:
    ctx = api.Context.open(root, python=venv)
    return api.compile(ctx, index=api.IndexOptions(find_links=(url,), no_index=True), **kw)  # type: ignore[arg-type]


def test_cache_answers_and_gives_the_online_lock(comfy, venv, http_index, private_cache):
    url, folder = http_index
    for name, version, deps in [
        ("numpy", "1.26.4", []),
        ("scipy", "1.14.0", ["numpy"]),
        ("tqdm", "4.66.0", []),
    ]:
        make_wheel(folder, name, version, deps)
    root = comfy("scipy\n", {"A": {"requirements.txt": "tqdm\n"}})
    first = compile_(root, venv, url)
    assert not first.offline_first  # no previous lock: online
    (root / "requirements.txt").write_text("scipy\nnumpy>=1\n")
    cached = compile_(root, venv, url)
    assert cached.offline_first  # everything needed is in uv's cache
    cached_text = (root / "comfylock.lock").read_text()
    online = compile_(root, venv, url, refresh=True)  # the same inputs, from the index
    assert not online.offline_first
    assert (root / "comfylock.lock").read_text() == cached_text


def test_falls_back_online_when_the_cache_cannot_answer(comfy, venv, http_index, private_cache):
    url, folder = http_index
    make_wheel(folder, "tqdm", "4.66.0")
    make_wheel(folder, "pillow", "11.0.0")
    root = comfy("tqdm\n")
    compile_(root, venv, url)
    # A node asking for a package uv never fetched: the cache cannot answer, the index does.
    (root / "custom_nodes" / "B").mkdir()
    (root / "custom_nodes" / "B" / "requirements.txt").write_text("pillow\n")
    r = compile_(root, venv, url)
    assert not r.offline_first
    assert r.lock.by_name()["pillow"].version == "11.0.0"
