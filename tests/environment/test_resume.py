"""Completing an interrupted sync installs from uv's cache: no package is fetched again."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

from helpers import installed
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.environment import history


class _Index:
    """A PEP 503 index over HTTP on localhost that counts the wheel downloads it serves."""

    def __init__(self, root: Path) -> None:
        self.root, self.wheels_served = root, []
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw) -> None:
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self) -> None:  # noqa: N802 - the http.server name
                if self.path.endswith(".whl"):
                    outer.wheels_served.append(self.path.rsplit("/", 1)[-1])
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"

    def add(self, name: str, version: str) -> None:
        wheel = make_wheel(self.root / "files", name, version)
        page = self.root / "simple" / name
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{w.name}">{w.name}</a>\n'
            for w in sorted(wheel.parent.glob(f"{name}-*.whl"))
        )
        (page / "index.html").write_text(f"<html><body>\n{links}</body></html>\n")

    def close(self) -> None:
        self.server.shutdown()


def test_completing_an_interrupted_sync_downloads_nothing(comfy, venv, tmp_path) -> None:
    index = _Index(tmp_path / "served")
    names = ["alpha", "beta", "gamma", "delta"]
    for name in names:
        index.add(name, "1.0")
        index.add(name, "2.0")
    try:
        root = comfy("".join(f"{n}==1.0\n" for n in names), {})
        base = ["--comfyui", str(root), "-p", str(venv)]
        assert main(["compile", "-q", *base, "--index-url", index.url]) == 0
        assert main(["sync", "-q", *base]) == 0
        lock_b = tmp_path / "b.lock"
        lock_b.write_text(f"--index-url {index.url}\n" + "".join(f"{n}==2.0\n" for n in names))
        # What a sync to B killed half-way leaves: B's wheels in uv's cache (downloaded first), two
        # packages already moved, its marker written. Made with uv itself in a scratch venv.
        scratch = tmp_path / "scratch"
        subprocess.run([sys.executable, "-m", "uv", "venv", "-q", str(scratch)], check=True)
        sync_b = [sys.executable, "-m", "uv", "pip", "sync", "-q", "--index-url", index.url]
        subprocess.run([*sync_b, str(lock_b), "--python", str(scratch)], check=True, capture_output=True)
        half = tmp_path / "half.txt"
        half.write_text("alpha==2.0\nbeta==2.0\ngamma==1.0\ndelta==1.0\n")
        subprocess.run([*sync_b, str(half), "--python", str(venv)], check=True, capture_output=True)
        history.begin(root / "user" / "comfylock", 1, names)
        index.wheels_served.clear()
        assert main(["sync", "-q", *base, "--lock", str(lock_b)]) == 0
        assert index.wheels_served == []  # with --reinstall-package uv fetched all four again
        assert {n: v for n, v in installed(venv).items() if n in names} == dict.fromkeys(names, "2.0")
        assert history.pending(root / "user" / "comfylock") is None
    finally:
        index.close()


def test_writes_inside_flushed_behind_are_in_place_at_once_and_leave_no_descriptor(tmp_path) -> None:
    import os

    from comfylock._fs import atomic_write, flushed_behind

    fds = Path("/proc/self/fd")
    before = len(list(fds.iterdir())) if fds.is_dir() else 0
    with flushed_behind():
        atomic_write(tmp_path / "a" / "entry.lock", "one\n")
        assert (tmp_path / "a" / "entry.lock").read_text() == "one\n"  # renamed in, before any fsync
        with flushed_behind():  # nested: the outer block flushes
            atomic_write(tmp_path / "a" / "entry.lock", "two\n")
    assert (tmp_path / "a" / "entry.lock").read_text() == "two\n"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["entry.lock"]  # no temp file left
    if fds.is_dir():
        assert len(list(fds.iterdir())) == before
    assert os.stat(tmp_path / "a" / "entry.lock").st_size == 4
