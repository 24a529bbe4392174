"""Sync touches only the target's own site-packages, keeps what `uv pip freeze` records, and never moves
comfylock's own dependencies where it runs from. Real uv, hand-written wheels, no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import STANDARD, install, installed, uv
from wheels import make_index

from comfylock import api
from comfylock.cli.main import main
from comfylock.environment import history

# A PEP 517/660 build backend in one file, standard library only: editable, path and git installs of
# a user's own project without any index (uv builds it from the project folder itself).
TINYBACK = """
import base64, hashlib, os, zipfile

NAME, VERSION = "mynode", "0.1"
_HERE = os.path.dirname(os.path.abspath(__file__))


def _wheel(directory, files):
    info = NAME + "-" + VERSION + ".dist-info"
    files = dict(files)
    meta = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
    files[info + "/METADATA"] = meta.encode()
    files[info + "/WHEEL"] = b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    rows = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append("%s,sha256=%s,%d\\n" % (path, digest, len(data)))
    files[info + "/RECORD"] = ("".join(rows) + info + "/RECORD,,\\n").encode()
    name = NAME + "-" + VERSION + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {NAME + "/__init__.py": open(os.path.join(_HERE, "body.py"), "rb").read()})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {"__editable__." + NAME + ".pth": (_HERE + "\\n").encode()})
"""

PYPROJECT = """[project]
name = "mynode"
version = "0.1"
[build-system]
requires = []
build-backend = "tinyback"
backend-path = ["."]
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STANDARD plus a registry `mynode`, comfylock's own dependencies at other versions and the seeds."""
    spec = {
        **STANDARD,
        "mynode": {"0.1": []},
        "uv": {"0.4.30": []},
        "packaging": {"24.1": []},
        "pip": {"24.0": []},
        "setuptools": {"70.0": []},
        "evilpkg": {"1.0": ["uv==0.4.30"]},
    }
    return make_index(tmp_path_factory.mktemp("trust-wheels"), spec)


