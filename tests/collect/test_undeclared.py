"""Nodes whose requirements are not declared statically: listed by compile with hints from a static
scan (never run), and declared by the user with config.toml's per-node `requirements`."""

from __future__ import annotations

import json

from helpers import run

from comfylock.lockfile.lock import read_lock

# Running this would leave a marker file: the tests check it never appears.
INSTALL_PY = """\
import subprocess, sys, os
open(os.path.join(os.path.dirname(__file__), "RAN"), "w").close()
subprocess.check_call([sys.executable, "-m", "pip", "install", "tqdm", "-r", "requirements-extra.txt"])
os.system(f'"{sys.executable}" -m pip install idna {sys.argv[0]}')
"""
SETUP_PY = "from setuptools import setup\nsetup(name='x', install_requires=['pillow>=10', 'requests'])\n"


def test_compile_lists_nodes_that_install_more_than_they_declare_with_hints(comfy, venv, index, capsys):
    root = comfy(
        "",
        {
            "Installer": {
                "install.py": INSTALL_PY,
                "requirements.txt": "numpy\n",
                "requirements-extra.txt": "scipy\n",
            },
            "Variants": {
                "requirements-cpu.txt": "onnxruntime\n",
                "requirements-gpu.txt": "onnxruntime-gpu\n",
            },
            "SetupOnly": {"setup.py": SETUP_PY, "pyproject.toml": "[project]\nname = 'x'\n"},
            "Frame-Interpolation-like": {
                "pyproject.toml": "[project]\nname = 'fi'\n",
                "requirements-no-cupy.txt": "numpy\n",
                "requirements-with-cupy.txt": "numpy\ncupy-wheel\n",
            },
            "Plain": {"requirements.txt": "idna\n"},
        },
    )
    assert run(root, venv, index, "compile") == 0
    out = capsys.readouterr().out
    assert "requirements not declared statically: Installer: install.py" in out
    assert "install.py installs tqdm, idna" in out and "it reads requirements-extra.txt" in out
    assert "requirements not declared statically: Variants: requirements-cpu.txt, requirements-gpu.txt" in out
    assert '[nodes."Variants"] source = "requirements-cpu.txt"' in out
    assert (
        "SetupOnly: setup.py" in out
        and '[nodes."SetupOnly"] requirements = ["pillow>=10", "requests"]' in out
    )
    assert "Frame-Interpolation-like: requirements-no-cupy.txt, requirements-with-cupy.txt and none" in out
    assert "Plain:" not in out.split("changes:")[0].split("user:")[1]
    assert not (root / "custom_nodes" / "Installer" / "RAN").exists()  # parsed, never run
    (root / "comfylock.lock").unlink()
    assert run(root, venv, index, "compile", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert {u["node"] for u in doc["undeclared"]} == {
        "Installer",
        "Variants",
        "SetupOnly",
        "Frame-Interpolation-like",
    }


def test_config_requirements_declare_them_with_provenance_and_silence_the_listing(comfy, venv, index, capsys):
    root = comfy("", {"Installer": {"install.py": INSTALL_PY}})
    cfg = root / "user" / "comfylock" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[nodes."Installer"]\nrequirements = ["tqdm", "idna>=3"]\n')
    assert run(root, venv, index, "compile") == 0
    out = capsys.readouterr().out
    assert "not declared statically" not in out and "2 from config.toml requirements" in out
    pins = read_lock(root / "comfylock.lock").by_name()
    assert pins["tqdm"].requested_by[0].node == "Installer"
    assert "requested by Installer (" in (root / "comfylock.lock").read_text()
    cfg.write_text('[nodes."Installer"]\nrequirements = ["tqdm"]\n')  # the fingerprint sees the change
    assert run(root, venv, index, "compile") == 0
    assert "idna" not in read_lock(root / "comfylock.lock").by_name()


def test_bad_config_requirements_are_refused_naming_the_file(comfy, venv, index, capsys):
    root = comfy("", {"N": {}})
    cfg = root / "user" / "comfylock" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('[nodes."N"]\nrequirements = [1]\n')
    assert run(root, venv, index, "compile") == 2
    err = capsys.readouterr().err
    assert "config.toml" in err and "nodes.N.requirements" in err
