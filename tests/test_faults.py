"""Faults: SIGKILL at many points of compile/add/sync, syncs that really fail, disk full.
(Two processes on one ComfyUI: test_concurrency.py.)

Kill points are exact: the child runs comfylock under a profile hook that counts every call and return
in comfylock's own code (and every builtin it calls: write, fsync, os.replace) and kills itself at event
N. A first run lists the events; the test then kills at write-critical events and a spread of the rest.
Kills inside uv (mid-install) come from killing the whole process group while uv works. After each
kill: the lock is the old bytes or the new bytes, every history entry parses, and `rollback` restores
the state before exactly (versions, and every file each RECORD lists), `sync` then `check` the new one.
COMFYLOCK_FAULT_POINTS scales the runs (default 4 per scenario; the report's numbers are from 100).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from helpers import LocalIndex, run
from wheels import _DATE, _record_hash

from comfylock.cli.main import main
from comfylock.environment import history

POINTS = int(os.environ.get("COMFYLOCK_FAULT_POINTS", "4"))  # kills per scenario (soak runs: 100+)
CRITICAL = {"atomic_write", "_sync_dir", "write_lock", "record", "begin", "end", "run_uv", "apply"}
KILLED = -signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM  # Windows: TerminateProcess
OLD = "alpha==1.0\nbeta==1.0\ngamma\n"
NEW = "alpha==2.0\nbeta\ndelta\n"  # an upgrade, a package kept, one added, one removed
STATS: dict[str, int] = {}
RUNNER = """\
import os, signal, sys
import comfylock
from comfylock.cli.main import main
pkg = os.path.dirname(comfylock.__file__) + os.sep
kill_at, trace, n, log = int(os.environ.get("FAULT_KILL_AT") or 0), os.environ.get("FAULT_TRACE"), 0, []
notify_at, notify = int(os.environ.get("FAULT_NOTIFY_AT") or 0), os.environ.get("FAULT_NOTIFY")
def hook(frame, event, arg):
    global n
    code = frame.f_code
    if event == "c_exception" or not code.co_filename.startswith(pkg):
        return
    n += 1
    if trace:
        log.append(f"{event} {code.co_name} {os.path.basename(code.co_filename)}")
    if n == notify_at:
        open(notify, "w").close()
    if n == kill_at:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
sys.setprofile(hook)
code = main(sys.argv[1:])
sys.setprofile(None)
if trace:
    with open(trace, "w") as f:
        f.write("\\n".join(log))
sys.exit(code)
"""
# What ComfyUI would see: importlib.metadata in the target, plus whether every file a package's RECORD
# lists is there (uv trusts a .dist-info folder's name; a half-removed package must not pass as whole).
STATE = """\
import importlib.metadata as md, json, pathlib, sysconfig
out = {}
for d in md.distributions():
    name = d.metadata.get("Name")
    if name:
        out[name.lower()] = d.version + ("" if all(d.locate_file(f).exists() for f in d.files or ()) else "!")
site = pathlib.Path(sysconfig.get_path("purelib"))
claimed = set()
for info in site.glob("*.dist-info"):
    record = (info / "RECORD").read_text() if (info / "RECORD").exists() else ""
    if not all((info / f).exists() for f in ("METADATA", "INSTALLER")) or not record.endswith("\\n"):
        out[info.name] = "torn"
    else:
        claimed |= {line.split("/")[0].split(",")[0] for line in record.splitlines()}
