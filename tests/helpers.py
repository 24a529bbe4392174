"""What several test modules share (test modules never import each other): the CLI runner, a
local HTTP index, and reading or changing the target environment with the uv comfylock uses."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from comfylock.cli.main import main

# The hand-written wheels most tests resolve against: name -> version -> requirements.
STANDARD = {
    "numpy": {"1.26.4": [], "2.1.0": []},
    "scipy": {"1.11.4": ["numpy<1.28"], "1.14.0": ["numpy>=1.23"]},
    "pillow": {"10.4.0": [], "11.0.0": []},
    "requests": {"2.31.0": ["idna>=2"], "2.32.3": ["idna>=2"]},
    "idna": {"3.7": [], "3.10": []},
    "tqdm": {"4.66.0": []},
    "opencv-python": {"4.10.0": ["numpy>=1.21"]},
    "opencv-python-headless": {"4.10.0": ["numpy>=1.21"]},
    "opencv-contrib-python": {"4.10.0": ["numpy>=1.21"]},
    "opencv-contrib-python-headless": {"4.10.0": ["numpy>=1.21"]},
    "onnxruntime": {"1.19.0": ["numpy"]},
    "onnxruntime-gpu": {"1.19.0": ["numpy"]},
    "filelock": {"3.16.1": []},
    "torch": {"2.5.1": ["filelock"], "2.6.0": ["filelock"]},
    "insightface": {"0.7.3": ["onnxruntime", "numpy"]},
    "ultralytics": {"8.3.0": ["opencv-python>=4.6", "numpy"]},
}

# The distributions that fight over one import, as the default policy's families name them.
OPENCVS = {
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
}
ONNX = {"onnxruntime", "onnxruntime-gpu"}

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "ComfyUI"


def run(root: Path, venv: Path, index: Path | str | None, *args: str, quiet: bool = False) -> int:
    """`comfylock COMMAND --comfyui ROOT --python VENV ...` in this process; a compile resolves from the
    --find-links folder or page `index` alone (when given)."""
    extra = ["--no-index", "--find-links", str(index)] if args[0] == "compile" and index else []
    flags = ["-q"] if quiet else []
    return main([args[0], *flags, "--comfyui", str(root), "--python", str(venv), *extra, *args[1:]])


class LocalIndex:
    """A wheel folder served on 127.0.0.1: a PEP 503 simple index at `url`, a --find-links page at
    `root`; optionally behind basic auth, and answering each request after `delay` seconds (long enough
    to catch a client's command line in /proc, bounded for a test); stoppable (the index going away).
    Records the Authorization headers (`seen`) and the paths (`paths`) it was asked for."""

    def __init__(self, folder: Path, auth: tuple[str, str] | None = None, delay: float = 0) -> None:
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
                self.do_GET(body=False)

            def do_GET(self, body: bool = True) -> None:  # noqa: N802
                self.body = body
                index.seen.append(self.headers.get("Authorization"))
                index.paths.append(self.path)
                time.sleep(delay)
                if auth and self.headers.get("Authorization") != index.expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="test"')
                    self.end_headers()
                    return
                parts = [p for p in self.path.split("/") if p]
                if not parts:  # a --find-links page: every file, read from the folder as it is now
                    links = "".join(
                        f'<a href="/files/{w.name}">{w.name}</a>\n' for w in sorted(folder.iterdir())
                    )
                    self.reply(f"<html><body>\n{links}</body></html>".encode(), "text/html")
                elif len(parts) == 2 and parts[0] == "simple":
                    links = "".join(
                        f'<a href="/files/{w.name}">{w.name}</a>\n'
                        for w in sorted(folder.iterdir())
                        if w.name.split("-")[0].replace("_", "-").lower() == parts[1]
                    )
                    self.reply(f"<html><body>\n{links}</body></html>".encode(), "text/html")
                elif len(parts) == 2 and parts[0] == "files" and (folder / parts[1]).is_file():
                    self.reply((folder / parts[1]).read_bytes(), "application/octet-stream")
                else:
                    self.send_error(404)

            def reply(self, data: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.body:
                    self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.seen: list[str | None] = []
        self.paths: list[str] = []
        self.expected = "Basic " + base64.b64encode(":".join(auth).encode()).decode() if auth else None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.url = self.root + "simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def with_auth(self, user: str, password: str) -> str:
        """`url` with credentials in it."""
        return self.url.replace("http://", f"http://{user}:{password}@")


def installed(venv: Path) -> dict[str, str]:
    """{name: version} of the target environment, as uv lists it."""
    out = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "list", "--format", "json", "--python", str(venv)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {d["name"]: d["version"] for d in json.loads(out)}


def uv(*args: str) -> str:
    """Run the uv that comfylock uses; its standard output."""
    done = subprocess.run([sys.executable, "-m", "uv", *args], capture_output=True, text=True, check=True)
    return done.stdout


def install(venv: Path, folder: Path, *specs: str) -> None:
    """Install `specs` into the target from a --find-links folder only."""
    uv("pip", "install", "--quiet", "--python", str(venv), "--no-index", "--find-links", str(folder), *specs)


def age(venv_python: Path, seconds: float = 60) -> None:
    """Make the interpreter, pyvenv.cfg and site folders look untouched for a while."""
    venv = venv_python.parent.parent
    then = time.time() - seconds
    paths = [venv / "pyvenv.cfg", *venv.glob("lib*/python*/site-packages"), *venv.glob("Lib/site-packages")]
    if not venv_python.is_symlink():  # a copy (Windows); never touch the base interpreter a link points to
        paths.append(venv_python)
    for p in paths:
        os.utime(p, (then, then))
