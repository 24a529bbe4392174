"""ComfyUI-Manager snapshots: the YAML subset reader, snapshot -> lock, lock -> snapshot, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import install, installed, run

from comfylock._exceptions import InputError
from comfylock.cli.main import main
from comfylock.lockfile.lock import Lock, Pin, read_lock
from comfylock.lockfile.snapshot import (
    GitNode,
    origin_url,
    parse_node_line,
    parse_yaml,
    read_snapshot,
    to_lock,
    to_manager_snapshot,
)

# What PyYAML 6 writes for the Manager's `yaml.dump({'custom_nodes': snapshot}, allow_unicode=True)`:
# sorted keys, indentless lists, quoted look-alikes ('1.0', an all-digit hash), `? ` for a key past
# 128 characters.
MANAGER_YAML = """\
custom_nodes:
  cnr_custom_nodes:
    comfyui-impact-pack: 8.8.1
    rgthree-comfy: '1.0'
  comfyui: 0e2c1a6f8b7d4e3c2b1a09f8e7d6c5b4a3928170
  file_custom_nodes:
  - disabled: false
    filename: websocket_image_save.py
  - disabled: true
    filename: old node.py.disabled
  git_custom_nodes:
    git@github.com:Fannovel16/comfyui_controlnet_aux.git:
      disabled: true
      hash: abcdefabcdefabcdefabcdefabcdefabcdefabcd
    https://github.com/cubiq/ComfyUI_IPAdapter_plus.git:
      disabled: false
      hash: '1234567890123456789012345678901234567890'
    https://github.com/ltdrdata/ComfyUI-Manager:
      disabled: false
      hash: d8a9b0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7
  pips:
    '# Editable install with no version control (foo==0.1)': ''
    -e /home/u/foo: ''
    ? -e git+https://github.com/someone/a-rather-long-repository-name-for-testing.git@0123456789abcdef0123456789abcdef01234567#egg=some_package
    : ''
    Pillow==10.4.0: ''
    insightface: https://github.com/Gourieff/Assets/raw/main/Insightface/insightface-0.7.3-cp311-cp311-win_amd64.whl
    mylocal: file:///C:/wheels/mylocal-1.0-py3-none-any.whl
    numpy==1.26.4: ''
    requests>=2: ''
    scipy==1.14.0: ''
    torch==2.5.1+cu124: ''
    tqdm==4.66.0: ''
"""

LONG_EDITABLE = (
    "-e git+https://github.com/someone/a-rather-long-repository-name-for-testing.git"
    "@0123456789abcdef0123456789abcdef01234567#egg=some_package"
)


def manager_dict() -> dict:
    """The same snapshot as the Manager's JSON (json.dump(indent=4), insertion order)."""
    return {
        "comfyui": "0e2c1a6f8b7d4e3c2b1a09f8e7d6c5b4a3928170",
        "git_custom_nodes": {
            "https://github.com/ltdrdata/ComfyUI-Manager": {
                "hash": "d8a9b0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7",
                "disabled": False,
            },
            "https://github.com/cubiq/ComfyUI_IPAdapter_plus.git": {
                "hash": "1234567890123456789012345678901234567890",
                "disabled": False,
            },
            "git@github.com:Fannovel16/comfyui_controlnet_aux.git": {
                "hash": "abcdefabcdefabcdefabcdefabcdefabcdefabcd",
                "disabled": True,
            },
        },
        "cnr_custom_nodes": {"comfyui-impact-pack": "8.8.1", "rgthree-comfy": "1.0"},
        "file_custom_nodes": [
            {"filename": "websocket_image_save.py", "disabled": False},
            {"filename": "old node.py.disabled", "disabled": True},
        ],
        "pips": {
            "numpy==1.26.4": "",
            "scipy==1.14.0": "",
            "torch==2.5.1+cu124": "",
            "Pillow==10.4.0": "",
            LONG_EDITABLE: "",
            "insightface": "https://github.com/Gourieff/Assets/raw/main/Insightface/"
            "insightface-0.7.3-cp311-cp311-win_amd64.whl",
            "mylocal": "file:///C:/wheels/mylocal-1.0-py3-none-any.whl",
            "# Editable install with no version control (foo==0.1)": "",
            "-e /home/u/foo": "",
            "tqdm==4.66.0": "",
            "requests>=2": "",
        },
    }


