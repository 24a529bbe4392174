"""The environment uv runs in: only settings comfylock knows, never a config file, never a secret in argv.

uv reads `uv.toml` and `[tool.uv]` from the folder it runs in and every parent, the user's and the
system's config, and dozens of `UV_*` variables. Any of them could decide a lock behind comfylock's
back (a `/tmp/uv.toml` with `find-links`, `UV_CONSTRAINT`) while the fingerprint says "up to date".
So uv always runs with `UV_NO_CONFIG=1` and with an allow-list of `UV_*` variables that change how uv
works (cache, timeouts, TLS, credentials), never what it resolves. uv's index variables are read by
`IndexOptions.from_env` (so they are written into the lock and the fingerprint) and handed back to uv
here; every other `UV_*` variable is dropped, with one warning line each.

Index URLs travel in the child's environment, not its argument list: `/proc/PID/cmdline` and `ps` show
every local user the arguments of every process, credentials included.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfylock.resolve.index import IndexOptions

# How uv works, not what it resolves: kept as the user set them.
KEPT = frozenset(
    {
        "UV_CACHE_DIR",
        "UV_NO_CACHE",
        "UV_OFFLINE",
        "UV_HTTP_TIMEOUT",
        "UV_REQUEST_TIMEOUT",
        "UV_HTTP_RETRIES",
        "UV_CONCURRENT_DOWNLOADS",
        "UV_CONCURRENT_BUILDS",
        "UV_CONCURRENT_INSTALLS",
        "UV_NATIVE_TLS",
        "UV_INSECURE_HOST",
        "UV_KEYRING_PROVIDER",
        "UV_LINK_MODE",
        "UV_COMPILE_BYTECODE",
        "UV_NO_PROGRESS",
        "UV_PYTHON_DOWNLOADS",
        "UV_PYTHON_INSTALL_DIR",
        "UV_LOG_CONTEXT",
    }
)
# Credentials of a named index (`UV_INDEX="name=url"`): they say who you are, not where packages come from.
_NAMED_CREDENTIAL = re.compile(r"UV_INDEX_[A-Z0-9_]+_(?:USERNAME|PASSWORD)")
# Read into IndexOptions (recorded in the lock and the fingerprint), then given back by child_env.
CONSUMED = frozenset(
    {"UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL", "UV_INDEX", "UV_FIND_LINKS", "UV_NO_INDEX"}
)
# Set by comfylock itself for every run.
OWN = frozenset({"UV_NO_CONFIG"})


def _kept(name: str) -> bool:
    return name in KEPT or bool(_NAMED_CREDENTIAL.fullmatch(name))


def ignored(environ: Mapping[str, str]) -> list[str]:
    """One warning per `UV_*` variable of the user's that uv will not see (it could change a lock)."""
    return [
        f"{name} is ignored: comfylock decides uv's settings (index settings go in "
        "user/comfylock/config.toml or on the command line)"
        for name in sorted(environ)
        if name.startswith("UV_") and not _kept(name) and name not in CONSUMED | OWN and environ[name] != ""
    ]


def index_names(environ: Mapping[str, str]) -> dict[str, str]:
    """url -> name of the user's named indexes (`UV_INDEX="name=url"`), so their credentials apply."""
    out = {}
    for item in environ.get("UV_INDEX", "").split():
        name, eq, url = item.partition("=")
        if eq and "://" not in name:
            out[url] = name
    return out


def child_env(
    environ: Mapping[str, str], index: IndexOptions | None = None
) -> tuple[dict[str, str], list[str]]:
    """(environment for uv, arguments that must still go on its command line).

    Everything but `UV_*` passes through (PATH, proxies, certificates, HOME for netrc). With `index`,
    its URLs are put in uv's own variables; a find-links folder whose name holds a comma (uv splits
    UV_FIND_LINKS on commas) goes on the command line, being a local path and no secret.
    """
    env = {k: v for k, v in environ.items() if not k.startswith("UV_") or _kept(k)}
    env["UV_NO_CONFIG"] = "1"
    env.setdefault("NO_COLOR", "1")  # uv's colours would end up in the messages comfylock quotes
    args: list[str] = []
    if index is not None:
        if index.no_index:  # an argument: UV_NO_INDEX does not outrank the index variables as it does
            args.append("--no-index")
        if index.index_url:
            env["UV_DEFAULT_INDEX"] = index.index_url
        if index.extra_index_urls:
            names = index_names(environ)
            env["UV_INDEX"] = " ".join(f"{names[u]}={u}" if u in names else u for u in index.extra_index_urls)
        links = [link for link in index.find_links if "," not in link]
        if links:
            env["UV_FIND_LINKS"] = ",".join(links)
        for link in index.find_links:
            if "," in link:
                args += ["--find-links", link]
    return env, args


@contextlib.contextmanager
def scratch() -> Iterator[str]:
    """A new private folder (0700) for uv to run in, removed afterwards. Made as mkdtemp makes one
    (a random name, created or failed atomically) but without tempfile and shutil, whose imports cost
    a rollback 4 ms; they are used only where there is no private base or something is left over."""
    base = private_base()
    if base is None:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="comfylock-") as tmp:
            yield tmp
        return
    for _ in range(100):
        path = os.path.join(base, f"comfylock-{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free scratch folder name in {base}")
    try:
        yield path
    finally:
        _remove(path)


def _remove(path: str) -> None:
    try:
        with os.scandir(path) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    raise OSError  # uv left a folder: shutil's rmtree below
                os.unlink(e.path)
        os.rmdir(path)
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


@functools.cache
def private_base() -> str | None:
    """Where uv's scratch folders go: the user's cache folder when no folder above it is writable by
    everyone, else the system's temp folder (None). uv, told UV_NO_CONFIG, reads no uv.toml planted
    above either; this keeps node copies out of a shared /tmp where the user has a place of their own."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA", "")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not base or not os.path.isabs(base):
        return None
    folder = Path(base, "comfylock", "tmp")
    try:
        for parent in [folder, *folder.parents]:
            st = os.stat(parent) if parent.exists() else None
            if st is not None and os.name != "nt" and st.st_mode & stat.S_IWOTH:
                return None
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder)


class Here:
    """A folder given by the caller, as a context manager like a TemporaryDirectory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc: object) -> None:
        return None
