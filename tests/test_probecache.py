"""The target interpreter's answer is reused only while everything it came from is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import install
from wheels import make_wheel

from comfylock.workspace import probe_target, remember


def age(venv_python: Path, seconds: float = 60) -> None:
    """Make the interpreter, pyvenv.cfg and site folders look untouched for a while."""
    venv = venv_python.parent.parent
    then = time.time() - seconds
    paths = [venv / "pyvenv.cfg", *venv.glob("lib*/python*/site-packages"), *venv.glob("Lib/site-packages")]
    if not venv_python.is_symlink():  # a copy (Windows); never touch the base interpreter a link points to
        paths.append(venv_python)
    for p in paths:
        os.utime(p, (then, then))


def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the target was run although its answer was cached")

    monkeypatch.setattr(subprocess, "run", refuse)


def test_answer_is_reused_while_nothing_changed(venv, tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    age(venv)
    first = probe_target(venv, cache)
    assert first.fresh is not None and not cache.exists()  # stored only once the command succeeded
    remember(first)
    assert cache.exists()
    with monkeypatch.context() as m:
        no_subprocess(m)
        again = probe_target(venv, cache)
    assert again == first and again.site_dirs == first.site_dirs and again.fresh is None


def test_an_install_makes_it_probe_again(venv, tmp_path, monkeypatch):
    cache = tmp_path / "cache.json"
    age(venv)
    remember(probe_target(venv, cache))
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "gamma", "1.0")
    install(venv, wheels, "gamma==1.0")  # a new .dist-info folder: site-packages' mtime moves
    assert probe_target(venv, cache).installed.get("gamma") == "1.0"


def test_a_just_changed_environment_is_not_stored(venv, tmp_path):
    # Changed within the clock's granularity of the probe: a later change could keep the same mtime.
    cache = tmp_path / "cache.json"
    target = probe_target(venv, cache)  # the venv was created a moment ago
    assert target.fresh is None
    remember(target)
    assert not cache.exists()


@pytest.mark.parametrize("junk", ["{not json", "[]", '{"%s": 1}', '{"%s": {"key": {}, "answer": "x"}}'])
def test_damaged_cache_probes_again(venv, tmp_path, junk):
    cache = tmp_path / "cache.json"
    cache.write_text(junk.replace("%s", json.dumps(str(venv))[1:-1]))
    assert probe_target(venv, cache).version


def test_another_interpreter_has_its_own_entry(venv, tmp_path, monkeypatch):
    other = tmp_path / "other"
    subprocess.run([sys.executable, "-m", "uv", "venv", "--quiet", str(other)], check=True)
    other_py = next(p for p in (other / "bin" / "python", other / "Scripts" / "python.exe") if p.exists())
    cache = tmp_path / "cache.json"
    age(venv)
    age(other_py)
    remember(probe_target(venv, cache))
    remember(probe_target(other_py, cache))
    no_subprocess(monkeypatch)
    assert probe_target(other_py, cache).python == other_py
    assert probe_target(venv, cache).python == venv
