"""The no-op shortcut: `compile` skips uv only when nothing that decides the result changed.

One test per input that decides the result (the fingerprint must change), and the changes that do
not (it must not). Each case compiles once, changes one thing, and asks again.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import install
from wheels import make_wheel

from comfylock import api


def compile_(root: Path, venv: Path, index: Path, **kw: object) -> api.CompileResult:
    ctx = api.Context.open(root, python=venv)
    links = kw.pop("links", (str(index),))
    opts = api.IndexOptions(find_links=tuple(links), no_index=True)  # type: ignore[arg-type]
    return api.compile(ctx, index=opts, **kw)  # type: ignore[arg-type]


@pytest.fixture
def tree(comfy, venv, index):
    root = comfy("numpy\n", {"A": {"requirements.txt": "tqdm\n"}})
    assert not compile_(root, venv, index).up_to_date
    assert compile_(root, venv, index).up_to_date  # nothing changed: uv is not run
    return root


CHANGES: dict[str, Callable[..., dict]] = {}


def change(name: str):
    def register(fn):
        CHANGES[name] = fn
        return fn

    return register


@change("node file content")
def _node_file(root, venv, index, tmp_path, monkeypatch):
    (root / "custom_nodes" / "A" / "requirements.txt").write_text("tqdm>=4\n")
    return {}


@change("included file content")
def _include(root, venv, index, tmp_path, monkeypatch):
    node = root / "custom_nodes" / "A"
    (node / "extra.txt").write_text("pillow\n")
    (node / "requirements.txt").write_text("tqdm\n-r extra.txt\n")
    assert not compile_(root, venv, index).up_to_date
    (node / "extra.txt").write_text("pillow>=10\n")
    return {}


@change("an include's folder link pointed elsewhere")
def _include_link(root, venv, index, tmp_path, monkeypatch):
    node = root / "custom_nodes" / "A"
    (node / "reqs-a").mkdir()
    (node / "reqs-b").mkdir()
    (node / "reqs-a" / "common.txt").write_text("pillow\n")
    (node / "reqs-b" / "common.txt").write_text("pillow>=10\n")
    try:
        (node / "reqs").symlink_to("reqs-a", target_is_directory=True)
    except OSError as e:  # symlinks need a privilege on Windows
        pytest.skip(f"no symlinks here: {e}")
    (node / "requirements.txt").write_text("tqdm\n-r reqs/common.txt\n")
    assert not compile_(root, venv, index).up_to_date
    (node / "reqs").unlink()
    (node / "reqs").symlink_to("reqs-b", target_is_directory=True)
    return {}


@change("a new node")
def _new_node(root, venv, index, tmp_path, monkeypatch):
    (root / "custom_nodes" / "B").mkdir()
    (root / "custom_nodes" / "B" / "requirements.txt").write_text("pillow\n")
    return {}


@change("a node's choice of file")
def _choice(root, venv, index, tmp_path, monkeypatch):
    (root / "custom_nodes" / "A" / "other.txt").write_text("tqdm\n")
    (root / "user" / "comfylock").mkdir(parents=True, exist_ok=True)
    (root / "user" / "comfylock" / "config.toml").write_text('[nodes.A]\nsource = "other.txt"\n')
    return {}


@change("core requirements")
def _core(root, venv, index, tmp_path, monkeypatch):
    (root / "requirements.txt").write_text("numpy<2\n")
    return {}


@change("user requirements")
def _user(root, venv, index, tmp_path, monkeypatch):
    api.add(api.Context.open(root, python=venv), ["pillow"])
    return {}


@change("user policy")
def _user_policy(root, venv, index, tmp_path, monkeypatch):
    (root / "user" / "comfylock").mkdir(parents=True, exist_ok=True)
    (root / "user" / "comfylock" / "pip-policy.user.json").write_text(
        '{"tqdm": {"apply_first_match": [{"type": "force_version", "version": "4.66.0"}]}}'
    )
    return {}


@change("a --policy file")
def _extra_policy(root, venv, index, tmp_path, monkeypatch):
    f = tmp_path / "p.json"
    f.write_text('{"pillow": {"uninstall": [{"target": "pillow"}]}}')
    return {"policy_files": [f]}


@change("the default policy left out")
def _no_default(root, venv, index, tmp_path, monkeypatch):
    return {"default_policy": False}


@change("index options")
def _index(root, venv, index, tmp_path, monkeypatch):
    return {"links": (str(index), str(tmp_path))}


@change("target interpreter")
def _interpreter(root, venv, index, tmp_path, monkeypatch):
    other = tmp_path / "other-venv"
    subprocess.run(
        [sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, str(other)], check=True
    )
    return {"_python": other}


@change("target platform")
def _platform(root, venv, index, tmp_path, monkeypatch):
    return {"python_platform": "x86_64-pc-windows-msvc", "python_version": "3.11"}


@change("installed version a policy reads")
def _installed(root, venv, index, tmp_path, monkeypatch):
    install(venv, index, "torch==2.5.1")  # the default policy pins the installed torch stack
    return {}


@change("uv version")
def _uv(root, venv, index, tmp_path, monkeypatch):
    monkeypatch.setattr("comfylock.resolve.uv.uv_version", lambda: "0.13.999")
    return {}


@change("comfylock version")
def _comfylock(root, venv, index, tmp_path, monkeypatch):
    monkeypatch.setattr("comfylock.resolve.fingerprint.__version__", "9.9.9")
    monkeypatch.setattr("comfylock.resolve.quick.__version__", "9.9.9")
    return {}


@change("torch index")
def _torch_index(root, venv, index, tmp_path, monkeypatch):
    (root / "user" / "comfylock").mkdir(parents=True, exist_ok=True)
    (root / "user" / "comfylock" / "config.toml").write_text(f'torch-index = "{tmp_path.as_posix()}"\n')
    return {}


@pytest.mark.parametrize("name", sorted(CHANGES))
@pytest.mark.parametrize("check", ["quick", "full"])
def test_fingerprint_changes_with_each_input(check, name, tree, venv, index, tmp_path, monkeypatch):
    """Both no-op checks see every change: the quick one (files' bytes, before parsing anything) and,
    with its record gone, the lock's fingerprint of the parsed inputs."""
    kw = CHANGES[name](tree, venv, index, tmp_path, monkeypatch)
    python = kw.pop("_python", venv)
    if check == "full":
        (tree / "user" / "comfylock" / ".compile-cache.json").unlink()
    r = compile_(tree, python, index, dry_run=True, **kw)
    assert not r.up_to_date, name


def test_quick_check_parses_nothing(tree, venv, index, monkeypatch):
    """Nothing changed: the quick check answers without collecting, and collects only if asked."""
    import comfylock.collect.gather

    calls = []
    real = comfylock.collect.gather.collect
    monkeypatch.setattr(comfylock.collect.gather, "collect", lambda *a, **k: calls.append(1) or real(*a, **k))
    r = compile_(tree, venv, index)
    assert r.up_to_date and r.nodes == 1 and not calls
    assert [i.node for i in r.collection.inputs] == ["core", "A", "user"] and calls == [1]


def test_quick_record_is_only_written_by_a_compile_that_succeeds(comfy, venv, index):
    root = comfy("numpy\n", {"A": {"requirements.txt": "tqdm\n"}})
    record = root / "user" / "comfylock" / ".compile-cache.json"
    compile_(root, venv, index, dry_run=True)
    assert not record.exists()
    (root / "custom_nodes" / "A" / "requirements.txt").write_text("tqdm\nnot a requirement!\n")
    with pytest.raises(api.InputError):
        compile_(root, venv, index)
    assert not record.exists() and not (root / "comfylock.lock").exists()


def test_damaged_quick_record_falls_back_to_the_full_check(tree, venv, index):
    record = tree / "user" / "comfylock" / ".compile-cache.json"
    for junk in ("{not json", "[]", '{"x": 1}', "{}"):
        record.write_text(junk)
        assert compile_(tree, venv, index).up_to_date


def test_fingerprint_ignores_what_does_not_decide(tree, venv, index, tmp_path):
    # An unrelated installed package, a touched-but-identical file, a lock read back: still up to date.
    own = tmp_path / "own"
    make_wheel(own, "unrelated", "1.0")
    install(venv, own, "unrelated==1.0")
    f = tree / "custom_nodes" / "A" / "requirements.txt"
    f.write_text(f.read_text())
    (tree / "custom_nodes" / "single_file_node.py").write_text("# no requirements\n")
    assert compile_(tree, venv, index).up_to_date
    # `comfylock remove` of your last requirement leaves an empty list: the same inputs as none
    (tree / "user" / "comfylock" / "requirements.txt").write_text("# mine\n")
    (tree / "user" / "comfylock" / ".compile-cache.json").unlink()
    assert compile_(tree, venv, index).up_to_date


@pytest.mark.parametrize("flag", [{"upgrade": True}, {"upgrade_packages": ["tqdm"]}, {"refresh": True}])
def test_upgrade_and_refresh_always_resolve(tree, venv, index, flag):
    assert not compile_(tree, venv, index, dry_run=True, **flag).up_to_date


def test_hand_edited_lock_is_never_up_to_date(tree, venv, index):
    lock = tree / "comfylock.lock"
    lock.write_text(lock.read_text().replace("numpy==2.1.0", "numpy==1.26.4"))
    r = compile_(tree, venv, index)
    assert not r.up_to_date
    # Resolved again and written whole: the edited pin was only a preference, the body hash is true.
    from comfylock.lockfile.lock import read_lock

    assert read_lock(lock).intact


def test_a_file_edited_while_compiling_is_not_taken_as_compiled(tree, venv, index, monkeypatch):
    """The quick record pairs the lock with the bytes that were parsed, not with a later read."""
    from comfylock.resolve import quick as _quick

    f = tree / "custom_nodes" / "A" / "requirements.txt"
    f.write_text("tqdm>=4\n")
    real = _quick.snapshot

    def edit_then_snapshot(files, parsed):
        if parsed:  # the compile's own snapshot, after collecting (not the quick check's)
            f.write_text("tqdm>=4.1\n")  # saved by an editor just after comfylock read it
        return real(files, parsed)

    monkeypatch.setattr(_quick, "snapshot", edit_then_snapshot)
    assert not compile_(tree, venv, index).up_to_date
    monkeypatch.setattr(_quick, "snapshot", real)
    assert not compile_(tree, venv, index).up_to_date  # the edit is seen: resolved again
    assert compile_(tree, venv, index).up_to_date
