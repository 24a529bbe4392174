"""What every command of the CLI shares: where it prints (`Out`), the api.Context its arguments
name, the index options given on its command line, and how a path is shown. A leaf: cli.main and the
area modules (cli.inspect, cli.policy, cli.export, cli.render) import it, it imports none of them.
`comfylock --version` imports it, so what else it needs is imported inside the functions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from comfylock.api import Context
    from comfylock.resolve.index import IndexOptions


class Out:
    """Where commands print: plain lines (respecting --quiet/--verbose) or one JSON document."""

    def __init__(self, quiet: bool, verbose: bool, as_json: bool = False) -> None:
        self.quiet, self.verbose, self.as_json = quiet or as_json, verbose, as_json

    def json(self, command: str, data: dict[str, Any]) -> None:
        """Print the versioned JSON report of `command` (only under --json)."""
        if self.as_json:
            import json

            from comfylock._redact import redact_text

            text = json.dumps({"schema": f"comfylock.{command}/1", **data}, indent=2, sort_keys=True)
            print(redact_text(text))

    def __call__(self, text: str = "", *, detail: bool = False) -> None:
        if not self.quiet and (self.verbose or not detail):
            from comfylock._redact import redact_text

            print(redact_text(text))


def context(args: argparse.Namespace) -> Context:
    """The api.Context for the ComfyUI and target the arguments name (read once per run)."""
    from comfylock import api

    return api.Context.open(args.comfyui, python=args.python, lock_file=args.lock)


def where(args: argparse.Namespace) -> dict[str, str | None]:
    """The ComfyUI, target and lock the arguments name, for the api commands that read a lock alone."""
    return {"comfyui": args.comfyui, "python": args.python, "lock_file": args.lock}


def index_given(args: argparse.Namespace) -> IndexOptions | None:
    """The index options given on the command line (api.given_index: anchored at this folder)."""
    from comfylock.api import given_index

    return given_index(args.index_url, args.extra_index_url, args.find_links, args.no_index)


def display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
