"""Commands of the export area (registered by cli.build_parser)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add this area's subcommands; each sets `handler=fn(args, out) -> exit code`."""
