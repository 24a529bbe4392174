"""Command-line conventions shared by every command: options of every command accepted before it,
each command's examples, and what to say when a run is cut short (Ctrl-C, a closed pipe).

Kept apart from cli.py so a new subcommand gets all of it by being registered, with nothing to add.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence

# Options of every command (cli._common) and the index options (cli._index), as uv and pip users give
# them before the command too: `comfylock --comfyui /x sync`. Those taking a value are listed apart.
_TAKES_VALUE = frozenset(
    {
        "--comfyui",
        "--python",
        "-p",
        "--lock",
        "--color",
        "--index-url",
        "--extra-index-url",
        "--find-links",
        "-f",
    }
)
_FLAGS = frozenset({"-q", "--quiet", "-v", "--verbose", "--debug", "--json", "--no-index", "--offline"})
_SHORT_FLAGS = frozenset(f[1] for f in _FLAGS if len(f) == 2)


def hoist(words: Sequence[str]) -> list[str]:
    """`words` with the shared options given before the command moved after it (before any `--`), where
    the command's own parser reads them. Anything else before the command (`--version`, `-h`, a typo)
    leaves `words` as they are, for argparse to answer."""
    words = list(words)
    moved: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        name = w.split("=", 1)[0]
        if not w.startswith("-"):
            break
        if name in _FLAGS and "=" not in w:
            moved.append(w)
        elif name in _TAKES_VALUE and ("=" in w or i + 1 < len(words)):
            moved.append(w)
            if "=" not in w:
                i += 1
                moved.append(words[i])
        elif w[:2] in _TAKES_VALUE and not w.startswith("--"):  # -pPY, -fDIR
            moved.append(w)
        elif len(w) > 2 and not w.startswith("--") and set(w[1:]) <= _SHORT_FLAGS:  # -qv
            moved.append(w)
        else:
            return words
        i += 1
    if not moved or i >= len(words):
        return words
    rest = words[i:]
    at = rest.index("--") if "--" in rest else len(rest)
    return [*rest[:at], *moved, *rest[at:]]


def command_of(words: Sequence[str]) -> str | None:
    """The command word of already hoisted `words`."""
    return words[0] if words and not words[0].startswith("-") else None


# Two or three examples per command, shown at the end of its --help. Keyed by the command's words.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "compile": (
        "comfylock compile                      # resolve core + nodes into comfylock.lock",
        "comfylock compile -P numpy --dry-run   # what moving numpy to its newest allowed would change",
        "comfylock compile --skip-node Some-Node --extra-index-url https://my.mirror/simple",
    ),
    "sync": (
        "comfylock sync --dry-run               # the plan: install, upgrade, downgrade, remove",
        "comfylock sync                         # make the environment exactly the lock",
        "comfylock --comfyui ~/ComfyUI -p ~/ComfyUI/venv sync",
    ),
    "rollback": (
        "comfylock rollback --dry-run           # which change it would undo",
        "comfylock rollback                     # back to the state before the last sync",
        "comfylock history && comfylock rollback --to 3 --write-lock",
    ),
    "verify": (
        "comfylock verify                       # does every custom node still load?",
        "comfylock verify -v --timeout 600      # with each failing node's whole traceback",
        "comfylock sync --no-verify             # a sync that skips it",
    ),
    "history": (
        "comfylock history",
        "comfylock history --json | jq '.entries[-1]'",
    ),
    "check": (
        "comfylock check                        # exit 0 when the environment matches the lock",
        "comfylock check -q || comfylock sync   # sync only when something drifted",
    ),
    "add": (
        "comfylock add 'rich>=13'               # then `comfylock compile` and `comfylock sync`",
        "comfylock add 'httpx[http2]' tqdm",
    ),
    "remove": (
        "comfylock remove rich",
        "comfylock remove rich tqdm && comfylock compile",
    ),
    "why": (
        "comfylock why numpy                    # the chains from nodes to numpy, and policies",
        "comfylock why opencv-python --json",
    ),
    "diff": (
        "comfylock diff                         # the environment against the lock",
        "comfylock diff git:HEAD~1              # the lock of the previous commit against the lock",
        "comfylock diff old.lock new.lock",
    ),
    "nodes": (
        "comfylock nodes                        # each node's requirement file and what only it brings",
        "comfylock nodes --json",
    ),
    "policy": (
        "comfylock policy show",
        "comfylock policy check my-policy.json",
    ),
    "policy show": (
        "comfylock policy show                  # the merged policy and where each entry comes from",
        "comfylock policy show --policy extra.json --no-default-policy",
    ),
    "policy check": (
        "comfylock policy check                 # your pip-policy.user.json",
        "comfylock policy check my-policy.json",
    ),
    "export": (
        "comfylock export                       # pylock.comfylock.toml beside the lock",
        "comfylock export --format requirements -o requirements.lock",
        "comfylock export --format manager-snapshot -o snapshot.json",
    ),
    "import-snapshot": (
        "comfylock import-snapshot 2025-01-01_snapshot.json --dry-run",
        "comfylock import-snapshot snapshot.yaml && comfylock sync",
    ),
}


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatting, except an examples epilog keeps its lines and alignment.

    argparse makes a formatter for every option it adds (to check its metavar), and its own asks
    shutil, imported for that, for the terminal's width each time; this one asks once."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24) -> None:
        super().__init__(prog, indent_increment, max_help_position, width=_columns() - 2)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


@functools.cache
def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size gives it: $COLUMNS, else the terminal, else 80."""
    try:
        return max(int(os.environ.get("COLUMNS", "")), 1)
    except ValueError:
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def add_index_options(p: argparse.ArgumentParser) -> None:
    """Where packages come from, as uv and pip users give it: for every command that resolves."""
    p.add_argument("--index-url", metavar="URL", help="the package index instead of PyPI")
    p.add_argument(
        "--extra-index-url", metavar="URL", action="append", default=[], help="one more index (repeatable)"
    )
    p.add_argument(
        "--find-links",
        "-f",
        metavar="DIR_OR_URL",
        action="append",
        default=[],
        help="a folder or page of wheels to use as well (repeatable)",
    )
    p.add_argument("--no-index", action="store_true", help="no index at all: only --find-links and the cache")


