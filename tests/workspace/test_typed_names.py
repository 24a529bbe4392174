"""Names the user typed are checked (issue 12): an unknown --skip-node or config section exits 2 with a
did-you-mean, one line, before anything is written (even when the lock is otherwise up to date)."""

from __future__ import annotations

from pathlib import Path

from helpers import run

NODES = {
    "ComfyUI-KJNodes": {"requirements.txt": "numpy\n"},
    "ComfyUI-Impact-Pack": {"requirements.txt": "pillow\n"},
}


def config(root: Path, text: str) -> Path:
    path = root / "user" / "comfylock" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_skip_node_typo_exits_2_with_did_you_mean(comfy, venv, index, capsys):
    root = comfy("", NODES)
    assert run(root, venv, index, "compile") == 0
    before = (root / "comfylock.lock").read_bytes()
    capsys.readouterr()
    # The lock is up to date: the quick no-op check must not hide the typo.
    assert run(root, venv, index, "compile", "--skip-node", "ComfyUI-KJNode") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--skip-node ComfyUI-KJNode: no node of that name" in err
    assert "did you mean ComfyUI-KJNodes?" in err
    assert (root / "comfylock.lock").read_bytes() == before


def test_skip_node_typo_in_case_still_suggests(comfy, venv, index, capsys):
    root = comfy("", NODES)
    assert run(root, venv, index, "compile", "--skip-node", "comfyui-impact-pack") == 2
    assert "did you mean ComfyUI-Impact-Pack?" in capsys.readouterr().err
    assert not (root / "comfylock.lock").exists()


def test_config_section_for_a_missing_node_names_file_and_line(comfy, venv, index, capsys):
    root = comfy("", NODES)
    path = config(root, '[index]\nno-index = true\n\n[nodes."ComfyUI-KJNode"]\nskip = true\n')
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f'{path}:4: [nodes."ComfyUI-KJNode"]: no node of that name' in err
    assert "did you mean ComfyUI-KJNodes?" in err
    assert run(root, venv, index, "check") == 2  # check reads the same config
    assert "did you mean ComfyUI-KJNodes?" in capsys.readouterr().err


def test_known_names_core_user_and_disabled_nodes_are_accepted(comfy, venv, index):
    nodes = {**NODES, "OldNode.disabled": {"requirements.txt": "tqdm\n"}}
    root = comfy("numpy\n", nodes)
    config(root, '[nodes.core]\nsource = "requirements.txt"\n[nodes."OldNode"]\nskip = true\n[nodes.user]\n')
    assert run(root, venv, index, "compile", "--skip-node", "ComfyUI-Impact-Pack") == 0
    assert "pillow" not in (root / "comfylock.lock").read_text().split("# body-sha256")[1]


def test_no_nodes_at_all_says_so(comfy, venv, index, capsys):
    root = comfy("numpy\n")
    assert run(root, venv, index, "compile", "--skip-node", "Anything") == 2
    assert "custom_nodes has no enabled node" in capsys.readouterr().err
