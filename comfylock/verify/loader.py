"""Does ComfyUI still start? Its own loader, run in the target interpreter, says which nodes load.

`parse_log()` reads what ComfyUI printed and touches nothing (testable from text alone); `run()` starts
`main.py --quick-test-for-ci --cpu`, which imports every custom node the way ComfyUI always does and
exits, and reads its log. ComfyUI runs the nodes' code here, as every start of ComfyUI does: verify is
only run when the user asked for it (`comfylock verify`) or synced a folder holding ComfyUI's loader.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfylock._exceptions import ComfylockError

DEFAULT_TIMEOUT = 300.0
# ComfyUI's own test switch: load core and every custom node, then exit 0; --cpu needs no GPU. The
# DEBUG level adds "Trying to load custom node PATH", which names the node that hangs on a timeout.
ARGS = ("main.py", "--quick-test-for-ci", "--cpu", "--verbose", "DEBUG")

_TIMES = "Import times for custom nodes:"
_TIME_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?) seconds( \(IMPORT FAILED\))?: (.+?)\s*$")
_CANNOT = re.compile(r"^Cannot import (.+?) module for custom nodes: ?(.*)$")
_TRYING = re.compile(r"^Trying to load custom node (.+?)\s*$")
_SKIP = re.compile(r"^Skip (.+?) module for custom nodes due to (.*)$")
_NO_MODULE = re.compile(r"No module named '([^']+)'")


class VerifyError(ComfylockError):
    """ComfyUI could not be started at all (its error is the message)."""

    exit_code = 2


@dataclass(frozen=True)
class NodeResult:
    name: str  # the folder (or .py file stem) under custom_nodes/
    loaded: bool
    seconds: float | None = None
    error: str | None = None  # the exception's last line ("ModuleNotFoundError: No module named 'x'")
    traceback: str = ""  # as ComfyUI logged it
    path: str = ""  # as ComfyUI printed it
    missing_module: str | None = None  # the module of a ModuleNotFoundError

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "loaded": self.loaded,
            "seconds": self.seconds,
            "error": self.error,
            "traceback": self.traceback,
            "path": self.path,
            "missing_module": self.missing_module,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeResult:
        return cls(
            str(d["node"]),
            bool(d["loaded"]),
            d.get("seconds"),
            d.get("error"),
            str(d.get("traceback") or ""),
            str(d.get("path") or ""),
            d.get("missing_module"),
        )


@dataclass(frozen=True)
class VerifyResult:
    started: bool  # ComfyUI ran to its end (exit 0); False: it could not start, crashed or hung
    nodes: tuple[NodeResult, ...] = ()
    error: str | None = None  # why ComfyUI did not start (its last error line, or the timeout)
    returncode: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output: str = field(default="", compare=False)  # what ComfyUI printed (kept only in memory)

    @property
    def failed(self) -> tuple[NodeResult, ...]:
        return tuple(n for n in self.nodes if not n.loaded)

    @property
    def exit_code(self) -> int:
        """0 every node loaded; 1 a node failed (or hung); 2 ComfyUI could not start at all."""
        if self.failed:
            return 1
        return 0 if self.started else 2

    def node(self, name: str) -> NodeResult | None:
        return next((n for n in self.nodes if n.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "error": self.error,
            "returncode": self.returncode,
            "seconds": round(self.seconds, 3),
            "timed_out": self.timed_out,
            "nodes": [n.to_json() for n in self.nodes],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VerifyResult:
        return cls(
            bool(d["started"]),
            tuple(NodeResult.from_json(n) for n in d.get("nodes", ())),
            d.get("error"),
            d.get("returncode"),
            float(d.get("seconds") or 0.0),
            bool(d.get("timed_out")),
        )


def _node_name(path: str) -> str:
    name = re.split(r"[\\/]", path.rstrip("\\/"))[-1]
    return name[:-3] if name.endswith(".py") else name


def _last_line(text: str) -> str | None:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def parse_log(
    text: str, returncode: int | None, *, timed_out: bool = False, timeout: float = 0.0, seconds: float = 0.0
) -> VerifyResult:
    """What ComfyUI's log says about each custom node.

    ComfyUI logs a failed import as the traceback, then `Cannot import PATH module for custom nodes:
    ERROR`; at the end `Import times for custom nodes:` with one `  0.1 seconds (IMPORT FAILED): PATH`
    line per node. A node that hung is the last one ComfyUI started loading ("Trying to load custom
    node PATH", at DEBUG level) without a time line.
    """
    lines = text.splitlines()
    tracebacks: dict[str, str] = {}
    messages: dict[str, str] = {}
    times: dict[str, tuple[float, bool, str]] = {}
    block: list[str] | None = None
    trying: list[str] = []
    in_times = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            block = [line]
            continue
        m = _CANNOT.match(line)
        if m:
            name = _node_name(m.group(1))
            tracebacks[name] = "\n".join(block or [])
            messages[name] = m.group(2)
            block = None
            continue
        m = _SKIP.match(line)
        if m:
            messages[_node_name(m.group(1))] = f"no node mappings: {m.group(2)}"
            continue
        m = _TRYING.match(line)
        if m:
            trying.append(m.group(1))
            continue
        if line.strip() == _TIMES:
            in_times, block = True, None
            continue
        if in_times:
            m = _TIME_LINE.match(line)
            if m:
                times[_node_name(m.group(3))] = (float(m.group(1)), not m.group(2), m.group(3))
                continue
            in_times = False
        if block is not None:
            block.append(line)

    def failed(name: str) -> tuple[str, str]:
        tb = tracebacks.get(name, "")
        return _last_line(tb) or messages.get(name) or "import failed", tb

    nodes = []
    for name, (secs, ok, path) in times.items():
        err, tb = failed(name) if not ok else (None, "")
        missing = _NO_MODULE.search(err or "")
        nodes.append(NodeResult(name, ok, secs, err, tb, path, missing.group(1) if missing else None))
    error = None
    if timed_out:
        error = f"ComfyUI did not finish loading within {timeout:g} s and was stopped"
        if trying and not times:  # stopped while loading nodes: the last one started is the hung one
            for p in trying[:-1]:  # loaded (or failed) before it; their times were never printed
                name = _node_name(p)
                err, tb = failed(name) if name in messages else (None, "")
                nodes.append(NodeResult(name, err is None, None, err, tb, p))
            hung = f"still loading after {timeout:g} s (hung)"
            nodes.append(NodeResult(_node_name(trying[-1]), False, None, hung, path=trying[-1]))
    elif returncode != 0:
        error = _start_error(lines) or f"ComfyUI exited with code {returncode}"
    nodes.sort(key=lambda n: (n.name.casefold(), n.name))
    return VerifyResult(
        started=not timed_out and returncode == 0,
        nodes=tuple(nodes),
        error=error,
        returncode=returncode,
        seconds=seconds,
        timed_out=timed_out,
        output=text,
    )


def _start_error(lines: list[str]) -> str | None:
    """The line that says why ComfyUI stopped: the last exception line of its last traceback."""
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("Traceback (most recent call last):"):
            return _last_line("\n".join(lines[i:]))
    return _last_line("\n".join(lines))


def run(root: Path, python: Path, *, timeout: float = DEFAULT_TIMEOUT) -> VerifyResult:
    """Run ComfyUI's loader in `python` (cwd: the ComfyUI folder) and parse what it prints."""
    if not (root / "main.py").is_file():
        raise VerifyError("no main.py: this folder does not hold ComfyUI's loader", path=root)
    from comfylock import _progress as progress

    # ComfyUI's start takes tens of seconds (torch alone is seconds): a terminal shows the step and its
    # elapsed time meanwhile, -v off a terminal one line, as for every other long step.
    with progress.step("verifying: ComfyUI is loading the custom nodes (main.py --quick-test-for-ci)"):
        result = _run(root, python, ARGS, timeout)
        if result.returncode == 2 and "unrecognized arguments: --verbose" in result.output:
            # A ComfyUI older than its --verbose LEVEL option: without it, a hang cannot be pinned on a node.
            result = _run(root, python, ARGS[:3], timeout)
    return result


def _run(root: Path, python: Path, args: tuple[str, ...], timeout: float) -> VerifyResult:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # a hung run's lines must already be in the pipe when it is killed
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("PYTHONHOME", None)
    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
    else:
        kwargs["start_new_session"] = True  # its own process group: a timeout ends the whole tree
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [str(python), *args],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **kwargs,
        )
    except OSError as e:
        raise VerifyError(f"cannot start {python}: {e.strerror or e}", path=root) from None
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_tree(proc)
        out, _ = proc.communicate()
    except BaseException:
        _kill_tree(proc)
        proc.wait()
        raise
    text = out.decode("utf-8", errors="replace")
    return parse_log(
        text,
        proc.returncode,
        timed_out=timed_out,
        timeout=timeout,
        seconds=time.perf_counter() - start,
    )


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """End the process and everything it started (ComfyUI or a node may start children)."""
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
    else:
        import signal

        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        proc.kill()
    except OSError:
        pass
