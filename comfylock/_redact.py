"""Credentials in URLs (`https://user:token@host/simple`) never reach the screen, a lock or the history.

Messages mask them (`https://****@host/simple`: the reader sees that credentials were there); files drop
them (`https://host/simple`: a lock stays shareable, and uv finds the credentials again in netrc, its
keyring support or the user's config, see `restore`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "****"
# scheme://userinfo@ — userinfo runs up to the last '@' before the host (a password may hold '@').
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>(?:[^\s/?#@'\"<>]*@)+)")


def _secret(m: re.Match[str]) -> bool:
    # `ssh://git@host` names an account, not a secret, and ssh needs it; over HTTP a bare user name is
    # usually a token (`https://ghp_...@github.com`), so it is treated as one.
    return ":" in m["userinfo"] or not m["scheme"].lower().rstrip(":/").endswith("ssh")


def redact(url: str) -> str:
    """`url` with its user:password part masked, for messages."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@" if _secret(m) else m[0], url)


def strip(url: str) -> str:
    """`url` with its user:password part removed, for files comfylock writes."""
    return _USERINFO.sub(lambda m: m["scheme"] if _secret(m) else m[0], url)


# C0/C1 controls but newline and tab, and the bidirectional overrides: a node folder named
# "\x1b]0;...\x07" or "\u202e..." must not retitle, clear or reorder the user's terminal.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def redact_text(text: str) -> str:
    """Free text (uv's stderr, an error message, a node's name) as shown on a terminal: credentials in
    URLs masked and control characters escaped (`\\x1b`)."""
    return _CONTROL.sub(_escape, redact(text))


def strip_text(text: str) -> str:
    """Every URL in free text (a lock's body) with credentials removed."""
    return strip(text)


def has_credentials(url: str) -> bool:
    return _USERINFO.search(url) is not None


def restore(url: str, known: Iterable[str]) -> str:
    """The credentialed form of `url` among `known` (the user's config, command line, environment).

    A lock holds index URLs without credentials; when sync reads them back, the user's own settings
    give the credentials again. Only an exact match of the rest of the URL is restored.
    """
    if has_credentials(url):
        return url
    for candidate in known:
        if has_credentials(candidate) and strip(candidate) == url:
            return candidate
    return url
