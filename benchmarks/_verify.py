"""`make bench-real`, verify cases (issue 14): what proving that the nodes still load costs on a real
ComfyUI, and that a sync that changed nothing does not pay it.

The real ComfyUI is ../shared/real/ComfyUI (0.3.64 with four real nodes), found beside the checkout
(or its worktree folder), copied under .bench/real/verify/. Its environment is made once: compile and
a first sync (PyPI's torch: several GB, from uv's cache when it holds them; COMFYLOCK_REAL_CACHE names
a cache to use instead of the benchmark's own). Then, interleaved: `comfylock verify`, a no-op
`comfylock sync` and `python main.py --cpu --quick-test-for-ci` run directly (ComfyUI's own loader,
what verify runs). Each of these takes ComfyUI's start-up, 15-30 s here, so the rounds are few.
Skipped, with the reason in the table, when the real ComfyUI is absent or its packages cannot be
installed (no torch for this machine, PyPI unreachable and a cold cache).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _common import (
    BenchError,
    Row,
    clean_env,
    comfylock_script,
    compare,
    expect_output,
    fmt_seconds,
    interleave,
    lock_pins,
    not_measured,
    rmtree,
    run,
    shared,
    timed,
    uv_bin,
    venv_python,
)

REFERENCE = "python main.py --cpu --quick-test-for-ci, run directly"


def find_real_comfyui() -> Path | None:
    """../shared/real/ComfyUI beside the checkout, or beside the folder holding the worktrees."""
    candidate = shared("real", "ComfyUI")
    return candidate if (candidate / "main.py").is_file() and (candidate / "custom_nodes").is_dir() else None


class RealVerify:
    def __init__(
        self,
        work: Path,
        source: Path | None,
        cache: Path,
        *,
        repeat: int,
        warmup: int,
        log: Callable[[str], None],
    ) -> None:
        self.work, self.source, self.repeat, self.warmup, self.log = work, source, repeat, warmup, log
        self.env = clean_env(Path(os.environ.get("COMFYLOCK_REAL_CACHE") or cache))
        self.uv, self.comfylock = uv_bin(), comfylock_script()
        self.root = work / "ComfyUI"
        self.py = venv_python(work / "venv")
        self.first_sync: float | None = None
        self.packages = 0

    def cl(self, command: str, *extra: str | Path) -> list[str | Path]:
        return [self.comfylock, command, "--comfyui", self.root, "--python", self.py, "-q", *extra]

    def rows(self) -> list[Row]:
        what_v, what_s = "comfylock verify (real ComfyUI, 4 nodes)", "no-op sync (nothing changed: no verify)"
        if self.source is None:
            why = "no real ComfyUI at ../shared/real/ComfyUI (pass --real-comfyui DIR)"
            return [
                not_measured("V1", what_v, REFERENCE, "", why),
                not_measured("V2", what_s, REFERENCE, "", why),
            ]
        try:
            self.prepare()
        except BenchError as e:
            why = f"its packages could not be installed here (torch?): {str(e)[:240]}"
            return [
                not_measured("V1", what_v, REFERENCE, "", why),
                not_measured("V2", what_s, REFERENCE, "", why),
            ]
        n = self.warmup + self.repeat
        self.log(f"real case V: verify, no-op sync and ComfyUI's loader run directly ({n} runs of each)")
        # What V2 claims: the environment matches, so sync neither changes nor verifies anything.
        expect_output(self.cl("sync"), self.env, "nothing to do")
        direct = [self.py, "main.py", "--cpu", "--quick-test-for-ci"]
        times = interleave(
            [
                lambda: timed(self.cl("verify"), self.env),
                lambda: timed(self.cl("sync"), self.env),
                lambda: timed(direct, self.env, cwd=self.root),
            ],
            self.repeat,
            self.warmup,
        )
        first = (
            f"; first sync into the new venv ({self.packages} packages, then a cold verify): "
            f"{fmt_seconds(self.first_sync)}"
            if self.first_sync is not None
            else f"; the venv ({self.packages} packages) was kept from an earlier run"
        )
        return [
            compare(
                "V1",
                what_v,
                times[0],
                REFERENCE,
                times[2],
                None,
                f"what a sync that changed packages adds (verify is ComfyUI's own start){first}",
            ),
            compare(
                "V2",
                what_s,
                times[1],
                REFERENCE,
                times[2],
                0.05,
                "a sync that changed nothing runs no ComfyUI",
            ),
        ]

    def describe(self) -> str:
        return (
            "Cases V1-V2 (issue 14): a copy of ../shared/real/ComfyUI (ComfyUI 0.3.64 with four real nodes) "
            "synced into a venv of this Python (PyPI's torch when the PyTorch index is unreachable); "
            "`comfylock verify`, a no-op `comfylock sync` and ComfyUI's own loader run directly, interleaved "
            f"({self.warmup} warm-up and {self.repeat} timed rounds: each ComfyUI start takes 15-30 s here)."
        )

    def prepare(self) -> None:
        """A copy of the real ComfyUI with its lock synced into a venv of this Python (kept between runs:
        the sync is a no-op the second time)."""
        assert self.source is not None
        self.work.mkdir(parents=True, exist_ok=True)
        rmtree(self.root)
        shutil.copytree(
            self.source,
            self.root,
            ignore=shutil.ignore_patterns(".git", "venv", ".venv", "user", "comfylock.lock"),
        )
        for path in [self.root, *self.root.rglob("*")]:  # the shared copy may be read-only
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        if not self.py.is_file():
            run([self.uv, "venv", "--quiet", "--python", sys.executable, self.py.parent.parent], self.env)
        self.log("real case V: compile and first sync of the real ComfyUI (GBs unless uv's cache holds them)")
        run(self.cl("compile"), self.env)
        lock = (self.root / "comfylock.lock").read_text(encoding="utf-8")
        self.packages = lock_pins(lock)
        # The first sync of a new venv verifies too (no earlier result: it only reports), cold: every
        # .pyc is written. A venv kept from an earlier run already matches: nothing to time.
        start = time.perf_counter()
        out = run([c for c in self.cl("sync") if c != "-q"], self.env).stdout
        if "nothing to do" not in out:
            self.first_sync = time.perf_counter() - start
