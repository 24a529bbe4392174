"""Failures name the node, the line and the cause (issue 12), with real uv on hermetic data: URLs on a
loopback port where nothing listens, a hand-made sdist whose build fails, a wheel asked for with an
extra it does not have, and a conflict read back as package names."""

from __future__ import annotations

import io
import json
import shutil
import socket
import tarfile
from pathlib import Path

import pytest
from helpers import run
from wheels import make_wheel

from comfylock.resolve import uvtext


@pytest.fixture(autouse=True)
def _no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # a refused connection fails at once, not after 3 tries


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def failing_sdist(folder: Path, name: str, version: str, *, static: bool = True) -> None:
    """An sdist whose in-tree backend fails to build, as a stub that fetches its files from another host
    does; `requires = []` keeps the build off any index. `static`: its metadata is readable without a
    build (compile succeeds, sync fails)."""
    project = f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = []\n' if static else ""
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
        + project,
        "backend.py": "def build_wheel(*args, **kwargs):\n"
        "    raise SystemExit('stub: the real files live on another host')\n",
    }
    if static:
        files["PKG-INFO"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    with tarfile.open(folder / f"{name.replace('-', '_')}-{version}.tar.gz", "w:gz") as tar:
        for rel, text in files.items():
            info = tarfile.TarInfo(f"{name.replace('-', '_')}-{version}/{rel}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


# --- compile: a requirement uv cannot fetch ------------------------------------------------------


def test_unreachable_named_url_names_node_line_cause_and_way_out(comfy, venv, index, capsys):
    url = f"http://127.0.0.1:{dead_port()}/img2texture-1.0-py3-none-any.whl"
    root = comfy("numpy\n", {"NodeA": {"requirements.txt": f"numpy\nimg2texture @ {url}\n"}})
    assert run(root, venv, index, "compile") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "custom_nodes/NodeA/requirements.txt:2:" in err
    assert "uv pip compile failed on NodeA's requirement 'img2texture @ http" in err
    assert "Connection refused" in err or "connect" in err  # uv's cause, not only "Failed to download"
    assert "--skip-node NodeA" in err and "pip-policy.user.json" in err
    assert not (root / "comfylock.lock").exists()


def test_unreachable_unnamed_url_is_mapped_back_to_its_line(comfy, venv, index, capsys):
    """An unnamed URL line gets a made-up name before uv sees it; the error still finds the line."""
    url = f"http://127.0.0.1:{dead_port()}/files/img2texture-1.0.tar.gz"
    nodes = {
        "NodeA": {"requirements.txt": "numpy\n"},
        "NodeB": {"requirements.txt": f"# a comment\npillow\n{url}\n"},
    }
    root = comfy("", nodes)
    assert run(root, venv, index, "compile", "-v") == 1
    err = capsys.readouterr().err
    # -v also says each step on stderr; the error is one line of its own
    first = next(line for line in err.splitlines() if line.startswith("comfylock: error:"))
    assert "custom_nodes/NodeB/requirements.txt:3:" in first and url in first
    assert "--skip-node NodeB" in first and "NodeA" not in first
    assert "uv says:" in err and "error: Failed to download" in err  # -v: uv's own text, whole


@pytest.mark.skipif(shutil.which("git") is None, reason="uv needs git for a git URL")
def test_unreachable_git_url_cause_names_the_node(comfy, venv, index, capsys):
    url = f"git+https://127.0.0.1:{dead_port()}/someone/ComfyUI-Img2Texture.git@v1.0"
    root = comfy("", {"NodeG": {"requirements.txt": f"{url}\n"}})
    assert run(root, venv, index, "compile", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert "custom_nodes/NodeG/requirements.txt:1:" in doc["error"]
    assert "Git operation failed" in doc["error"] and "unable to access" in doc["error"]
    assert "--skip-node NodeG" in doc["error"]
    assert "error:" in doc["details"]  # uv's whole text for tools


def test_core_line_has_no_skip_node_but_other_ways(comfy, venv, index, capsys):
    url = f"http://127.0.0.1:{dead_port()}/x/thing-2.0-py3-none-any.whl"
    root = comfy(f"thing @ {url}\n")
    assert run(root, venv, index, "compile") == 1
    err = capsys.readouterr().err
    assert "requirements.txt:1: uv pip compile failed on core's requirement" in err
    assert "--skip-node" not in err and "make the URL reachable" in err


def test_dependency_that_cannot_build_names_the_node_that_brought_it(comfy, venv, index, tmp_path, capsys):
    wheels = tmp_path / "w"
    shutil.copytree(index, wheels)
    make_wheel(wheels, "trt", "10.0", ["dyn-libs"])
    failing_sdist(wheels, "dyn-libs", "1.0", static=False)  # compile must build it to learn its metadata
    root = comfy("numpy\n", {"NodeT": {"requirements.txt": "pillow\ntrt\n"}})
    assert run(root, venv, wheels, "compile") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "custom_nodes/NodeT/requirements.txt:2: uv pip compile failed on NodeT's requirement 'trt'" in err
    assert "Failed to build `dyn-libs==1.0`" in err and "the real files live on another host" in err
    assert "was included because `trt` (v10.0) depends on `dyn-libs`" in err
    assert "--skip-node NodeT" in err and "skip dyn-libs with a policy" in err


def test_same_url_in_two_nodes_names_both(comfy, venv, index, capsys):
    url = f"http://127.0.0.1:{dead_port()}/img2texture-1.0-py3-none-any.whl"
    nodes = {
        "NodeA": {"requirements.txt": f"img2texture @ {url}\n"},
        "NodeB": {"requirements.txt": f"{url}\n"},
    }
    root = comfy("", nodes)
    assert run(root, venv, index, "compile") == 1
    err = capsys.readouterr().err
    assert "custom_nodes/NodeA/requirements.txt:1:" in err
    assert "also asked by NodeB (custom_nodes/NodeB/requirements.txt:1)" in err
    assert "--skip-node NodeA --skip-node NodeB" in err


# --- sync: a package uv cannot build -------------------------------------------------------------


def test_sync_failure_names_the_node_behind_the_package(comfy, venv, index, tmp_path, capsys):
    wheels = tmp_path / "trt-wheels"
    shutil.copytree(index, wheels)
    make_wheel(wheels, "trt", "10.0", ["trt-cu13-libs"])
    failing_sdist(wheels, "trt-cu13-libs", "10.0")
    root = comfy("numpy\n", {"ComfyUI_TRT": {"requirements.txt": "pillow\ntrt\n"}})
    assert run(root, venv, wheels, "compile") == 0
    capsys.readouterr()
    assert run(root, venv, wheels, "sync") == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert "Failed to build `trt-cu13-libs==10.0`" in err
    assert "the real files live on another host" in err  # the build's own last line: the cause
    assert "trt-cu13-libs <- trt <- ComfyUI_TRT (requirements.txt:2)" in err
    assert "--skip-node ComfyUI_TRT" in err
    assert "`comfylock rollback --to 1` restores it" in err


# --- uv's warnings ---------------------------------------------------------------------------------


def test_uv_warning_is_shown_with_the_node_that_asked(comfy, venv, index, capsys):
    nodes = {"NodeV": {"requirements.txt": "numpy\nopencv-python-headless[ffmpeg]\n"}}
    root = comfy("numpy\n", nodes)
    assert run(root, venv, index, "compile", "--no-default-policy") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "extra named `ffmpeg`" in ln)
    assert "opencv-python-headless==4.10.0" in line
    assert "asked by NodeV (custom_nodes/NodeV/requirements.txt:2): opencv-python-headless[ffmpeg]" in line


def test_uv_warning_after_a_policy_rewrite_names_the_nodes_line(comfy, venv, index, capsys):
    nodes = {"NodeV": {"requirements.txt": "opencv-python[ffmpeg]>=4\n"}}
    root = comfy("", nodes)
    assert run(root, venv, index, "compile") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "extra named `ffmpeg`" in ln)
    # The policy's OpenCV is what uv saw; the warning still points at the node's own line.
    assert "opencv-contrib-python-headless==4.10.0" in line
    assert "asked by NodeV (custom_nodes/NodeV/requirements.txt:1)" in line


def test_uv_warning_for_a_dependency_names_the_node_that_brought_it(comfy, venv, index, tmp_path, capsys):
    wheels = tmp_path / "w"
    shutil.copytree(index, wheels)
    make_wheel(wheels, "wrapper", "1.0", ["tqdm[fancy]"])
    # core asks for tqdm too, without the extra: the warning is NodeW's doing, not core's.
    root = comfy("tqdm\n", {"NodeW": {"requirements.txt": "wrapper\n"}})
    assert run(root, venv, wheels, "compile") == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "extra named `fancy`" in ln)
    assert line.endswith("(brought in by NodeW)")


