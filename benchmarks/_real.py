"""`make bench-real`: ComfyUI core plus the corpus nodes (../shared/corpus/ComfyUI) against PyPI.

Cases 1 to 5 on real requirements. The corpus is copied under .bench/real/ (comfylock writes its
lock and history next to ComfyUI, never into the shared corpus); the uv cache is .bench/real/uv-cache,
so the user's own cache is never touched, and it is kept between runs (warm, as on a user's machine).
An online uv resolution of this tree takes 10-20 s, so 3 timed runs are the default.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from _common import (
    BENCH_DIR,
    REPO,
    BenchError,
    Row,
    clean_env,
    comfylock_script,
    compare,
    expect_output,
    interleave,
    lock_pins,
    not_measured,
    rmtree,
    run,
    timed,
    uv_bin,
    venv_python,
)

if TYPE_CHECKING:
    from comfylock.lockfile.lock import Pin

ADDED_NODE = "ComfyUI-GGUF"  # small, typical: one package of its own (gguf) plus shared ones


class Real:
    def __init__(
        self, work: Path, corpus: Path, *, repeat: int, warmup: int, log: Callable[[str], None]
    ) -> None:
        self.work, self.corpus, self.repeat, self.warmup, self.log = work, corpus, repeat, warmup, log
        self.env = clean_env(work / "uv-cache")
        self.uv, self.comfylock = uv_bin(), comfylock_script()
        self.root = work / "ComfyUI"
        self.parked = work / "parked"
        self.py = venv_python(work / "venv")
        self.packages = 0

    def unavailable(self) -> str | None:
        if not (self.corpus / "custom_nodes").is_dir():
            return f"no corpus at {self.corpus} (pass --corpus DIR)"
        try:
            socket.create_connection(("pypi.org", 443), timeout=5).close()
        except OSError as e:
            return f"PyPI is not reachable ({e})"
        return None

    def cl(self, command: str, *extra: str | Path) -> list[str | Path]:
        return [self.comfylock, command, "--comfyui", self.root, "--python", self.py, "-q", *extra]

    def uv_compile(self, inputs: list[Path], out: Path) -> list[str | Path]:
        return [
            self.uv, "pip", "compile", "--quiet", "--annotation-style", "line", "--no-header", *inputs,
            "--python", self.py, "--output-file", out,
        ]  # fmt: skip

    def inputs(self) -> list[Path]:
        """The files comfylock reads (core's, then each node's chosen file), for bare uv to read too."""
        from comfylock.collect import gather as collect
        from comfylock.workspace.layout import open_workspace

        ws = open_workspace(self.root, self.py)
        return [i.path / i.chosen for i in collect.collect(ws).inputs if i.chosen]

    def prepare(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        rmtree(self.root)
        rmtree(self.parked)
        shutil.copytree(self.corpus, self.root, ignore=shutil.ignore_patterns(".git"))
        for path in [self.root, *self.root.rglob("*")]:  # the shared corpus may be read-only
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        self.parked.mkdir()
        if not self.py.is_file():  # kept between runs: case 4 installs the whole lock into it
            run([self.uv, "venv", "--quiet", "--python", sys.executable, self.py.parent.parent], self.env)

    def all_rows(self, only: set[str] | None = None) -> list[Row]:
        self.prepare()
        rows: list[Row] = []
        if only is None or only & {"1", "2"}:
            rows += self.compile_cases()
        if only is None or "3" in only:
            rows += self.add_node_case()
        if only is None or "4" in only:
            rows.append(self.sync_case())
        if only is None or "5" in only:
            rows.append(self.rollback_case())
            rows.append(self.resume_case())
        return rows

    def compile_cases(self) -> list[Row]:
        self.log(f"real cases 1-2: full and no-op compile ({self.warmup + self.repeat} runs of each, online)")
        lock, out, inputs = self.root / "comfylock.lock", self.work / "uv-out.txt", self.inputs()

        def full_ours() -> float:
            lock.unlink(missing_ok=True)
            return timed(self.cl("compile"), self.env)

        def full_ref() -> float:
            out.unlink(missing_ok=True)
            return timed(self.uv_compile(inputs, out), self.env)

        full = interleave([full_ours, full_ref], self.repeat, self.warmup)
        expect_output(self.cl("compile"), self.env, "up to date")
        noop = interleave(
            [
                lambda: timed(self.cl("compile"), self.env),
                lambda: timed(self.uv_compile(inputs, out), self.env),
            ],
            self.repeat,
            0,  # the full compiles warmed everything
        )
        self.packages = len([ln for ln in out.read_text(encoding="utf-8").splitlines() if "==" in ln])
        what = f"core + {len(inputs) - 1} nodes"
        return [
            compare("1", f"no-op compile ({what})", noop[0], "uv pip compile, same files", noop[1], 0.05),
            compare("2", f"full compile ({what})", full[0], "uv pip compile, same flags", full[1], 1.15),
        ]

    def add_node_case(self) -> list[Row]:
        """3: the lock of everything but one node exists; the node is added. Its packages are in uv's
        cache (the full compiles saw them), which is when comfylock's offline-first attempt answers."""
        node = self.root / "custom_nodes" / ADDED_NODE
        if not node.is_dir():
            node = next(
                p
                for p in sorted((self.root / "custom_nodes").iterdir())
                if (p / "requirements.txt").is_file()
            )
        self.log(f"real case 3: compile after adding {node.name}")
        lock, out, parked = self.root / "comfylock.lock", self.work / "uv-out-3.txt", self.parked / node.name
        shutil.move(node, parked)
        base_inputs = self.inputs()
        run(self.cl("compile"), self.env)
        run(self.uv_compile(base_inputs, out), self.env)
        base_lock, base_out = lock.read_bytes(), out.read_bytes()
        shutil.move(parked, node)
        # bare uv reads the new node's file where it is parked between runs
        new_inputs = [parked / p.relative_to(node) if p.is_relative_to(node) else p for p in self.inputs()]
        shutil.move(node, parked)

        def ours() -> float:
            lock.write_bytes(base_lock)
            shutil.move(parked, node)
            try:
                return timed(self.cl("compile"), self.env)
            finally:
                shutil.move(node, parked)

        def ref() -> float:
            out.write_bytes(base_out)
            return timed(self.uv_compile(new_inputs, out), self.env)

        times = interleave([ours, ref], self.repeat, 0)
        shutil.move(parked, node)
        return [
            compare(
                "3",
                f"compile after adding {node.name}, its packages in uv's cache",
                times[0],
                "uv pip compile, new files, previous output in place",
                times[1],
                0.25,
            ),
            self.comfy_cli_row(node.name, times[0]),
        ]

    def comfy_cli_row(self, node: str, ours: list[float]) -> Row:
        """7f: case 3's compile against comfy-cli's compiler on the same tree (node added), when
        `make bench-peers` has installed comfy-cli: it keeps no lock, so it resolves all again."""
        from _peers import _COMFY_CLI_DRIVER

        what, ref = f"compile after adding {node} (case 3)", "comfy-cli DependencyCompiler.compile_deps()"
        peers = BENCH_DIR / "peers-venv"
        if not venv_python(peers).is_file():
            return not_measured("7f", what, ref, "≤ 0.2", "comfy-cli not installed: run `make bench-peers`")
        self.log("real case 7f: comfy-cli's compiler on the same tree")
        d = self.work / "comfy-cli"
        d.mkdir(parents=True, exist_ok=True)
        driver = d / "driver.py"
        driver.write_text(_COMFY_CLI_DRIVER, encoding="utf-8")

        def theirs() -> float:
            rmtree(d / "out")
            (d / "out").mkdir()
            return timed([venv_python(peers), driver, self.root, d / "out"], self.env)

        try:
            times = interleave([theirs], self.repeat, 0)[0]
        except BenchError as e:
            return not_measured("7f", what, ref, "≤ 0.2", f"comfy-cli failed: {str(e)[:200]}")
        return compare("7f", what, ours, f"{ref}, same tree", times, 0.2, "comfy-cli resolves core, then all")

    def sync_case(self) -> Row:
        self.log("real case 4: no-op sync (the first sync installs the whole lock: several GB, once)")
        lock = self.root / "comfylock.lock"
        run(self.cl("compile"), self.env)
        run(self.cl("sync"), self.env)
        expect_output(self.cl("sync"), self.env, "nothing to do")
        times = interleave(
            [
                lambda: timed(self.cl("sync"), self.env),
                lambda: timed(
                    [self.uv, "pip", "sync", "--quiet", lock, "--python", self.py, "--offline"], self.env
                ),
            ],
            self.repeat,
            self.warmup,
        )
        n = lock_pins(lock.read_text(encoding="utf-8"))
        return compare(
            "4", f"no-op sync ({n} packages)", times[0], "uv pip sync --offline, same lock", times[1], 3
        )

    def rollback_case(self) -> Row:
        """5: lock B moves 20 pure-Python packages of lock A to their previous release; after syncing B
        once (online, so uv's cache holds both), time rolling back to A with the network off."""
        self.log("real case 5: rollback of 20 packages, offline (B's wheels are downloaded once)")
        from comfylock.environment import history
        from comfylock.lockfile import lock as locks

        lock_a, lock_b = self.root / "comfylock.lock", self.work / "b.lock"
        run(self.cl("compile"), self.env)  # a no-op after case 4; needed when run alone (--only 5)
        run(self.cl("sync"), self.env)
        a = locks.read_lock(lock_a)
        moved = _previous_releases([p for p in a.pins if p.version], 20)
        pins = {p.name: p for p in a.pins} | {p.name: p for p in moved}
        locks.write_lock(
            lock_b, locks.Lock(tuple(sorted(pins.values(), key=lambda p: p.name)), a.options, a.meta)
        )
        run(self.cl("sync", "--lock", lock_b), self.env)  # records A: the entry rolled back to
        entry = history.entries(self.root / "user" / "comfylock")[-1].id
        to_b = [self.uv, "pip", "sync", "--quiet", lock_b, "--python", self.py, "--offline"]

        def ours() -> float:
            run(to_b, self.env)
            return timed(self.cl("rollback", "--to", str(entry)), self.env)

        def ref() -> float:
            run(to_b, self.env)
            return timed(
                [self.uv, "pip", "sync", "--quiet", lock_a, "--python", self.py, "--offline"], self.env
            )

        times = interleave([ours, ref], self.repeat, self.warmup)
        run(self.cl("sync"), self.env)
        return compare(
            "5",
            f"rollback of a lock differing in {len(moved)} packages, offline",
            times[0],
            "uv pip sync --offline",
            times[1],
            1.5,
        )

    def resume_case(self) -> Row:
        """5b: the sync from A to case 5's lock B stopped before uv changed anything (its marker left),
        completed by the next `comfylock sync`, against the same sync not interrupted (online both)."""
        self.log("real case 5b: completing an interrupted sync of 20 packages")
        from comfylock.environment import history

        user, lock_a, lock_b = (
            self.root / "user" / "comfylock",
            self.root / "comfylock.lock",
            self.work / "b.lock",
        )
        from comfylock.lockfile import lock as locks

        was = {p.name: p.version for p in locks.read_lock(lock_a).pins}
        changed = [p.name for p in locks.read_lock(lock_b).pins if was.get(p.name) != p.version]
        to_a = [self.uv, "pip", "sync", "--quiet", lock_a, "--python", self.py, "--offline"]
        sync_b = self.cl("sync", "--lock", lock_b)

        def ours() -> float:
            run(to_a, self.env)
            history.end(user)
            history.begin(user, history.entries(user)[-1].id, changed)  # what the stopped sync left
            return timed(sync_b, self.env)

        def ref() -> float:
            run(to_a, self.env)
            history.end(user)
            return timed(sync_b, self.env)

        times = interleave([ours, ref], self.repeat, self.warmup)
        run(to_a, self.env)
        history.end(user)
        return compare(
            "5b",
            "completing an interrupted sync of 20 packages",
            times[0],
            "the same comfylock sync, not interrupted",
            times[1],
            1.5,
        )

    def describe(self) -> str:
        return (
            f"Tree: {_shown(self.corpus)} (core + {len(list((self.root / 'custom_nodes').iterdir()))} nodes; "
            f"bare uv resolves {self.packages or '?'} packages from the raw files, comfylock resolves after "
            "its default policy), copied under .bench/real/; PyPI online; a warm uv cache private to the "
            "benchmark; the target is a `uv venv` environment of this Python. The no-op and add-node cases "
            "take no warm-up of their own: the full compiles before them warmed uv's cache. Runs follow each "
            "other within minutes, so uv's HTTP cache is fresh (PyPI's index pages may be reused for 10 "
            "minutes) and bare uv is quicker here than a user's warm run after a while (13-18 s): against "
            "that reference the ratios of cases 1 and 3 are about 3-4 times lower. Case 5 moves 20 "
            "pure-Python packages to their previous release (found on PyPI), syncs that lock B once "
            "online, then times `comfylock rollback` from B back to A against bare uv syncing A, each "
            "after bare uv put B back: the environment always changed since comfylock last saw it."
        )


