"""The committed lock is stable: compile -> sync -> compile gives the same bytes and says "up to date";
the same inputs in two folders give the same bytes; a comment edit changes nothing. And the lock quotes
each requirement line as its node wrote it, then the policy's rewrite.

Real uv on hand-written wheels (conftest), through the CLI as a user runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import STANDARD, install, installed, run
from wheels import make_index

from comfylock.cli.main import main
from comfylock.environment.probe import _nvidia_driver_present
from comfylock.lockfile.lock import parse_lock, read_lock

# The torch stack: the default policy pins whichever of them is installed, through one entry per package.
TORCH = {
    **STANDARD,
    "torch": {"2.5.1": ["filelock", "triton; sys_platform == 'linux'"], "2.6.0": ["filelock"]},
    "torchvision": {"0.20.1": ["torch==2.5.1", "numpy", "pillow"]},
    "torchaudio": {"2.5.1": ["torch==2.5.1"]},
    "triton": {"3.1.0": ["filelock"]},
    "facefix": {"1.0": ["opencv-contrib-python>=4"]},
}


@pytest.fixture(scope="module")
def torch_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_index(tmp_path_factory.mktemp("torch-wheels"), TORCH)


def make_venv(path: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(path)], check=True
    )
    return path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


NODES = {
    "Faces": {"requirements.txt": "facefix\n"},  # asks for opencv-contrib-python as a dependency only
    "ComfyUI-VideoHelperSuite": {
        "requirements.txt": "opencv-python>=4.5\nimageio-ffmpeg; python_version < '3'\n"
    },
    "Vision": {"requirements.txt": "torchvision\ntorchaudio\njetson-stats; platform_machine == 'aarch64'\n"},
}


def test_compile_sync_compile_gives_the_same_bytes_and_up_to_date(comfy, venv, torch_index, capsys):
    """A fresh environment (no torch): the lock's sync installs the stack the default policy then pins."""
    root = comfy("torch\nnumpy\n", NODES)
    lock = root / "comfylock.lock"
    assert run(root, venv, torch_index, "compile") == 0
    assert "warning" not in capsys.readouterr().out  # the lock is the fixed point of its own sync
    first = lock.read_bytes()
    assert run(root, venv, torch_index, "sync") == 0
    assert installed(venv)["torch"] == "2.5.1"
    capsys.readouterr()
    assert run(root, venv, torch_index, "compile") == 0
    assert "is up to date" in capsys.readouterr().out
    assert lock.read_bytes() == first
    # The full check agrees (no quick record): the fingerprint is of the environment the sync left.
    (root / "user" / "comfylock" / ".compile-cache.json").unlink()
    assert run(root, venv, torch_index, "compile") == 0
    assert "is up to date" in capsys.readouterr().out
    # Resolving again on purpose gives the same bytes too.
    assert run(root, venv, torch_index, "compile", "--upgrade-package", "numpy") == 0
    assert lock.read_bytes() == first
    assert capsys.readouterr().out.count("policy pin_dependencies: torch==2.5.1") == 1
    # The torch stack's entries fire once per package, each with the same pins: one header line.
    policy = read_lock(lock).lists["policy"]
    pins = [p for p in policy if p.startswith("pin_dependencies ")]
    assert len(pins) == 1 and pins[0].startswith("pin_dependencies torch==2.5.1, torchvision==0.20.1")
    assert len(policy) == len(set(policy))
    assert run(root, venv, torch_index, "check") == 0


def test_an_installed_stack_stays_and_the_lock_is_stable(comfy, venv, torch_index, capsys):
    """torch 2.5.1 was there before comfylock: it is pinned, and nothing moves after the sync."""
    install(venv, torch_index, "torch==2.5.1")
    root = comfy("torch\n", NODES)
    lock = root / "comfylock.lock"
    assert run(root, venv, torch_index, "compile") == 0
    first = lock.read_bytes()
    assert read_lock(lock).by_name()["torch"].version == "2.5.1"  # 2.6.0 exists: the pin held
    assert run(root, venv, torch_index, "sync") == 0
    capsys.readouterr()
    assert run(root, venv, torch_index, "compile") == 0
    assert "is up to date" in capsys.readouterr().out
    assert lock.read_bytes() == first