def test_yaml_reader_reads_the_managers_yaml_exactly(tmp_path):
    data = parse_yaml(MANAGER_YAML, tmp_path / "s.yaml")
    expected = manager_dict()
    assert data == {"custom_nodes": expected}


def test_yaml_and_json_snapshots_read_the_same(tmp_path):
    y = tmp_path / "2024-05-01_12-00-00_snapshot.yaml"
    y.write_text(MANAGER_YAML)
    j = tmp_path / "2024-05-01_12-00-00_snapshot.json"
    j.write_text(json.dumps(manager_dict(), indent=4))
    a, b = read_snapshot(y), read_snapshot(j)
    assert a.comfyui == b.comfyui == "0e2c1a6f8b7d4e3c2b1a09f8e7d6c5b4a3928170"
    assert set(a.git_custom_nodes) == set(b.git_custom_nodes)
    assert GitNode(
        "git@github.com:Fannovel16/comfyui_controlnet_aux.git", "abcdef" * 6 + "abcd", True
    ) in set(a.git_custom_nodes)
    assert (
        a.cnr_custom_nodes == b.cnr_custom_nodes == {"comfyui-impact-pack": "8.8.1", "rgthree-comfy": "1.0"}
    )
    assert a.file_custom_nodes == b.file_custom_nodes
    assert a.pips == b.pips


def test_yaml_scalars_folding_quotes_and_comments(tmp_path):
    text = (
        "# saved by hand\n---\ncustom_nodes:\n  comfyui: null\n  pips:\n"
        "    'it''s==1.0': ''\n"
        '    "esc\\x41\\u00e9\\ttab==1": ""\n'
        "    plain key: a long plain value\n      folded onto two lines  # and a comment\n"
        "    quoted: 'one\n\n      two'\n"
        "    yes: yes\n"
        "  cnr_custom_nodes: {}\n  file_custom_nodes: []\n"
    )
    data = parse_yaml(text, tmp_path / "s.yaml")["custom_nodes"]
    assert data["comfyui"] is None
    assert data["cnr_custom_nodes"] == {} and data["file_custom_nodes"] == []
    assert data["pips"] == {
        "it's==1.0": "",
        "escA\u00e9\ttab==1": "",
        "plain key": "a long plain value folded onto two lines",
        "quoted": "one\ntwo",
        "yes": True,  # keys stay text, plain values are typed as PyYAML types them
    }


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("custom_nodes:\n  pips: &a\n    x: ''\n", 2, "YAML feature"),
        ("custom_nodes:\n  pips: {numpy==1.0: ''}\n", 2, "YAML feature"),
        ("custom_nodes:\n  comfyui: |\n    abc\n", 2, "YAML feature"),
        ("custom_nodes:\n\tpips: {}\n", 2, "tab"),
        ("custom_nodes:\n  pips: {}\n    extra: 1\n", 3, "unexpected indentation"),
        ("custom_nodes:\n  pips: {}\n  pips: {}\n", 3, "duplicate key"),
        ("custom_nodes:\n  comfyui: 'abc\n", 2, "unterminated"),
        ("custom_nodes:\n  just some words\n", 2, "expected `key: value`"),
        ("custom_nodes:\n  a: 1\n  - b\n", 3, "a list item where a key was expected"),
        ("custom_nodes:\n  - a\n  b: 1\n", 3, "unexpected indentation"),
    ],
)
def test_yaml_outside_the_subset_is_an_error_with_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "snap.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_snapshot(path)
    assert f"snap.yaml:{line}:" in str(e.value) and what in str(e.value)