def test_uv_warning_about_this_machine_is_shown_but_not_locked(comfy, venv, index, capsys):
    """ "Python 3.99 is not available here" depends on the machine: the same inputs must give the same
    lock everywhere, so it is printed, not written."""
    root = comfy("numpy\n")
    assert run(root, venv, index, "compile", "--python-version", "3.99") == 0
    assert "warning: uv: The requested Python version 3.99 is not available" in capsys.readouterr().out
    assert "not available" not in (root / "comfylock.lock").read_text()


# --- a conflict in --json ------------------------------------------------------------------------


def test_conflict_json_packages_are_package_names(comfy, venv, index, capsys):
    root = comfy("numpy>=2\n", {"NodeS": {"requirements.txt": "scipy<1.12\n"}})
    assert run(root, venv, index, "compile", "--json") == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["packages"] == ["numpy", "scipy"], doc["packages"]


def test_conflict_names_from_uvs_derivation():
    text = (
        "Because scipy==1.11.4 depends on numpy>=1.21.6,<1.28.0 and you require numpy==2.1, we can "
        "conclude that scipy==1.11.4 cannot be used.\nAnd because only scipy<=1.11.4 is available and "
        "you require scipy, we can conclude that your requirements are unsatisfiable. Because all "
        "versions of Torch-Vision depend on torch{sys_platform == 'linux'}>=2 and opencv-python[ffmpeg] "
        "was not found, we can conclude that ... Because the current Python version (3.11.7) does not "
        "satisfy Python>=3.12 and foo-bar==1.0 depends on Python>=3.12, ..."
    )
    assert uvtext.conflict_names(text) == {
        "scipy",
        "numpy",
        "torch-vision",
        "torch",
        "opencv-python",
        "foo-bar",
    }


