"""The torch build for a target without torch: picked from the hardware (set by COMFYLOCK_TEST_GPU),
fetched from `<torch-index>/<backend>`, a local PEP 503 simple index of +cpu and +cu124 wheels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import install
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.lockfile.lock import read_lock
from comfylock.resolve import torch_backend as tb


def simple_index(root: Path, wheels: list[Path]) -> str:
    """A PEP 503 index at `root` (file:// URL) listing `wheels` under their project; `+` percent-encoded."""
    projects: dict[str, list[Path]] = {}
    for w in wheels:
        projects.setdefault(w.name.split("-")[0].replace("_", "-").lower(), []).append(w)
    root.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(projects))
    (root / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")
    for project, files in projects.items():
        (root / project).mkdir(exist_ok=True)
        # as_uri() percent-encodes the local label's `+` (%2B), as PEP 503 hrefs need
        rows = "".join(f'<a href="{f.as_uri()}">{f.name}</a>\n' for f in files)
        (root / project / "index.html").write_text(f"<html><body>\n{rows}</body></html>\n")
    return root.as_uri()


@pytest.fixture
def torch_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, Path]:
    """(torch-index base URL, empty default index URL, find-links folder with PyPI's plain torch).
    The suite's default backend (pypi, see conftest) is lifted: these tests are about the choice."""
    monkeypatch.delenv(tb.BACKEND_ENV, raising=False)
    builds = tmp_path / "builds"
    base = tmp_path / "torch-index"
    for label in ("cpu", "cu124"):
        wheel = make_wheel(builds / label, "torch", f"2.5.1+{label}", ["filelock"])
        simple_index(base / label, [wheel])
    plain = tmp_path / "pypi-wheels"
    make_wheel(plain, "torch", "2.5.1", ["filelock"])
    make_wheel(plain, "filelock", "3.16.1")
    empty = simple_index(tmp_path / "empty-index", [])
    return base.as_uri(), empty, plain


def compile_(root: Path, venv: Path, setup: tuple[str, str, Path], *args: str) -> int:
    base, empty, plain = setup
    cfg = root / "user" / "comfylock" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(f"torch-index = {base!r}\n")
    return main(
        [
            "compile",
            "--comfyui",
            str(root),
            "--python",
            str(venv),
            "--index-url",
            empty,
            "--find-links",
            str(plain),
            *args,
        ]
    )


@pytest.mark.parametrize(
    ("gpu", "build"), [("none", "cpu"), ("nvidia:12.4", "cu124"), ("nvidia:12.5", "cu124")]
)
def test_a_target_without_torch_gets_the_build_for_this_machine(
    comfy, venv, torch_setup, monkeypatch, gpu, build
):
    monkeypatch.setenv(tb.TEST_ENV, gpu)
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup) == 0
    lock = read_lock(root / "comfylock.lock")
    assert lock.by_name()["torch"].version == f"2.5.1+{build}"
    assert lock.meta["torch-backend"] == build
    assert f"{torch_setup[0]}/{build}" in (root / "comfylock.lock").read_text()


def test_explicit_backend_and_config_key_win_over_the_hardware(comfy, venv, torch_setup, monkeypatch, capsys):
    monkeypatch.setenv(tb.TEST_ENV, "nvidia:12.4")
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup, "--torch-backend", "cpu", "--json") == 0
    assert json.loads(capsys.readouterr().out)["torch_backend"] == "cpu"
    assert read_lock(root / "comfylock.lock").by_name()["torch"].version == "2.5.1+cpu"
    assert compile_(root, venv, torch_setup, "--torch-backend", "pypi") == 0
    lock = read_lock(root / "comfylock.lock")
    assert lock.by_name()["torch"].version == "2.5.1" and lock.meta["torch-backend"] == "pypi"


def test_an_installed_torch_is_kept_and_no_backend_is_chosen(comfy, venv, torch_setup, monkeypatch):
    monkeypatch.setenv(tb.TEST_ENV, "none")
    install(venv, torch_setup[2], "torch==2.5.1")
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup) == 0
    lock = read_lock(root / "comfylock.lock")
    assert lock.by_name()["torch"].version == "2.5.1" and "torch-backend" not in lock.meta


