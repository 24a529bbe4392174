"""Policies end to end: compile -> lock -> sync through the CLI, with real uv on hand-written wheels.

Also `comfylock policy show` and `comfylock policy check`, which need no uv.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import CORPUS, ONNX, OPENCVS, installed, run
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.environment.probe import _nvidia_driver_present
from comfylock.lockfile.lock import Pin, read_lock
from comfylock.resolve import uv as resolve


def uv_install(venv: Path, *args: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "uv",
        "pip",
        "install",
        "--quiet",
        "--python",
        str(venv),
        "--no-index",
        *args,
    ]
    subprocess.run(cmd, check=True)


def user_policy(root: Path, doc: Any) -> Path:
    path = root / "user" / "comfylock" / "pip-policy.user.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return path


def pins(root: Path) -> dict[str, Pin]:
    return read_lock(root / "comfylock.lock").by_name()


def versions(root: Path) -> dict[str, str | None]:
    return {name: pin.version for name, pin in pins(root).items()}


# --- each action, through compile and sync --------------------------------------------------------------


def test_uninstall_then_sync_removes_the_package(comfy, venv, index, capsys):
    root = comfy("requests\ntqdm\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    assert set(installed(venv)) == {"requests", "idna", "tqdm"}
    user_policy(
        root,
        {
            "tqdm": {"uninstall": [{"target": "tqdm", "reason": "progress bars break the log"}]},
            # idna only arrives as a dependency of requests: uv --excludes drops it there too.
            "requests": {"uninstall": [{"target": "idna"}]},
        },
    )
    capsys.readouterr()
    assert run(root, venv, index, "compile") == 0
    out = capsys.readouterr().out
    assert "policy uninstall: tqdm" in out and "policy uninstall: idna" in out
    assert set(pins(root)) == {"requests"}
    header = read_lock(root / "comfylock.lock").lists["policy"]
    assert any(line.startswith("uninstall tqdm (") and "progress bars" in line for line in header)
    assert run(root, venv, index, "sync") == 0
    assert set(installed(venv)) == {"requests"}


def test_restore_pins_exactly(comfy, venv, index):
    root = comfy("numpy>=2\nscipy\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    assert installed(venv)["numpy"] == "2.1.0"
    user_policy(
        root,
        {
            "numpy": {
                "restore": [
                    {
                        "condition": {"type": "installed", "spec": "!=1.26.4"},
                        "target": "numpy",
                        "version": "1.26.4",
                        "reason": "the build every node was tested with",
                    }
                ]
            }
        },
    )
    assert run(root, venv, index, "compile") == 0
    lock = pins(root)
    assert lock["numpy"].spec == "numpy==1.26.4"  # beats core's numpy>=2: restore is an override
    assert "policy" in {r.node for r in lock["numpy"].requested_by}
    assert lock["scipy"].version == "1.14.0"
    assert run(root, venv, index, "sync") == 0
    assert installed(venv)["numpy"] == "1.26.4"


def test_skip_names_the_requester_in_the_output(comfy, venv, index, capsys):
    root = comfy("numpy\n", {"Painter": {"requirements.txt": "numpy\npillow>=10\n"}})
    user_policy(root, {"pillow": {"apply_first_match": [{"type": "skip", "reason": "ships its own"}]}})
    assert run(root, venv, index, "compile") == 0
    out = capsys.readouterr().out
    assert "policy skip: pillow (asked by Painter)" in out
    assert set(pins(root)) == {"numpy"}


def test_force_version(comfy, venv, index, capsys):
    root = comfy("", {"Fresh": {"requirements.txt": "numpy>=2\n"}})
    user_policy(root, {"numpy": {"apply_first_match": [{"type": "force_version", "version": "1.26.4"}]}})
    assert run(root, venv, index, "compile") == 0
    assert "policy force_version: numpy==1.26.4 (asked by Fresh)" in capsys.readouterr().out
    assert versions(root)["numpy"] == "1.26.4"


def test_replace_keeps_extras_and_markers_in_the_lock(comfy, venv, tmp_path):
    wheels = tmp_path / "replace-wheels"
    make_wheel(wheels, "oldpkg", "1.0")
    make_wheel(wheels, "newpkg", "1.0")
    make_wheel(wheels, "newpkg", "2.0", ['fastdep; extra == "fast"'])
    make_wheel(wheels, "fastdep", "1.0")
    root = comfy("", {"Node": {"requirements.txt": 'oldpkg[fast]>=1; python_version >= "3"\n'}})
    user_policy(
        root,
        {"oldpkg": {"apply_first_match": [{"type": "replace", "replacement": "newpkg", "version": ">=2"}]}},
    )
    assert run(root, venv, wheels, "compile") == 0
    assert versions(root) == {"newpkg": "2.0", "fastdep": "1.0"}  # the extra still pulls fastdep in
    text = (root / "comfylock.lock").read_text()
    # The line as the node wrote it, then what the policy made of it.
    quoted = 'oldpkg[fast]>=1; python_version >= "3" -> newpkg[fast]>=2; python_version >= "3"'
    assert f"requested by Node (requirements.txt:1): {quoted} (policy: replace oldpkg)" in text
    assert "oldpkg" not in pins(root)


# --- pin_dependencies and on_failure against a real conflict ------------------------------------------------


def pin_numpy(root: Path, on_failure: str | None) -> None:
    entry: dict[str, Any] = {"type": "pin_dependencies", "pinned_packages": ["numpy"]}
    if on_failure is not None:
        entry["on_failure"] = on_failure
    user_policy(root, {"scipy": {"apply_all_matches": [entry]}})


@pytest.fixture
def old_numpy(venv: Path, index: Path) -> Path:
    uv_install(venv, "--find-links", str(index), "numpy==1.26.4")
    return venv


def test_pin_keeps_the_installed_version_when_it_can(comfy, old_numpy, index, capsys):
    root = comfy("", {"Sci": {"requirements.txt": "scipy\n"}})
    pin_numpy(root, None)
    assert run(root, old_numpy, index, "compile") == 0
    assert "policy pin_dependencies: numpy==1.26.4 (asked by Sci)" in capsys.readouterr().out
    assert versions(root) == {"numpy": "1.26.4", "scipy": "1.14.0"}  # newest numpy would be 2.1.0


CONFLICT = {"Sci": {"requirements.txt": "scipy\n"}, "Fresh": {"requirements.txt": "numpy>=2\n"}}


def test_pin_conflict_fail_stops_with_exit_1(comfy, old_numpy, index, capsys):
    root = comfy("", CONFLICT)
    pin_numpy(root, "fail")
    assert run(root, old_numpy, index, "compile") == 1
    err = capsys.readouterr().err
    assert "No solution found" in err and "numpy" in err and "Traceback" not in err
    assert not (root / "comfylock.lock").exists()


@pytest.mark.parametrize(("on_failure", "warns"), [("retry_without_pin", False), ("warn", True)])
def test_pin_conflict_retries_without_the_pin(comfy, old_numpy, index, capsys, on_failure, warns):
    root = comfy("", CONFLICT)
    pin_numpy(root, on_failure)
    assert run(root, old_numpy, index, "compile") == 0
    assert versions(root)["numpy"] == "2.1.0"
    message = "pin numpy==1.26.4 (asked by scipy's policy) could not hold; resolved without it"
    assert (message in capsys.readouterr().out) is warns
    # The lock records the policy as it reads the environment its sync leaves (numpy 2.1.0, which
    # holds), not this one-time miss: compiling after the sync must give the same bytes.
    lists = read_lock(root / "comfylock.lock").lists
    assert message not in lists.get("warning", ())
    assert [p.split(" (")[0] for p in lists["policy"]] == ["pin_dependencies numpy==2.1.0"]


# --- warn, validation -----------------------------------------------------------------------------------


def test_blocking_warn_stops_compile_unless_yes(comfy, venv, index, capsys):
    root = comfy("", {"Bars": {"requirements.txt": "tqdm\n"}})
    user_policy(
        root,
        {
            "tqdm": {
                "apply_all_matches": [
                    {"type": "warn", "message": "writes to stderr", "allow_continue": False}
                ]
            }
        },
    )
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert "policy stops the compile: tqdm: writes to stderr" in err and "--yes" in err
    assert not (root / "comfylock.lock").exists()
    assert run(root, venv, index, "compile", "--yes") == 0
    assert "warning: tqdm: writes to stderr" in capsys.readouterr().out
    assert "tqdm: writes to stderr" in read_lock(root / "comfylock.lock").lists["warning"]


def test_non_blocking_warn_only_warns(comfy, venv, index, capsys):
    root = comfy("", {"Bars": {"requirements.txt": "tqdm\n"}})
    user_policy(root, {"tqdm": {"apply_all_matches": [{"type": "warn", "message": "noisy"}]}})
    assert run(root, venv, index, "compile") == 0
    assert "warning: tqdm: noisy" in capsys.readouterr().out


def test_invalid_policy_stops_compile_before_resolving(comfy, venv, index, capsys, monkeypatch):
    def no_uv(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("compile resolved despite an invalid policy")

    monkeypatch.setattr(resolve, "compile", no_uv)
    root = comfy("numpy\n")
    path = user_policy(root, '{\n  "numpy": {\n    "apply_first_match": [{"type": "skipp"}]\n  }\n}\n')
    (root / "comfylock.lock").write_text("# previous\n")
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert f"{path}:3: $.numpy.apply_first_match[0]: unknown action 'skipp'" in err
    assert "Traceback" not in err
    assert (root / "comfylock.lock").read_text() == "# previous\n"


# --- the shipped policy on hermetic trees -------------------------------------------------------------


def test_default_policy_one_opencv(comfy, venv, index, capsys):
    root = comfy(
        "",
        {
            "A": {"requirements.txt": "opencv-python>=4.8\n"},
            "B": {"requirements.txt": "opencv-python-headless\n"},
            "C": {"requirements.txt": "opencv-contrib-python\nnumpy<2\n"},
        },
    )
    assert run(root, venv, index, "compile") == 0
    lock = pins(root)
    assert set(lock) & OPENCVS == {"opencv-contrib-python-headless"}
    assert {r.node for r in lock["opencv-contrib-python-headless"].requested_by} == {"A", "B", "C"}
    # Each line quoted as its node wrote it, then the rewrite. The OpenCV wheels share one version
    # line, so a replace without its own "version" keeps the requester's range.
    assert {r.quoted() for r in lock["opencv-contrib-python-headless"].requested_by} == {
        "opencv-python>=4.8 -> opencv-contrib-python-headless>=4.8 (policy: one OpenCV)",
        "opencv-python-headless -> opencv-contrib-python-headless (policy: one OpenCV)",
        "opencv-contrib-python -> opencv-contrib-python-headless (policy: one OpenCV)",
    }
    out = capsys.readouterr().out
    assert "policy replace: opencv-python -> opencv-contrib-python-headless (asked by A)" in out
    # Without the shipped policy, the three wheels that overwrite each other's cv2 all land.
    assert run(root, venv, index, "compile", "--no-default-policy") == 0
    assert set(pins(root)) & OPENCVS == {"opencv-python", "opencv-python-headless", "opencv-contrib-python"}


def test_policy_reaches_a_transitive_dependency(comfy, venv, index, capsys):
    # ultralytics depends on opencv-python: only the first resolution reveals it, api re-resolves.
    root = comfy("", {"Detect": {"requirements.txt": "ultralytics\n"}})
    assert run(root, venv, index, "compile") == 0
    lock = pins(root)
    assert set(lock) & OPENCVS == {"opencv-contrib-python-headless"}
    assert "ultralytics" in lock and "numpy" in lock
    assert "policy replace: opencv-python -> opencv-contrib-python-headless" in capsys.readouterr().out
    # The requirement the policy added names the shipped file the same way on every machine.
    text = (root / "comfylock.lock").read_text()
    assert "requested by policy (comfylock/pip-policy.json:" in text
    assert str(Path(__file__).parents[2]) not in text


def fake_cuda_torch(tmp_path: Path) -> Path:
    """A torch 2.5.1+cu124 wheel (as the PyTorch index serves it) in <tmp>/torch-index/cu124/."""
    torch_index = tmp_path / "torch-index"
    make_wheel(torch_index / "cu124", "torch", "2.5.1+cu124", ["filelock"])
    return torch_index


needs_no_driver = pytest.mark.skipif(_nvidia_driver_present(), reason="this machine has an NVIDIA driver")
gpu_builds = pytest.mark.skipif(sys.platform == "darwin", reason="onnxruntime-gpu has no macOS builds")


@needs_no_driver
def test_default_policy_onnxruntime_without_gpu(comfy, venv, index):
    root = comfy(
        "",
        {"Face": {"requirements.txt": "onnxruntime-gpu\n"}, "Swap": {"requirements.txt": "insightface\n"}},
    )
    assert run(root, venv, index, "compile") == 0
    assert set(pins(root)) & ONNX == {"onnxruntime"}
    assert {r.node for r in pins(root)["onnxruntime"].requested_by} == {"Face"}


@gpu_builds
def test_default_policy_onnxruntime_with_gpu(comfy, venv, index, tmp_path):
    torch_index = fake_cuda_torch(tmp_path)
    # has_gpu comes from the target's torch build: a +cu124 torch means CUDA is there.
    uv_install(
        venv, "--find-links", str(torch_index / "cu124"), "--find-links", str(index), "torch==2.5.1+cu124"
    )
    root = comfy(
        "",
        {"Face": {"requirements.txt": "onnxruntime\n"}, "Swap": {"requirements.txt": "insightface\n"}},
    )
    assert run(root, venv, index, "compile") == 0
    assert set(pins(root)) & ONNX == {"onnxruntime-gpu"}  # insightface's own onnxruntime too


def test_default_policy_keeps_the_installed_cuda_torch(comfy, venv, tmp_path, capsys):
    pypi = tmp_path / "pypi"
    make_wheel(pypi, "torch", "2.6.0", ["filelock"])  # PyPI's build: newer, no local tag
    make_wheel(pypi, "filelock", "3.16.1")
    torch_index = fake_cuda_torch(tmp_path)
    uv_install(
        venv, "--find-links", str(torch_index / "cu124"), "--find-links", str(pypi), "torch==2.5.1+cu124"
    )
    root = comfy("", {"Video": {"requirements.txt": "torch>=2.0\n"}})
    config = root / "user" / "comfylock" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"torch-index = {json.dumps(torch_index.as_posix())}\n")

    assert run(root, venv, pypi, "compile") == 0
    assert pins(root)["torch"].spec == "torch==2.5.1+cu124"
    lock = read_lock(root / "comfylock.lock")
    assert f"--find-links {torch_index.as_posix()}/cu124" in lock.options  # sync finds the build there
    assert "policy pin_dependencies: torch==2.5.1+cu124 (asked by Video)" in capsys.readouterr().out

    # A new node changes the inputs: torch still stays the installed build.
    (root / "custom_nodes" / "More").mkdir()
    (root / "custom_nodes" / "More" / "requirements.txt").write_text("torch\nfilelock\n")
    assert run(root, venv, pypi, "compile") == 0
    assert pins(root)["torch"].spec == "torch==2.5.1+cu124"

    assert run(root, venv, pypi, "compile", "--upgrade-package", "torch") == 0
    assert pins(root)["torch"].spec == "torch==2.6.0"


def test_without_the_policy_pypi_torch_would_replace_the_cuda_build(comfy, venv, tmp_path):
    pypi = tmp_path / "pypi"
    make_wheel(pypi, "torch", "2.6.0", ["filelock"])
    make_wheel(pypi, "filelock", "3.16.1")
    torch_index = fake_cuda_torch(tmp_path)
    uv_install(
        venv, "--find-links", str(torch_index / "cu124"), "--find-links", str(pypi), "torch==2.5.1+cu124"
    )
    root = comfy("", {"Video": {"requirements.txt": "torch>=2.0\n"}})
    assert run(root, venv, pypi, "compile", "--no-default-policy") == 0
    assert pins(root)["torch"].spec == "torch==2.6.0"


# --- comfylock policy show / check ----------------------------------------------------------------------


def policy_cmd(root: Path, *args: str) -> int:
    return main(["policy", *args, "--comfyui", str(root)])


def test_policy_show_merged_with_origins(comfy, capsys):
    root = comfy("")
    user = user_policy(
        root,
        {
            "onnxruntime": {
                "apply_first_match": [{"type": "replace", "replacement": "onnxruntime-gpu", "reason": "CUDA"}]
            },
            "tensorflow": {
                "apply_all_matches": [{"type": "warn", "message": "fights", "allow_continue": False}]
            },
        },
    )
    assert policy_cmd(root, "show") == 0
    out = capsys.readouterr().out
    assert "onnxruntime  [user, pip-policy.user.json:2] (replaces the default entry)" in out
    assert "  apply_first_match[0]: replace -> onnxruntime-gpu" in out
    assert "  apply_all_matches[0]: warn 'fights' (stops compile unless --yes)" in out
    assert "opencv-python  [default, pip-policy.json:" in out
    assert "  apply_first_match[1]: replace -> onnxruntime  when has_gpu=false" in out
    assert "reason:" not in out
    assert policy_cmd(root, "show", "-v") == 0
    assert "      reason: CUDA" in capsys.readouterr().out

    assert policy_cmd(root, "show", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "comfylock.policy-show/1"
    assert [f["role"] for f in doc["files"]] == ["default", "user"]
    onnx = doc["packages"]["onnxruntime"]
    assert (onnx["role"], onnx["path"], onnx["line"], onnx["shadows"]) == ("user", str(user), 2, ["default"])
    assert onnx["sections"]["apply_first_match"][0]["replacement"] == "onnxruntime-gpu"
    assert doc["packages"]["cv2"]["role"] == "default"


def test_policy_show_extra_files_and_no_default(comfy, capsys, tmp_path):
    root = comfy("")
    extra = tmp_path / "team.json"
    extra.write_text(
        json.dumps({"numpy": {"apply_first_match": [{"type": "force_version", "version": "1.26.4"}]}})
    )
    assert policy_cmd(root, "show", "--no-default-policy", "--policy", str(extra), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert list(doc["packages"]) == ["numpy"]
    assert doc["packages"]["numpy"]["role"] == "--policy"
    assert policy_cmd(root, "show", "--no-default-policy") == 0
    assert "(no user policy at" in capsys.readouterr().out


def test_policy_show_refuses_an_invalid_policy(comfy, capsys):
    root = comfy("")
    user_policy(root, '{"numpy": {"uninstall": [{}]}}')
    assert policy_cmd(root, "show") == 2
    assert "missing field 'target'" in capsys.readouterr().err


BAD = """{
  "numpy": {
    "apply_first_match": [
      {"type": "skipp"},
      {"type": "force_version", "version": "1.x"}
    ]
  },
  "six": {"restore": [{"target": "six", "version": "1.16.0"}]},
  "foo": {"uninstall": [{"target": "six"}]},
  "bar": {"apply_first_match": [{"type": "replace", "replacement": "Bar"}]},
  "baz": {"apply_first_match": [{"type": "skip", "condition": {"type": "gpu"}}]}
}
"""


def test_policy_check_file_lists_every_problem(tmp_path, capsys):
    path = tmp_path / "mine.json"
    path.write_text(BAD)
    # FILE needs no ComfyUI folder.
    assert main(["policy", "check", str(path)]) == 2
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [
        f"{path}:4: $.numpy.apply_first_match[0]: unknown action 'skipp' "
        "(expected one of skip, force_version, replace)",
        f"{path}:5: $.numpy.apply_first_match[1].version: invalid version '1.x' "
        "(an exact version such as '1.26.4')",
        f"{path}:8: $.six.restore[0]: restore of 'six' conflicts with foo's uninstall of it "
        "under the same condition (keep one of the two)",
        f"{path}:10: $.bar.apply_first_match[0].replacement: replace of 'bar' by itself "
        "(remove the entry, or use force_version to change its version)",
        f"{path}:11: $.baz.apply_first_match[0].condition.type: unknown condition type 'gpu' "
        "(expected one of installed, platform)",
        "5 problems in 1 file",
    ]
    assert main(["policy", "check", str(path), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "comfylock.policy-check/1" and doc["ok"] is False
    assert [(p["line"], p["json_path"]) for p in doc["problems"]] == [
        (4, "$.numpy.apply_first_match[0]"),
        (5, "$.numpy.apply_first_match[1].version"),
        (8, "$.six.restore[0]"),
        (10, "$.bar.apply_first_match[0].replacement"),
        (11, "$.baz.apply_first_match[0].condition.type"),
    ]
    assert doc["problems"][0]["hint"] == "expected one of skip, force_version, replace"


def test_policy_check_invalid_json_and_missing_file(tmp_path, capsys):
    path = tmp_path / "cut.json"
    path.write_text('{\n  "numpy": ')
    assert main(["policy", "check", str(path)]) == 2
    assert f"{path}:2: $: invalid JSON: Expecting value (line 2, column 12)" in capsys.readouterr().out
    assert main(["policy", "check", str(tmp_path / "nope.json")]) == 2
    assert f"{tmp_path / 'nope.json'}: policy file not found" in capsys.readouterr().out


def test_policy_check_user_file_and_policy_files(comfy, tmp_path, capsys):
    root = comfy("")
    assert policy_cmd(root, "check") == 0
    out = capsys.readouterr().out
    assert "no user policy at" in out and "policy OK" in out
    user_policy(root, {"six": {"restore": [{"target": "six", "version": "1.16.0"}]}})
    assert policy_cmd(root, "check") == 0
    # Each file is fine alone; merged, the two entries cannot both hold.
    extra = tmp_path / "team.json"
    extra.write_text(json.dumps({"numpy": {"uninstall": [{"target": "six"}]}}))
    assert main(["policy", "check", str(extra)]) == 0
    capsys.readouterr()
    assert policy_cmd(root, "check", "--policy", str(extra)) == 2
    assert "$.six.restore[0]: restore of 'six' conflicts with numpy's uninstall" in capsys.readouterr().out
    assert policy_cmd(root, "check", "--policy", str(extra), "--json") == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][1:] == [str(root / "user" / "comfylock" / "pip-policy.user.json"), str(extra)]


# --- the real corpus against PyPI ----------------------------------------------------------------------


def family(name: str) -> str:
    return next((f for f in ("opencv", "onnxruntime") if name.startswith(f)), name)


@pytest.mark.pypi
@pytest.mark.corpus
def test_corpus_default_policy_changes_only_the_opencv_and_onnxruntime_families(tmp_path, pypi_env):
    locks = {}
    for label, extra in (("with", []), ("without", ["--no-default-policy"])):
        locks[label] = tmp_path / f"{label}.lock"
        args = ["compile", "--comfyui", str(CORPUS), "--python", sys.executable, "--lock", str(locks[label])]
        args += ["--python-version", "3.11", "--python-platform", "x86_64-unknown-linux-gnu", "-q", *extra]
        assert main(args) == 0, label
    with_policy = {n: p.version for n, p in read_lock(locks["with"]).by_name().items()}
    without = {n: p.version for n, p in read_lock(locks["without"]).by_name().items()}
    changed = {n for n in with_policy.keys() | without.keys() if with_policy.get(n) != without.get(n)}
    assert {family(n) for n in changed} == {"opencv", "onnxruntime"}
    assert len([n for n in with_policy if family(n) == "opencv"]) == 1
    assert len([n for n in without if family(n) == "opencv"]) > 1  # what the policy is there to prevent
