"""What a requirement line may ask uv to fetch: checked on the parsed requirement, before uv runs."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from packaging.requirements import Requirement

ARCHIVES = (".whl", ".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tar", ".zip")

# Only what a registry-less stranger's line can safely name: a web archive or a remote git repository.
# ftp, file, hg, svn, git+file... reach local files or hosts by other means, and a local sdist runs its
# build backend.
_WEB_SCHEMES = frozenset({"http", "https"})
_VCS_SCHEMES = frozenset({"git+https", "git+ssh"})


def untrusted(req: Requirement) -> str | None:
    """Why uv must not see this requirement, or None. uv expands ${VAR} in requirement files (URLs
    included), so a '$' outside a quoted marker string is refused outright (write a literal one as
    %24), and a '${' inside one too: no environment variable may leave this machine in a URL."""
    plain = "".join((req.name, *sorted(req.extras), str(req.specifier), req.url or ""))
    if "$" in plain or (req.marker is not None and "${" in str(req.marker)):
        return "'$' is not allowed (uv would expand ${VAR} from your environment); write %24 for a '$'"
    if req.url is None:
        return None
    parts = urlsplit(req.url)
    scheme = parts.scheme.lower()
    if scheme not in _WEB_SCHEMES | _VCS_SCHEMES:
        return f"URL scheme {scheme}: is not allowed (only https://, http:// archives and git+https://, git+ssh://)"
    if not parts.hostname:
        return "URL names no host"
    if scheme in _WEB_SCHEMES and not unquote(parts.path).lower().endswith(ARCHIVES):
        return f"URL does not name an archive ({', '.join(ARCHIVES)})"
    return None