def test_an_unreachable_torch_index_falls_back_to_pypi_under_auto_and_fails_when_chosen(
    comfy, venv, torch_setup, monkeypatch, capsys
):
    monkeypatch.setenv(tb.TEST_ENV, "nvidia:12.8")  # cu128: the local index has no such folder
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup) == 0
    out = capsys.readouterr().out
    assert "cu128 cannot be reached" in out and "from PyPI" in out
    lock = read_lock(root / "comfylock.lock")
    assert lock.by_name()["torch"].version == "2.5.1" and lock.meta["torch-backend"] == "pypi"
    assert compile_(root, venv, torch_setup, "--torch-backend", "cu128") == 2
    err = capsys.readouterr().err
    assert "cu128 torch builds' index" in err and len(err.strip().splitlines()) == 1


def test_nothing_asks_for_torch_nothing_is_chosen(comfy, venv, torch_setup, monkeypatch):
    monkeypatch.setenv(tb.TEST_ENV, "none")
    root = comfy("filelock\n")
    assert compile_(root, venv, torch_setup) == 0
    assert "torch-backend" not in read_lock(root / "comfylock.lock").meta


def test_pick_and_driver_table():
    assert tb.pick("auto", tb.Hardware("none")) == "cpu"
    assert tb.pick("auto", tb.Hardware("nvidia", (12, 4))) == "cu124"
    assert tb.pick("auto", tb.Hardware("nvidia", (11, 4))) == "cpu"  # older than every CUDA build
    assert tb.pick("auto", tb.Hardware("rocm", (6, 2))) == "rocm6.2"
    assert tb.pick("auto", tb.Hardware("macos")) == "pypi"
    assert tb.pick("cu126", tb.Hardware("none")) == "cu126"
    assert tb.cuda_of_driver("550.54.14") == (12, 4)
    assert tb.cuda_of_driver("535.104.05") == (12, 1)
    assert tb.cuda_of_driver("470.1") is None
    assert tb.detect({tb.TEST_ENV: "rocm:6.2"}).kind == "rocm"


def test_bad_backend_names_are_refused(comfy, venv, torch_setup, capsys):
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup, "--torch-backend", "cuda12") == 2
    assert "unknown torch backend 'cuda12'" in capsys.readouterr().err
    (root / "user" / "comfylock" / "config.toml").write_text('torch-backend = "gpu"\n')
    assert main(["compile", "--comfyui", str(root), "--python", str(venv), "--no-index"]) == 2
    assert "config.toml" in capsys.readouterr().err


# --- what a sync is about to download -------------------------------------------------------------


def test_a_large_sync_says_how_much_and_cuda_on_a_machine_without_gpu_is_warned(
    comfy, venv, tmp_path, monkeypatch, capsys
):
    from comfylock.environment import download_size

    wheels = tmp_path / "big-wheels"
    make_wheel(wheels, "nvidia-cublas-cu12", "12.4.5.8")
    make_wheel(wheels, "small", "1.0")
    monkeypatch.setattr(download_size, "THRESHOLD", 1)  # the hand-made wheels are a few hundred bytes
    monkeypatch.setenv(tb.TEST_ENV, "none")
    root = comfy("nvidia-cublas-cu12\nsmall\n")
    args = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["compile", *args, "--no-index", "--find-links", str(wheels)]) == 0
    capsys.readouterr()
    assert main(["sync", *args]) == 0
    out = capsys.readouterr().out
    assert "note: this sync downloads about" in out and "largest: nvidia-cublas-cu12" in out
    assert "1 CUDA package is about to be installed on a machine with no NVIDIA GPU" in out
    assert out.index("note: this sync") < out.index("sync: changed")  # said before, not after