def _previous_releases(pins: list[Pin], count: int) -> list[Pin]:
    """`count` pins moved to the release before theirs, for packages that ship pure-Python wheels
    (installable on any machine), asked of PyPI's JSON API."""
    from packaging.version import InvalidVersion, Version

    from comfylock.lockfile.lock import Pin as LockPin

    moved: list[Pin] = []
    for pin in pins:
        if len(moved) == count:
            break
        try:
            with urllib.request.urlopen(f"https://pypi.org/pypi/{pin.name}/json", timeout=20) as r:
                releases = json.load(r)["releases"]
            current = Version(pin.version or "")
        except (OSError, ValueError, KeyError, InvalidVersion):
            continue
        older = []
        for text, files in releases.items():
            try:
                v = Version(text)
            except InvalidVersion:
                continue
            pure = any(f.get("filename", "").endswith("-none-any.whl") and not f.get("yanked") for f in files)
            if v < current and not v.is_prerelease and pure:
                older.append(v)
        pure_now = any(f.get("filename", "").endswith("-none-any.whl") for f in releases.get(pin.version, []))
        if older and pure_now:
            moved.append(LockPin(pin.name, f"{pin.name}=={max(older)}", pin.requested_by, pin.needed_by))
    if len(moved) < count:
        raise BenchError(f"found only {len(moved)} pure-Python packages with an earlier release")
    return moved


def _shown(path: Path) -> str:
    """The corpus as the README names it (../shared/corpus/ComfyUI), not this machine's absolute path."""
    try:
        return Path(os.path.relpath(path, REPO)).as_posix()
    except ValueError:  # another drive on Windows
        return str(path)
