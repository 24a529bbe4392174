"""Bad and hostile input: every case of tests/bad_inputs/ through the CLI, and credentials in URLs.

A case is a folder of files laid over a small ComfyUI (paths as in ComfyUI's folder) plus case.toml:
the command, the exit code, a regex the one-line error must match (it names file:line), and optional
`generate` (files made at test time: 50 MB, symlinks, a FIFO), `secret` (text never printed) and
`pins` (accepted cases: the lock's packages). A file named NAME.in is
laid out as NAME (a broken pyproject.toml would otherwise be read by ruff as its config). For each
refused case:
no traceback, nothing written, the environment unchanged, nothing run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import LocalIndex, run
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.lockfile.lock import read_lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CORPUS = Path(__file__).parent / "bad_inputs"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "case.toml").is_file())
SKIP = {".lock"}  # the workspace lock file: comfylock's own, not a file it "writes" for the user


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input-wheels")
    for name in ("gamma", "beta", "delta"):
        make_wheel(folder, name, "1.0")
    return folder


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """One environment for every case, holding gamma 1.0 (what the corpus' good lock pins)."""
    path = tmp_path_factory.mktemp("bad-input-env") / "venv"
    uv = [sys.executable, "-m", "uv"]
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(path)], check=True)
    py = path / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = ["pip", "install", "-q", "--python", str(py), "--no-index", "--find-links", str(wheels)]
    subprocess.run([*uv, *install, "gamma==1.0"], check=True)
    return py


def tree(root: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, name)
            if name in SKIP:
                continue
            rel = p.relative_to(root).as_posix()
            if p.is_symlink() or not p.is_file():
                out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else "special"
            elif p.stat().st_size > 1 << 20:
                out[rel] = f"{p.stat().st_size} bytes"
            else:
                out[rel] = p.read_bytes()
    return out


def site_state(py: Path) -> list[tuple[str, int]]:
    """site-packages' entries and their mtimes: any install, removal or rewrite shows up."""
    base = py.parent.parent
    site = next(base.glob("lib/python*/site-packages"), None) or base / "Lib" / "site-packages"
    return sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(site))


