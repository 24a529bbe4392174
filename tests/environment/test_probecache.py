"""The target interpreter's answer is reused only while everything it came from is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import age, install, uv
from wheels import make_wheel

from comfylock._names import canon
from comfylock.environment.probe import probe_target, remember


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


def test_an_install_is_seen_without_running_the_target_again(venv, tmp_path, monkeypatch):
    """What is installed is read from the folders each time; only the interpreter's facts are kept."""
    cache = tmp_path / "cache.json"
    age(venv)
    remember(probe_target(venv, cache))
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "gamma", "1.0")
    install(venv, wheels, "gamma==1.0")
    with monkeypatch.context() as m:
        no_subprocess(m)
        target = probe_target(venv, cache)
    assert target.installed.get("gamma") == "1.0" and target.frozen == ("gamma==1.0",)
    assert target == probe_target(venv)  # the same answer as running the target


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


# --- the environment read once: the probe's freeze -----------------------------------------------


def uv_freeze(venv: Path) -> list[str]:
    out = uv("pip", "freeze", "--python", str(venv))
    return sorted(f"{canon(line.split('==')[0])}=={line.split('==')[1]}" for line in out.split())


def test_probe_freeze_is_what_uv_pip_freeze_says(venv, tmp_path):
    wheels = tmp_path / "wheels"
    for name, version in [("Gamma_Pkg", "1.0"), ("delta", "2.0rc1"), ("torchlike", "2.5.1+cu124")]:
        make_wheel(wheels, name, version)
    install(venv, wheels, "gamma-pkg==1.0", "delta==2.0rc1", "torchlike==2.5.1+cu124")
    frozen = probe_target(venv).frozen
    assert frozen is not None and list(frozen) == uv_freeze(venv)
    assert "gamma-pkg==1.0" in frozen and "torchlike==2.5.1+cu124" in frozen


def test_probe_leaves_freeze_to_uv_for_what_a_plain_pin_cannot_say(venv, tmp_path):
    """A direct URL (or VCS, or editable) install has a direct_url.json: only uv renders it."""
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "gamma", "1.0")
    install(venv, wheels, "gamma==1.0")
    assert probe_target(venv).frozen == ("gamma==1.0",)
    wheel = next(wheels.glob("gamma-*.whl"))
    uv("pip", "install", "-q", "--reinstall", "--python", str(venv), str(wheel))
    assert probe_target(venv).frozen is None


def test_probe_leaves_freeze_to_uv_for_a_torn_or_legacy_install(venv, tmp_path):
    site = next(p for p in venv.parent.parent.rglob("site-packages") if p.is_dir())
    (site / "gamma-1.0.dist-info").mkdir()
    (site / "gamma-2.0.dist-info").mkdir()  # two versions of one name: a killed upgrade
    assert probe_target(venv).frozen is None
    for d in ("gamma-1.0.dist-info", "gamma-2.0.dist-info"):
        (site / d).rmdir()
    (site / "old-0.9-py3.11.egg-info").mkdir()
    assert probe_target(venv).frozen is None


def test_a_pth_file_edited_in_place_makes_it_probe_again(venv, tmp_path):
    """Rewriting a .pth keeps site-packages' entries, so its mtime: the file's own stamp counts."""
    site = next(p for p in venv.parent.parent.rglob("site-packages") if p.is_dir())
    extra, then = tmp_path / "extra", time.time() - 60
    extra.mkdir()
    (site / "extra.pth").write_text(str(tmp_path / "elsewhere") + "\n")
    os.utime(site / "extra.pth", (then, then))
    age(venv)
    cache = tmp_path / "cache.json"
    remember(probe_target(venv, cache))
    (site / "extra.pth").write_text(str(extra) + "\n")
    os.utime(site, (then, then))
    assert str(extra) in probe_target(venv, cache).paths


def test_a_missing_sys_path_folder_that_appears_makes_it_probe_again(venv, tmp_path, monkeypatch):
    site = next(p for p in venv.parent.parent.rglob("site-packages") if p.is_dir())
    later, then = tmp_path / "later", time.time() - 60
    (site / "later.pth").write_text(str(later) + "\n")
    os.utime(site / "later.pth", (then, then))
    age(venv)
    cache = tmp_path / "cache.json"
    remember(probe_target(venv, cache))
    with monkeypatch.context() as m:
        no_subprocess(m)
        probe_target(venv, cache)  # unchanged: the cached answer
    later.mkdir()  # site.py adds a .pth line only when it exists: now sys.path has one more folder
    assert str(later) in probe_target(venv, cache).paths