def test_cuda_warning_and_wheel_choice_are_pure():
    from comfylock.environment.download_size import cuda_warning, pick_size
    from comfylock.lockfile.lock import Change

    changes = [Change("torch", None, "2.5.1+cu124"), Change("numpy", None, "2.1.0")]
    assert "torch 2.5.1+cu124" in (cuda_warning(changes, has_nvidia=False) or "")
    assert cuda_warning(changes, has_nvidia=True) is None
    # NVML's bindings are no CUDA library: installed on any machine, never warned about
    assert cuda_warning([Change("nvidia-ml-py", None, "13.615.71")], has_nvidia=False) is None
    files = [
        ("torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl", 900),
        ("torch-2.5.1-cp311-cp311-win_amd64.whl", 500),
        ("torch-2.5.1-cp312-cp312-manylinux1_x86_64.whl", 950),
        ("torch-2.6.0-cp311-cp311-manylinux1_x86_64.whl", 999),
    ]
    assert pick_size(files, "2.5.1", "cp311", "linux", "x86_64") == 900
    assert pick_size(files, "2.5.1", "cp311", "win32", "AMD64") == 500


def test_the_chosen_build_stays_chosen_once_synced(comfy, venv, torch_setup, monkeypatch, capsys):
    """After a sync installs the chosen +cpu build, the target has torch: compiling again keeps the
    choice and its index, so the lock is byte-identical, `up to date`, and `check` is clean."""
    monkeypatch.setenv(tb.TEST_ENV, "none")
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup) == 0
    first = (root / "comfylock.lock").read_bytes()
    base, empty, plain = torch_setup
    where = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["sync", *where, "--no-verify"]) == 0
    capsys.readouterr()
    assert compile_(root, venv, torch_setup) == 0
    assert "up to date" in capsys.readouterr().out
    assert (root / "comfylock.lock").read_bytes() == first
    assert main(["check", *where]) == 0


def test_the_default_backend_can_come_from_the_environment(comfy, venv, torch_setup, monkeypatch):
    monkeypatch.setenv(tb.TEST_ENV, "nvidia:12.4")
    monkeypatch.setenv(tb.BACKEND_ENV, "cpu")
    root = comfy("torch\n")
    assert compile_(root, venv, torch_setup) == 0
    assert read_lock(root / "comfylock.lock").by_name()["torch"].version == "2.5.1+cpu"
    monkeypatch.setenv(tb.BACKEND_ENV, "cuda-please")
    assert compile_(root, venv, torch_setup, "--upgrade") == 2


def test_check_without_the_compile_record_agrees_with_a_fallen_back_choice(
    comfy, venv, torch_setup, monkeypatch, capsys
):
    """`check` never asks the torch index whether it answers: it keeps the lock's own choice (here
    PyPI's, after cu128 could not be reached), so it does not call the lock stale when compile would
    say up to date, even with the compile record gone."""
    monkeypatch.setenv(tb.TEST_ENV, "nvidia:12.8")
    root = comfy("torch\nfilelock\n")
    base, empty, plain = torch_setup
    cfg = root / "user" / "comfylock" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    # The index in config.toml: without the compile record, check knows no command-line option
    cfg.write_text(f"torch-index = {base!r}\n[index]\nindex-url = {empty!r}\nfind-links = [{str(plain)!r}]\n")
    where = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["compile", *where]) == 0
    assert read_lock(root / "comfylock.lock").meta["torch-backend"] == "pypi"
    assert main(["sync", *where, "--no-verify"]) == 0
    (root / "user" / "comfylock" / ".compile-cache.json").unlink()
    capsys.readouterr()
    assert main(["check", *where]) == 0
    assert "stale" not in capsys.readouterr().out


def test_a_torch_the_policy_leaves_out_gets_no_build_and_no_index_check(
    comfy, venv, torch_setup, monkeypatch, capsys
):
    monkeypatch.setenv(tb.TEST_ENV, "nvidia:12.8")  # cu128 is missing: choosing would warn
    root = comfy("torch\nfilelock\n")
    user = root / "user" / "comfylock"
    user.mkdir(parents=True, exist_ok=True)
    skip = {"torch": {"apply_first_match": [{"type": "skip", "reason": "installed by other means"}]}}
    (user / "pip-policy.user.json").write_text(json.dumps(skip))
    assert compile_(root, venv, torch_setup) == 0
    out = capsys.readouterr().out
    assert "cannot be reached" not in out and "torch build" not in out
    lock = read_lock(root / "comfylock.lock")
    assert "torch-backend" not in lock.meta and "torch" not in lock.by_name()
