"""Shared pieces of the benchmark harness: environments, running and timing commands, the results table.

Every comparison is measured inside one run, comfylock and its reference interleaved (A B A B ...), so
the noise of a shared machine hits both; only the ratio of the two medians is meant to be compared
between runs, never the absolute times.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / ".bench"


def shared(*parts: str) -> Path:
    """`../shared/...` beside the checkout, or beside the folder holding it (a worktree under wt/);
    the first of the two when neither exists (the skip message names it)."""
    candidates = [base.joinpath("shared", *parts) for base in (REPO.parent, REPO.parent.parent)]
    return next((c for c in candidates if c.exists()), candidates[0])


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
WINDOWS = os.name == "nt"

# A step does its own untimed set-up, then returns the seconds its timed part took.
Step = Callable[[], float]


class BenchError(Exception):
    """A command the harness relies on failed; the message says which and why."""


def venv_bin(venv: Path, name: str) -> Path:
    """A program inside a virtual environment (bin/NAME, or Scripts/NAME.exe on Windows)."""
    return venv / ("Scripts" if WINDOWS else "bin") / (f"{name}.exe" if WINDOWS else name)


def venv_python(venv: Path) -> Path:
    return venv_bin(venv, "python")


def comfylock_script() -> Path:
    """The console script users run, beside the interpreter running the harness (the dev venv)."""
    path = Path(sys.executable).parent / ("comfylock.exe" if WINDOWS else "comfylock")
    if not path.is_file():
        raise BenchError(
            f"no comfylock console script beside {sys.executable}: run `make bench` (it installs it)"
        )
    return path


def uv_bin() -> str:
    """The uv binary comfylock itself runs, so both sides of a comparison use the same uv."""
    from uv import find_uv_bin

    return os.fsdecode(find_uv_bin())


def clean_env(cache: Path) -> dict[str, str]:
    """The environment of every command: a private uv cache, no uv or pip config files, no colours.

    The machine's own UV_*/PIP_* settings (an extra index, find-links, constraints) are dropped so the
    hermetic cases see only the wheels the harness wrote; comfylock and its reference get this same env.
    """
    drop = (
        "UV_",
        "PIP_",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "COMFYUI_PATH",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(
        UV_CACHE_DIR=str(cache),
        UV_NO_CONFIG="1",
        UV_PYTHON_DOWNLOADS="never",
        NO_COLOR="1",
        PIP_CONFIG_FILE=os.devnull,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_INPUT="1",
        PIP_CACHE_DIR=str(cache.parent / "pip-cache"),
    )
    return env


def run(
    cmd: Sequence[str | os.PathLike[str]],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command (argument list, never a shell), capturing its output."""
    args = [os.fspath(c) for c in cmd]
    proc = subprocess.run(
        args, cwd=cwd, env=dict(env), capture_output=True, text=True, encoding="utf-8", errors="replace"
    )
    if check and proc.returncode != 0:
        raise BenchError(_failure(args, proc))
    return proc


def timed(cmd: Sequence[str | os.PathLike[str]], env: Mapping[str, str], *, cwd: Path | None = None) -> float:
    """Wall-clock seconds of one command, as a user waits for it; a failure stops the benchmark."""
    args = [os.fspath(c) for c in cmd]
    start = time.perf_counter()
    proc = subprocess.run(
        args,
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(_failure(args, proc))
    return elapsed


def expect_output(cmd: Sequence[str | os.PathLike[str]], env: Mapping[str, str], text: str) -> None:
    """Check that a comfylock command does what a case claims to measure (e.g. a no-op is a no-op)."""
    args = [os.fspath(c) for c in cmd if c != "-q"]
    out = run(args, env).stdout
    if text not in out:
        raise BenchError(f"expected {text!r} from `comfylock {args[1]}`, got: {out.strip()[:300]}")


def _failure(args: list[str], proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()]
    shown = " ".join(Path(args[0]).name.split() + args[1:3])
    return f"`{shown} ...` failed (exit {proc.returncode}): " + " | ".join(lines[-3:] or ["no output"])


def interleave(steps: Sequence[Step], repeat: int, warmup: int) -> list[list[float]]:
    """Run the steps in turn (A B A B ...) `warmup` times untimed, then `repeat` times timed."""
    for _ in range(warmup):
        for step in steps:
            step()
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeat):
        for i, step in enumerate(steps):
            times[i].append(step())
    return times


def median(times: Sequence[float]) -> float:
    return statistics.median(times)


def fmt_seconds(s: float) -> str:
    if s >= 10:
        return f"{s:.1f} s"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.0f} ms" if s >= 0.1 else f"{s * 1000:.1f} ms"