def project(folder: Path, body: str = "EDITABLE = False\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(PYPROJECT)
    (folder / "tinyback.py").write_text(TINYBACK)
    (folder / "body.py").write_text(body)
    (folder / "mynode").mkdir(exist_ok=True)
    (folder / "mynode" / "__init__.py").write_text("EDITABLE = True\n")
    return folder


def cli(root: Path, venv: Path, wheels: Path, *args: str) -> int:
    extra = ["--no-index", "--find-links", str(wheels)] if args[0] == "compile" else []
    quiet = [] if args[0] == "check" else ["-q"]  # check's report is what some tests read
    return main([args[0], *quiet, "--comfyui", str(root), "--python", str(venv), *extra, *args[1:]])


def site(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return Path(out.strip())


def freeze(venv: Path) -> list[str]:
    return uv("pip", "freeze", "--python", str(venv)).split("\n")[:-1]


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def entries(root: Path) -> list[int]:
    return [e.id for e in history.entries(root / "user" / "comfylock")]


# --- packages from elsewhere on sys.path ---------------------------------------------------------


def unpacked(folder: Path, wheel: Path) -> Path:
    """A wheel unzipped by hand into a folder (vendored): no INSTALLER, as a half-installed one looks."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(folder)
    return folder


def test_a_pth_listed_folder_is_not_the_environments(comfy, venv, wheels, tmp_path, capsys):
    other = unpacked(tmp_path / "shared-libs", wheels / "tqdm-4.66.0-py3-none-any.whl")
    install(venv, wheels, "idna==3.7")
    (site(venv) / "shared.pth").write_text(f"{other}\n")
    before = tree(other)
    root = comfy("numpy\n")
    assert cli(root, venv, wheels, "compile") == 0
    assert cli(root, venv, wheels, "sync") == 0
    assert installed(venv) == {"numpy": "2.1.0"} and tree(other) == before
    capsys.readouterr()
    assert cli(root, venv, wheels, "check") == 0, capsys.readouterr().out  # tqdm there is not drift
    assert cli(root, venv, wheels, "sync") == 0  # converges: nothing to do, no new history entry
    assert entries(root) == [1] and "tqdm" not in (root / "user/comfylock/history/0001.lock").read_text()
    assert tree(other) == before


def test_a_pth_listed_folder_is_untouched_without_the_suites_uv_isolation(comfy, venv, wheels, tmp_path):
    """The same, as a user runs it: a child process, no UV_NO_CONFIG, an empty user config folder."""
    other = unpacked(tmp_path / "shared-libs", wheels / "tqdm-4.66.0-py3-none-any.whl")
    (site(venv) / "shared.pth").write_text(f"{other}\n")
    before = tree(other)
    root = comfy("numpy\n")
    env = {k: v for k, v in os.environ.items() if k != "UV_NO_CONFIG"}
    env |= {"XDG_CONFIG_HOME": str(tmp_path / "config"), "APPDATA": str(tmp_path / "config")}
    cmd = [sys.executable, "-m", "comfylock"]
    where = ["--comfyui", str(root), "--python", str(venv)]
    for args in (["compile", "--no-index", "--find-links", str(wheels)], ["sync"], ["check"], ["sync"]):
        done = subprocess.run([*cmd, args[0], *where, *args[1:]], cwd=tmp_path, env=env, capture_output=True)
        assert done.returncode == 0, done.stderr
    assert entries(root) == [1] and tree(other) == before and installed(venv) == {"numpy": "2.1.0"}


def test_a_killed_sync_repair_never_touches_a_pth_listed_folder(comfy, venv, wheels, tmp_path):
    """A sync killed while changing tqdm; the next sync clears half-written tqdm folders: only its own."""
    other = unpacked(tmp_path / "vendored", wheels / "tqdm-4.66.0-py3-none-any.whl")
    (site(venv) / "vendored.pth").write_text(f"{other}\n")
    before = tree(other)
    root = comfy("tqdm\n")
    assert cli(root, venv, wheels, "compile") == 0
    user = root / "user" / "comfylock"
    entry = history.record(user, [], [], trigger="sync comfylock.lock", target={})
    history.begin(user, entry.id, ["tqdm"])  # what a kill between begin() and uv's finish leaves
    assert cli(root, venv, wheels, "sync") == 0
    assert tree(other) == before  # the vendored copy's files, though its .dist-info looks torn
    assert installed(venv) == {"tqdm": "4.66.0"} and history.pending(user) is None


def test_system_site_packages_are_the_base_interpreters(comfy, wheels, tmp_path, capsys):
    """--system-site-packages: the base Python's packages are importable, not the venv's."""
    base_site = Path(sysconfig.get_paths()["purelib"]).resolve()
    if Path(sys.prefix).resolve() != Path(sys.base_prefix).resolve():
        base_site = Path(
            subprocess.run(
                [
                    os.path.join(sys.base_prefix, "bin", "python3"),
                    "-I",
                    "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()  # fmt: skip
        )
    listing = sorted(p.name for p in base_site.iterdir())
    if not any(n.endswith(".dist-info") for n in listing):
        pytest.skip("the base interpreter has no packages to see")
    target = tmp_path / "sys-venv"
    uv("venv", "-q", "--system-site-packages", "--python", sys.executable, str(target))
    python = target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    root = comfy("idna\n")
    assert cli(root, python, wheels, "compile") == 0
    capsys.readouterr()
    assert cli(root, python, wheels, "sync", "--dry-run", "--json") == 0
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert [(c["name"], c["new"]) for c in changes] == [("idna", "3.10")]  # no base package "removed"
    assert cli(root, python, wheels, "sync") == 0
    assert cli(root, python, wheels, "check") == 0
    assert cli(root, python, wheels, "sync") == 0 and entries(root) == [1]
    assert sorted(p.name for p in base_site.iterdir()) == listing


def test_a_user_site_package_is_not_the_environments(comfy, venv, wheels, tmp_path, monkeypatch):
    userbase = tmp_path / "userbase"
    monkeypatch.setenv("PYTHONUSERBASE", str(userbase))
    usersite = subprocess.run(
        [str(venv), "-c", "import site; print(site.getusersitepackages())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    unpacked(Path(usersite), wheels / "tqdm-4.66.0-py3-none-any.whl")
    before = tree(userbase)
    root = comfy("numpy\n")
    assert cli(root, venv, wheels, "compile") == 0
    assert cli(root, venv, wheels, "sync") == 0 and cli(root, venv, wheels, "check") == 0
    assert cli(root, venv, wheels, "sync") == 0 and entries(root) == [1] and tree(userbase) == before


# --- editable, URL and VCS installs --------------------------------------------------------------


def test_an_editable_install_is_in_the_history_and_rollback_restores_it(
    comfy, venv, wheels, tmp_path, capsys
):
    mine = project(tmp_path / "mynode")
    install(venv, wheels, "-e", str(mine), "idna==3.7")
    frozen = freeze(venv)
    assert f"-e {mine.as_uri()}" in frozen
    root = comfy("idna==3.7\nnumpy\n")
    assert cli(root, venv, wheels, "compile") == 0
    assert cli(root, venv, wheels, "sync") == 0  # exact: the editable install goes...
    assert "mynode" not in installed(venv)
    entry = root / "user" / "comfylock" / "history" / "0001.lock"
    assert f"-e mynode @ {mine.as_uri()}" in entry.read_text()  # ...but the history keeps it
    assert cli(root, venv, wheels, "rollback") == 0
    assert freeze(venv) == frozen  # back as uv pip freeze listed it: editable, same folder
    assert cli(root, venv, wheels, "check", "--lock", str(entry)) == 0
    # Only a history entry may hold it: the same text as a lock that is not one is refused
    text = "".join(ln for ln in entry.read_text().splitlines(True) if not ln.startswith("# history-trigger"))
    (root / "comfylock.lock").write_text(text)
    capsys.readouterr()
    assert cli(root, venv, wheels, "sync") == 2
    line = text.splitlines().index(f"-e mynode @ {mine.as_uri()}") + 1
    assert f"comfylock.lock:{line}:" in capsys.readouterr().err and freeze(venv) == frozen


def test_a_legacy_egg_link_editable_is_the_environments_and_comes_back(comfy, venv, wheels, tmp_path, capsys):
    """`setup.py develop` left NAME.egg-link in site-packages: uv lists it (`-e PATH`) and removes it."""
    legacy = project(tmp_path / "legacy")
    (legacy / "mynode.egg-info").mkdir()
    (legacy / "mynode.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.0\nName: mynode\nVersion: 0.1\n"
    )
    (site(venv) / "mynode.egg-link").write_text(f"{legacy}\n.\n")
    (site(venv) / "easy-install.pth").write_text(f"{legacy}\n")
    assert freeze(venv) == [f"-e {legacy}"]
    root = comfy("idna\n")
    assert cli(root, venv, wheels, "compile") == 0
    capsys.readouterr()
    assert cli(root, venv, wheels, "check") == 1
    assert "extra: mynode" in capsys.readouterr().out  # what uv is about to remove, said beforehand
    assert cli(root, venv, wheels, "sync") == 0 and freeze(venv) == ["idna==3.10"]
    entry = root / "user" / "comfylock" / "history" / "0001.lock"
    assert f"-e mynode @ {legacy.as_uri()}" in entry.read_text()
    assert cli(root, venv, wheels, "rollback") == 0
    assert freeze(venv) == [f"-e {legacy.as_uri()}"]  # editable from the same folder again


def test_a_registry_install_over_an_editable_one_is_drift(comfy, venv, wheels, tmp_path, capsys):
    """uv counts editable mynode 0.1 as satisfying `mynode==0.1`: comfylock must not."""
    mine = project(tmp_path / "mynode")
    root = comfy("mynode==0.1\n")
    assert cli(root, venv, wheels, "compile") == 0
    uv("pip", "install", "-q", "--python", str(venv), "--no-index", "-e", str(mine))
    capsys.readouterr()
    assert cli(root, venv, wheels, "check") == 1
    assert "mynode" in capsys.readouterr().out
    assert cli(root, venv, wheels, "sync") == 0
    assert freeze(venv) == ["mynode==0.1"]  # the registry one, no direct_url.json
    assert cli(root, venv, wheels, "check") == 0
    assert cli(root, venv, wheels, "rollback") == 0 and freeze(venv) == [f"-e {mine.as_uri()}"]


def test_a_url_pin_is_compared_by_its_url(comfy, venv, wheels, tmp_path, capsys):
    archive = tmp_path / "elsewhere" / "mynode-0.1-py3-none-any.whl"
    archive.parent.mkdir()
    shutil.copy(wheels / "mynode-0.1-py3-none-any.whl", archive)
    uv("pip", "install", "-q", "--python", str(venv), "--no-index", f"mynode @ {archive.as_uri()}")
    frozen = freeze(venv)
    root = comfy("idna\n")
    assert cli(root, venv, wheels, "compile") == 0 and cli(root, venv, wheels, "sync") == 0
    entry = root / "user" / "comfylock" / "history" / "0001.lock"
    assert f"mynode @ {archive.as_uri()}" in entry.read_text()
    # The same version from the index, installed over the URL one behind comfylock's back
    assert cli(root, venv, wheels, "rollback", "--to", "1") == 0 and freeze(venv) == frozen
    install(venv, wheels, "--reinstall", "mynode==0.1")
    capsys.readouterr()
    assert cli(root, venv, wheels, "check", "--lock", str(entry)) == 1
    assert "mynode" in capsys.readouterr().out
    assert cli(root, venv, wheels, "sync", "--lock", str(entry)) == 0 and freeze(venv) == frozen
    assert cli(root, venv, wheels, "check", "--lock", str(entry)) == 0


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}  # fmt: skip
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_vcs_pin_is_compared_by_its_commit(comfy, venv, wheels, tmp_path, capsys):
    repo = project(tmp_path / "repo", "COMMIT = 1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "body.py").write_text("COMMIT = 2\n")
    git(repo, "commit", "-qam", "two")
    second = git(repo, "rev-parse", "HEAD").strip()
    url = f"git+{repo.as_uri()}"
    uv("pip", "install", "-q", "--python", str(venv), "--no-index", f"mynode @ {url}@{first}")
    root = comfy("idna\n")
    assert cli(root, venv, wheels, "compile") == 0 and cli(root, venv, wheels, "sync") == 0
    entry = root / "user" / "comfylock" / "history" / "0001.lock"
    assert f"mynode @ {url}@{first}" in entry.read_text()
    assert cli(root, venv, wheels, "rollback") == 0
    uv("pip", "install", "-q", "--python", str(venv), "--no-index", f"mynode @ {url}@{second}")
    capsys.readouterr()
    assert cli(root, venv, wheels, "check", "--lock", str(entry)) == 1  # same version, other commit
    assert cli(root, venv, wheels, "rollback", "--to", "1") == 0
    assert f"mynode @ {url}@{first}" in freeze(venv)
    assert "COMMIT = 1" in (site(venv) / "mynode" / "__init__.py").read_text()


def test_compile_still_refuses_local_paths_from_node_text(comfy, venv, wheels, tmp_path, capsys):
    """A history entry may hold `-e` and file: pins (the user's own state); node text never can."""
    mine = project(tmp_path / "mynode")
    for text in (f"-e {mine}\n", f"mynode @ {mine.as_uri()}\n", f"-e mynode @ {mine.as_uri()}\n"):
        root = comfy("", {"Evil": {"requirements.txt": text}})
        capsys.readouterr()
        assert cli(root, venv, wheels, "compile") == 2
        err = capsys.readouterr().err
        assert "requirements.txt:1" in err and "Traceback" not in err
        assert not (root / "comfylock.lock").exists()


# --- comfylock's own dependencies ----------------------------------------------------------------


@pytest.fixture
def own_env(tmp_path: Path) -> Path:
    """A venv comfylock runs from: its dependencies copied in (uv's binary too), comfylock itself from
    this source tree on PYTHONPATH (its metadata from the tree's egg-info)."""
    env = tmp_path / "own-venv"
    uv("venv", "-q", "--python", sys.executable, str(env))
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    into = site(python)
    from importlib.metadata import distribution

    for name in ("uv", "packaging", "tomli-w"):
        dist = distribution(name)
        for rel in dist.files or ():
            src = Path(str(dist.locate_file(rel))).resolve()
            dst = Path(os.path.normpath(into / rel))
            if src.is_file() and ".." not in Path(rel).parts[:1]:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            elif src.is_file():  # the uv binary, in the scripts folder: linked, 40 MB
                try:
                    os.link(src, python.parent / src.name)
                except OSError:
                    shutil.copy2(src, python.parent / src.name)
    return python


def own_cli(python: Path, root: Path, *args: str, wheels: Path | None = None) -> subprocess.CompletedProcess:
    tree_root = Path(__file__).resolve().parents[1]
    extra = ["--no-index", "--find-links", str(wheels)] if wheels else []
    env = {**os.environ, "PYTHONPATH": str(tree_root)}
    cmd = [str(python), "-m", "comfylock", args[0], "-q", "--comfyui", str(root), "--python", str(python)]
    return subprocess.run([*cmd, *extra, *args[1:]], env=env, capture_output=True, text=True, timeout=120)


def uv_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import uv, subprocess; print(subprocess.run([uv.find_uv_bin(), '--version'],"
         " capture_output=True, text=True).stdout)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_a_node_cannot_move_comfylocks_own_uv_where_it_runs_from(comfy, own_env, venv, wheels):
    before, frozen = uv_version(own_env), freeze(own_env)
    assert before.startswith("uv 0.") and "uv==0.4.30" not in frozen
    for node, text, blamed in (
        ("Pinner", "tqdm\nuv==0.4.30\n", "Pinner/requirements.txt:2"),
        ("Sneaky", "evilpkg\n", "Sneaky/requirements.txt:1"),  # through a dependency
    ):
        root = comfy("", {node: {"requirements.txt": text}})
        done = own_cli(own_env, root, "compile", wheels=wheels)
        assert done.returncode == 2, done.stderr
        assert blamed in done.stderr and "uv" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2  # the error line and its hint
        assert not (root / "comfylock.lock").exists()
        shutil.rmtree(root)
    # The same lock compiled for another environment is fine there, and refused here at sync
    root = comfy("", {"Pinner": {"requirements.txt": "tqdm\nuv==0.4.30\n"}})
    assert cli(root, venv, wheels, "compile") == 0
    done = own_cli(own_env, root, "sync", "--lock", str(root / "comfylock.lock"))
    assert done.returncode == 2 and "comfylock.lock:" in done.stderr, done.stderr
    assert uv_version(own_env) == before and freeze(own_env) == frozen
    # A lock without them leaves them where comfylock runs from
    (root / "custom_nodes" / "Pinner" / "requirements.txt").write_text("tqdm\n")
    assert own_cli(own_env, root, "compile", wheels=wheels).returncode == 0
    done = own_cli(own_env, root, "sync")
    assert done.returncode == 0, done.stderr
    assert uv_version(own_env) == before and "tqdm==4.66.0" in freeze(own_env)
    assert {"packaging", "tomli-w", "uv"} <= set(installed(own_env))


def test_elsewhere_comfylocks_dependencies_are_ordinary_packages(comfy, venv, wheels, capsys):
    """comfylock does not run from `venv`: a rollback there restores uv and packaging exactly."""
    root = comfy("idna\n")
    assert cli(root, venv, wheels, "compile") == 0 and cli(root, venv, wheels, "sync") == 0
    install(venv, wheels, "uv==0.4.30", "packaging==24.1")  # the user's own choice, there
    assert cli(root, venv, wheels, "sync") == 0
    assert installed(venv) == {"idna": "3.10"}
    assert cli(root, venv, wheels, "rollback") == 0
    assert installed(venv) == {"idna": "3.10", "uv": "0.4.30", "packaging": "24.1"}
    capsys.readouterr()
    assert cli(root, venv, wheels, "check") == 1 and "packaging" in capsys.readouterr().out


def test_pip_setuptools_and_wheel_stay_in_every_environment(comfy, wheels, tmp_path, capsys):
    """They are not comfylock's own requirements but a user's (and ComfyUI-Manager's) way to install
    by hand: kept in a venv of either kind, never reported as drift, and syncs converge. (uv itself
    would remove them from a venv it made without --seed.)"""
    for how in ("python -m venv", "uv venv"):
        env = tmp_path / how.replace(" ", "-")
        if how == "uv venv":
            uv("venv", "-q", "--python", sys.executable, str(env))
        else:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
        python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        install(python, wheels, "pip==24.0", "setuptools==70.0", "idna==3.7", "tqdm==4.66.0")
        root = comfy("idna==3.7\n")
        assert cli(root, python, wheels, "compile") == 0
        capsys.readouterr()
        assert cli(root, python, wheels, "check") == 1
        out = capsys.readouterr().out
        assert "extra: tqdm" in out and ": pip" not in out and ": setuptools" not in out
        assert cli(root, python, wheels, "sync") == 0
        assert set(installed(python)) == {"idna", "pip", "setuptools"}, how
        assert cli(root, python, wheels, "check") == 0 and cli(root, python, wheels, "sync") == 0
        assert api.check(api.Context.open(root, python=python)).is_noop and entries(root) == [1]
        shutil.rmtree(root)