def test_snapshot_shape_errors(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("pips: {}\n")
    with pytest.raises(InputError, match="custom_nodes"):
        read_snapshot(path)
    path = tmp_path / "s.json"
    path.write_text('{"pips": [1, 2]}')
    with pytest.raises(InputError, match="pips must be a mapping"):
        read_snapshot(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match=r"s\.json:1: invalid JSON"):
        read_snapshot(path)
    path.write_text(json.dumps({**manager_dict(), "pips": None}))
    with pytest.raises(InputError, match="custom nodes only"):
        to_lock(read_snapshot(path), str(path), [], "https://download.pytorch.org/whl")


def test_snapshot_to_lock_carries_pins_and_reports_the_rest(tmp_path):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(manager_dict(), indent=4))
    lock, skipped = to_lock(
        read_snapshot(path), str(path), ["--index-url https://pypi.org/simple"], "https://t/whl"
    )
    assert {p.name: p.spec for p in lock.pins} == {
        "numpy": "numpy==1.26.4",
        "pillow": "pillow==10.4.0",
        "scipy": "scipy==1.14.0",
        "torch": "torch==2.5.1+cu124",
        "tqdm": "tqdm==4.66.0",
    }
    reasons = {s.line: s.reason for s in skipped}
    assert reasons[LONG_EDITABLE].startswith("editable")
    assert reasons["-e /home/u/foo"].startswith("editable")
    assert reasons[next(k for k in reasons if k.startswith("insightface @ https://"))].startswith(
        "URL install"
    )
    assert reasons["mylocal @ file:///C:/wheels/mylocal-1.0-py3-none-any.whl"].startswith("local path")
    assert reasons["requests>=2"] == "not pinned with =="
    assert len(skipped) == 5  # pip's own comment line is not reported
    assert lock.options == ("--index-url https://pypi.org/simple", "--extra-index-url https://t/whl/cu124")
    assert lock.meta["source"] == "manager-snapshot snap.json"
    assert lock.lists["node"] == (
        "core - git=0e2c1a6f8b7d4e3c2b1a09f8e7d6c5b4a3928170",
        "ComfyUI_IPAdapter_plus - git=1234567890123456789012345678901234567890 "
        "url=https://github.com/cubiq/ComfyUI_IPAdapter_plus.git",
        "ComfyUI-Manager - git=d8a9b0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7 url=https://github.com/ltdrdata/ComfyUI-Manager",
        "comfyui-impact-pack - cnr=8.8.1",
        "rgthree-comfy - cnr=1.0",
    )
    warnings = lock.lists["warning"]
    assert any(w.startswith("not carried: -e /home/u/foo") for w in warnings)
    assert any("torch==2.5.1+cu124 is a PyTorch build" in w for w in warnings)
    _, _ = to_lock(read_snapshot(path), str(path), ["--no-index"], "https://t/whl", no_index=True)
    assert "--extra-index-url" not in " ".join(
        to_lock(read_snapshot(path), str(path), [], "x", no_index=True)[0].options
    )


def test_node_line_parsing():
    assert parse_node_line("NodeA requirements.txt git=abc") == ("NodeA", "requirements.txt", {"git": "abc"})
    assert parse_node_line("My Node - git=abc url=https://x/y") == (
        "My Node",
        "-",
        {"git": "abc", "url": "https://x/y"},
    )
    assert parse_node_line("core pyproject.toml") == ("core", "pyproject.toml", {})
    assert parse_node_line("rgthree - cnr=1.0") == ("rgthree", "-", {"cnr": "1.0"})


