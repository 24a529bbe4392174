"""`comfylock verify` and the sync that verifies: a stand-in ComfyUI loader, hand-made wheels, real uv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import installed, run
from standin_comfyui import install_standin
from wheels import make_wheel

from comfylock.environment import history
from comfylock.lockfile.lock import Change
from comfylock.verify import loader as _verify
from comfylock.verify.state import regressions

# --- the log, parsed (pure) ----------------------------------------------------------------------

REAL_LOG = """\
Checkpoint files will always be loaded safely.
Trying to load custom node /c/ComfyUI/custom_nodes/websocket_image_save.py
Trying to load custom node /c/ComfyUI/custom_nodes/ComfyUI_essentials
Traceback (most recent call last):
  File "/c/ComfyUI/nodes.py", line 2131, in load_custom_node
    module_spec.loader.exec_module(module)
  File "/c/ComfyUI/custom_nodes/ComfyUI_essentials/__init__.py", line 2, in <module>
    from .image import IMAGE_CLASS_MAPPINGS
ModuleNotFoundError: No module named 'numba'

Cannot import /c/ComfyUI/custom_nodes/ComfyUI_essentials module for custom nodes: No module named 'numba'
Trying to load custom node /c/ComfyUI/custom_nodes/ComfyUI-KJNodes

Import times for custom nodes:
   0.0 seconds: /c/ComfyUI/custom_nodes/websocket_image_save.py
   0.1 seconds (IMPORT FAILED): /c/ComfyUI/custom_nodes/ComfyUI_essentials
   1.2 seconds: /c/ComfyUI/custom_nodes/ComfyUI-KJNodes

