"""Where packages come from: the index options the user gives (command line, config.toml, uv's own
variables), as uv's arguments and as lock lines. A value type; imports nothing of comfylock's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IndexOptions:
    """Where packages come from. Only the user (command line, config) sets these, never a node."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def args(self) -> list[str]:
        """The options as command-line arguments: what the fingerprint records. uv itself gets them
        through its environment (run_uv's `index`), so no credential is ever in its argv."""
        out: list[str] = ["--no-index"] if self.no_index else []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for link in self.find_links:
            out += ["--find-links", link]
        return out

    def lines(self) -> list[str]:
        """The same options as lines of a requirements file, so `pip install -r LOCK` uses them too."""
        out = ["--no-index"] if self.no_index else []
        if self.index_url:
            out.append(f"--index-url {self.index_url}")
        out += [f"--extra-index-url {u}" for u in self.extra_index_urls]
        out += [f"--find-links {link}" for link in self.find_links]
        return out

    @classmethod
    def from_lines(cls, lines: Sequence[str]) -> IndexOptions:
        index_url, extra, links, no_index = None, [], [], False
        for line in lines:
            opt, _, value = line.replace("=", " ", 1).partition(" ")
            value = value.strip()
            if opt == "--no-index":
                no_index = True
            elif opt == "--index-url":
                index_url = value
            elif opt == "--extra-index-url":
                extra.append(value)
            elif opt == "--find-links":
                links.append(value)
        return cls(index_url, tuple(extra), tuple(links), no_index)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> IndexOptions:
        """uv's own variables, so the lock records where packages really came from."""
        index_url = environ.get("UV_DEFAULT_INDEX") or environ.get("UV_INDEX_URL") or None
        # UV_INDEX items may be "name=url"; a lock line must be what pip accepts: the bare URL.
        items = environ.get("UV_INDEX", "").split()
        named = [i.partition("=")[2] if "=" in i.split("://")[0] else i for i in items]
        extra = [*named, *environ.get("UV_EXTRA_INDEX_URL", "").split()]
        links = environ.get("UV_FIND_LINKS", "").replace(",", " ").split()
        no_index = environ.get("UV_NO_INDEX", "").lower() in ("1", "true", "yes")
        return cls(index_url, tuple(extra), tuple(links), no_index).anchored(Path.cwd())

    def __bool__(self) -> bool:
        return bool(self.index_url or self.extra_index_urls or self.find_links or self.no_index)

    def anchored(self, base: Path) -> IndexOptions:
        """Relative --find-links folders made absolute against `base` (the folder they were given in):
        uv runs in a temp folder, and a lock synced elsewhere must still find them."""
        links = tuple(
            link if "://" in link or Path(link).is_absolute() else str((base / link).absolute())
            for link in self.find_links
        )
        return IndexOptions(self.index_url, self.extra_index_urls, links, self.no_index)

    def plus(self, extra_index_urls: Sequence[str]) -> IndexOptions:
        """Add policy index URLs; a local folder (no scheme) becomes a --find-links."""
        urls = [u for u in extra_index_urls if "://" in u and u not in self.extra_index_urls]
        dirs = [u for u in extra_index_urls if "://" not in u and u not in self.find_links]
        return IndexOptions(
            self.index_url, (*self.extra_index_urls, *urls), (*self.find_links, *dirs), self.no_index
        )