# --- reading uv's text ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["  cause: ", "Caused by: ", "  Caused by: "])
def test_cause_chain_read_in_either_of_uvs_spellings(prefix):
    stderr = (
        "Resolved 3 packages\nwarning: `x==1` does not have an extra named `y`\n"
        "error: Failed to download and build `foo @ git+https://example.invalid/foo.git`\n"
        f"{prefix}Git operation failed\n"
        f"{prefix}process didn't exit successfully: `/usr/bin/git fetch` (exit status: 128)\n"
        "         --- stderr\n"
        "         fatal: unable to access 'https://example.invalid/foo.git/': Could not resolve host\n"
        "hint: check the URL\n"
    )
    said = uvtext.parse(stderr)
    assert said.one_line() == (
        "Failed to download and build `foo @ git+https://example.invalid/foo.git`: Git operation failed: "
        "process didn't exit successfully: `/usr/bin/git fetch` (exit status: 128): "
        "fatal: unable to access 'https://example.invalid/foo.git/': Could not resolve host"
    )
    assert said.warnings == ("`x==1` does not have an extra named `y`",)
    assert said.hints == ("check the URL",)
    assert uvtext.subject_names(said.text) == ["foo"]


def test_sync_warning_names_the_chain_to_the_node():
    from comfylock.explain.failures import sync_warnings
    from comfylock.lockfile.lock import Lock, Pin, Request

    lock = Lock(
        pins=(
            Pin("libs", "libs==1.0", (), ("trt",)),
            Pin("trt", "trt==10.0", (Request("ComfyUI_TRT", "requirements.txt", 2, "trt"),)),
        )
    )
    said = sync_warnings(["The package `libs==1.0` has no license"], lock)
    assert said == [
        "uv: The package `libs==1.0` has no license (libs <- trt <- ComfyUI_TRT (requirements.txt:2))"
    ]
