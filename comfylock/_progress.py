"""What a user sees while a long step runs: a live status line on a terminal, one line per step off it.

The CLI chooses the mode once (`configure`); the stages only announce steps (`step`, `advance`,
`note`). Nothing is shown unless the CLI asked for it, so API callers and tests see no output.

- "bar": stderr is a terminal: a status line with the step, its count and elapsed time, redrawn until
  the step ends and then erased; uv's own progress bars go straight to the terminal (`passthrough`).
- "lines": off a terminal with -v: one line per step on stderr, no redrawing.
- "off": -q, or off a terminal without -v.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_SPIN = "|/-\\"


@dataclass
class _State:
    """The mode chosen and the status line on the screen, shared by the functions below."""

    mode: str = "off"
    color: str = "auto"  # --color, handed to uv when its output reaches the user
    text: str = ""
    done: int = 0
    total: int = 0
    started: float = 0.0
    shown: bool = False  # a status line is on the screen


_state = _State()


def configure(*, quiet: bool, verbose: bool, as_json: bool, color: str = "auto") -> str:
    """Choose the mode from the command line and where stderr goes; returns it."""
    tty = _isatty()
    if quiet:
        mode = "off"
    elif tty and not as_json:
        mode = "bar"
    else:
        mode = "lines" if verbose else "off"
    _state.mode, _state.color = mode, color
    return mode


def mode() -> str:
    return _state.mode


def _isatty() -> bool:
    try:
        return sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def uv_args() -> list[str]:
    """Colour options for a uv whose stderr reaches the user."""
    if _state.color != "auto":
        return ["--color", _state.color]
    return []


def passthrough() -> bool:
    """True when uv's own progress (downloads, builds, installs) should be drawn on the terminal."""
    return _state.mode == "bar"


@contextmanager
def step(text: str, total: int = 0, *, uv_draws: bool = False) -> Iterator[None]:
    """Announce a step that may take more than a second; on a terminal its status line lives while it
    runs (a thread redraws the elapsed time), off a terminal it is one line with -v. `uv_draws`: uv
    draws this step's progress on the terminal itself, so it gets a heading line instead."""
    if _state.mode == "off":
        yield
        return
    _state.text, _state.done, _state.total, _state.started = text, 0, total, time.monotonic()
    if _state.mode == "lines" or uv_draws:
        _write(f"comfylock: {text}\n")
        yield
        return
    stop = threading.Event()

    def redraw() -> None:
        tick = 0
        while not stop.wait(0.2):
            tick += 1
            _draw(tick)

    _draw(0)
    thread = threading.Thread(target=redraw, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _erase()


def advance(n: int = 1) -> None:
    """One more unit of the current step done (a node read)."""
    _state.done += n


def note(text: str) -> None:
    """A line the user should read before a long wait (an sdist about to be built); -q hides it."""
    if _state.mode == "off":
        return
    _erase()
    _write(f"comfylock: {text}\n")


def _draw(tick: int) -> None:
    elapsed = time.monotonic() - _state.started
    count = f" {_state.done}/{_state.total}" if _state.total else ""
    line = f"{_SPIN[tick % len(_SPIN)]} {_state.text}{count} ({elapsed:.0f} s)"
    width = _columns()
    _write("\r" + line[: width - 1] + "\x1b[K")
    _state.shown = True


def _erase() -> None:
    if _state.shown:
        _write("\r\x1b[K")
        _state.shown = False


def _columns() -> int:
    import shutil  # here: importing comfylock.api must not pay for its compression modules

    return shutil.get_terminal_size((80, 24)).columns


def _write(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed terminal must not stop the work
        pass