def fmt_times(times: Sequence[float]) -> str:
    """Median and spread: '41.2 ms (39.8–45.0 ms)'."""
    if len(times) == 1:
        return fmt_seconds(times[0])
    mid, lo, hi = (fmt_seconds(x) for x in (median(times), min(times), max(times)))
    if len({s.split()[1] for s in (mid, lo, hi)}) == 1:  # one unit: say it once
        lo, hi = lo.split()[0], hi.split()[0]
    return f"{mid} ({lo}–{hi})"


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    case: str  # "1", "3a", ...
    what: str
    ours: str  # comfylock's cell: median (min–max), or a measured value
    reference: str  # what it is compared with, and its median (min–max)
    ratio: float | None  # comfylock ÷ reference (medians), None when the row has no ratio
    goal: str  # "≤ 0.05", "≤ 50 MB", or "" for a row that only informs
    ok: bool | None  # None: no goal, or not measurable here
    note: str = ""

    @property
    def result(self) -> str:
        if self.ok is None:
            return "n/a" if self.goal else "—"
        return "PASS" if self.ok else "MISS"


def compare(
    case: str,
    what: str,
    ours: Sequence[float],
    ref_label: str,
    ref: Sequence[float],
    goal: float | None,
    note: str = "",
) -> Row:
    """A row whose ratio is comfylock's median over the reference's median, checked against `goal`."""
    ratio = median(ours) / median(ref)
    return Row(
        case,
        what,
        fmt_times(ours),
        f"{ref_label}: {fmt_times(ref)}",
        ratio,
        f"≤ {goal:g}" if goal is not None else "",
        None if goal is None else ratio <= goal,
        note,
    )


def not_measured(case: str, what: str, reference: str, goal: str, why: str) -> Row:
    """A row standing in for a measurement that could not be made here, saying why."""
    return Row(case, what, "not measured", reference, None, goal, None, why)


def table(rows: Sequence[Row]) -> str:
    head = "| # | case | comfylock | reference | ratio | goal | result | notes |\n"
    head += "|---|---|---|---|---|---|---|---|\n"
    body = "".join(
        f"| {r.case} | {_cell(r.what)} | {_cell(r.ours)} | {_cell(r.reference)} | "
        f"{'' if r.ratio is None else f'{r.ratio:.3g}'} | {r.goal} | {r.result} | {_cell(r.note)} |\n"
        for r in rows
    )
    return head + body


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
        with open("/proc/meminfo", encoding="utf-8") as f:
            kb = next(int(ln.split()[1]) for ln in f if ln.startswith("MemTotal"))
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    uv = run([uv_bin(), "--version"], os.environ).stdout.strip()
    return (
        f"{platform.system()} {platform.release()} ({platform.machine()}), {cpu}, "
        f"{os.cpu_count()} CPUs{mem}; Python {platform.python_version()}; {uv}"
    )


def lock_pins(text: str) -> int:
    """The pins of a lock: its unindented `name==version` lines. The `# requested by` lines under a pin
    are indented and may quote a `==` requirement (core's `comfyui-frontend-package==...`)."""
    return len([ln for ln in text.splitlines() if "==" in ln and ln[:1] not in ("#", " ", "\t", "")])


def rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


_TEMPLATE = """\
# comfylock benchmarks

Produced by `make bench` (hermetic), `make bench-real` (the corpus against PyPI) and `make bench-peers`
(comfy-cli and pip-tools on the hermetic tree); each run rewrites its own section below.

How to read a row: comfylock and its reference run alternately in the same run (A B A B ...) after
warm-up runs; each cell is the median and the min–max spread; **ratio** is comfylock's median ÷ the
reference's median, checked against the goal of issue 6. These machines are noisy: compare ratios
between runs, never absolute times. comfylock runs as users run it (the `comfylock` console script, a
fresh process each time) with the same uv, uv cache and environment as the reference; the harness
drops the machine's UV_*/PIP_* settings and PYTHONDONTWRITEBYTECODE, so Python's bytecode cache works
as on a user's machine.

{sections}
"""
_SECTIONS = ("hermetic", "real", "peers")


def update_results(path: Path, section: str, text: str) -> None:
    """Replace one section of RESULTS.md, keeping the sections other runs wrote."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    parts = []
    for name in _SECTIONS:
        begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
        if name == section:
            body = text.strip()
        elif begin in old and end in old:
            body = old.split(begin, 1)[1].split(end, 1)[0].strip()
        else:
            body = f"_Not run yet: `make bench{'' if name == 'hermetic' else '-' + name}`._"
        parts.append(f"{begin}\n{body}\n{end}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_TEMPLATE.format(sections="\n\n".join(parts)), encoding="utf-8")