orphans = [p.name for p in site.iterdir() if p.name not in claimed and not p.name.startswith("_virtualenv")]
print(json.dumps(out))
print(json.dumps(sorted(orphans)))
"""


def heavy_wheel(folder: Path, name: str, version: str, files: int = 150, big: int = 0) -> None:
    """A wheel with many modules (and `big` bytes of data), so uv works long enough to be killed."""
    info = f"{name}-{version}.dist-info"
    body = {f"{name}/m{i}.py": f"X = {i}\n".encode() * 20 for i in range(files)}
    if big:
        body[f"{name}/data.bin"] = os.urandom(big)
    body[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    body[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in body.items()) + f"{info}/RECORD,,\n"
    body[f"{info}/RECORD"] = record.encode()
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as z:
        for p, d in body.items():
            z.writestr(zipfile.ZipInfo(p, _DATE), d)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fault-wheels")
    for name, version in [
        ("alpha", "1.0"),
        ("alpha", "2.0"),
        ("beta", "1.0"),
        ("gamma", "1.0"),
        ("delta", "1.0"),
    ]:
        heavy_wheel(folder, name, version)
    return folder


def child_cmd(root: Path, venv: Path, wheels: Path, args: list[str]) -> tuple[list[str], dict[str, str]]:
    script = root.parent / "runner.py"
    script.write_text(RUNNER)
    extra = ["--no-index", "--find-links", str(wheels)] if args[0] == "compile" else []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, str(script), args[0], "-q", "--comfyui", str(root), "--python", str(venv)]
    return [*cmd, *extra, *args[1:]], env


def child(root: Path, venv: Path, wheels: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    """comfylock in a child process under the kill hook (FAULT_KILL_AT, FAULT_TRACE in `env`)."""
    cmd, full = child_cmd(root, venv, wheels, args)
    return subprocess.run(cmd, env={**full, **env}, capture_output=True, text=True, timeout=120)


def installed(venv: Path) -> dict[str, str]:
    done = subprocess.run([str(venv), "-I", "-c", STATE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[0])


def orphans(venv: Path) -> list[str]:
    """Top-level files and folders of site-packages no package's RECORD claims."""
    done = subprocess.run([str(venv), "-I", "-c", STATE], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[1])


def force_env(venv: Path, pins: dict[str, str], wheels: Path) -> None:
    """Put the environment back to `pins` behind comfylock's back (each run's starting point), without
    files an earlier kill orphaned, so each kill's orphans are counted once."""
    import shutil

    site = Path(json.loads(subprocess.run(
        [str(venv), "-I", "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_path('purelib')))"],
        capture_output=True, text=True, check=True,
    ).stdout))  # fmt: skip
    for name in orphans(venv):
        shutil.rmtree(site / name, ignore_errors=True) if (site / name).is_dir() else (site / name).unlink()
    req = venv.parent.parent.parent / "force.txt"
    req.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    args = ["pip", "sync", "-q", "--no-index", "--find-links", str(wheels), "--python", str(venv), str(req)]
    subprocess.run([sys.executable, "-m", "uv", *args], check=True)


def forget_after(user: Path, base: set[int]) -> None:
    for e in history.entries(user):
        if e.id not in base:
            e.path.unlink()
    history.end(user)


