"""why / nodes / diff on known locks, stale locks, drifted environments, duplicate imports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.collect import gather as collect
from comfylock.explain import inspect
from comfylock.lockfile.lock import Lock, Pin, Request, read_lock, write_lock
from comfylock.workspace.layout import open_workspace


def R(node: str, line: int, text: str, file: str = "requirements.txt") -> Request:
    return Request(node, file, line, text)


OLD = Lock(
    pins=(
        Pin("foo", "foo==1.0", (R("A", 2, "foo"),)),
        Pin("numpy", "numpy==1.26.4", (R("core", 1, "numpy>=1.25"), R("B", 1, "numpy<2")), ("scipy",)),
        Pin("scipy", "scipy==1.11.4", (R("A", 1, "scipy"),), ("foo",)),
        Pin("tqdm", "tqdm==4.66.0", (R("core", 2, "tqdm"),)),
    ),
    meta={"python": "3.11.7 cpython"},
    lists={
        "node": ("core requirements.txt", "A requirements.txt git=aaaa", "B requirements.txt git=bbbb"),
        "policy": ("pin tqdm==4.66.0 (pip-policy.json: keep the installed tqdm)",),
    },
)
NEW = Lock(
    pins=(
        Pin("numpy", "numpy==2.1.0", (R("core", 1, "numpy>=1.25"), R("My Node", 1, "numpy>=2")), ("scipy",)),
        Pin("pillow", "pillow==11.0.0", (R("My Node", 2, "pillow"),)),
        Pin("scipy", "scipy==1.14.0", (R("A", 1, "scipy"),)),
        Pin("tqdm", "tqdm==4.66.0", (R("core", 2, "tqdm"),)),
    ),
    lists={"node": ("core requirements.txt", "A requirements.txt git=aaab", "My Node requirements.txt")},
)


@pytest.fixture
def locks(tmp_path: Path) -> tuple[Path, Path]:
    write_lock(tmp_path / "old.lock", OLD)
    write_lock(tmp_path / "new.lock", NEW)
    return tmp_path / "old.lock", tmp_path / "new.lock"


def test_why_gives_the_shortest_chain_per_node_and_policy():
    w = inspect.why(OLD, "NumPy")
    assert w.spec == "numpy==1.26.4" and w.needed_by == ("scipy",)
    assert [(c.request.node, c.request.text, c.path) for c in w.chains] == [
        ("core", "numpy>=1.25", ("numpy",)),
        ("B", "numpy<2", ("numpy",)),
        ("A", "scipy", ("scipy", "numpy")),  # not the longer foo -> scipy -> numpy
    ]
    assert inspect.why(OLD, "tqdm").policy == ("pin tqdm==4.66.0 (pip-policy.json: keep the installed tqdm)",)
    missing = inspect.why(OLD, "scipyy")
    assert missing.spec is None and missing.close == ("scipy",)


def test_why_cli_text_and_json(locks, capsys):
    old, _ = locks
    assert main(["why", "--lock", str(old), "foo"]) == 0
    out = capsys.readouterr().out
    assert "foo==1.0 is in" in out and "A (requirements.txt:2: foo)" in out
    assert main(["why", "--lock", str(old), "numpy", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "comfylock.why/1" and data["pin"] == "numpy==1.26.4"
    assert data["chains"][2]["path"] == [
        {"name": "scipy", "version": "1.11.4"},
        {"name": "numpy", "version": "1.26.4"},
    ]
    assert main(["why", "--lock", str(old), "scipyy"]) == 1
    assert "did you mean scipy" in capsys.readouterr().out


def test_nodes_reports_what_only_each_node_brings(locks, capsys):
    infos = {n.name: n for n in inspect.nodes(OLD)}
    assert list(infos) == ["core", "A", "B"]
    assert infos["A"].only == ("foo", "scipy") and infos["A"].commit == "aaaa"
    assert infos["B"].only == () and infos["B"].requirements == 1  # numpy stays: core and scipy need it
    assert infos["core"].only == ("tqdm",) and infos["core"].direct == ("numpy", "tqdm")
    assert inspect.nodes(NEW)[2].name == "My Node"  # a name with a space survives the header
    assert main(["nodes", "--lock", str(locks[0]), "-v"]) == 0
    out = capsys.readouterr().out
    assert "only here: foo, scipy" in out and "git aaaa" in out
    assert main(["nodes", "--lock", str(locks[1]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [n["name"] for n in data["nodes"]] == ["core", "A", "My Node"]
    assert data["nodes"][2]["only"] == ["pillow"]


def test_diff_names_the_nodes_behind_each_change(locks, capsys):
    causes = {c.change.name: c for c in inspect.diff(OLD, NEW)}
    assert {n: c.change.kind for n, c in causes.items()} == {
        "foo": "removed",
        "numpy": "upgraded",
        "pillow": "added",
        "scipy": "upgraded",
    }
    assert causes["pillow"].nodes == ("My Node",) and causes["pillow"].reason == "node My Node added"
    assert causes["foo"].nodes == ("A",) and causes["foo"].reason == "A: foo -> -"
    assert "node B removed" in causes["numpy"].reason and "node My Node added" in causes["numpy"].reason
    assert main(["diff", "--lock", str(locks[1]), str(locks[0])]) == 0
    out = capsys.readouterr().out
    assert "1 added, 1 removed, 2 upgraded" in out
    assert "^ numpy 1.26.4 -> 2.1.0  [core, A, B, My Node]" in out
    assert main(["diff", str(locks[0]), str(locks[1]), "--lock", str(locks[1]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "comfylock.diff/1" and len(data["changes"]) == 4


def test_diff_against_a_git_revision(locks, capsys):
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    old, new = locks
    repo = old.parent
    env = {"GIT_CONFIG_GLOBAL": str(repo / "none"), "GIT_CONFIG_NOSYSTEM": "1"}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    shutil.copy(old, repo / "comfylock.lock")
    for args in (["init", "-q"], ["add", "comfylock.lock"], ["commit", "-qm", "one"]):
        subprocess.run([*git, *args], cwd=repo, check=True, env={**__import__("os").environ, **env})
    shutil.copy(new, repo / "comfylock.lock")
    assert main(["diff", "git:HEAD", "--lock", str(repo / "comfylock.lock"), "--json"]) == 0
    kinds = {c["name"]: c["kind"] for c in json.loads(capsys.readouterr().out)["changes"]}
    assert kinds == {"foo": "removed", "numpy": "upgraded", "pillow": "added", "scipy": "upgraded"}
    assert main(["diff", "git:--output=x", "--lock", str(repo / "comfylock.lock")]) == 2
    assert main(["diff", "git:nosuchrev", "--lock", str(repo / "comfylock.lock")]) == 2
    assert "git show nosuchrev" in capsys.readouterr().err


# --- with real uv: a compiled lock, a target environment ---------------------------------------------


def uv_pip(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "uv", "pip", *args[:1], "--python", str(venv), *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


TREE = {
    "A": {"requirements.txt": "scipy==1.11.4\n"},
    "B": {"requirements.txt": "numpy<2\ntqdm\n"},
}


def test_check_and_diff_env_on_a_drifted_environment(comfy, venv, index, tmp_path, capsys):
    root = comfy("requests\n", TREE)
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    assert run(root, venv, index, "check") == 0
    extra = tmp_path / "extra"
    make_wheel(extra, "pip", "24.0")  # what uv keeps in every venv is not drift
    make_wheel(extra, "setuptools", "70.0")
    uv_pip(venv, "install", "--no-index", "-f", str(extra), "-f", str(index), "pip", "setuptools", "pillow")
    uv_pip(venv, "install", "--no-deps", "--no-index", "-f", str(index), "numpy==2.1.0")
    uv_pip(venv, "uninstall", "idna")
    capsys.readouterr()
    assert run(root, venv, index, "check") == 1
    out = capsys.readouterr().out
    assert "other version: numpy" in out and "extra: pillow" in out and "missing: idna" in out
    assert "pip" not in out.replace("pillow", "") and "setuptools" not in out
    assert run(root, venv, index, "diff", "env", "--json") == 0
    changes = {c["name"]: c for c in json.loads(capsys.readouterr().out)["changes"]}
    assert set(changes) == {"idna", "numpy", "pillow"}  # env -> lock
    assert changes["numpy"]["kind"] == "downgraded" and changes["numpy"]["nodes"] == ["A", "B"]
    assert changes["idna"]["nodes"] == ["core"]  # through requests
    broken = inspect.parse_pip_check(uv_pip(venv, "check", check=False).stderr)
    assert {(b.package, b.requirement, b.installed) for b in broken} == {
        ("scipy", "numpy<1.28", "2.1.0"),
        ("requests", "idna>=2", None),
    }


def test_stale_lock_names_what_changed(comfy, venv, index):
    from comfylock.resolve import request

    root = comfy("tqdm\n", TREE)
    (root / "custom_nodes" / "Gone").mkdir()
    (root / "custom_nodes" / "Gone" / "requirements.txt").write_text("pillow\n")
    assert run(root, venv, index, "compile") == 0
    lock = read_lock(root / "comfylock.lock")

    def now() -> list[inspect.Stale]:
        ws = open_workspace(root, venv)
        coll = collect.collect(ws)
        folders = {i.node: i.path for i in coll.inputs}
        return inspect.stale(lock, request.node_lines(ws, coll), coll.requirements(), folders)

    assert now() == []
    (root / "requirements.txt").write_text("# a comment only moves lines\n\ntqdm\n")
    assert now() == []
    (root / "custom_nodes" / "A" / "requirements.txt").write_text("scipy==1.14.0\n")
    shutil.rmtree(root / "custom_nodes" / "Gone")
    (root / "custom_nodes" / "New").mkdir()
    (root / "custom_nodes" / "B" / "pyproject.toml").unlink(missing_ok=True)
    git = root / "custom_nodes" / "B" / ".git"
    git.mkdir()
    (git / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    got = {(s.node, s.what): s.detail for s in now()}
    assert got == {
        ("New", "added"): "node added since the lock was compiled",
        ("Gone", "removed"): "node removed or disabled since the lock was compiled",
        ("B", "commit"): "at 0123456789ab now, no commit then",
        (
            "A",
            "requirements",
        ): "requirements.txt: 'scipy==1.11.4' gone; requirements.txt: 'scipy==1.14.0' new",
    }


def test_stale_lines_leave_out_what_a_policy_touched(tmp_path):
    from packaging.requirements import Requirement

    def req(node: str, path: Path, line: int, text: str, constraint: bool = False) -> collect.Req:
        return collect.Req(Requirement(text), collect.Source(node, path, line), text, constraint)

    a = tmp_path / "custom_nodes" / "A"
    lock = Lock(
        (
            Pin("bar", "bar==1.0", (R("C", 1, "bar", "reqs.txt"),)),
            Pin("foo", "foo==1.0", (R("A", 1, "foo<2", "sub/reqs.txt"),)),
            Pin(
                "opencv-contrib-python-headless",
                "opencv-contrib-python-headless==4.10.0",
                # The lock quotes the line as written, then the rewrite; the policy's own line is its.
                (
                    Request(
                        "A", "sub/reqs.txt", 2, "opencv-python", "opencv-contrib-python-headless", "one cv2"
                    ),
                    Request("policy", "comfylock/pip-policy.json", 9, "opencv-contrib-python-headless"),
                ),
            ),
        ),
        lists={
            "node": ("A sub/reqs.txt", "C reqs.txt"),
            "policy": ("replace opencv-python -> opencv-contrib-python-headless (pip-policy.json: one cv2)",),
        },
    )
    now = [
        req("A", a / "sub" / "reqs.txt", 1, "foo<3"),  # a changed line: reported, path relative to A
        req("A", a / "sub" / "reqs.txt", 2, "opencv-python"),  # as written: the policy rewrote it
        req("A", a / "sub" / "pins.txt", 1, "foo<2.5", constraint=True),  # constraints are not compared
        req("B", tmp_path / "B" / "reqs.txt", 1, "baz"),  # a new node: not listed line by line
        req("C", tmp_path / "elsewhere" / "reqs.txt", 1, "bar"),  # no folder known: the bare file name
    ]
    got = inspect.stale(lock, ["A sub/reqs.txt", "B reqs.txt", "C reqs.txt"], now, {"A": a})
    assert [(s.node, s.what, s.detail) for s in got] == [
        ("B", "added", "node added since the lock was compiled"),
        ("A", "requirements", "sub/reqs.txt: 'foo<2' gone; sub/reqs.txt: 'foo<3' new"),
    ]


# --- the same import from two distributions ----------------------------------------------------------


def test_known_families_are_errors_with_the_nodes_and_a_policy():
    lock = Lock(
        pins=(
            Pin("insightface", "insightface==0.7.3", (R("Face", 1, "insightface"),)),
            Pin("onnxruntime", "onnxruntime==1.19.0", (), ("insightface",)),
            Pin("onnxruntime-gpu", "onnxruntime-gpu==1.19.0", (R("Gpu", 1, "onnxruntime-gpu"),)),
            Pin("opencv-python", "opencv-python==4.10.0", (R("X", 3, "opencv-python"),)),
            Pin(
                "opencv-python-headless",
                "opencv-python-headless==4.10.0",
                (R("Y", 1, "opencv-python-headless"),),
            ),
            Pin("pillow", "pillow==11.0.0", (R("core", 1, "pillow"),)),
        )
    )
    dups = {d.module: d for d in inspect.duplicate_imports(lock)}
    assert set(dups) == {"cv2", "onnxruntime"}
    ort = dups["onnxruntime"]
    assert ort.severity == "error" and ort.keep == "onnxruntime-gpu"
    assert ort.asked_by == {"onnxruntime": ("Face",), "onnxruntime-gpu": ("Gpu",)}
    assert json.loads(ort.policy) == {
        "onnxruntime": {
            "apply_first_match": [
                {
                    "type": "replace",
                    "replacement": "onnxruntime-gpu",
                    "reason": "one distribution for `import onnxruntime`",
                }
            ]
        }
    }
    cv = dups["cv2"]
    assert cv.keep == "opencv-contrib-python-headless" and set(json.loads(cv.policy)) == set(cv.dists)


def dist_info(site: Path, name: str, version: str, files: dict[str, str], top: str | None = None) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "RECORD").write_text(
        "".join(f"{p},sha256={h},1\n" for p, h in files.items()) + f"{info.name}/RECORD,,\n"
    )
    if top:
        (info / "top_level.txt").write_text(top + "\n")


def test_record_tells_clashes_from_namespaces(tmp_path):
    site = tmp_path / "site"
    dist_info(site, "google-a", "1", {"google/a/__init__.py": "x"})
    dist_info(site, "google-b", "1", {"google/b/__init__.py": "y"})  # a namespace: no shared file
    dist_info(site, "nv-one", "1", {"nvidia/__init__.py": "same", "nvidia/one/x.so": "1"})
    dist_info(site, "nv-two", "1", {"nvidia/__init__.py": "same", "nvidia/two/x.so": "2"})  # identical file
    dist_info(site, "fork-a", "1", {"tool/__init__.py": "a", "tool.py": "q"})
    dist_info(site, "fork-b", "2", {"tool/__init__.py": "b", "../../bin/tool": "z"})
    dist_info(site, "old-egg", "1", {}, top="tool")
    names = ["google-a", "google-b", "nv-one", "nv-two", "fork-a", "fork-b"]
    lock = Lock(tuple(Pin(n, f"{n}==1") for n in sorted(names)))
    found = inspect.read_dist_infos([site, tmp_path / "missing"], {p.name for p in lock.pins})
    assert found["fork-a"].top_level == {"tool"} and "old-egg" not in found
    dups = inspect.duplicate_imports(lock, found)
    assert [(d.module, d.dists, d.severity) for d in dups] == [("tool", ("fork-a", "fork-b"), "error")]
    assert "tool/__init__.py" in dups[0].reason
    with_egg = Lock((Pin("fork-a", "fork-a==1"), Pin("old-egg", "old-egg==1")))
    found = inspect.read_dist_infos([site], {p.name for p in with_egg.pins})
    assert [(d.module, d.severity) for d in inspect.duplicate_imports(with_egg, found)] == [
        ("tool", "warning")
    ]


def test_duplicates_found_in_the_installed_target(venv, tmp_path):
    wheels = tmp_path / "w"
    make_wheel(wheels, "cvfork-a", "1.0", top_level="cvmod")
    make_wheel(wheels, "cvfork-b", "2.0", top_level="cvmod")
    make_wheel(wheels, "plain", "1.0")
    uv_pip(venv, "install", "--no-index", "-f", str(wheels), "cvfork-a", "cvfork-b", "plain")
    lock = Lock(
        (
            Pin("cvfork-a", "cvfork-a==1.0", (R("N1", 1, "cvfork-a"),)),
            Pin("cvfork-b", "cvfork-b==2.0", (R("N2", 1, "cvfork-b"),)),
            Pin("plain", "plain==1.0", (R("N1", 2, "plain"),)),
        )
    )
    dirs = inspect.site_dirs(venv)
    assert any(d.name == "site-packages" for d in dirs)
    found = inspect.read_dist_infos(dirs, {p.name for p in lock.pins})
    assert set(found) == {"cvfork-a", "cvfork-b", "plain"}
    (dup,) = inspect.duplicate_imports(lock, found)
    assert (dup.module, dup.severity, dup.asked_by) == (
        "cvmod",
        "error",
        {"cvfork-a": ("N1",), "cvfork-b": ("N2",)},
    )
    cache = Path(__import__("os").environ["UV_CACHE_DIR"])
    in_cache = inspect.read_dist_infos(inspect.cache_dirs(cache), {"cvfork-a"})
    assert in_cache["cvfork-a"].top_level == {"cvmod"}  # uv unpacked it there before installing


# --- through the command line ----------------------------------------------------------------------


def test_cli_check_warns_about_a_stale_lock_and_broken_requirements(comfy, venv, index, capsys):
    root = comfy("", TREE)
    assert run(root, venv, index, "compile") == 0 and run(root, venv, index, "sync") == 0
    (root / "custom_nodes" / "B" / "requirements.txt").write_text("numpy<2\ntqdm\npillow\n")
    uv_pip(venv, "install", "--no-deps", "--no-index", "-f", str(index), "numpy==2.1.0")
    capsys.readouterr()
    rc = run(root, venv, index, "check")
    out = capsys.readouterr().out
    assert rc == 1 and "other version: numpy" in out
    assert "warning: the lock is stale: B: requirements.txt: 'pillow' new" in out
    assert "The package `scipy` requires `numpy<1.28`, but `2.1.0` is installed" in out


def test_cli_compile_reports_duplicate_imports(comfy, venv, index, capsys):
    nodes = {
        "X": {"requirements.txt": "opencv-python\n"},
        "Y": {"requirements.txt": "opencv-python-headless\n"},
    }
    root = comfy("", nodes)
    assert run(root, venv, index, "compile", "--no-default-policy") == 0
    out = capsys.readouterr().out
    assert "error: opencv-python, opencv-python-headless all install `import cv2`" in out
    assert "(opencv-python by X; opencv-python-headless by Y)" in out
    assert '"replacement": "opencv-contrib-python-headless"' in out
    assert run(root, venv, index, "compile") == 0  # the shipped policy settles it
    out = capsys.readouterr().out
    assert "import cv2" not in out and re.search(r"\+ opencv-contrib-python-headless 4\.10\.0 +\(X, Y\)", out)
