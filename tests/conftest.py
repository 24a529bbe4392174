"""Hermetic set-up: real uv, a private cache, no config files, no network; wheels written per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import CORPUS, STANDARD
from wheels import make_index


def pytest_configure(config: pytest.Config) -> None:
    os.environ["UV_NO_CONFIG"] = "1"
    os.environ["UV_PYTHON_DOWNLOADS"] = "never"
    # A target without torch would have its build chosen from the PyTorch index (a network check);
    # hermetic tests take PyPI's unless they test that choice (tests/resolve/test_torch_backend.py).
    os.environ["COMFYLOCK_TORCH_BACKEND"] = "pypi"
    os.environ.pop("VIRTUAL_ENV", None)
    os.environ.pop("COMFYUI_PATH", None)


@pytest.fixture(scope="session", autouse=True)
def _uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("uv-cache")
    os.environ["UV_CACHE_DIR"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --find-links folder with the STANDARD wheels."""
    return make_index(tmp_path_factory.mktemp("wheels"), STANDARD)


@pytest.fixture
def comfy(tmp_path: Path) -> Callable[..., Path]:
    """make(core=..., nodes={name: {file: text}}) -> a ComfyUI folder."""

    def make(core: str = "", nodes: dict[str, dict[str, str]] | None = None) -> Path:
        root = tmp_path / "ComfyUI"
        (root / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (root / "main.py").write_text("")
        (root / "requirements.txt").write_text(core)
        for name, files in (nodes or {}).items():
            for fname, text in files.items():
                p = root / "custom_nodes" / name / fname
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(text)
        return root

    return make


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """An empty target virtual environment; returns its interpreter."""
    path = tmp_path / "target-venv"
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(path)], check=True
    )
    return path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _pypi_reachable() -> bool:
    if os.environ.get("COMFYLOCK_OFFLINE_TESTS") == "1":
        return False
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_pypi = [i for i in items if "pypi" in i.keywords]
    needs_corpus = [i for i in items if "corpus" in i.keywords]
    if needs_pypi and not _pypi_reachable():
        for item in needs_pypi:
            item.add_marker(pytest.mark.skip(reason="PyPI is not reachable"))
    if needs_corpus and not CORPUS.is_dir():
        for item in needs_corpus:
            item.add_marker(pytest.mark.skip(reason=f"no corpus at {CORPUS}"))


@pytest.fixture
def pypi_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """For PyPI tests: a cache shared by them (one download each), still private to this run."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "uv-cache-pypi"))
