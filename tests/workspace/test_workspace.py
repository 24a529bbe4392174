"""Stage 1: ComfyUI, node and interpreter discovery on fake Linux, macOS and Windows trees.

Discovery only checks that files exist, so empty files named python / python.exe stand in for
interpreters and the Windows layout is tested on any OS with windows=True.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from comfylock._exceptions import WorkspaceError
from comfylock.environment import probe as workspace
from comfylock.environment.probe import gpu_available, probe_target
from comfylock.workspace.layout import Node, find_comfyui, find_nodes, find_python, open_workspace

OSES = ["linux", "macos", "windows"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def make_comfyui(root: Path, marker: str = "main.py") -> Path:
    (root / "custom_nodes").mkdir(parents=True)
    if marker.endswith("/"):
        (root / marker).mkdir()
    else:
        touch(root / marker)
    return root


def make_venv(venv: Path, os_name: str) -> Path:
    """A fake venv for the given OS; returns its interpreter path."""
    return touch(venv / ("Scripts/python.exe" if os_name == "windows" else "bin/python"))


def can_symlink(tmp_path: Path) -> bool:
    try:
        (tmp_path / "_probe_link").symlink_to(tmp_path)
    except (OSError, NotImplementedError):
        return False
    (tmp_path / "_probe_link").unlink()
    return True


# --- find_comfyui ---------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["main.py", "requirements.txt", "comfy/"])
def test_comfyui_folder_markers(tmp_path: Path, marker: str) -> None:
    root = make_comfyui(tmp_path / "ComfyUI", marker)
    assert find_comfyui(root, tmp_path, {}) == root.resolve()


def test_custom_nodes_alone_is_not_comfyui(tmp_path: Path) -> None:
    (tmp_path / "x" / "custom_nodes").mkdir(parents=True)
    with pytest.raises(WorkspaceError):
        find_comfyui(tmp_path / "x", tmp_path, {})


def test_custom_nodes_must_be_a_directory(tmp_path: Path) -> None:
    touch(tmp_path / "x" / "main.py")
    touch(tmp_path / "x" / "custom_nodes")
    with pytest.raises(WorkspaceError):
        find_comfyui(tmp_path / "x", tmp_path, {})


def test_explicit_wins_over_cwd_and_env(tmp_path: Path) -> None:
    chosen = make_comfyui(tmp_path / "chosen")
    cwd = make_comfyui(tmp_path / "cwd")
    env = make_comfyui(tmp_path / "env")
    assert find_comfyui(str(chosen), cwd, {"COMFYUI_PATH": str(env)}) == chosen.resolve()


def test_explicit_relative_to_cwd(tmp_path: Path) -> None:
    make_comfyui(tmp_path / "ComfyUI")
    found = find_comfyui("ComfyUI", tmp_path, {})
    assert found == (tmp_path / "ComfyUI").resolve()
    assert found.is_absolute()


def test_explicit_not_comfyui_is_an_error_even_if_cwd_is(tmp_path: Path) -> None:
    cwd = make_comfyui(tmp_path / "cwd")
    (tmp_path / "x").mkdir()
    with pytest.raises(WorkspaceError) as info:
        find_comfyui(tmp_path / "x", cwd, {})
    text = str(info.value)
    assert f"{tmp_path / 'x'} is not a ComfyUI folder" in text
    assert "looked for custom_nodes/ beside main.py or requirements.txt" in text
    assert "--comfyui DIR" in text and "COMFYUI_PATH" in text
    assert "\n" not in text


def test_explicit_portable_outer_folder_hints_inner(tmp_path: Path) -> None:
    outer = tmp_path / "ComfyUI_windows_portable"
    make_comfyui(outer / "ComfyUI")
    with pytest.raises(WorkspaceError) as info:
        find_comfyui(outer, tmp_path, {})
    assert info.value.hint == f"did you mean {outer / 'ComfyUI'}?"


def test_cwd_wins_over_env(tmp_path: Path) -> None:
    cwd = make_comfyui(tmp_path / "cwd")
    env = make_comfyui(tmp_path / "env")
    assert find_comfyui(None, cwd, {"COMFYUI_PATH": str(env)}) == cwd.resolve()


def test_cwd_portable_outer_folder(tmp_path: Path) -> None:
    outer = tmp_path / "ComfyUI_windows_portable"
    inner = make_comfyui(outer / "ComfyUI")
    touch(outer / "python_embeded" / "python.exe")
    assert find_comfyui(None, outer, {}) == inner.resolve()


def test_env_comfyui_path(tmp_path: Path) -> None:
    env = make_comfyui(tmp_path / "env")
    (tmp_path / "elsewhere").mkdir()
    assert find_comfyui(None, tmp_path / "elsewhere", {"COMFYUI_PATH": str(env)}) == env.resolve()


def test_env_comfyui_path_not_comfyui(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    with pytest.raises(WorkspaceError) as info:
        find_comfyui(None, tmp_path, {"COMFYUI_PATH": str(tmp_path / "env")})
    assert f"{tmp_path / 'env'} is not a ComfyUI folder" in str(info.value)
    assert "COMFYUI_PATH" in str(info.value.hint)


def test_nothing_found_names_cwd(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        find_comfyui(None, tmp_path, {"COMFYUI_PATH": ""})
    assert str(info.value).startswith(f"{tmp_path} is not a ComfyUI folder: looked for custom_nodes/")
    assert info.value.hint == "pass --comfyui DIR or set COMFYUI_PATH"


def test_found_path_is_resolved(tmp_path: Path) -> None:
    if not can_symlink(tmp_path):
        pytest.skip("symlinks not available")
    real = make_comfyui(tmp_path / "real")
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert find_comfyui(tmp_path / "link", tmp_path, {}) == real.resolve()


# --- find_nodes -----------------------------------------------------------------------------------


def test_find_nodes_skips_and_orders(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    custom = root / "custom_nodes"
    for name in [
        "b_node",
        "a_node",
        "A_node",
        "Zeta",
        "x.disabled",
        ".hidden",
        "__pycache__",
        ".disabled/old",
    ]:
        (custom / name).mkdir(parents=True)
    touch(custom / "single_file_node.py")
    touch(custom / "README.md")
    nodes = find_nodes(root)
    assert [n.name for n in nodes] == ["A_node", "a_node", "b_node", "Zeta"]
    assert all(n.path == custom / n.name for n in nodes)


def test_find_nodes_empty(tmp_path: Path) -> None:
    assert find_nodes(make_comfyui(tmp_path / "ComfyUI")) == ()


def test_find_nodes_keeps_symlink_outside_root_unresolved(tmp_path: Path) -> None:
    if not can_symlink(tmp_path):
        pytest.skip("symlinks not available")
    root = make_comfyui(tmp_path / "ComfyUI")
    outside = tmp_path / "dev" / "my-node"
    outside.mkdir(parents=True)
    link = root / "custom_nodes" / "my-node"
    link.symlink_to(outside, target_is_directory=True)
    (root / "custom_nodes" / "dangling").symlink_to(tmp_path / "gone", target_is_directory=True)
    assert find_nodes(root) == (Node(name="my-node", path=link),)


# --- find_python ----------------------------------------------------------------------------------


@pytest.fixture(params=OSES)
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Path | str]:
    """Every candidate interpreter present; the portable one is the real Windows layout on every OS."""
    os_name: str = request.param
    outer = tmp_path / "ComfyUI_windows_portable" if os_name == "windows" else tmp_path
    root = make_comfyui(outer / "ComfyUI")
    return {
        "os": os_name,
        "root": root,
        "virtual_env": tmp_path / "active-venv",
        "active": make_venv(tmp_path / "active-venv", os_name),
        "venv": make_venv(root / "venv", os_name),
        "dotvenv": make_venv(root / ".venv", os_name),
        "portable": touch(outer / "python_embeded" / "python.exe"),
        "current": touch(tmp_path / "current" / "python"),
    }


def _find(tree: dict[str, Path | str], explicit: str | Path | None = None, **environ: str) -> Path:
    return find_python(
        Path(tree["root"]),
        explicit,
        environ,
        windows=tree["os"] == "windows",
        current=str(tree["current"]),
    )


def test_precedence_ladder(tree: dict[str, Path | str]) -> None:
    env = {"VIRTUAL_ENV": str(tree["virtual_env"])}
    assert _find(tree, None, **env) == tree["active"]
    Path(tree["active"]).unlink()  # an activated venv without an interpreter is passed over
    assert _find(tree, None, **env) == tree["venv"]
    Path(tree["venv"]).unlink()
    assert _find(tree, None, **env) == tree["dotvenv"]
    Path(tree["dotvenv"]).unlink()
    assert _find(tree, None, **env) == tree["portable"]
    Path(tree["portable"]).unlink()
    assert _find(tree, None, **env) == tree["current"]


def test_explicit_interpreter_wins(tree: dict[str, Path | str], tmp_path: Path) -> None:
    chosen = touch(tmp_path / "elsewhere" / "python3.12")
    assert _find(tree, chosen, VIRTUAL_ENV=str(tree["virtual_env"])) == chosen


def test_explicit_venv_dir(tree: dict[str, Path | str], tmp_path: Path) -> None:
    interpreter = make_venv(tmp_path / "chosen-venv", str(tree["os"]))
    assert _find(tree, tmp_path / "chosen-venv", VIRTUAL_ENV=str(tree["virtual_env"])) == interpreter


def test_explicit_dir_without_interpreter(tree: dict[str, Path | str], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceError) as info:
        _find(tree, tmp_path / "empty")
    assert info.value.path == tmp_path / "empty"


def test_explicit_missing_is_an_error(tree: dict[str, Path | str], tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError) as info:
        _find(tree, tmp_path / "no" / "python")
    assert info.value.path == tmp_path / "no" / "python"
    assert "--python PY" in str(info.value)


def test_explicit_relative_becomes_absolute(
    tree: dict[str, Path | str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(tree["root"]))
    found = _find(tree, "venv")
    assert found.is_absolute()
    assert found == tree["venv"]


def test_windows_explicit_without_exe_suffix(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    interpreter = make_venv(root / "venv", "windows")
    found = find_python(root, root / "venv" / "Scripts" / "python", {}, windows=True, current="")
    assert found == interpreter


def test_windows_layout_ignores_posix_venv_and_back(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    make_venv(root / "venv", "linux")
    make_venv(root / ".venv", "windows")
    current = str(touch(tmp_path / "current"))
    assert find_python(root, None, {}, windows=True, current=current) == root / ".venv/Scripts/python.exe"
    assert find_python(root, None, {}, windows=False, current=current) == root / "venv/bin/python"


def test_posix_venv_with_only_python3(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    interpreter = touch(root / "venv" / "bin" / "python3")
    assert find_python(root, None, {}, windows=False, current="") == interpreter


def test_portable_checked_on_posix_too(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI_windows_portable" / "ComfyUI")
    embedded = touch(root.parent / "python_embeded" / "python.exe")
    assert find_python(root, None, {}, windows=False, current="/usr/bin/python3") == embedded


def test_venv_symlink_not_resolved(tmp_path: Path) -> None:
    if not can_symlink(tmp_path):
        pytest.skip("symlinks not available")
    base = touch(tmp_path / "base" / "bin" / "python3.11")
    root = make_comfyui(tmp_path / "ComfyUI")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").symlink_to(base)
    assert find_python(root, None, {}, windows=False, current="") == root / "venv" / "bin" / "python"
    assert find_python(root, root / "venv", {}, windows=False, current="") == root / "venv" / "bin" / "python"


def test_no_interpreter_at_all(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    with pytest.raises(WorkspaceError):
        find_python(root, None, {}, windows=False, current="")


# --- open_workspace -------------------------------------------------------------------------------


def test_open_workspace(tmp_path: Path) -> None:
    root = make_comfyui(tmp_path / "ComfyUI")
    (root / "custom_nodes" / "node-a").mkdir()
    # Both layouts, so the default windows= (this machine's OS) finds one.
    make_venv(root / "venv", "linux")
    make_venv(root / "venv", "windows")
    ws = open_workspace(cwd=root, environ={})
    assert ws.root == root.resolve()
    assert [n.name for n in ws.nodes] == ["node-a"]
    assert ws.python.parent.parent == root.resolve() / "venv"
    assert ws.user_dir == root.resolve() / "user" / "comfylock"
    assert ws.default_lock == root.resolve() / "comfylock.lock"


# --- probe_target ---------------------------------------------------------------------------------


def test_probe_real_interpreter() -> None:
    target = probe_target(Path(sys.executable))
    assert target.python == Path(sys.executable)
    assert target.version == platform.python_version()
    assert target.implementation == sys.implementation.name
    assert target.sys_platform == sys.platform
    assert target.machine == platform.machine()
    assert "packaging" in target.installed
    Version(target.installed["packaging"])
    assert all(name == name.lower() and "_" not in name and "." not in name for name in target.installed)
    assert target.os in {"linux", "macos", "windows"} or target.os == sys.platform


def test_probe_missing_interpreter(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "python"
    with pytest.raises(WorkspaceError) as info:
        probe_target(missing)
    assert info.value.path == missing
    assert "--python PY" in str(info.value)


def test_probe_nonzero_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "_PROBE_SCRIPT", "import sys; sys.exit('boom')")
    with pytest.raises(WorkspaceError) as info:
        probe_target(Path(sys.executable))
    assert "exit 1" in str(info.value) and "boom" in str(info.value)


def test_probe_bad_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "_PROBE_SCRIPT", "print('not json')")
    with pytest.raises(WorkspaceError, match="unexpected answer"):
        probe_target(Path(sys.executable))


def test_probe_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(*args: object, **kwargs: object) -> None:
        raise subprocess.TimeoutExpired(cmd="python", timeout=60)

    monkeypatch.setattr(subprocess, "run", hang)
    with pytest.raises(WorkspaceError, match="did not answer"):
        probe_target(Path(sys.executable))


FACTS = {"version": "3.12.1", "implementation": "cpython", "sys_platform": "win32", "machine": "AMD64"}


def test_parse_tolerates_noise_before_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "_nvidia_driver_present", lambda: False)
    out = "sitecustomize says hi\n" + json.dumps({**FACTS, "installed": {"torch": "2.5.1+cu124"}}) + "\n"
    target = workspace._parse_probe(Path("python.exe"), out)
    assert target.os == "windows"
    assert target.has_gpu


@pytest.mark.parametrize(
    "facts",
    [
        FACTS,
        {**FACTS, "installed": []},
        {**FACTS, "version": 3, "installed": {}},
        {**FACTS, "installed": {"a": 1}},
    ],
)
def test_parse_rejects_wrong_shape(facts: dict[str, object]) -> None:
    with pytest.raises(WorkspaceError):
        workspace._parse_probe(Path("python"), json.dumps(facts))


def test_probe_script_canonical_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Run the probe script in-process over a fake site dir: names normalised, nameless dists skipped,
    # metadata read only where the folder name has no version.
    site = tmp_path / "site"
    touch(site / "Foo_Bar.Baz-1.0.dist-info" / "METADATA").write_text("Name: Foo_Bar.Baz\nVersion: 1.0\n")
    touch(site / "nameless.dist-info" / "METADATA").write_text("Version: 2.0\n")
    touch(site / "Read_Me.egg-info" / "PKG-INFO").write_text("Name: Read_Me\nVersion: 3.0\n\nbody\n")
    touch(site / "old_pkg-0.9-py3.11.egg-info" / "PKG-INFO").write_text("")
    import sysconfig

    sysconfig.get_paths()  # its config is read before sys.path is narrowed to the fake site dir

    monkeypatch.setattr(sys, "path", [str(site)])
    exec(workspace._PROBE_SCRIPT, {})
    # sys.path is "visible" (what policies read); "installed" is the own site folders alone
    visible = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["visible"]
    assert visible == {"foo-bar-baz": "1.0", "read-me": "3.0", "old-pkg": "0.9"}


@pytest.mark.parametrize(
    ("torch", "driver", "expected"),
    [
        ("2.5.1+cu124", False, True),
        ("2.5.1+CU118", False, True),
        ("2.5.1+rocm6.2", False, True),
        ("2.5.1+cpu", False, False),
        ("2.5.1", False, False),
        (None, False, False),
        ("2.5.1", True, True),
        ("2.5.1+cpu", True, True),
        (None, True, True),
    ],
)
def test_gpu_available(torch: str | None, driver: bool, expected: bool) -> None:
    assert gpu_available(torch, driver) is expected


def test_probe_has_gpu_uses_driver_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workspace, "_nvidia_driver_present", lambda: True)
    assert probe_target(Path(sys.executable)).has_gpu
    monkeypatch.setattr(workspace, "_nvidia_driver_present", lambda: False)
    target = probe_target(Path(sys.executable))
    assert target.has_gpu is gpu_available(target.installed.get("torch"), False)


def test_nvidia_driver_check_finds_nvidia_smi_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    name = "nvidia-smi.exe" if os.name == "nt" else "nvidia-smi"
    (tmp_path / name).write_text("")
    (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PATHEXT", ".COM;.EXE")
    assert workspace._nvidia_driver_present()
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    assert workspace._nvidia_driver_present() is os.path.exists("/proc/driver/nvidia/version")


@pytest.mark.skipif(os.name == "nt", reason="symlink loops need POSIX symlinks")
def test_broken_or_looping_node_links_are_skipped(tmp_path: Path) -> None:
    """ComfyUI skips them; one bad entry must not stop every command."""
    root = make_comfyui(tmp_path / "ComfyUI")
    custom = root / "custom_nodes"
    (custom / "Good").mkdir(parents=True)
    (custom / "file.txt").write_text("")
    os.symlink("loop", custom / "loop")  # points at itself
    os.symlink(custom / "file.txt" / "x", custom / "notdir")
    os.symlink(tmp_path / "gone", custom / "dangling")
    assert [n.name for n in find_nodes(root)] == ["Good"]