Context impl SQLiteImpl.
"""


def test_parse_log_reads_each_node_its_time_and_the_last_line_of_its_traceback():
    r = _verify.parse_log(REAL_LOG, 0)
    assert r.started and r.exit_code == 1
    by = {n.name: n for n in r.nodes}
    assert set(by) == {"websocket_image_save", "ComfyUI_essentials", "ComfyUI-KJNodes"}
    assert by["ComfyUI-KJNodes"].loaded and by["ComfyUI-KJNodes"].seconds == 1.2
    bad = by["ComfyUI_essentials"]
    assert not bad.loaded
    assert bad.error == "ModuleNotFoundError: No module named 'numba'"
    assert bad.missing_module == "numba"
    assert "from .image import IMAGE_CLASS_MAPPINGS" in bad.traceback
    assert "Trying to load" not in bad.traceback


def test_parse_log_without_nodes_is_zero_nodes_and_a_crash_is_a_start_failure():
    assert _verify.parse_log("Starting server\n", 0).exit_code == 0
    crash = 'Traceback (most recent call last):\n  File "main.py", line 1\nImportError: torch broke\n'
    r = _verify.parse_log(crash, 1)
    assert not r.started and r.exit_code == 2 and r.error == "ImportError: torch broke"


def test_parse_log_after_a_timeout_names_the_node_still_loading():
    text = (
        "Trying to load custom node /c/custom_nodes/Fast\n"
        "Trying to load custom node /c/custom_nodes/Broken\n"
        'Traceback (most recent call last):\n  File "x.py", line 1\nImportError: nope\n'
        "Cannot import /c/custom_nodes/Broken module for custom nodes: nope\n"
        "Trying to load custom node /c/custom_nodes/Slow\n"
    )
    r = _verify.parse_log(text, -9, timed_out=True, timeout=5)
    assert not r.started and r.exit_code == 1
    assert [(n.name, n.loaded) for n in r.nodes] == [("Broken", False), ("Fast", True), ("Slow", False)]
    assert r.node("Broken").error == "ImportError: nope"
    assert "hung" in (r.node("Slow").error or "")


def test_a_node_that_loaded_before_and_fails_now_is_a_regression_failing_both_times_is_not():
    before = _verify.parse_log(REAL_LOG, 0)
    after_text = REAL_LOG.replace(
        "   1.2 seconds: /c/ComfyUI/custom_nodes/ComfyUI-KJNodes",
        "   1.2 seconds (IMPORT FAILED): /c/ComfyUI/custom_nodes/ComfyUI-KJNodes",
    )
    after = _verify.parse_log(after_text, 0)
    found = regressions(before, after, [Change("numpy", "1.26.4", "2.1.0")])
    assert [r.node for r in found] == ["ComfyUI-KJNodes"]  # essentials failed before too
    assert found[0].blamed == ("numpy",) and not found[0].named  # nothing named: all changes listed
    assert regressions(None, after, []) == []  # no baseline: only reported


# --- against a stand-in ComfyUI -----------------------------------------------------------------

GADGET_1 = "def helper():\n    return 1\n"
GADGET_2 = "def renamed_helper():\n    return 2\n"  # 2.0 drops helper(): nodes importing it break
NODES = {
    "Uses-Gadget": {
        "requirements.txt": "gadget\n",
        "__init__.py": "from gadget import helper\nNODE_CLASS_MAPPINGS = {'G': object}\n",
    },
    "Plain": {"requirements.txt": "other\n", "__init__.py": "NODE_CLASS_MAPPINGS = {'P': object}\n"},
    "Always-Broken": {"__init__.py": "import not_installed_anywhere\n"},
}


@pytest.fixture
def wheels(tmp_path: Path) -> Path:
    folder = tmp_path / "own-wheels"
    make_wheel(folder, "gadget", "1.0", body=GADGET_1)
    make_wheel(folder, "other", "1.0")
    return folder


def first_sync(comfy, venv, wheels, capsys) -> Path:
    root = install_standin(comfy("", NODES))
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 0  # Always-Broken fails, but there is no baseline yet
    out = capsys.readouterr().out
    assert "no earlier result to compare" in out and "2 of 3 custom nodes loaded" in out
    assert "REGRESSION" not in out
    return root


def test_verify_reports_each_node_with_its_error_and_the_module_to_add(comfy, venv, wheels, capsys):
    root = first_sync(comfy, venv, wheels, capsys)
    assert run(root, venv, wheels, "verify") == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "Always-Broken" in out
    assert "ModuleNotFoundError: No module named 'not_installed_anywhere'" in out
    assert run(root, venv, wheels, "verify", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "comfylock.verify/1"
    nodes = {n["node"]: n for n in doc["nodes"]}
    assert nodes["Uses-Gadget"]["loaded"] and nodes["Plain"]["loaded"]
    assert nodes["Always-Broken"]["missing_module"] == "not_installed_anywhere"
    (root / "custom_nodes" / "Always-Broken" / "__init__.py").write_text("import yaml\n")
    assert run(root, venv, wheels, "verify") == 1
    assert "`comfylock add 'pyyaml'`" in capsys.readouterr().out
    (root / "custom_nodes" / "Always-Broken" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    assert run(root, venv, wheels, "verify") == 0
    assert "3 of 3 custom nodes loaded" in capsys.readouterr().out


def test_verify_exits_2_when_comfyui_cannot_start(comfy, venv, wheels, capsys):
    root = install_standin(comfy("", {}))
    (root / "main.py").write_text("raise RuntimeError('no torch here')\n")
    assert run(root, venv, wheels, "verify") == 2
    assert "ComfyUI did not start: RuntimeError: no torch here" in capsys.readouterr().out


def test_verify_needs_comfyuis_loader(comfy, venv, wheels, capsys):
    root = comfy("", {})  # an empty main.py, no nodes.py: a marker, never run
    assert run(root, venv, wheels, "verify") == 2
    err = capsys.readouterr().err
    assert "no ComfyUI loader" in err and len(err.strip().splitlines()) == 1


def test_sync_that_breaks_a_node_rolls_back_by_itself_naming_node_error_and_package(
    comfy, venv, wheels, capsys
):
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "sync") == 1
    out = capsys.readouterr().out
    assert (
        "REGRESSION: Uses-Gadget loaded before and fails now: ImportError: cannot import name 'helper'" in out
    )
    assert "packages this change names: gadget" in out
    assert "rolled back" in out
    assert installed(venv)["gadget"] == "1.0"  # undone
    # The result of the state before the sync is kept beside its history entry.
    kept = json.loads((root / "user" / "comfylock" / "history" / "0002.verify.json").read_text())
    assert {n["node"]: n["loaded"] for n in kept["nodes"]}["Uses-Gadget"] is True
    assert run(root, venv, wheels, "sync", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["verify"]["rolled_back"] is True
    assert doc["verify"]["regressions"][0]["node"] == "Uses-Gadget"
    assert doc["verify"]["regressions"][0]["packages"] == ["gadget"]


def test_after_an_automatic_rollback_history_check_and_rollback_say_what_is_known(
    comfy, venv, wheels, capsys
):
    """Found on the real ComfyUI: the broken state's entry carried no result, `check` gave no hint that
    a rollback put the environment there, and `rollback --to` the broken state went there unwarned."""
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    assert run(root, venv, wheels, "sync") == 1  # entry 2: before the sync; 3: the broken state
    capsys.readouterr()
    assert run(root, venv, wheels, "history", "--json") == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert entries[-1]["trigger"].startswith("automatic rollback to 2")
    assert entries[-1]["verify"]["failed"] == ["Always-Broken", "Uses-Gadget"]
    assert run(root, venv, wheels, "check", "--json") == 1
    assert json.loads(capsys.readouterr().out)["rolled_back_to"] == 2
    # Only asked for by number (a bare rollback never goes there): warned before it acts
    assert run(root, venv, wheels, "rollback", "--to", "3", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "rollback to history entry 3: undoes `automatic rollback to 2" in out
    assert "warning: entry 3 was verified and Always-Broken, Uses-Gadget did not load in it" in out


def test_a_node_broken_before_and_after_is_reported_not_rolled_back(comfy, venv, wheels, capsys):
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "other", "2.0")
    assert run(root, venv, wheels, "compile", "-P", "other") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "sync") == 0
    out = capsys.readouterr().out
    assert "Always-Broken" in out and "not a regression" in out and "rolled back" not in out
    assert installed(venv)["other"] == "2.0"


def test_no_verify_and_the_config_key_skip_it_and_a_sync_that_changed_nothing_skips_it(
    comfy, venv, wheels, capsys
):
    root = first_sync(comfy, venv, wheels, capsys)
    assert run(root, venv, wheels, "sync") == 0
    assert "custom nodes loaded" not in capsys.readouterr().out  # nothing changed: nothing to verify
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    assert run(root, venv, wheels, "sync", "--no-verify") == 0
    assert installed(venv)["gadget"] == "2.0"
    assert "custom nodes loaded" not in capsys.readouterr().out
    (root / "user" / "comfylock" / "config.toml").write_text("verify = false\n")
    assert run(root, venv, wheels, "rollback") == 0
    assert installed(venv)["gadget"] == "1.0"
    assert "REGRESSION" not in capsys.readouterr().out


def test_a_rollback_verifies_too(comfy, venv, wheels, capsys):
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    assert run(root, venv, wheels, "sync", "--no-verify") == 0  # broken, on purpose, no baseline kept
    assert run(root, venv, wheels, "verify") == 1  # the broken state's result is now known
    capsys.readouterr()
    assert run(root, venv, wheels, "rollback") == 0  # back to gadget 1.0: Uses-Gadget loads again
    out = capsys.readouterr().out
    assert "3 custom nodes loaded" in out and "REGRESSION" not in out
    assert installed(venv)["gadget"] == "1.0"


def test_a_rollback_into_a_state_that_breaks_a_node_is_undone_with_a_rollbacks_advice(
    comfy, venv, wheels, capsys
):
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    assert run(root, venv, wheels, "sync", "--no-verify") == 0  # broken, on purpose
    assert run(root, venv, wheels, "rollback") == 0  # back to gadget 1.0, recording the broken state
    broken = history.entries(root / "user" / "comfylock")[-1].id
    capsys.readouterr()
    assert run(root, venv, wheels, "rollback", "--to", str(broken)) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: Uses-Gadget" in out and installed(venv)["gadget"] == "1.0"  # undone by itself
    assert "that state does not load: `comfylock history` lists the others" in out
    assert "compile and sync again" not in out  # a sync's advice: nothing here to pin
    assert run(root, venv, wheels, "check") == 1  # the lock has gadget 2.0: check says where things are
    out = capsys.readouterr().out
    assert f"the last change (`rollback to {broken}`) broke a custom node and was undone by itself" in out
    # A bare rollback never goes back into that state, which verifying found breaking Uses-Gadget.
    assert run(root, venv, wheels, "rollback", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"rollback to history entry {broken}:" not in out and "gadget 1.0 -> 2.0" not in out, out


def test_a_module_a_policy_leaves_out_is_named_with_that_rule_not_add(comfy, venv, wheels, capsys):
    root = first_sync(comfy, venv, wheels, capsys)
    policy = root / "user" / "comfylock" / "pip-policy.user.json"
    policy.write_text('{"gadget": {"apply_first_match": [{"type": "skip", "reason": "try without"}]}}')
    assert run(root, venv, wheels, "compile") == 0
    assert run(root, venv, wheels, "sync") == 1  # Uses-Gadget stops loading: undone
    out = capsys.readouterr().out
    assert "No module named 'gadget'" in out
    assert "a policy leaves it out of the lock: skip gadget" in out and "comfylock add 'gadget'" not in out
    assert run(root, venv, wheels, "verify") == 1  # Always-Broken's module is no policy's: add it
    out = capsys.readouterr().out
    assert "`comfylock add 'not_installed_anywhere'`" in out


def test_a_hung_node_is_stopped_at_the_timeout_and_named(comfy, venv, wheels, capsys):
    # It also starts a child that holds ComfyUI's output open: only ending the whole tree ends the run.
    hang = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n"
    )
    root = install_standin(comfy("", {"Hangs": {"__init__.py": hang}}))
    assert run(root, venv, wheels, "verify", "--timeout", "3") == 1
    out = capsys.readouterr().out
    assert "Hangs" in out and "hung" in out
    (root / "user" / "comfylock").mkdir(parents=True, exist_ok=True)
    (root / "user" / "comfylock" / "config.toml").write_text("verify-timeout = 2\n")
    assert run(root, venv, wheels, "verify", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["timed_out"] is True and doc["nodes"][0]["node"] == "Hangs"


def test_a_comfyui_without_the_verbose_level_option_is_run_without_it(comfy, venv, wheels, capsys):
    root = install_standin(comfy("", {"Plain": {"__init__.py": "NODE_CLASS_MAPPINGS = {}\n"}}))
    strict = (
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--quick-test-for-ci', action='store_true')\n"
        "p.add_argument('--cpu', action='store_true')\n"
        "p.parse_args()\n"
    )
    (root / "main.py").write_text(strict + (root / "main.py").read_text())
    assert run(root, venv, wheels, "verify") == 0
    assert "1 of 1 custom nodes loaded" in capsys.readouterr().out


def test_history_shows_what_loaded_in_each_recorded_state(comfy, venv, wheels, capsys):
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "other", "2.0")
    assert run(root, venv, wheels, "compile", "-P", "other") == 0
    assert run(root, venv, wheels, "sync") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "verified: 2 of 3 nodes loaded (Always-Broken failed)" in lines[1]
    assert run(root, venv, wheels, "history", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["entries"][0]["verify"] is None
    assert doc["entries"][1]["verify"]["failed"] == ["Always-Broken"]


def test_bad_verify_settings_are_refused_in_one_line(comfy, venv, wheels, capsys):
    root = install_standin(comfy("", {}))
    assert run(root, venv, wheels, "verify", "--timeout", "0") == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err
    cfg = root / "user" / "comfylock" / "config.toml"
    cfg.parent.mkdir(parents=True)
    for text, says in (("verify-timeout = -1\n", "verify-timeout"), ('verify = "yes"\n', "verify must be")):
        cfg.write_text(text)
        assert run(root, venv, wheels, "verify") == 2
        err = capsys.readouterr().err
        assert "config.toml" in err and says in err and len(err.strip().splitlines()) == 1


def test_after_an_automatic_rollback_check_says_so_and_rollback_never_returns_to_the_broken_state(
    comfy, venv, wheels, capsys
):
    """The state a sync left because a node stopped loading is a known-broken one: `check` explains
    where the environment is, and a bare `rollback` undoes the last change still in effect (here the
    first sync) instead of reinstalling what broke the node."""
    root = first_sync(comfy, venv, wheels, capsys)
    make_wheel(wheels, "gadget", "2.0", body=GADGET_2)
    assert run(root, venv, wheels, "compile", "-P", "gadget") == 0
    assert run(root, venv, wheels, "sync") == 1  # broken, undone by itself
    capsys.readouterr()
    assert run(root, venv, wheels, "check") == 1
    out = capsys.readouterr().out
    assert "the last sync broke a custom node and was rolled back by itself" in out
    assert run(root, venv, wheels, "rollback", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "rollback to history entry 1:" in out and "automatic rollback" not in out.splitlines()[0]
    assert installed(venv)["gadget"] == "1.0"