def add_examples(parser: argparse.ArgumentParser, words: str = "") -> None:
    """Give `parser` and every subcommand below it the examples of EXAMPLES as their help's end."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                key = f"{words} {name}".strip()
                if key in EXAMPLES and not sub.epilog:
                    sub.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[key])
                sub.formatter_class = HelpFormatter
                add_examples(sub, key)


def again(args: argparse.Namespace, command: str) -> str:
    """`comfylock COMMAND` with the options that chose the ComfyUI, target and lock of this run."""
    words = ["comfylock"]
    for flag, value in (("--comfyui", "comfyui"), ("--python", "python"), ("--lock", "lock")):
        given = getattr(args, value, None)
        if given:
            words += [flag, _quote(str(given))]
    return " ".join([*words, command])


def _quote(word: str) -> str:
    return word if word and all(c.isalnum() or c in "/._-~:\\" for c in word) else repr(word)


def interrupted(args: argparse.Namespace) -> str:
    """What to tell a user who pressed Ctrl-C: the one command that finishes or undoes the work."""
    command = getattr(args, "command", None)
    if command in ("sync", "rollback"):
        try:
            from comfylock.cli.out import context
            from comfylock.environment import history

            user_dir = context(args).ws.user_dir
            mark = history.pending(user_dir)
            earlier = [n for n, _ in history._ids(user_dir) if mark and n < mark.entry]
        except Exception:  # the hint must never hide the interruption itself
            mark, earlier = None, []
        if mark is None:
            return "comfylock: interrupted before the environment was changed"
        finish = again(args, "sync")
        if command == "rollback":
            # The entry the rollback was going to: the one asked for, else the newest before its own.
            goal = args.to or (earlier[-1] if earlier else None)
            finish = again(args, f"rollback --to {goal}" if goal else "rollback")
        undo = again(args, f"rollback --to {mark.entry}")
        return f"comfylock: interrupted: run `{finish}` to finish or `{undo}` to undo"
    if command in ("compile", "add", "remove", "import-snapshot"):
        return f"comfylock: interrupted: nothing was written; run `{again(args, command)}` again"
    return "comfylock: interrupted"


def quiet_closed_pipe() -> int:
    """The reader of our output went away (`comfylock compile | head -1`): end as quietly as `cat`,
    with stdout pointed at nothing so Python's last flush at exit does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a writer killed by a closed pipe