def kill_points(trace: Path, budget: int) -> list[int]:
    """Event numbers to kill at: half on write-critical functions (each builtin they call: write,
    fsync, os.replace), half spread evenly over everything else, and the very last event."""
    events = [e.split() for e in trace.read_text().splitlines()]
    critical = [i for i, e in enumerate(events, 1) if e[1] in CRITICAL and e[0] != "c_return"]
    others = [i for i in range(1, len(events) + 1) if events[i - 1][1] not in CRITICAL]
    half = max(1, budget // 2)
    pick = critical if len(critical) <= half else critical[:: len(critical) // half + 1]
    return sorted({*pick, *others[:: max(1, len(others) // half)][:half], len(events)})


def count(key: str, n: int = 1) -> None:
    STATS[key] = STATS.get(key, 0) + n


@pytest.fixture
def setup(comfy, venv, wheels):
    """A ComfyUI synced to the OLD lock, its requirements already moved to NEW. Returns (root, old)."""
    root = comfy(OLD)
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    assert run(root, venv, wheels, "sync", quiet=True) == 0
    (root / "requirements.txt").write_text(NEW)
    return root, (root / "comfylock.lock").read_bytes()


def test_sigkill_anywhere_in_compile_and_add_leaves_old_or_new_file(setup, venv, wheels, tmp_path):
    root, old = setup
    lock_path, user_req = root / "comfylock.lock", root / "user" / "comfylock" / "requirements.txt"
    assert run(root, venv, wheels, "add", "delta>=1", quiet=True) == 0
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    new = lock_path.read_bytes()
    env_before = installed(venv)
    for command, path, before, after in (
        (["compile"], lock_path, old, new),
        (["add", "delta>=1", "gamma"], user_req, b"delta>=1\n", b"delta>=1\ngamma\n"),
    ):
        path.write_bytes(before)
        proc = child(root, venv, wheels, command, FAULT_TRACE=str(tmp_path / "trace"))
        assert proc.returncode == 0 and path.read_bytes() == after, proc.stderr
        for n in kill_points(tmp_path / "trace", POINTS):
            path.write_bytes(before)
            proc = child(root, venv, wheels, command, FAULT_KILL_AT=str(n))
            assert proc.returncode in (0, KILLED) and "Traceback" not in proc.stderr, proc.stderr
            count(f"{command[0]} kills", proc.returncode == KILLED)
            got = path.read_bytes()
            assert got in (before, after), f"{path.name} torn by a kill at event {n}"
            count(f"{command[0]} kept old" if got == before else f"{command[0]} got new")
            # the same command again finishes the job
            assert run(root, venv, wheels, *command, quiet=True) == 0
            assert path.read_bytes() == after
    count("temp files left", len(list(root.rglob(".*.tmp"))))
    assert installed(venv) == env_before  # neither command touches the environment
    print(f"\nfaults: {STATS}")


def look(site: Path) -> tuple:
    """site-packages' listing and the file counts of the test's packages: changes as soon as uv
    deletes or writes a single file."""
    counts = []
    for package in ("alpha", "gamma", "delta"):
        try:
            counts.append(len(os.listdir(site / package)))
        except OSError:  # not there, or removed while we looked
            counts.append(-1)
    return (tuple(sorted(os.listdir(site))), *counts)


def check_after_kill(root, venv, wheels, lock_bytes, base, old_env, new_env, *, torn_ok: bool) -> None:
    user = root / "user" / "comfylock"
    assert (root / "comfylock.lock").read_bytes() == lock_bytes  # sync never writes the lock
    entries = history.entries(user)
    assert not [e for e in entries if e.damaged], "a history entry was torn"
    added = [e for e in entries if e.id not in base]
    assert len(added) <= 1
    now = installed(venv)
    if now not in (old_env, new_env):
        assert torn_ok, f"environment half-changed by a kill outside uv: {now}"
        count("torn environments")
        assert added, "the environment changed without a history entry of the state before"
        assert run(root, venv, wheels, "check", quiet=True) == 1  # a half-done sync never passes for done
    if added:  # the way back: the state before the killed sync, exactly
        assert run(root, venv, wheels, "rollback", "--to", str(added[0].id), quiet=True) == 0
        assert installed(venv) == old_env
        # uv writes a package's RECORD last: killed just before, the files it had linked belong to
        # nothing any more. They are counted (the report gives the number), not hidden.
        count("orphaned files after rollback", len(orphans(venv)))
        assert run(root, venv, wheels, "check", "--lock", str(added[0].path), quiet=True) == 0
    assert run(root, venv, wheels, "sync", quiet=True) == 0  # and forward again
    assert run(root, venv, wheels, "check", quiet=True) == 0
    assert installed(venv) == new_env


def test_sigkill_anywhere_in_sync_is_recoverable(setup, venv, wheels, tmp_path):
    root, _ = setup
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    lock_bytes, old_env = (root / "comfylock.lock").read_bytes(), installed(venv)
    user = root / "user" / "comfylock"
    base = {e.id for e in history.entries(user)}
    proc = child(root, venv, wheels, ["sync"], FAULT_TRACE=str(tmp_path / "trace"))
    assert proc.returncode == 0, proc.stderr
    new_env = installed(venv)
    for n in kill_points(tmp_path / "trace", POINTS):
        force_env(venv, old_env, wheels)
        forget_after(user, base)
        proc = child(root, venv, wheels, ["sync"], FAULT_KILL_AT=str(n))
        count("sync kills", proc.returncode == KILLED)
        check_after_kill(root, venv, wheels, lock_bytes, base, old_env, new_env, torn_ok=False)
    print(f"\nfaults: {STATS}")


TORN = {
    "dist-info without METADATA": lambda site: (site / "alpha-1.0.dist-info" / "METADATA").unlink(),
    "RECORD empty": lambda site: (site / "alpha-1.0.dist-info" / "RECORD").write_text(""),
    "RECORD cut short": lambda site: (site / "gamma-1.0.dist-info" / "RECORD").write_text(
        (site / "gamma-1.0.dist-info" / "RECORD").read_text()[:-5]
    ),
    "files half removed": lambda site: [p.unlink() for p in sorted((site / "alpha").glob("m1*.py"))],
    "stray dist-info without RECORD": lambda site: (
        (site / "delta-1.0.dist-info").mkdir()
        or (site / "delta-1.0.dist-info" / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: delta\nVersion: 1.0\n"
        )
    ),
}


def test_torn_environment_is_repaired_by_rollback_and_sync(setup, venv, wheels, tmp_path):
    """What uv killed mid-install leaves (each shape seen in the mid-uv kills below), made on purpose:
    the sync is killed just before uv runs, then the environment is torn by hand."""
    root, _ = setup
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    lock_bytes, old_env, user = (
        (root / "comfylock.lock").read_bytes(),
        installed(venv),
        root / "user/comfylock",
    )
    base = {e.id for e in history.entries(user)}
    assert child(root, venv, wheels, ["sync"], FAULT_TRACE=str(tmp_path / "trace")).returncode == 0
    new_env = installed(venv)
    events = [e.split() for e in (tmp_path / "trace").read_text().splitlines()]
    first = next(i for i, e in enumerate(events) if e[:3] == ["call", "sync", "uv.py"])
    uv_event = next(i for i, e in enumerate(events[first:], first + 1) if e[:2] == ["call", "run_uv"])
    site = (
        next(venv.parent.parent.glob("lib/python*/site-packages"), None)
        or venv.parent.parent / "Lib/site-packages"
    )
    for shape, tear in TORN.items():
        force_env(venv, old_env, wheels)
        forget_after(user, base)
        assert child(root, venv, wheels, ["sync"], FAULT_KILL_AT=str(uv_event)).returncode == KILLED
        tear(site)
        assert installed(venv) != old_env, shape
        count("torn by hand")
        check_after_kill(root, venv, wheels, lock_bytes, base, old_env, new_env, torn_ok=True)


@pytest.mark.skipif(os.name == "nt", reason="kills a POSIX process group, uv included")
def test_sigkill_mid_uv_install_is_recoverable(setup, venv, wheels, tmp_path):
    """uv killed while it removes and installs files: the environment is torn; the way back holds."""
    root, _ = setup
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    lock_bytes, old_env, user = (
        (root / "comfylock.lock").read_bytes(),
        installed(venv),
        root / "user/comfylock",
    )
    base = {e.id for e in history.entries(user)}
    assert child(root, venv, wheels, ["sync"], FAULT_TRACE=str(tmp_path / "trace")).returncode == 0
    new_env, flag = installed(venv), tmp_path / "uv-starts"
    events = [e.split() for e in (tmp_path / "trace").read_text().splitlines()]
    first = next(i for i, e in enumerate(events) if e[:3] == ["call", "sync", "uv.py"])
    uv_event = next(i for i, e in enumerate(events[first:], first + 1) if e[:2] == ["call", "run_uv"])
    cmd, env = child_cmd(root, venv, wheels, ["sync"])
    env.update(FAULT_NOTIFY_AT=str(uv_event), FAULT_NOTIFY=str(flag))
    site = next(venv.parent.parent.glob("lib/python*/site-packages"))
    rng, span = random.Random(5), None
    for _ in range(POINTS + 1):
        force_env(venv, old_env, wheels)
        forget_after(user, base)
        flag.unlink(missing_ok=True)
        before = look(site)
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
        while not flag.exists() and proc.poll() is None:
            time.sleep(0.0005)
        while look(site) == before and proc.poll() is None:  # uv has begun to change files
            pass
        started = time.monotonic()
        if span is None:  # first run: how long uv goes on changing files; later kills fall inside
            last = started
            while proc.poll() is None:
                if look(site) != before:
                    before, last = look(site), time.monotonic()
            assert proc.returncode == 0
            span = last - started
            continue
        time.sleep(rng.uniform(0, span))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        count("kills mid-uv")
        check_after_kill(root, venv, wheels, lock_bytes, base, old_env, new_env, torn_ok=True)
    print(f"\nfaults (uv changes files for {span:.3f}s): {STATS}")


# --- syncs that fail for real ---------------------------------------------------------------------


def failing_sdist(folder: Path, name: str, version: str) -> None:
    """An sdist with static metadata (so compile needs no build) whose in-tree backend fails to build;
    `requires = []` and `backend-path` keep the build off any index."""
    import io
    import tarfile

    files = {
        "pyproject.toml": f'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = []\n',
        "backend.py": "def build_wheel(*args, **kwargs):\n    raise RuntimeError('does not build')\n",
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    with tarfile.open(folder / f"{name}-{version}.tar.gz", "w:gz") as tar:
        for rel, text in files.items():
            info = tarfile.TarInfo(f"{name}-{version}/{rel}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


FAILURES = ["corrupt wheel", "sdist build fails", "missing from index", "index gone", "offline, cold cache"]


@pytest.mark.parametrize("failure", FAILURES)
def test_failed_sync_exits_1_with_the_way_back(failure, comfy, venv, wheels, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "index"
    folder.mkdir()
    for w in wheels.iterdir():
        (folder / w.name).write_bytes(w.read_bytes())
    heavy_wheel(folder, "epsilon", "1.0", files=3)
    failing_sdist(folder, "broken", "1.0")
    served = LocalIndex(folder) if failure in ("index gone", "offline, cold cache") else None
    where = ["--index-url", served.url] if served else ["--no-index", "--find-links", str(folder)]
    root = comfy(OLD)
    base = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["compile", "-q", *base, *where]) == 0 and main(["sync", "-q", *base]) == 0
    old_env = installed(venv)
    (root / "requirements.txt").write_text(
        NEW + ("broken\n" if failure == "sdist build fails" else "epsilon\n")
    )
    assert main(["compile", "-q", *base, *where]) == 0
    extra = []
    if failure == "corrupt wheel":
        data = (folder / "epsilon-1.0-py3-none-any.whl").read_bytes()
        (folder / "epsilon-1.0-py3-none-any.whl").write_bytes(data[: len(data) // 2])
    elif failure == "missing from index":
        (folder / "epsilon-1.0-py3-none-any.whl").unlink()
    elif failure == "index gone":
        monkeypatch.setenv("UV_HTTP_RETRIES", "0")
        served.stop()
    elif failure == "offline, cold cache":
        monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "cold-cache"))
        extra = ["--offline"]
    capsys.readouterr()
    assert main(["sync", *base, *extra]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    back = re.search(r"`comfylock rollback --to (\d+)` restores it", err)
    assert back, err
    count(f"{failure}: environment " + ("unchanged" if installed(venv) == old_env else "changed"))
    assert main(["rollback", "-q", *base, "--to", back[1]]) == 0
    assert installed(venv) == old_env
    entry = root / "user" / "comfylock" / "history" / f"{int(back[1]):04d}.lock"
    assert main(["check", "-q", *base, "--lock", str(entry)]) == 0
    if served and failure != "index gone":
        served.stop()
    print(f"\nfaults: {STATS}")


@pytest.mark.skipif(os.name == "nt", reason="RLIMIT_FSIZE is POSIX")
def test_disk_full_compile_keeps_lock_and_sync_leaves_the_way_back(setup, venv, wheels, tmp_path):
    """A file-size limit makes every write past N bytes fail (EFBIG), as a full disk does."""
    import resource

    root, old = setup
    lock_path = root / "comfylock.lock"
    # warms uv's cache, so only the lock write fails
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    lock_path.write_bytes(old)
    cmd, env = child_cmd(root, venv, wheels, ["compile"])
    limit = len(old) // 2
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "comfylock.lock" in proc.stderr
    assert lock_path.read_bytes() == old and not list(root.glob(".*.tmp"))
    count("disk full: compile refused, lock kept")

    heavy_wheel(tmp_path / "big", "omega", "1.0", files=2, big=300_000)
    (root / "requirements.txt").write_text(NEW + "omega\n")
    assert main(["compile", "-q", "--comfyui", str(root), "--python", str(venv), "--no-index",
                 "--find-links", str(wheels), "--find-links", str(tmp_path / "big")]) == 0  # fmt: skip
    old_env = installed(venv)
    cmd, env = child_cmd(root, venv, wheels, ["sync"])
    proc = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)),
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    back = re.search(r"comfylock rollback --to (\d+)", proc.stderr)
    assert back and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert run(root, venv, wheels, "rollback", "--to", back[1], quiet=True) == 0
    assert installed(venv) == old_env
    assert run(root, venv, wheels, "sync", quiet=True) == 0
    assert run(root, venv, wheels, "check", quiet=True) == 0
    count("disk full: sync failed, rolled back")


def test_damaged_lock_exit_2_naming_the_line_environment_untouched(setup, venv, wheels, capsys):
    from comfylock.lockfile.lock import parse_lock

    root, _ = setup
    assert run(root, venv, wheels, "compile", quiet=True) == 0
    path, good = root / "comfylock.lock", (root / "comfylock.lock").read_text()
    old_env, rng = installed(venv), random.Random(11)
    for _ in range(3 * POINTS):
        lines = good.splitlines(keepends=True)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        op = rng.choice(["flip", "delete", "duplicate", "truncate", "junk", "swap"])
        if op == "flip":
            k = rng.randrange(len(lines[i]))
            lines[i] = lines[i][:k] + chr(rng.randrange(33, 127)) + lines[i][k + 1 :]
        elif op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "truncate":
            lines = list("".join(lines)[: rng.randrange(len(good))])
        elif op == "junk":
            lines.insert(i, rng.choice(["numpy>>1\n", "\x00\x01\n", "-e .\n", "pkg==1; rm -rf ~\n"]))
        else:
            lines[i], lines[j] = lines[j], lines[i]
        text = "".join(lines)
        path.write_text(text)
        capsys.readouterr()
        code = main(["sync", "--comfyui", str(root), "--python", str(venv)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        count("damaged locks tried")
        if code == 0:  # only a change no pin depends on: the preamble's prose, a blank line
            pins = [(p.name, p.spec) for p in parse_lock(text).pins]
            assert pins == [(p.name, p.spec) for p in parse_lock(good).pins]
            force_env(venv, old_env, wheels)
            continue
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        # The header is not hashed: an edited `# platform:` is caught by the target check instead,
        # which names the file and the platform but not the line.
        assert re.search(r"comfylock\.lock:\d+: ", err) or "the lock was made for" in err, err
        assert installed(venv) == old_env
        count("damaged locks refused")
    print(f"\nfaults: {STATS}")
