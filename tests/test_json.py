"""`--json` on the core commands: one versioned document each, on stdout, and nothing else there."""

from __future__ import annotations

import json

from comfylock.cli.main import main


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_json_documents(comfy, venv, index, capsys):
    root = comfy("numpy<2\n", {"A": {"requirements.txt": "tqdm\n"}})
    common = ["--comfyui", str(root), "--python", str(venv)]
    code, doc = run_json(capsys, "compile", *common, "--no-index", "--find-links", str(index))
    assert code == 0 and doc["schema"] == "comfylock.compile/1"
    assert doc["packages"] == 2 and doc["written"] and not doc["up_to_date"]
    assert {c["name"]: c["kind"] for c in doc["changes"]} == {"numpy": "added", "tqdm": "added"}
    assert [n["node"] for n in doc["nodes"]][:2] == ["core", "A"]

    code, doc = run_json(capsys, "compile", *common, "--no-index", "--find-links", str(index))
    assert doc["up_to_date"] is True

    code, doc = run_json(capsys, "check", *common)
    assert code == 1 and doc["schema"] == "comfylock.check/1" and doc["matches"] is False
    assert {d["kind"] for d in doc["differences"]} == {"missing"}

    code, doc = run_json(capsys, "sync", *common)
    assert code == 0 and doc["schema"] == "comfylock.sync/1" and doc["history_entry"] == 1
    assert len(doc["changes"]) == 2

    code, doc = run_json(capsys, "check", *common)
    assert code == 0 and doc["matches"] is True and doc["differences"] == []

    code, doc = run_json(capsys, "history", *common)
    assert doc["schema"] == "comfylock.history/1" and [e["id"] for e in doc["entries"]] == [1]

    code, doc = run_json(capsys, "rollback", *common)
    assert code == 0 and doc["schema"] == "comfylock.rollback/1"
    assert {c["kind"] for c in doc["changes"]} == {"removed"}

    code, doc = run_json(capsys, "add", *common, "pillow>=10")
    assert doc["schema"] == "comfylock.add/1" and doc["requirements"] == ["pillow>=10"]
    code, doc = run_json(capsys, "remove", *common, "pillow")
    assert doc["schema"] == "comfylock.remove/1" and doc["requirements"] == []


def test_json_error_documents(comfy, venv, index, capsys):
    root = comfy("", {"Old": {"requirements.txt": "numpy<2\n"}, "New": {"requirements.txt": "numpy>=2\n"}})
    code, doc = run_json(
        capsys,
        "compile",
        "--comfyui",
        str(root),
        "--python",
        str(venv),
        "--no-index",
        "--find-links",
        str(index),
    )
    assert code == 1 and doc["schema"] == "comfylock.error/1" and doc["type"] == "ResolutionError"
    assert "numpy" in doc["packages"] and "No solution found" in doc["explanation"]
    (root / "custom_nodes" / "New" / "requirements.txt").write_text("numpy>=2 !!\n")
    code, doc = run_json(capsys, "compile", "--comfyui", str(root), "--python", str(venv))
    assert code == 2 and doc["type"] == "InputError" and "requirements.txt:1" in doc["error"]
