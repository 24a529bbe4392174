"""comfylock.environment.history: the environment as it was before every change (one lock file per
entry), the marker of a sync under way, and the sync transaction that ties them together
(environment.transaction)."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import installed, run

from comfylock._exceptions import InputError, UvError
from comfylock.environment import history
from comfylock.environment import transaction as _synctxn
from comfylock.lockfile.lock import read_lock


def test_sync_transaction(tmp_path):
    user = tmp_path / "user"
    kw = {"trigger": "sync x", "target": {}, "changing": ["alpha"], "unfinished": None}
    with _synctxn.recorded(user, ["alpha==1.0"], [], unchanged=lambda: True, **kw) as entry:
        assert history.pending(user) == history.Pending(entry.id, ("alpha",))  # under way
    assert history.pending(user) is None and history.entries(user)[-1].packages == 1
    with pytest.raises(UvError, match=r"history entry 2; `comfylock rollback --to 2`"):
        with _synctxn.recorded(user, [], [], unchanged=lambda: True, **kw):
            raise UvError("uv failed")
    assert history.pending(user) is None  # uv changed nothing: nothing to repair
    with pytest.raises(UvError):
        with _synctxn.recorded(user, [], [], unchanged=lambda: False, **kw):
            raise UvError("uv failed half-way")
    assert history.pending(user) == history.Pending(3, ("alpha",))  # the next sync repairs it
    with pytest.raises(KeyboardInterrupt):
        with _synctxn.recorded(user, [], [], unchanged=lambda: True, **{**kw, "changing": ["beta"]}):
            raise KeyboardInterrupt
    assert history.pending(user) == history.Pending(3, ("alpha", "beta"))



def test_damaged_history_entry_is_listed_as_such_and_refused(comfy, venv, index, capsys):
    root = comfy("numpy\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    (root / "requirements.txt").write_text("numpy<2\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    newest = root / "user" / "comfylock" / "history" / "0002.lock"
    newest.write_text(newest.read_text().replace("numpy==2.1.0", "numpy==9.9"))  # body hash now wrong
    capsys.readouterr()
    assert run(root, venv, index, "history") == 0
    out = capsys.readouterr().out
    assert "damaged: its pins do not match" in out and "   1  " in out
    assert run(root, venv, index, "rollback") == 2
    err = capsys.readouterr().err
    assert "history entry 2 cannot be read" in err and "--to 1" in err
    assert run(root, venv, index, "rollback", "--to", "1") == 0
    assert installed(venv) == {}  # entry 1: the empty environment before the first sync


def test_record_numbers_the_entries_and_get_reads_one(tmp_path: Path) -> None:
    user = tmp_path / "user"
    with pytest.raises(InputError, match="no history yet"):
        history.get(user, None)
    assert history.entries(user) == [] and history.newest(user) is None
    first = history.record(user, [], [], trigger="sync comfylock.lock", target={"python": "3.11"})
    second = history.record(
        user, ["numpy==2.1.0", "tqdm==4.66.0"], ["--no-index"], trigger="rollback to 1", target={}
    )
    assert (first.id, first.packages, second.id, second.packages) == (1, 0, 2, 2)
    assert second.path == user / "history" / "0002.lock" and read_lock(second.path).intact
    assert [(e.id, e.trigger, e.packages) for e in history.entries(user)] == [
        (1, "sync comfylock.lock", 0),
        (2, "rollback to 1", 2),
    ]
    assert history.newest(user) == history.get(user, None) == history.entries(user)[-1]
    assert history.get(user, 1).trigger == "sync comfylock.lock"
    assert history.count_after(user, 1) == 1 and history.count_after(user, 2) == 0
    with pytest.raises(InputError, match="no history entry 7") as e:
        history.get(user, 7)
    assert e.value.hint == "`comfylock history` lists entries 1..2"


def test_snapshot_keeps_urls_and_editables_and_skips_what_a_lock_cannot_hold() -> None:
    lock, skipped = history.snapshot(
        [
            "NumPy==2.1.0",
            "foo @ https://example.invalid/foo-1.0-py3-none-any.whl",
            "-e bar @ file:///src/bar",
            "# a comment",
            "",
            "-e /src/unnamed",
        ],
        ["--no-index"],
        {"history-trigger": "sync comfylock.lock"},
    )
    assert [(p.name, p.spec) for p in lock.pins] == [
        ("bar", "-e bar @ file:///src/bar"),
        ("foo", "foo @ https://example.invalid/foo-1.0-py3-none-any.whl"),
        ("numpy", "NumPy==2.1.0"),
    ]
    assert skipped == ["-e /src/unnamed"] and lock.options == ("--no-index",)


def test_begin_merges_with_an_earlier_marker_and_end_puts_it_back(tmp_path: Path) -> None:
    user = tmp_path / "user"
    assert history.pending(user) is None
    earlier = history.begin(user, 3, ["numpy"])
    assert history.pending(user) == earlier == history.Pending(3, ("numpy",))
    merged = history.begin(user, 4, ["tqdm"])  # the state before the first unfinished sync stays
    assert merged == history.Pending(3, ("numpy", "tqdm"))
    history.end(user, restore=earlier)  # the second sync failed before uv changed anything
    assert history.pending(user) == earlier
    history.end(user)
    assert history.pending(user) is None
