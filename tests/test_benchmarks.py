"""Smoke test of the hermetic benchmark harness: one repetition on the smallest data, every case row there.

Speed is never asserted here (these machines are noisy); only that the harness runs, measures every
case, writes its table, and that comfylock leaves a consistent environment where node-by-node pip does not.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("1", "2", "3a", "3b", "4", "5", "6", "8", "9a", "9b")


def _rows(table: str) -> dict[str, list[list[str]]]:
    rows: dict[str, list[list[str]]] = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and cells[0] not in ("#", "---"):
            rows.setdefault(cells[0], []).append(cells)
    return rows


def test_hermetic_harness_smallest(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if k != "UV_CACHE_DIR"}  # the harness keeps its own
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run.py"),
            "--repeat=1",
            "--warmup=0",
            "--nodes=4",
            "--sizes=5,10",
            "--work",
            str(tmp_path / "work"),
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = _rows(proc.stdout)
    assert set(CASES) <= set(rows), sorted(rows)
    assert len(rows["8"]) == 3  # one row per size, then the growth between the two largest
    for case in CASES:
        for cells in rows[case]:
            windows_rss = case == "9b" and os.name == "nt"  # no ru_maxrss there: the row says n/a
            assert len(cells) == 8 and (cells[6] in ("PASS", "MISS", "—") or windows_rss), cells
            assert cells[2] != "not measured" or windows_rss, cells
    # The point of case 6: one resolution leaves pip check passing, one-by-one installs break pins.
    assert re.search(r"comfylock: passes; pip: FAILS \(.*(numlib|libx)", rows["6"][0][7]), rows["6"][0][7]
    text = results.read_text(encoding="utf-8")
    assert "<!-- BEGIN hermetic -->" in text and "| 9b |" in text
    assert "Not run yet: `make bench-real`" in text
