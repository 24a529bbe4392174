"""Progress as it happens: on a terminal (a pseudo-terminal here) and off one (pipes, -v, -q)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from wheels import make_wheel

from comfylock.cli.main import main

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


def _comfylock(*args: str) -> list[str]:
    return [sys.executable, "-m", "comfylock", *args]


class Terminal:
    """comfylock run with a pseudo-terminal as its stdin, stdout and stderr; output read as it comes."""

    def __init__(self, cmd: list[str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
        self.proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.text = ""

    def read_until(self, done, timeout: float = 60) -> bool:
        """Read until `done(text)` holds (True) or the process ended / time ran out (False)."""
        import select

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if done(self.text):
                return True
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the other side closed: the process ended
                    chunk = b""
                if not chunk:
                    return done(self.text)
                self.text += chunk.decode("utf-8", "replace")
        return done(self.text)

    def finish(self, timeout: float = 60) -> int:
        self.read_until(lambda _: False, timeout=0) if self.proc.poll() is None else None
        code = self.proc.wait(timeout=timeout)
        self.read_until(lambda _: False, timeout=0.5)
        os.close(self.master)
        return code


def _hanging_index() -> tuple[socket.socket, str]:
    """An index that accepts connections and never answers: the step stays under way."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/simple"


@posix_only
def test_a_slow_resolution_shows_its_step_and_time_while_it_runs(comfy, venv) -> None:
    root = comfy("numpy\n", {"NodeA": {"requirements.txt": "scipy\n"}})
    server, url = _hanging_index()
    term = Terminal(_comfylock("compile", "--comfyui", str(root), "-p", str(venv), "--index-url", url))
    try:
        # The status line names the step and its elapsed time while uv is still waiting.
        seen = term.read_until(lambda t: "resolving 2 requirements of 2 inputs with uv (1 s)" in t)
        running = term.proc.poll() is None
    finally:
        term.proc.send_signal(2)  # SIGINT: what Ctrl-C sends
        code = term.finish()
        server.close()
    assert seen and running, term.text
    assert "reading the requirements of custom nodes" in term.text
    assert "interrupted: nothing was written; run `comfylock --comfyui" in term.text
    assert code == 130


@posix_only
def test_a_first_sync_on_a_terminal_shows_uv_progress_before_the_end(comfy, venv, index) -> None:
    root = comfy("numpy\n", {"NodeA": {"requirements.txt": "scipy\n"}})
    assert (
        main(["compile", "-q", "--comfyui", str(root), "-p", str(venv), "--no-index", "-f", str(index)]) == 0
    )
    term = Terminal(_comfylock("sync", "--comfyui", str(root), "-p", str(venv)))
    assert term.finish() == 0
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", term.text)  # uv's colours and cursor moves
    heading = text.index("comfylock: installing 2 packages with uv")
    uv_lines = text.index("Installed 2 packages")  # uv's own report, drawn on the terminal as it works
    assert heading < uv_lines < text.index("sync: changed 2 packages")
    assert "\x1b[" in term.text  # uv drew on a terminal (colour, redrawn lines), not into a pipe


def test_off_a_terminal_one_line_per_step_with_v_and_nothing_with_q(comfy, venv, index) -> None:
    root = comfy("numpy\n", {"NodeA": {"requirements.txt": "scipy\n"}})
    base = ["--comfyui", str(root), "-p", str(venv)]
    env = {**os.environ, "TERM": "xterm"}
    done = subprocess.run(
        _comfylock("-v", "compile", *base, "--no-index", "-f", str(index)),
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "comfylock: reading the requirements of custom nodes",
        "comfylock: resolving 2 requirements of 2 inputs with uv",
    ]
    done = subprocess.run(_comfylock("sync", "-q", *base), capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == ""
    done = subprocess.run(_comfylock("rollback", *base), capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stderr == ""  # no -v: no step lines
    done = subprocess.run(_comfylock("sync", "-v", "--json", *base), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr  # never a bar off a terminal
    assert "comfylock: installing 2 packages with uv" in done.stderr.splitlines()


def _sdist_only(folder: Path, name: str, version: str) -> None:
    """An sdist whose build fails at once (its backend does not exist): enough to be announced."""
    src = folder / f"{name}-{version}"
    src.mkdir()
    (src / "PKG-INFO").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (src / "pyproject.toml").write_text(
        f'[build-system]\nrequires = []\nbuild-backend = "no_such_backend"\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
    )
    with tarfile.open(folder / f"{name}-{version}.tar.gz", "w:gz") as tar:
        tar.add(src, arcname=src.name)


def test_a_build_from_source_is_announced_before_it_starts(comfy, venv, tmp_path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    make_wheel(links, "wheely", "1.0")
    make_wheel(links, "other", "1.0")
    (links / "other-1.0-py3-none-any.whl").rename(links / "other-1.0-cp39-cp39-win_amd64.whl")
    _sdist_only(links, "other", "1.0")  # a wheel, but for another platform
    _sdist_only(links, "dlibby", "20.0.1")
    root = comfy("wheely\nother\ndlibby\n", {})
    base = ["--comfyui", str(root), "-p", str(venv)]
    assert main(["compile", "-q", *base, "--no-index", "-f", str(links)]) == 0
    done = subprocess.run(_comfylock("sync", "-v", *base), capture_output=True, text=True)
    assert done.returncode == 1  # the build itself fails here; what matters is what came first
    lines = done.stderr.splitlines()
    notes = [ln for ln in lines if "has no wheel for this platform" in ln]
    assert [n.split(" has")[0] for n in notes] == ["comfylock: dlibby 20.0.1", "comfylock: other 1.0"]
    assert notes[0].endswith(
        "building from source (needs its build tools, often a C/C++ compiler and cmake; can take minutes)"
    )
    assert lines.index(notes[0]) < next(i for i, ln in enumerate(lines) if "installing" in ln)
    quiet = subprocess.run(_comfylock("sync", "-q", *base), capture_output=True, text=True)
    assert "no wheel" not in quiet.stderr


@posix_only
def test_verify_on_a_terminal_shows_its_step_and_time_while_comfyui_loads(comfy, venv) -> None:
    """ComfyUI's start takes tens of seconds: the terminal must not stay silent meanwhile."""
    from standin_comfyui import install_standin

    slow = "import time\ntime.sleep(3)\nNODE_CLASS_MAPPINGS = {}\n"
    root = install_standin(comfy("", {"Slow": {"__init__.py": slow}}))
    term = Terminal(_comfylock("verify", "--comfyui", str(root), "-p", str(venv)))
    seen = term.read_until(lambda t: "verifying: ComfyUI is loading the custom nodes" in t and "(1 s)" in t)
    running = term.proc.poll() is None
    code = term.finish()
    assert seen and running, term.text  # shown while the loader still runs, with its elapsed time
    assert code == 0 and "1 of 1 custom nodes loaded" in term.text
    done = subprocess.run(
        _comfylock("-v", "verify", "--comfyui", str(root), "-p", str(venv)), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr  # off a terminal: one line with -v, no redrawing
    assert done.stderr.startswith("comfylock: verifying: ComfyUI is loading the custom nodes")
    assert "\r" not in done.stderr
