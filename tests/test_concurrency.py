"""Two processes on one ComfyUI: the workspace lock makes them wait or fail cleanly, never interleave;
and every file comfylock writes goes through atomic_write."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import run

# --- two processes on one ComfyUI -----------------------------------------------------------------

HOLDER = """\
import sys
from pathlib import Path
from comfylock.workspace.filelock import workspace_lock
with workspace_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.readline()
"""
WORKER = """\
import os, sys, time
from pathlib import Path
from comfylock.workspace.filelock import workspace_lock
folder, log, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for i in range(3):
    with workspace_lock(folder) if sys.argv[4] == "locked" else open(os.devnull):
        for step in ("begin", "end"):
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {step}\\n")
            time.sleep(0.01)
"""


def hold(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "locked\n"
    return proc


def test_second_process_fails_cleanly_or_waits_with_a_message(tmp_path):
    from comfylock._exceptions import BusyError
    from comfylock.workspace.filelock import workspace_lock

    holder = hold(tmp_path)
    with pytest.raises(BusyError, match=rf"another comfylock \(pid {holder.pid}\) is working on"):
        with workspace_lock(tmp_path, wait=False):
            pass
    said: list[str] = []
    with pytest.raises(BusyError, match="gave up after 0.3s"):
        with workspace_lock(tmp_path, timeout=0.3, on_wait=said.append):
            pass
    assert said == [f"waiting for another comfylock (pid {holder.pid}) on {tmp_path}..."]
    threading.Timer(0.3, lambda: (holder.stdin.write("\n"), holder.stdin.flush())).start()
    started = time.monotonic()
    with workspace_lock(tmp_path, on_wait=said.append):
        assert time.monotonic() - started >= 0.25  # it waited for the holder, once
        with workspace_lock(tmp_path, wait=False):  # re-entrant: rollback runs sync inside it
            pass
    assert len(said) == 2 and holder.wait() == 0


def test_killed_holder_leaves_no_stale_lock(tmp_path):
    from comfylock.workspace.filelock import workspace_lock

    holder = hold(tmp_path)
    holder.kill()
    holder.wait()
    with workspace_lock(tmp_path, wait=False):
        pass


@pytest.mark.parametrize("mode", ["locked", "unlocked"])
def test_lock_makes_interleaving_impossible(tmp_path, mode):
    """Four processes write begin/end pairs into one log; locked, no pair is ever split. The unlocked
    control shows the test would see interleaving if the lock did not work."""
    log, go = tmp_path / "log", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path), str(log), str(go), mode])
        for _ in range(4)
    ]
    time.sleep(0.3)
    go.touch()
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = log.read_text().splitlines()
    pairs = [lines[i : i + 2] for i in range(0, len(lines), 2)]
    whole = all(a.split()[0] == b.split()[0] and a.endswith("begin") and b.endswith("end") for a, b in pairs)
    assert len(lines) == 24 and whole == (mode == "locked")


def test_comfylock_command_waits_for_another(comfy, venv, capfd):
    root = comfy("gamma\n")
    holder = hold(root / "user" / "comfylock")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(run(root, venv, None, "add", "delta", quiet=True)))
    worker.start()
    time.sleep(0.5)
    assert not done and not (root / "user" / "comfylock" / "requirements.txt").exists()
    holder.stdin.write("\n")
    holder.stdin.flush()
    worker.join(30)
    assert done == [0] and holder.wait() == 0
    err = capfd.readouterr().err
    assert err.count(f"waiting for another comfylock (pid {holder.pid}) on ") == 1


def test_windows_branch_with_a_stand_in_msvcrt(tmp_path, monkeypatch):
    """msvcrt exists only on Windows: run _filelock's Windows branch against a stand-in that keeps
    byte-range locks per file, to check it locks the far byte and unlocks what it locked."""
    import importlib.util
    import types

    import comfylock.workspace.filelock as real
    from comfylock._exceptions import BusyError

    held: dict[tuple[int, int], int] = {}
    calls: list[tuple[int, int]] = []

    def locking(fd: int, mode: int, nbytes: int) -> None:
        key = (os.fstat(fd).st_ino, os.lseek(fd, 0, os.SEEK_CUR))
        calls.append((mode, key[1]))
        if mode == fake.LK_NBLCK:
            if key in held:
                raise OSError(36, "Resource deadlock avoided")
            held[key] = nbytes
        else:
            del held[key]

    fake = types.SimpleNamespace(LK_NBLCK=2, LK_UNLCK=0, locking=locking)
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    monkeypatch.setattr(sys, "platform", "win32")
    spec = importlib.util.spec_from_file_location("comfylock._filelock_win", real.__file__)
    win = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(win)
    with win.workspace_lock(tmp_path, wait=False):
        assert held == {(os.stat(tmp_path / ".lock").st_ino, 1 << 30): 1}
        assert win.holder(tmp_path) == os.getpid()  # the pid stays readable beside the locked byte
        seen: list[BaseException] = []

        def second() -> None:  # another thread: not re-entrant, so it meets the lock
            try:
                with win.workspace_lock(tmp_path, wait=False):
                    pass
            except BusyError as e:
                seen.append(e)

        other = threading.Thread(target=second)
        other.start()
        other.join()
        assert len(seen) == 1 and f"pid {os.getpid()}" in str(seen[0])
    assert held == {} and calls[0] == (2, 1 << 30) and calls[-1] == (0, 1 << 30)


def test_every_file_comfylock_writes_goes_through_atomic_write():
    """A write that bypasses _fs.atomic_write could be torn by a kill. Allowed elsewhere: uv's inputs
    in resolve's private temp folders, and the lock file's pid."""
    import ast

    import comfylock

    allowed = {"_fs.py", "workspace/filelock.py", "resolve/uv.py"}
    found = []
    top = Path(comfylock.__file__).parent
    for source in sorted(top.rglob("*.py")):
        if source.relative_to(top).as_posix() in allowed:
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            consts = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
            consts += [
                k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)
            ]
            writes = [m for m in consts if isinstance(m, str) and re.fullmatch(r"[rbt]*[wax+][rwxabt+]*", m)]
            if name in ("write_text", "write_bytes") or (name == "open" and writes):
                found.append(f"{source.name}:{node.lineno}")
    assert not found, found