def generate(kind: str, root: Path, outside: Path) -> None:
    bad = root / "custom_nodes" / "Bad"
    outside.mkdir(exist_ok=True)
    (outside / "requirements.txt").write_text("gamma\n")
    try:
        if kind == "fifty_megabytes":
            with open(bad / "requirements.txt", "wb") as f:
                line = b"gamma>=1.0  # padding to make a file no parser should swallow whole\n"
                f.write(line * (50_000_000 // len(line) + 1))
        elif kind == "deep_includes":
            for i in range(1, 21):
                (bad / f"d{i}.txt").write_text(f"-r d{i + 1}.txt\n" if i < 20 else "gamma\n")
        elif kind == "fifo":
            (bad / "requirements.txt").unlink()
            os.mkfifo(bad / "requirements.txt")
        elif kind == "symlink_include_outside":
            os.symlink(outside / "requirements.txt", bad / "inside.txt")
        elif kind == "symlink_file_outside":
            (bad / "requirements.txt").unlink()
            os.symlink(outside / "requirements.txt", bad / "requirements.txt")
        elif kind == "symlink_node_outside":
            os.symlink(outside, root / "custom_nodes" / "Linked", target_is_directory=True)
        elif kind == "deep_policy":
            policy = root / "user" / "comfylock" / "pip-policy.user.json"
            policy.parent.mkdir(parents=True, exist_ok=True)
            policy.write_text('{"beta": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
        elif kind == "shell_node_name":
            (root / "custom_nodes" / "$(touch pwned); `touch pwned`").mkdir()
            (root / "custom_nodes" / "$(touch pwned); `touch pwned`" / "requirements.txt").write_text(
                "beta\n"
            )
        elif kind == "newline_node_name":
            node = root / "custom_nodes" / "Evil\nbeta==9.9\n# requested by"
            node.mkdir()
            (node / "requirements.txt").write_text("beta\n")
        else:
            raise AssertionError(f"unknown generator {kind}")
    except (OSError, NotImplementedError) as e:  # symlinks need a privilege on Windows
        pytest.skip(f"{kind}: {e}")


@pytest.mark.parametrize("name", CASES)
def test_bad_input(name, tmp_path, target, wheels, capsys, monkeypatch):
    case = tomllib.loads((CORPUS / name / "case.toml").read_text(encoding="utf-8"))
    if case.get("posix_only") and os.name == "nt":
        pytest.skip("needs a POSIX file system")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.chdir(tmp_path)  # a shell running `touch pwned` would leave it here
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes" / "Good").mkdir(parents=True)
    (root / "main.py").write_text("")
    (root / "requirements.txt").write_text("gamma\n")
    (root / "custom_nodes" / "Good" / "requirements.txt").write_text("beta\n")
    for path in (CORPUS / name).rglob("*"):
        if path.is_file() and path.name != "case.toml":
            dest = root / path.relative_to(CORPUS / name)
            dest = dest.with_name(dest.name.removesuffix(".in"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(path.read_bytes())
    if case.get("generate"):
        generate(case["generate"], root, tmp_path / "outside")
    before, env_before = tree(root), site_state(target)
    capsys.readouterr()

    code = run(root, target, wheels, case["command"], *case.get("args", []))

    out, err = capsys.readouterr()
    assert code == case["exit"], err
    assert "Traceback" not in err and "\x1b" not in err + out  # no traceback, no raw terminal codes
    assert not list(tmp_path.rglob("pwned")), "a node's text was run by a shell"
    if case.get("secret"):
        assert case["secret"] not in out + err
    assert site_state(target) == env_before, "the environment changed"
    if case["exit"] == 0:
        lock = read_lock(root / "comfylock.lock")
        assert sorted(lock.by_name()) == case["pins"]
        if case.get("secret"):
            assert case["secret"] not in (root / "comfylock.lock").read_text()
        return
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert re.search(case["message"], lines[0].replace("\\", "/")), lines[0]
    assert tree(root) == before, "a refused input still wrote something"


def test_corpus_size():
    refused = [c for c in CASES if not c.startswith("ok-")]
    assert len(refused) >= 40, len(refused)


# --- credentials --------------------------------------------------------------------------------


def test_credentials_never_printed_or_written_and_sync_still_authenticates(
    comfy, venv, tmp_path, capsys, monkeypatch
):
    """A private index behind basic auth, set in the user's config with user:token in the URL."""
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    folder = tmp_path / "private"
    make_wheel(folder, "gamma", "1.0")
    make_wheel(folder, "delta", "1.0")
    index = LocalIndex(folder, auth=("user", "s3cret-token"))
    try:
        root = comfy("gamma\n")
        config = root / "user" / "comfylock" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text(f'[index]\nindex-url = "{index.with_auth("user", "s3cret-token")}"\n')
        base = ["--comfyui", str(root), "--python", str(venv)]
        for args in (["compile", "-v"], ["sync", "-v"], ["history"], ["check"], ["compile", "--json"]):
            assert main([*args[:1], *base, *args[1:]]) == 0
        (root / "requirements.txt").write_text("gamma\ndelta\n")
        index.stop()  # the index goes away: errors quote its URL, never the token
        assert main(["compile", *base]) == 1
        out, err = capsys.readouterr()
        assert "s3cret-token" not in out + err
        files = [root / "comfylock.lock", *(root / "user" / "comfylock" / "history").iterdir()]
        for f in files:
            assert "s3cret-token" not in f.read_text() and "user:" not in f.read_text(), f
        assert f"--index-url {index.url}" in (root / "comfylock.lock").read_text()
        assert index.expected in index.seen  # sync authenticated with the token from config.toml
    finally:
        index.stop()


def test_uv_runs_from_argument_lists_with_workspace_paths_only(comfy, venv, tmp_path, monkeypatch):
    """Every subprocess of a compile and a sync gets an argument list (no shell), and none of its
    arguments carries a node's name or text: node files reach uv only as comfylock's own copies."""
    import comfylock

    for source in Path(comfylock.__file__).parent.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "shell=True" not in text and "os.system(" not in text and "os.popen(" not in text, source
    folder = tmp_path / "wheels"
    make_wheel(folder, "gamma", "1.0")
    make_wheel(folder, "beta", "1.0")
    hostile = "Evil $(touch pwned) `id` ; rm -rf ~ && x"
    root = comfy("gamma\n", {hostile: {"requirements.txt": "beta  # $(touch pwned)\n"}})
    calls: list[tuple[object, dict]] = []
    real = subprocess.run

    def spy(args, *rest, **kwargs):
        calls.append((args, kwargs))
        return real(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    base = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["compile", *base, "--no-index", "--find-links", str(folder)]) == 0
    assert main(["sync", *base]) == 0
    assert calls and not list(tmp_path.rglob("pwned"))
    for args, kwargs in calls:
        assert isinstance(args, list) and all(isinstance(a, str) for a in args), args
        assert not kwargs.get("shell")
        assert not [a for a in args if hostile in a or "custom_nodes" in a], args
