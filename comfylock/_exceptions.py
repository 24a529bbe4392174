"""Typed errors. Each renders its own one-line message, so the CLI only catches, prints and exits.

Exit codes: 2 for bad input (the user must change a file or an argument), 1 for an operation that
could not be carried out (a resolution conflict, uv failing), as `uv` and `pip` do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfylock.explain.terms import Attribution


class ComfylockError(Exception):
    """Base of every error comfylock reports to the user."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" ({self.hint})"
        # One line, always: node files may smuggle newlines into the text we quote.
        return " ".join(text.splitlines())


class InputError(ComfylockError):
    """A requirement file, config file or argument that comfylock cannot use."""


class WorkspaceError(ComfylockError):
    """No ComfyUI folder or no usable target interpreter."""


class PolicyError(InputError):
    """A pip-policy.json that does not validate."""


class LockFileError(InputError):
    """A lock file that is missing, corrupt or edited into something comfylock cannot trust."""


class BusyError(ComfylockError):
    """Another comfylock process holds the workspace lock."""

    exit_code = 1


class WriteError(ComfylockError):
    """A file comfylock must write could not be written (disk full, no permission); the old one stays."""

    exit_code = 1


class UvError(ComfylockError):
    """uv ran and failed for a reason other than an unsatisfiable resolution. `details`: uv's own
    standard error, whole (printed under --verbose and in --json); the message already carries its
    cause chain on one line."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
        details: str = "",
    ) -> None:
        super().__init__(message, path=path, line=line, hint=hint)
        self.details = details


class ResolutionError(ComfylockError):
    """The requirements cannot hold together; carries uv's explanation and who asked for what."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        explanation: str,
        packages: frozenset[str] = frozenset(),
        hint: str | None = None,
        attribution: Attribution | None = None,
        involved: Sequence[str] = (),
    ) -> None:
        super().__init__(message, hint=hint)
        self.explanation = explanation
        self.packages = packages
        self.attribution = attribution  # which inputs conflict (explain.attribute), when it was worked out
        self.involved = tuple(involved)  # that attribution as lines, printed before uv's explanation