def test_same_inputs_in_two_folders_give_the_same_bytes(tmp_path, torch_index):
    """Two machines: different ComfyUI folders, each with its venv, a user policy and a --policy file."""
    texts = []
    for machine in ("one", "two"):
        root = tmp_path / machine / "ComfyUI"
        for name, files in NODES.items():
            for fname, text in files.items():
                (root / "custom_nodes" / name).mkdir(parents=True, exist_ok=True)
                (root / "custom_nodes" / name / fname).write_text(text)
        (root / "main.py").write_text("")
        (root / "requirements.txt").write_text("numpy\nrequests\n")
        policy = root / "user" / "comfylock" / "pip-policy.user.json"
        policy.parent.mkdir(parents=True)
        policy.write_text(
            json.dumps(
                {
                    "requests": {
                        "apply_all_matches": [{"type": "install_with", "additional_packages": ["tqdm"]}]
                    }
                }
            )
        )
        extra = root / "policies" / "team.json"
        extra.parent.mkdir()
        extra.write_text(json.dumps({"idna": {"restore": [{"target": "idna", "version": "3.7"}]}}))
        python = make_venv(root / "venv")
        assert run(root, python, torch_index, "compile", "--policy", str(extra)) == 0
        texts.append((root / "comfylock.lock").read_text())
    assert texts[0] == texts[1]
    assert str(tmp_path) not in texts[0]
    # The policy files are named relative to the ComfyUI folder.
    assert "(user/comfylock/pip-policy.user.json: )" in texts[0]
    assert "requested by policy (policies/team.json:1): idna==3.7" in texts[0]
    assert (
        "requested by core (requirements.txt:2): requests -> tqdm (policy: install_with requests)" in texts[0]
    )


def test_a_comment_only_edit_changes_neither_fingerprint_nor_lock(comfy, venv, torch_index, capsys):
    root = comfy("numpy  # core\n", {"A": {"requirements.txt": "# my node\ntqdm>=4  # progress\n"}})
    lock = root / "comfylock.lock"
    assert run(root, venv, torch_index, "compile") == 0
    first = lock.read_bytes()
    node = root / "custom_nodes" / "A" / "requirements.txt"
    node.write_text("# my node, now with a longer comment\ntqdm>=4  # progress bars\n")
    (root / "requirements.txt").write_text("numpy\n")
    capsys.readouterr()
    assert run(root, venv, torch_index, "compile") == 0  # the bytes changed: parsed again, same content
    assert "is up to date" in capsys.readouterr().out
    assert lock.read_bytes() == first
    # A real change is still one.
    node.write_text("# my node\ntqdm>=4.1\n")
    assert run(root, venv, torch_index, "compile") == 0
    assert "is up to date" not in capsys.readouterr().out
    assert read_lock(lock).meta["fingerprint"] != parse_lock(first.decode()).meta["fingerprint"]


# --- provenance quotes the node ----------------------------------------------------------------------


def test_lock_and_why_quote_the_line_then_the_policy_rewrite(comfy, venv, torch_index, capsys):
    root = comfy("", NODES)
    assert run(root, venv, torch_index, "compile") == 0
    text = (root / "comfylock.lock").read_text()
    line = (
        "# requested by ComfyUI-VideoHelperSuite (requirements.txt:1): "
        "opencv-python>=4.5 -> opencv-contrib-python-headless>=4.5 (policy: one OpenCV)"
    )
    assert line in text
    # Read back whole: the line as written, the rewrite and the policy.
    requests = read_lock(root / "comfylock.lock").by_name()["opencv-contrib-python-headless"].requested_by
    (req,) = [r for r in requests if r.node == "ComfyUI-VideoHelperSuite"]
    assert (req.text, req.rewritten, req.policy) == (
        "opencv-python>=4.5",
        "opencv-contrib-python-headless>=4.5",
        "one OpenCV",
    )
    capsys.readouterr()
    assert main(["why", "--comfyui", str(root), "opencv-contrib-python-headless"]) == 0
    out = capsys.readouterr().out
    assert (
        "ComfyUI-VideoHelperSuite (requirements.txt:1: opencv-python>=4.5 -> "
        "opencv-contrib-python-headless>=4.5 (policy: one OpenCV))" in out
    )


