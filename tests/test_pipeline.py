"""End to end on hermetic data: collect -> compile -> sync -> rollback, through the CLI, with real uv."""

from __future__ import annotations

import pytest
from helpers import installed, run
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.lockfile.lock import read_lock

TREE = {
    "NodeA": {"requirements.txt": "numpy<2\nscipy\n"},
    "NodeB": {
        "requirements.txt": "pillow>=10\nrequests\n",
        "pyproject.toml": "[project]\nname='b'\ndependencies=['tqdm']\n",
    },
    "NodeC": {"pyproject.toml": "[project]\nname='c'\ndependencies=['tqdm']\n"},
}


def test_compile_writes_lock_with_provenance(comfy, venv, index, capsys):
    root = comfy("numpy>=1.25\n", TREE)
    assert run(root, venv, index, "compile") == 0
    lock = read_lock(root / "comfylock.lock")
    pins = lock.by_name()
    assert pins["numpy"].version == "1.26.4"  # NodeA's numpy<2 is honoured, not overridden by core
    assert pins["scipy"].version == "1.14.0"
    assert {r.node for r in pins["numpy"].requested_by} == {"core", "NodeA"}
    assert pins["numpy"].requested_by[0].line == 1
    assert "scipy" in pins["numpy"].needed_by
    assert {r.node for r in pins["tqdm"].requested_by} == {"NodeC"}  # NodeB's pyproject loses to requirements
    text = (root / "comfylock.lock").read_text()
    assert "requested by NodeA (requirements.txt:1): numpy<2" in text
    assert "--no-index" in text and str(index) in text
    out = capsys.readouterr().out
    assert "3 nodes" in out and "added" in out


def test_lock_is_byte_stable_and_no_op_compile_skips_uv(comfy, venv, index, capsys):
    root = comfy("numpy>=1.25\n", TREE)
    assert run(root, venv, index, "compile") == 0
    first = (root / "comfylock.lock").read_bytes()
    (root / "comfylock.lock").unlink()
    assert run(root, venv, index, "compile") == 0
    assert (root / "comfylock.lock").read_bytes() == first
    capsys.readouterr()
    assert run(root, venv, index, "compile") == 0
    assert "up to date" in capsys.readouterr().out
    assert (root / "comfylock.lock").read_bytes() == first


def test_minimal_churn_and_upgrade_package(comfy, venv, index, tmp_path):
    own = tmp_path / "own-wheels"
    make_wheel(own, "pillow", "10.4.0")
    make_wheel(own, "numpy", "1.26.4")
    root = comfy("pillow\nnumpy\n")
    assert run(root, venv, own, "compile") == 0
    make_wheel(own, "pillow", "11.0.0")
    make_wheel(own, "numpy", "2.1.0")
    (root / "requirements.txt").write_text("pillow\nnumpy\n# a comment changes the fingerprint\n")
    assert run(root, venv, own, "compile") == 0
    pins = read_lock(root / "comfylock.lock").by_name()
    assert pins["pillow"].version == "10.4.0" and pins["numpy"].version == "1.26.4"
    assert run(root, venv, own, "compile", "--upgrade-package", "pillow") == 0
    pins = read_lock(root / "comfylock.lock").by_name()
    assert pins["pillow"].version == "11.0.0" and pins["numpy"].version == "1.26.4"
    assert run(root, venv, own, "compile", "--upgrade") == 0
    assert read_lock(root / "comfylock.lock").by_name()["numpy"].version == "2.1.0"


def test_conflict_exits_1_naming_both_nodes_and_keeps_lock(comfy, venv, index, capsys):
    root = comfy(
        "",
        {
            "Old": {"requirements.txt": "numpy<2\n"},
            "New": {"requirements.txt": "numpy>=2\n"},
            "Bystander": {"requirements.txt": "tqdm\n"},
        },
    )
    (root / "comfylock.lock").write_text("# previous\n")
    assert run(root, venv, index, "compile") == 1
    err = capsys.readouterr().err
    assert "Old" in err and "New" in err and "Bystander" not in err
    assert "No solution found" in err
    assert (root / "comfylock.lock").read_text() == "# previous\n"


