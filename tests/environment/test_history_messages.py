"""History and rollback say what they do (issue 12): one operation, one entry; rollback names the change
it undoes before it acts (and --dry-run shows only that); after a rollback `check` says where the
environment is and how to return or keep it (`rollback --write-lock`). Real uv, hermetic data."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import installed, run

from comfylock.lockfile.lock import read_lock


def history_ids(root: Path) -> list[int]:
    return sorted(int(p.stem) for p in (root / "user" / "comfylock" / "history").glob("[0-9]*.lock"))


@pytest.fixture
def served(index: Path) -> Iterator[str]:
    """The wheels as an HTTP --find-links page: unlike a local folder, uv's --offline cannot read it."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(index)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture
def two_syncs(comfy, venv, served) -> Path:
    """Entry 1: the empty environment; entry 2: numpy 2.1.0 + pillow; now numpy 1.26.4 + tqdm."""
    root = comfy("numpy\npillow\n")
    assert run(root, venv, served, "compile") == 0 and run(root, venv, served, "sync") == 0
    (root / "requirements.txt").write_text("numpy<2\ntqdm\n")
    assert run(root, venv, served, "compile") == 0 and run(root, venv, served, "sync") == 0
    assert installed(venv) == {"numpy": "1.26.4", "tqdm": "4.66.0"}
    assert history_ids(root) == [1, 2]
    return root


def test_rollback_retried_online_records_one_entry(two_syncs, venv, served, tmp_path, monkeypatch, capsys):
    root = two_syncs
    # uv's cache lost the old wheels: the offline attempt misses, the online one succeeds.
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert run(root, venv, served, "rollback") == 0
    assert installed(venv) == {"numpy": "2.1.0", "pillow": "11.0.0"}
    assert history_ids(root) == [1, 2, 3]  # one operation, one entry (it was 3 and 4, identical)
    assert "rollback to 2" in (root / "user" / "comfylock" / "history" / "0003.lock").read_text()


def test_rollback_says_what_it_undoes_before_acting(two_syncs, venv, served, capsys):
    root = two_syncs
    capsys.readouterr()
    assert run(root, venv, served, "rollback", "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rollback to history entry 2: undoes `sync comfylock.lock` of 20")
    assert out[0].endswith("(the last change comfylock made to the environment)")
    assert out[1] == "  entry 2 holds 2 packages; the environment has 2 now; 3 changes"
    assert installed(venv) == {"numpy": "1.26.4", "tqdm": "4.66.0"} and history_ids(root) == [1, 2]

    assert run(root, venv, served, "sync") == 0  # a no-op: records nothing, so it is not what is undone
    capsys.readouterr()
    assert run(root, venv, served, "rollback", "--to", "1", "--dry-run") == 0
    out = capsys.readouterr().out.splitlines()
    assert "undoes `sync comfylock.lock` of 20" in out[0] and out[0].endswith("and the 1 change after it")
    assert "entry 1 holds 0 packages" in out[1]

    assert run(root, venv, served, "rollback") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rollback to history entry 2: undoes `sync comfylock.lock`")  # said first
    assert any("previous state saved as history entry 3" in ln for ln in out)


def test_rollback_json_reports_what_it_undoes(two_syncs, venv, served, capsys):
    capsys.readouterr()
    assert run(two_syncs, venv, served, "rollback", "--dry-run", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    undoes = doc["undoes"]
    assert undoes["entry"] == 2 and undoes["trigger"] == "sync comfylock.lock"
    assert undoes["entry_packages"] == 2 and undoes["installed_packages"] == 2
    assert undoes["later_changes"] == 0 and undoes["time"].startswith("20")


def test_check_after_rollback_says_where_and_how_back_then_sync_returns(two_syncs, venv, served, capsys):
    root = two_syncs
    assert run(root, venv, served, "rollback") == 0
    capsys.readouterr()
    assert run(root, venv, served, "check") == 1
    out = capsys.readouterr().out
    assert "the environment is at history entry 2 (" in out and ") by a rollback" in out
    assert "`comfylock sync` returns to the lock" in out
    assert "`comfylock rollback --to 2 --write-lock` makes it the lock" in out
    assert run(root, venv, served, "check", "--json") == 1
    assert json.loads(capsys.readouterr().out)["rolled_back_to"] == 2
    assert run(root, venv, served, "sync") == 0
    capsys.readouterr()
    assert run(root, venv, served, "check") == 0
    assert "by a rollback" not in capsys.readouterr().out


def test_rollback_write_lock_makes_the_state_the_lock(two_syncs, venv, served, capsys):
    root = two_syncs
    assert run(root, venv, served, "rollback") == 0
    assert run(root, venv, served, "rollback", "--to", "2", "--write-lock") == 0
    out = capsys.readouterr().out
    assert "wrote history entry 2 as " in out
    assert history_ids(root) == [1, 2, 3]  # already there: nothing synced, nothing recorded
    lock = read_lock(root / "comfylock.lock")
    assert lock.intact and {p.name: p.version for p in lock.pins} == {"numpy": "2.1.0", "pillow": "11.0.0"}
    assert "written from history entry 2" in (root / "comfylock.lock").read_text()
    assert run(root, venv, served, "check") == 0
    assert run(root, venv, served, "sync") == 0 and history_ids(root) == [1, 2, 3]
    # The next compile resolves the requirements again (numpy<2, tqdm) and writes a normal lock.
    assert run(root, venv, served, "compile") == 0
    assert "written from history entry" not in (root / "comfylock.lock").read_text()


def test_rollback_write_lock_in_one_step(two_syncs, venv, served):
    root = two_syncs
    assert run(root, venv, served, "rollback", "--write-lock") == 0
    assert installed(venv) == {"numpy": "2.1.0", "pillow": "11.0.0"}
    assert run(root, venv, served, "check") == 0


def test_dry_run_write_lock_writes_nothing(two_syncs, venv, served):
    root = two_syncs
    before = (root / "comfylock.lock").read_bytes()
    assert run(root, venv, served, "rollback", "--write-lock", "--dry-run") == 0
    assert (root / "comfylock.lock").read_bytes() == before
