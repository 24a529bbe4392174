"""uv/pip users' conventions: shared options before or after the command, ComfyUI found from inside it,
help for every option with examples, quiet ends on a closed pipe, and Ctrl-C naming the way on."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from comfylock.cli.args import hoist, interrupted
from comfylock.cli.main import build_parser, main
from comfylock.environment import history
from comfylock.lockfile.lock import read_lock

TREE = {"NodeA": {"requirements.txt": "numpy<2\n"}}


def test_hoist_moves_shared_options_after_the_command() -> None:
    assert hoist(["--comfyui", "/x", "-p", "py", "sync", "--dry-run"]) == [
        "sync",
        "--dry-run",
        "--comfyui",
        "/x",
        "-p",
        "py",
    ]
    assert hoist(["-qv", "--lock=a.lock", "add", "x", "--", "-y"]) == [
        "add",
        "x",
        "-qv",
        "--lock=a.lock",
        "--",
        "-y",
    ]
    assert hoist(["--version"]) == ["--version"]  # anything else stays for argparse to answer
    assert hoist(["--comfyui", "/x", "--help", "sync"]) == ["--comfyui", "/x", "--help", "sync"]


def test_shared_options_before_the_command(comfy, venv, index, capsys) -> None:
    root = comfy("numpy\n", TREE)
    common = ["--comfyui", str(root), "-p", str(venv), "--no-index", "-f", str(index)]
    assert main([*common, "-q", "compile"]) == 0
    assert capsys.readouterr().out == ""  # -q before the command counts
    assert read_lock(root / "comfylock.lock").by_name()["numpy"].version == "1.26.4"
    assert main(["--comfyui", str(root), "--python", str(venv), "sync", "--dry-run"]) == 0
    assert "would change 1 packages" in capsys.readouterr().out
    assert main(["--json", "--comfyui", str(root), "--python", str(venv), "history"]) == 0
    assert '"schema": "comfylock.history/1"' in capsys.readouterr().out
    # An index option before a command it does not apply to is refused, not silently dropped.
    with pytest.raises(SystemExit) as e:
        main(["--index-url", "https://x/simple", "--comfyui", str(root), "sync"])
    assert e.value.code == 2


def test_comfyui_found_from_a_folder_inside_it(comfy, venv, index, monkeypatch, capsys) -> None:
    root = comfy("numpy\n", TREE)
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.chdir(root / "custom_nodes" / "NodeA")
    assert main(["compile", "--python", str(venv), "--no-index", "--find-links", str(index)]) == 0
    assert (root / "comfylock.lock").is_file()


def _parsers(parser: argparse.ArgumentParser, words: str = ""):
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{words} {name}".strip())


def test_every_option_and_argument_has_help_and_every_command_examples() -> None:
    parser = build_parser()
    missing, without_examples = [], []
    for words, p in _parsers(parser):
        for action in p._actions:
            if action.help is None:
                missing.append(f"{words or 'comfylock'}: {'/'.join(action.option_strings) or action.dest}")
        if words:
            text = p.format_help()
            examples = text.split("examples:\n", 1)[1].splitlines() if "examples:" in text else []
            if not 2 <= len([e for e in examples if e.strip().startswith("comfylock")]) <= 3:
                without_examples.append(words)
    assert missing == []
    assert without_examples == []


def test_examples_keep_their_lines() -> None:
    text = build_parser("compile")._subparsers._group_actions[0].choices["compile"].format_help()
    assert "\nexamples:\n  comfylock compile " in text
    assert "--skip-node NAME" in text and "leave the custom node NAME out" in text


def _cli(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "comfylock", *args], text=True, **kw)


@pytest.mark.parametrize("command", [["--help"], ["compile", "--help"], ["history", "--json"]])
def test_closed_pipe_ends_quietly(comfy, command) -> None:
    root = comfy("numpy\n", TREE)
    read, write = os.pipe()
    os.close(read)  # the reader has gone before anything is written: every write fails
    try:
        proc = _cli(*command, "--comfyui", str(root), stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert proc.returncode in (0, 141)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_the_command_leaves_at_once_with_its_code_and_all_its_output(comfy, venv, index) -> None:
    """run() skips the interpreter's teardown (os._exit): the exit code and every byte written still
    reach the caller, piped or not."""
    root = comfy("numpy\n", TREE)
    where = ["--comfyui", str(root), "--python", str(venv)]
    compiled = _cli("compile", *where, "--no-index", "--find-links", str(index), capture_output=True)
    assert compiled.returncode == 0, compiled.stderr
    check = _cli("check", *where, "--json", capture_output=True)  # numpy is not installed: exit 1
    assert check.returncode == 1 and check.stdout.rstrip().endswith("}"), check.stdout[-200:]
    nodes = _cli("nodes", *where, "--json", capture_output=True)
    assert nodes.returncode == 0 and nodes.stdout.count("{") == nodes.stdout.count("}") > 1
    bad = _cli("sync", *where, "--lock", str(root / "missing.lock"), capture_output=True)
    assert bad.returncode == 2 and bad.stderr.startswith("comfylock: error:"), bad.stderr
    assert "Traceback" not in bad.stderr


def test_interrupted_sync_names_the_command_to_finish_or_undo(comfy, venv) -> None:
    root = comfy("numpy\n", TREE)
    user = root / "user" / "comfylock"
    args = build_parser("sync").parse_args(["sync", "--comfyui", str(root), "--python", str(venv)])
    assert interrupted(args) == "comfylock: interrupted before the environment was changed"
    history.begin(user, 7, ["numpy"])  # what a sync writes down before uv runs
    text = interrupted(args)
    assert text.startswith("comfylock: interrupted: run `comfylock --comfyui ")
    assert f"--python {venv} sync` to finish or `" in text
    assert text.endswith(f"--python {venv} rollback --to 7` to undo")
    args = build_parser("compile").parse_args(["compile"])
    assert interrupted(args) == "comfylock: interrupted: nothing was written; run `comfylock compile` again"


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to one process is POSIX")
def test_ctrl_c_during_sync_prints_the_way_on(comfy, venv, tmp_path) -> None:
    """A real sync stopped while uv waits on an index that never answers."""
    import signal
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    root = comfy("", {})
    port = server.getsockname()[1]
    lock = tmp_path / "hang.txt"
    lock.write_text(f"--index-url http://127.0.0.1:{port}/simple\ntqdm==4.66.0\n")  # no size asked of it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "comfylock",
            "sync",
            "--comfyui",
            str(root),
            "-p",
            str(venv),
            "--lock",
            str(lock),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        server.settimeout(60)
        conn, _ = server.accept()  # uv is now waiting on us: the sync is under way
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        conn.close()
    finally:
        server.close()
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert (
        "interrupted: run `comfylock " in err
        and "sync` to finish or `" in err
        and "rollback --to 1` to undo" in err
    )