def test_bad_line_exit_2_nothing_written(comfy, venv, index, capsys):
    root = comfy("", {"Bad": {"requirements.txt": "numpy\nthis is not a requirement!\n"}})
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert "requirements.txt:2" in err and "Traceback" not in err
    assert not (root / "comfylock.lock").exists()
    assert run(root, venv, index, "compile", "--skip-node", "Bad") == 0


def test_hostile_index_option_refused(comfy, venv, index, capsys):
    root = comfy("", {"Evil": {"requirements.txt": "numpy\n--extra-index-url https://evil.example/simple\n"}})
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert "Evil" in err and ":2" in err and "--skip-node" in err
    assert not (root / "comfylock.lock").exists()


def test_disabled_nodes_skipped(comfy, venv, index):
    root = comfy(
        "",
        {
            "On": {"requirements.txt": "tqdm\n"},
            "Off.disabled": {"requirements.txt": "pillow\n"},
            ".disabled/Gone": {"requirements.txt": "requests\n"},
        },
    )
    assert run(root, venv, index, "compile") == 0
    assert set(read_lock(root / "comfylock.lock").by_name()) == {"tqdm"}


def test_sync_adds_removes_downgrades_then_rollback(comfy, venv, index, capsys):
    root = comfy("numpy\npillow\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    assert installed(venv) == {"numpy": "2.1.0", "pillow": "11.0.0"}
    (root / "requirements.txt").write_text("numpy<2\ntqdm\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync", "--dry-run") == 0
    assert "pillow" in capsys.readouterr().out
    assert installed(venv) == {"numpy": "2.1.0", "pillow": "11.0.0"}  # dry run changed nothing
    assert run(root, venv, index, "sync") == 0
    assert installed(venv) == {"numpy": "1.26.4", "tqdm": "4.66.0"}
    assert run(root, venv, index, "check") == 0
    assert run(root, venv, index, "rollback") == 0
    assert installed(venv) == {"numpy": "2.1.0", "pillow": "11.0.0"}
    assert run(root, venv, index, "check") == 1
    capsys.readouterr()
    assert run(root, venv, index, "history") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3  # before the first sync, the second sync, the rollback


def test_user_requirements_add_remove(comfy, venv, index):
    root = comfy("numpy\n")
    assert run(root, venv, index, "add", "tqdm>=4") == 0
    assert run(root, venv, index, "compile") == 0
    pins = read_lock(root / "comfylock.lock").by_name()
    assert {r.node for r in pins["tqdm"].requested_by} == {"user"}
    assert run(root, venv, index, "remove", "tqdm") == 0
    assert run(root, venv, index, "compile") == 0
    assert "tqdm" not in read_lock(root / "comfylock.lock").by_name()


@pytest.mark.parametrize("missing", ["lock", "history"])
def test_missing_lock_or_history_exit_2(comfy, venv, index, capsys, missing):
    root = comfy("tqdm\n")
    assert run(root, venv, index, "sync" if missing == "lock" else "rollback") == 2
    assert "Traceback" not in capsys.readouterr().err


def test_relative_find_links_are_anchored_where_they_were_given(comfy, venv, index, tmp_path, monkeypatch):
    """A relative --find-links means the folder seen from where the command ran (or, in config.toml,
    from the config's folder), never uv's temp folder; the lock records it absolute."""
    import shutil

    root = comfy("numpy\n", {})
    shutil.copytree(index, tmp_path / "wheels")
    monkeypatch.chdir(tmp_path)
    argv = ["compile", "--comfyui", str(root), "--python", str(venv), "--no-index", "--find-links", "wheels"]
    assert main(argv) == 0
    assert f"--find-links {(tmp_path / 'wheels').absolute()}" in read_lock(root / "comfylock.lock").options
    config = root / "user" / "comfylock" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(index, config.parent / "local-wheels")
    config.write_text('[index]\nno-index = true\nfind-links = ["local-wheels"]\n')
    (root / "comfylock.lock").unlink()
    assert main(["compile", "--comfyui", str(root), "--python", str(venv)]) == 0
    assert f"--find-links {config.parent / 'local-wheels'}" in read_lock(root / "comfylock.lock").options
