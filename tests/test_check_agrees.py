"""check, compile and the environment agree: one notion of a stale lock (compile's), what a policy does
on purpose is not breakage, and a diff against a history entry does not list what sync never removes.

Real uv on hand-written wheels, through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import STANDARD, install, run
from wheels import make_index

from comfylock.cli.main import main

WHEELS = {
    **STANDARD,
    "pixeloe": {"0.1.0": ["opencv-python", "numpy"]},
    "lonely": {"1.0": ["opencv-python", "missing-dep"]},
    "jetson-stats": {"4.2.0": []},
    "pip": {"24.0": []},
    "tomli-w": {"1.0.0": []},
    "uv": {"0.13.9": []},
}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_index(tmp_path_factory.mktemp("check-wheels"), WHEELS)


def user_policy(root: Path, doc: dict) -> None:
    path = root / "user" / "comfylock" / "pip-policy.user.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


NODES = {
    "Jetson": {"requirements.txt": "numpy\njetson-stats; platform_machine == 'aarch64'\n"},
    "Bars": {"requirements.txt": "tqdm\nrequests\n"},
}


def test_check_is_not_stale_where_compile_is_up_to_date(comfy, venv, wheels, capsys):
    """A line its own marker excludes and a line a policy skips: compile says up to date, so must check."""
    root = comfy("pillow\n", NODES)
    user_policy(root, {"tqdm": {"apply_first_match": [{"type": "skip", "reason": "noisy"}]}})
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "compile") == 0
    assert "is up to date" in capsys.readouterr().out
    assert run(root, venv, wheels, "check") == 0
    out = capsys.readouterr().out
    assert "the lock is stale" not in out and "environment matches" in out
    # A real change: both say so.
    (root / "custom_nodes" / "Bars" / "requirements.txt").write_text("tqdm\nrequests\nidna>=3.8\n")
    assert run(root, venv, wheels, "check") == 0  # the environment still matches the lock
    out = capsys.readouterr().out
    assert "warning: the lock is stale: Bars: requirements.txt: 'idna>=3.8' new" in out
    assert run(root, venv, wheels, "compile", "--dry-run") == 0
    assert "is up to date" not in capsys.readouterr().out


def test_check_asks_with_the_arguments_of_the_last_compile(comfy, venv, wheels, capsys):
    root = comfy("pillow\n", NODES)
    assert run(root, venv, wheels, "compile", "--skip-node", "Bars") == 0
    assert run(root, venv, wheels, "sync") == 0
    capsys.readouterr()
    assert main(["check", "--comfyui", str(root), "--python", str(venv), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["stale"] == [] and data["matches"]


def test_installed_versions_a_policy_reads_are_named_when_they_make_the_lock_stale(
    comfy, venv, wheels, capsys
):
    root = comfy("torch\n")
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 0
    install(venv, wheels, "torch==2.5.1")
    capsys.readouterr()
    assert run(root, venv, wheels, "check") == 1
    out = capsys.readouterr().out
    assert "warning: the lock is stale: torch: a policy reads torch: 2.5.1 here, 2.6.0 in the lock" in out
    assert run(root, venv, wheels, "compile", "--dry-run") == 0
    assert "is up to date" not in capsys.readouterr().out


def test_broken_by_policy_is_a_note_and_real_breakage_still_warns(comfy, venv, wheels, capsys):
    root = comfy("", {"Pix": {"requirements.txt": "pixeloe\n"}})
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "check") == 0
    out = capsys.readouterr().out
    note = (
        "note: as intended: pixeloe asks for opencv-python; policy 'one OpenCV' gives "
        "opencv-contrib-python-headless, which provides cv2"
    )
    # Nothing changed since the compile that made this lock: check skips `uv pip check` (its quick
    # path) and so says nothing of what a policy does on purpose; when it does look, it is a note.
    assert not [line for line in out.splitlines() if line.startswith(("note:", "warning:"))]
    assert "environment matches" in out
    # Real breakage still warns: a package installed by hand without its dependency.
    install(venv, wheels, "--no-deps", "lonely")
    assert run(root, venv, wheels, "check") == 1
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == [note.replace("pixeloe asks", "lonely, pixeloe ask")]
    assert main(["check", "--comfyui", str(root), "--python", str(venv), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    # lonely asks for opencv-python too: that part is the policy's doing; missing-dep is not.
    assert [(b["package"], b["requirement"]) for b in data["broken"]] == [("lonely", "missing-dep")]
    assert data["intended"] == [
        {
            "asked": "opencv-python",
            "given": "opencv-contrib-python-headless",
            "policy": "one OpenCV",
            "dependents": ["lonely", "pixeloe"],
        }
    ]


def test_diff_against_a_history_entry_leaves_out_what_sync_never_removes(comfy, venv, wheels, capsys):
    install(venv, wheels, "pip", "tomli-w", "uv", "idna==3.7")
    root = comfy("tqdm\n")
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 0
    entry = root / "user" / "comfylock" / "history" / "0001.lock"
    capsys.readouterr()
    assert main(["diff", "--comfyui", str(root), "--python", str(venv), str(entry)]) == 0
    out = capsys.readouterr().out
    assert "- idna 3.7" in out and "+ tqdm 4.66.0" in out
    for name in ("pip", "tomli-w", "uv"):
        assert f"- {name} " not in out, out