def fake_git(folder: Path, sha: str, config: str = "") -> None:
    git = folder / ".git"
    (git / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    (git / "refs" / "heads" / "main").write_text(sha + "\n")
    (git / "config").write_text(config)


def test_origin_url_reads_git_config(tmp_path):
    node = tmp_path / "Node"
    fake_git(
        node,
        "a" * 40,
        '[core]\n\tbare = false\n[remote "upstream"]\n\turl = https://example.org/up.git\n'
        '[remote "origin"]\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
        "\turl = git@github.com:me/Node.git\n",
    )
    assert origin_url(node) == "git@github.com:me/Node.git"
    only = tmp_path / "Only"
    fake_git(only, "b" * 40, '[remote "fork"]\n    url = https://example.org/fork\n')
    assert origin_url(only) == "https://example.org/fork"
    worktree = tmp_path / "Tree"
    worktree.mkdir()
    (node / ".git" / "worktrees" / "Tree").mkdir(parents=True)
    (node / ".git" / "worktrees" / "Tree" / "commondir").write_text("../..\n")
    (worktree / ".git").write_text(f"gitdir: {node / '.git' / 'worktrees' / 'Tree'}\n")
    assert origin_url(worktree) == "git@github.com:me/Node.git"
    assert origin_url(tmp_path / "none") is None


def test_lock_to_manager_snapshot_from_node_folders(tmp_path):
    root = tmp_path / "ComfyUI"
    fake_git(root, "c" * 40)
    fake_git(
        root / "custom_nodes" / "NodeA", "a" * 40, '[remote "origin"]\n\turl = https://github.com/me/NodeA\n'
    )
    reg = root / "custom_nodes" / "registry-node"
    reg.mkdir(parents=True)
    (reg / ".tracking").write_text("")
    (reg / "pyproject.toml").write_text('[project]\nname = "Registry-Node"\nversion = "2.5.0"\n')
    (root / "custom_nodes" / "Plain").mkdir()
    (root / "custom_nodes" / "single.py").write_text("")
    (root / "custom_nodes" / "gone.py.disabled").write_text("")
    the_lock = Lock(
        pins=(
            Pin("numpy", "numpy==1.26.4"),
            Pin("foo", "foo @ https://example.org/foo-1.0-py3-none-any.whl"),
        ),
        options=("--find-links /wheels",),
        lists={
            "node": (
                f"core requirements.txt git={'c' * 40}",
                f"NodeA requirements.txt git={'a' * 40}",
                "registry-node pyproject.toml",
                "Plain requirements.txt",
            )
        },
    )
    snap, notes = to_manager_snapshot(the_lock, root)
    assert snap == {
        "comfyui": "c" * 40,
        "git_custom_nodes": {"https://github.com/me/NodeA": {"hash": "a" * 40, "disabled": False}},
        "cnr_custom_nodes": {"registry-node": "2.5.0"},
        "file_custom_nodes": [
            {"filename": "gone.py.disabled", "disabled": True},
            {"filename": "single.py", "disabled": False},
        ],
        "pips": {"numpy==1.26.4": "", "foo": "https://example.org/foo-1.0-py3-none-any.whl"},
    }
    assert any("Plain" in n and "cannot restore" in n for n in notes)
    assert any("--find-links /wheels" in n for n in notes)


# --- end to end through the CLI, real uv ---------------------------------------------------------


def test_import_snapshot_then_sync_restores_exactly_with_removals(comfy, venv, index, tmp_path, capsys):
    root = comfy("numpy\n")
    install(venv, index, "torch==2.6.0", "pillow==11.0.0", "numpy==2.1.0")
    snap = tmp_path / "2023-11-02_09-30-00_autosave.yaml"
    snap.write_text(
        "custom_nodes:\n  cnr_custom_nodes: {}\n  comfyui: null\n  file_custom_nodes: []\n"
        "  git_custom_nodes: {}\n  pips:\n    filelock==3.16.1: ''\n    numpy==1.26.4: ''\n"
        "    torch==2.5.1: ''\n    tqdm==4.66.0: ''\n    -e /home/me/dev/thing: ''\n"
    )
    assert run(root, venv, None, "import-snapshot", str(snap), "--no-index", "--find-links", str(index)) == 0
    out = capsys.readouterr().out
    assert "4 packages" in out and "-e /home/me/dev/thing: editable" in out
    lock = read_lock(root / "comfylock.lock")
    assert lock.intact and lock.meta["source"] == f"manager-snapshot {snap.name}"
    assert run(root, venv, None, "sync") == 0
    assert installed(venv) == {"filelock": "3.16.1", "numpy": "1.26.4", "torch": "2.5.1", "tqdm": "4.66.0"}
    assert run(root, venv, None, "check") == 0


def test_import_snapshot_dry_run_and_json(comfy, venv, tmp_path, capsys):
    root = comfy("")
    snap = tmp_path / "s.json"
    snap.write_text(json.dumps(manager_dict(), indent=4))
    assert run(root, venv, None, "import-snapshot", str(snap), "--dry-run", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "comfylock.import-snapshot/1"
    assert report["written"] is False and report["packages"] == 5
    assert {x["line"] for x in report["not_carried"]} >= {"-e /home/u/foo", "requests>=2"}
    assert {c["name"]: c["kind"] for c in report["changes"]}["torch"] == "added"
    assert not (root / "comfylock.lock").exists()


def test_import_snapshot_missing_file_exit_2(comfy, venv, tmp_path, capsys):
    root = comfy("")
    assert run(root, venv, None, "import-snapshot", str(tmp_path / "nope.json")) == 2
    assert "no such snapshot file" in capsys.readouterr().err


def test_export_manager_snapshot_round_trips_through_import(comfy, venv, index, tmp_path, capsys):
    root = comfy("numpy<2\n", {"NodeA": {"requirements.txt": "tqdm\n"}})
    fake_git(root, "c" * 40)
    fake_git(
        root / "custom_nodes" / "NodeA", "a" * 40, '[remote "origin"]\n\turl = https://github.com/me/NodeA\n'
    )
    assert (
        main(["compile", "--comfyui", str(root), "--python", str(venv), "--no-index", "-f", str(index)]) == 0
    )
    out_json = tmp_path / "snapshots" / "comfylock.json"
    assert run(root, venv, None, "export", "--format", "manager-snapshot", "-o", str(out_json)) == 0
    snap = json.loads(out_json.read_text())
    assert snap["comfyui"] == "c" * 40
    assert snap["git_custom_nodes"] == {"https://github.com/me/NodeA": {"hash": "a" * 40, "disabled": False}}
    assert snap["pips"] == {"numpy==1.26.4": "", "tqdm==4.66.0": ""}
    out_yaml = tmp_path / "snapshots" / "comfylock.yaml"
    assert run(root, venv, None, "export", "--format", "manager-snapshot", "-o", str(out_yaml)) == 0
    assert read_snapshot(out_yaml) == read_snapshot(out_json)
    capsys.readouterr()
    assert run(root, venv, None, "export", "--format", "manager-snapshot") == 0  # to standard output
    assert json.loads(capsys.readouterr().out) == snap
    other = tmp_path / "other.lock"
    assert (
        run(root, venv, None, "import-snapshot", str(out_yaml), "--lock", str(other), "-f", str(index)) == 0
    )
    assert [p.spec for p in read_lock(other).pins] == [
        p.spec for p in read_lock(root / "comfylock.lock").pins
    ]
    assert "NodeA - git=" + "a" * 40 + " url=https://github.com/me/NodeA" in read_lock(other).lists["node"]


def test_credentials_in_snapshot_urls_are_not_repeated(tmp_path):
    path = tmp_path / "s.json"
    data = manager_dict()
    data["pips"] = {
        "-e git+https://user:ghp_secret@github.com/me/pkg@abc#egg=pkg": "",
        "private": "https://me:hunter2@wheels.example.org/private-1.0-py3-none-any.whl",
        "numpy==1.26.4": "",
    }
    path.write_text(json.dumps(data))
    lock, skipped = to_lock(read_snapshot(path), str(path), [], "https://t/whl")
    text = " ".join(s.line for s in skipped) + " ".join(lock.lists["warning"])
    assert "ghp_secret" not in text and "hunter2" not in text
    assert "github.com/me/pkg" in text and "wheels.example.org/private" in text
    snap, _ = to_manager_snapshot(
        Lock(pins=(Pin("p", "p @ https://me:hunter2@wheels.example.org/p-1.0-py3-none-any.whl"),)), None
    )
    assert snap["pips"] == {"p": "https://wheels.example.org/p-1.0-py3-none-any.whl"}
