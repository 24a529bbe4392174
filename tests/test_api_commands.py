"""Every command through comfylock.api: typed results, one place for the lock path and index options,
writes under the workspace lock, each fast path behind its one object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import age, run

from comfylock import api
from comfylock._exceptions import ResolutionError, WriteError
from comfylock.lockfile.lock import read_lock
from comfylock.resolve import quick
from comfylock.workspace.layout import Workspace, open_workspace

SNAPSHOT = {
    "comfyui": None,
    "git_custom_nodes": {},
    "cnr_custom_nodes": {},
    "file_custom_nodes": [],
    "pips": {},
}


def test_import_snapshot_anchors_a_relative_find_links_at_the_cwd(comfy, venv, tmp_path, monkeypatch):
    """`import-snapshot -f wheels` records the folder as compile would: absolute, from where it was typed."""
    root = comfy("numpy\n")
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({**SNAPSHOT, "pips": {"numpy==1.26.4": ""}}))
    (tmp_path / "wheels").mkdir()
    monkeypatch.chdir(tmp_path)
    assert run(root, venv, None, "import-snapshot", str(snap), "-f", "wheels") == 0
    options = read_lock(root / "comfylock.lock").options
    assert f"--find-links {tmp_path / 'wheels'}" in options


def test_import_snapshot_writes_the_lock_under_the_workspace_lock(comfy, venv, tmp_path, monkeypatch):
    from comfylock.lockfile import lock

    root = comfy("numpy\n")
    snap = tmp_path / "snap.json"
    snap.write_text(json.dumps({**SNAPSHOT, "pips": {"numpy==1.26.4": ""}}))
    probe = (
        "import sys; from pathlib import Path; from comfylock.workspace.filelock import workspace_lock\n"
        "with workspace_lock(Path(sys.argv[1]), wait=False): pass\n"
    )
    seen: list[int] = []
    real = lock.write_lock

    def write_and_probe(path: Path, the_lock: lock.Lock) -> str:
        # Another process must find the workspace busy while the lock is written.
        seen.append(
            subprocess.run([sys.executable, "-c", probe, str(root / "user" / "comfylock")]).returncode
        )
        return real(path, the_lock)

    monkeypatch.setattr(lock, "write_lock", write_and_probe)
    assert run(root, venv, None, "import-snapshot", str(snap)) == 0
    assert seen and seen[0] != 0


def test_lock_only_commands_need_no_comfyui_folder_and_return_typed_results(
    comfy, venv, index, tmp_path, monkeypatch
):
    root = comfy("scipy\n", {"A": {"requirements.txt": "tqdm\n"}})
    assert run(root, venv, index, "compile") == 0
    lock_file = tmp_path / "elsewhere.lock"
    lock_file.write_bytes((root / "comfylock.lock").read_bytes())
    monkeypatch.chdir(tmp_path)  # no ComfyUI here: the lock alone is enough
    assert api.lock_path(lock_file="elsewhere.lock") == lock_file
    w = api.why("numpy", lock_file=lock_file)
    assert isinstance(w, api.WhyResult) and w.why.spec == f"numpy=={w.versions['numpy']}"
    assert [n.name for n in api.nodes(lock_file=lock_file).nodes] == ["core", "A"]
    d = api.diff(str(lock_file), None, lock_file=lock_file)
    assert isinstance(d, api.DiffResult) and d.changes == ()


def test_diff_env_reads_the_target_through_its_cache(comfy, venv, index, monkeypatch):
    """The probe cache a compile stored answers `diff env` too: the interpreter is not run again."""
    from comfylock.environment import probecache

    root = comfy("tqdm\n")
    age(venv)  # an interpreter changed a moment ago is not cached (see probecache)
    assert run(root, venv, index, "compile") == 0

    def ran(*a: object) -> int:
        raise AssertionError("the target interpreter was run")

    monkeypatch.setattr(probecache, "now_ns", ran)  # called only when the interpreter runs
    d = api.diff("env", None, comfyui=root, python=venv)
    assert [c.change.name for c in d.changes] == ["tqdm"]


def test_compile_reuses_the_targets_site_folders(comfy, venv, index, monkeypatch):
    """Duplicate-import detection reads the folders the probe reported, without running the target."""
    from comfylock.explain import inspect

    def ran(python: Path) -> list[Path]:
        raise AssertionError("ran the interpreter for its sys.path")

    monkeypatch.setattr(inspect, "site_dirs", ran)
    root = comfy("tqdm\n")
    ctx = api.Context.open(root, python=venv)
    assert not api.compile(ctx, index=api.given_index(find_links=[str(index)], no_index=True)).up_to_date


def test_policy_commands_through_the_api(comfy, venv, tmp_path):
    root = comfy("numpy\n")
    ctx = api.Context.open(root, python=venv)
    shown = api.policy_show(ctx)
    assert shown.user_file == ctx.ws.user_policy
    assert [f.role for f in shown.files] == ["default"] and shown.packages
    bad = tmp_path / "bad.json"
    bad.write_text('{"numpy": {"apply_all_matches": [{"type": "nope"}]}}')
    checked = api.policy_check(bad, default_policy=False)
    assert checked.files == (str(bad),) and checked.problems
    assert api.policy_check(comfyui=root, python=venv).missing_user_file == ctx.ws.user_policy


def test_every_workspace_file_is_named_by_the_workspace_and_watched(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("")
    ws = open_workspace(root, sys.executable)
    assert ws.user_dir == root / "user" / "comfylock"
    watched = set(quick.watched(ws, {}, []))
    assert {str(ws.user_policy), str(ws.user_requirements), str(ws.config_file)} <= watched
    assert {str(p) for p in ws.version_files} <= watched
    assert ws.history_dir == ws.user_dir / Workspace.HISTORY
    assert api.USER_POLICY == ws.user_policy.name


def test_no_op_check_refuses_its_steps_out_of_order(tmp_path):
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("")
    ws = open_workspace(root, sys.executable)
    target = api.Context.open(root, python=sys.executable).probe.read()
    check = quick.NoOpCheck(ws, target, ws.default_lock, {})
    assert check.known() is None
    with pytest.raises(RuntimeError, match="before_resolve"):
        check.record("fp")
    with pytest.raises(RuntimeError, match="after_collect"):
        check.before_resolve([])


def test_errors_declare_their_fields():
    e = ResolutionError("no solution", explanation="because")
    assert e.attribution is None and e.involved == ()
    from comfylock import _fs
    from comfylock._exceptions import ComfylockError

    assert issubclass(WriteError, ComfylockError) and _fs.WriteError is WriteError