@pytest.mark.skipif(_nvidia_driver_present(), reason="this machine has an NVIDIA driver")
def test_onnx_replacement_keeps_specifier_extras_and_marker(comfy, venv, torch_index):
    root = comfy("", {"Faces": {"requirements.txt": "onnxruntime-gpu>=1.15.0; sys_platform != 'darwin'\n"}})
    assert run(root, venv, torch_index, "compile") == 0
    lock = read_lock(root / "comfylock.lock").by_name()
    assert "onnxruntime-gpu" not in lock
    (req,) = lock["onnxruntime"].requested_by
    assert req.rewritten == 'onnxruntime>=1.15.0; sys_platform != "darwin"'
    assert req.text == "onnxruntime-gpu>=1.15.0; sys_platform != 'darwin'"
    assert req.policy == "one ONNX Runtime"


def test_a_replace_entry_with_its_own_version_and_label(comfy, venv, torch_index):
    root = comfy("", {"N": {"requirements.txt": "opencv-python[ffmpeg]>=4.1\n"}})
    policy = root / "user" / "comfylock" / "pip-policy.user.json"
    policy.parent.mkdir(parents=True)
    entry = {"type": "replace", "replacement": "opencv-python-headless", "version": ">=4.10", "label": "mine"}
    policy.write_text(json.dumps({"opencv-python": {"apply_first_match": [entry]}}))
    assert run(root, venv, torch_index, "compile") == 0
    text = (root / "comfylock.lock").read_text()
    # The user's choice wins over the default's replacement of -headless; its version replaces the range.
    assert "opencv-python[ffmpeg]>=4.1 -> opencv-python-headless[ffmpeg]>=4.10 (policy: mine)" in text


def test_a_rewrite_reads_back_from_the_lock_and_from_a_pylock_table():
    from comfylock.lockfile import pylock as export
    from comfylock.lockfile.lock import Lock, Pin, Request, format_lock

    asked = Request(
        "ComfyUI-VideoHelperSuite",
        "requirements.txt",
        1,
        "opencv-python>=4.5; sys_platform != 'darwin'",
        'opencv-contrib-python-headless>=4.5; sys_platform != "darwin"',
        "one OpenCV",
    )
    plain = Request("core", "requirements.txt", 2, "numpy>=1.25 -> not a rewrite without its policy")
    pin = Pin("opencv-contrib-python-headless", "opencv-contrib-python-headless==4.10.0", (asked, plain))
    lock = Lock((pin,), meta={"fingerprint": "x"})
    assert parse_lock(format_lock(lock)).pins == (pin,)
    table = export.comfylock_table(lock, "comfylock.lock")
    back = tuple(export._request(r) for r in table["packages"][pin.name]["requested-by"])
    assert back == (asked, plain)


def test_a_policy_that_undoes_itself_once_synced_says_so(comfy, venv, torch_index, capsys):
    """restore "if installed != X": after the sync X is installed, so the policy no longer fires and the
    next compile changes the lock. No lock can be stable then; compile keeps what the policy does now
    and warns."""
    root = comfy("numpy>=2\n")
    assert run(root, venv, torch_index, "compile") == 0
    assert run(root, venv, torch_index, "sync") == 0
    policy = root / "user" / "comfylock" / "pip-policy.user.json"
    restore = {"condition": {"type": "installed", "spec": "!=1.26.4"}, "target": "numpy", "version": "1.26.4"}
    policy.write_text(json.dumps({"numpy": {"restore": [restore]}}))
    capsys.readouterr()
    assert run(root, venv, torch_index, "compile") == 0
    assert "the next compile after `comfylock sync` will change the lock" in capsys.readouterr().out
    assert read_lock(root / "comfylock.lock").by_name()["numpy"].version == "1.26.4"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/srv/ComfyUI/user/comfylock/p.json", "user/comfylock/p.json"),
        ("/home/me/policies/p.json", "~/policies/p.json"),
        ("/etc/comfylock/p.json", "/etc/comfylock/p.json"),
        ("comfylock/pip-policy.json", "comfylock/pip-policy.json"),
    ],
)
def test_paths_are_written_relative_to_comfyui_or_home(monkeypatch, path, expected):
    from pathlib import PurePosixPath

    from comfylock import _paths

    monkeypatch.setattr(_paths.Path, "home", classmethod(lambda cls: cls("/home/me")))
    if sys.platform == "win32":
        pytest.skip("POSIX paths")
    assert _paths.portable(Path(PurePosixPath(path)), Path("/srv/ComfyUI")) == expected
