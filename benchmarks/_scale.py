"""Cases 8 and 9: collect + policy on generated trees of growing size, start-up time, peak memory."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from _common import WINDOWS, BenchError, Row, compare, fmt_times, not_measured, run, timed
from _trees import scale_index, scale_tree

if TYPE_CHECKING:
    from _hermetic import Hermetic

# Runs in a fresh interpreter: comfylock's stages 2 and 3 alone, as `compile` runs them, without uv.
_SCALE_DRIVER = """\
import sys
from comfylock.collect import gather as collect
from comfylock.policy import apply as policy
from comfylock.workspace.config import load_config
from comfylock.workspace.layout import open_workspace

ws = open_workspace(sys.argv[1], python=sys.executable)
cfg = load_config(ws.user_dir)
coll = collect.collect(
    ws, settings=cfg.nodes, skip_nodes=cfg.skip, user_requirements=ws.user_dir / "requirements.txt"
)
pol = policy.load_policy(ws.user_dir / "pip-policy.user.json")
os_name = {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")
facts = policy.Facts(installed={}, os=os_name, has_gpu=False, comfyui_version=None)
outcome = policy.apply(pol, coll.requirements(), facts, torch_index=cfg.torch_index)
if not outcome.requirements:
    sys.exit("collected nothing")
"""

# Runs `comfylock` in-process, then reports the peak RSS of this very process (comfylock's own), and
# separately the largest of its children (uv, the target probe), which RUSAGE_CHILDREN reports.
_RSS_DRIVER = """\
import json, sys
from comfylock.cli.main import main

code = main(sys.argv[1:])
import resource

scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
usage = {
    "code": code,
    "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
    "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
}
print(json.dumps(usage))
"""


def scale_cases(h: Hermetic) -> list[Row]:
    """8: collect + policy on generated trees, against `comfylock --version`; growth with size."""
    h.log(f"case 8: collect + policy on {', '.join(map(str, h.sizes))} nodes")
    d = h.work / "scale"
    d.mkdir(parents=True, exist_ok=True)
    index, names = scale_index(d)
    trees = [scale_tree(d, n, names, index) for n in h.sizes]
    driver = d / "scale_driver.py"
    driver.write_text(_SCALE_DRIVER, encoding="utf-8")
    steps = [lambda: timed([h.comfylock, "--version"], h.env)]
    for t in trees:
        steps.append(lambda t=t: timed([sys.executable, driver, t.root], h.env))
    times = h.pairs(steps)
    version, per_size = times[0], times[1:]
    rows = []
    for n, t, ts in zip(h.sizes, trees, per_size, strict=True):
        nreq = sum(len(f.read_text(encoding="utf-8").splitlines()) for f in t.inputs)
        largest = n == max(h.sizes)
        rows.append(
            compare(
                "8",
                f"collect + policy, {n} nodes (~{nreq} lines)",
                ts,
                "comfylock --version",
                version,
                5 if largest else None,
            )
        )
    if len(h.sizes) >= 2:
        (small, s_times), (big, b_times) = sorted(zip(h.sizes, per_size, strict=True))[-2:]
        goal = 1.2 * big / small
        rows.append(
            compare(
                "8",
                f"growth: collect + policy {big} nodes ÷ {small} nodes",
                b_times,
                f"{small} nodes",
                s_times,
                round(goal, 2),
                "linear growth would be " + f"{big / small:g}",
            )
        )
    return rows


def startup_case(h: Hermetic) -> Row:
    """9a: `comfylock --version` against `python -c pass` (same interpreter)."""
    h.log("case 9: start-up and memory")
    times = h.pairs(
        [
            lambda: timed([h.comfylock, "--version"], h.env),
            lambda: timed([sys.executable, "-c", "pass"], h.env),
        ]
    )
    return compare("9a", "comfylock --version", times[0], "python -c pass", times[1], 2.5)


def memory_case(h: Hermetic) -> Row:
    """9b: peak RSS of comfylock's own process during a compile of the largest generated tree."""
    n = max(h.sizes)
    what = f"peak RSS of comfylock's process, compile --dry-run of {n} nodes"
    if WINDOWS:
        return not_measured("9b", what, "limit 50 MB", "≤ 50 MB", "n/a on Windows (no ru_maxrss)")
    index, names = scale_index(h.work / "scale")
    t = scale_tree(h.work / "scale", n, names, index)  # deterministic: the tree case 8 timed
    d = h.work / "rss"
    d.mkdir(parents=True, exist_ok=True)
    driver = d / "rss_driver.py"
    driver.write_text(_RSS_DRIVER, encoding="utf-8")
    py = h.venv(d / "venv")
    args = ["compile", "--comfyui", t.root, "--python", py, "--no-index", "--find-links", t.index]
    run([h.comfylock, *args, "-q", "--dry-run"], h.env)  # warm uv's cache
    peaks, kids, walls = [], [], []
    for _ in range(max(1, min(h.repeat, 3))):  # a fresh process per measurement
        start = time.perf_counter()
        proc = run([sys.executable, driver, *args, "-q", "--dry-run"], h.env)
        walls.append(time.perf_counter() - start)
        usage = json.loads(proc.stdout.strip().splitlines()[-1])
        if usage["code"] != 0:
            raise BenchError(f"comfylock compile of {n} nodes exited {usage['code']}")
        peaks.append(usage["self"] / 2**20)
        kids.append(usage["children"] / 2**20)
    peak = max(peaks)
    return Row(
        "9b",
        what,
        f"{peak:.1f} MB (max of {len(peaks)} runs)",
        "limit 50 MB",
        None,
        "≤ 50 MB",
        peak <= 50,
        f"largest child (uv or the target probe): {max(kids):.1f} MB; wall time {fmt_times(walls)}",
    )
