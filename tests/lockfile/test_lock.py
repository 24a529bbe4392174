"""comfylock.lockfile.lock: the lock file's format, reading it back, writing it, refusing one that is
not what comfylock wrote, and the package-level diff of two locks. No uv: a lock is text."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfylock._exceptions import LockFileError
from comfylock.lockfile.lock import (
    Change,
    Lock,
    Pin,
    Request,
    diff,
    format_lock,
    parse_lock,
    pin_name,
    pin_versions,
    read_lock,
    require_intact,
    summarize,
    write_lock,
)

NUMPY = Pin(
    "numpy",
    "numpy==1.26.4",
    (Request("NodeA", "requirements.txt", 3, "numpy<2"), Request("core", "requirements.txt", 1, "numpy")),
    ("scipy",),
)
SCIPY = Pin("scipy", "scipy==1.14.0", (Request("NodeA", "requirements.txt", 4, "scipy"),))
LOCK = Lock((NUMPY, SCIPY), options=("--find-links /wheels",), meta={"fingerprint": "abc"})


def test_fast_pin_path_refuses_what_packaging_refuses() -> None:
    """`name==version` is read without packaging; a version packaging would refuse must still fail
    (non-ASCII digits match \\d), with the line named."""
    from comfylock.lockfile.lock import parse_lock

    for bad in ("numpy==１.２", "numpy==١.٢", "numpy==1.0*"):
        try:
            parse_lock(f"{bad}\n")
        except LockFileError as e:
            assert e.line == 1
        else:
            raise AssertionError(f"{bad!r} was read as a pin")
    lock = parse_lock("NumPy==1.26.4\ntorch==2.5.1+cu124\nfoo==1!2.0.post1.dev3\n")
    assert [(p.name, p.version) for p in lock.pins] == [
        ("foo", "1!2.0.post1.dev3"),
        ("numpy", "1.26.4"),
        ("torch", "2.5.1+cu124"),
    ]


def test_write_lock_writes_what_format_lock_says_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "comfylock.lock"
    text = write_lock(path, LOCK)
    assert path.read_text() == text == format_lock(LOCK)
    assert "numpy==1.26.4\n    # requested by NodeA (requirements.txt:3): numpy<2\n" in text
    assert "    # needed by scipy\n" in text
    back = read_lock(path)
    assert back.intact and back.pins == LOCK.pins and back.options == LOCK.options
    assert back.meta["fingerprint"] == "abc"
    require_intact(back, path)
    assert [p.name for p in tmp_path.iterdir()] == ["comfylock.lock"]  # no temp file left behind


def test_pins_are_written_sorted_whatever_order_they_come_in() -> None:
    shuffled = Lock((SCIPY, NUMPY), options=LOCK.options, meta=LOCK.meta)
    assert format_lock(shuffled) == format_lock(LOCK)


def test_read_lock_of_a_missing_or_non_utf8_file_is_a_lock_file_error(tmp_path: Path) -> None:
    with pytest.raises(LockFileError, match="no lock file") as missing:
        read_lock(tmp_path / "comfylock.lock")
    assert missing.value.hint == "run `comfylock compile` first"
    bad = tmp_path / "bad.lock"
    bad.write_bytes(b"numpy==1.26.4\n\xff\xfe==1\n")
    with pytest.raises(LockFileError, match="not UTF-8") as undecodable:
        read_lock(bad)
    assert undecodable.value.line == 2


def test_require_intact_refuses_an_edited_a_cut_short_and_an_empty_lock() -> None:
    text = format_lock(LOCK)
    edited = parse_lock(text.replace("numpy==1.26.4", "numpy==2.1.0"), "x.lock")
    with pytest.raises(LockFileError, match="do not match the lock's body-sha256") as e:
        require_intact(edited, "x.lock")
    assert e.value.line == edited.sha_line and text.split("\n")[e.value.line - 1].startswith("# body-sha256:")
    cut = parse_lock(text.split("# body-sha256:")[0], "x.lock")
    with pytest.raises(LockFileError, match="no body-sha256 line"):
        require_intact(cut, "x.lock")
    with pytest.raises(LockFileError, match="the lock is empty"):
        require_intact(parse_lock("", "x.lock"), "x.lock")
    plain = parse_lock("numpy==1.26.4\n")  # a requirements file written by hand: no header, no hash
    require_intact(plain, "x.lock")
    assert pin_versions(plain) == {"numpy": "1.26.4"}


def test_diff_and_summary_of_two_locks() -> None:
    url = "foo @ https://example.invalid/foo-1.0-py3-none-any.whl"
    old = Lock((NUMPY, SCIPY, Pin("tqdm", "tqdm==4.66.0"), Pin("foo", url)))
    new = Lock((Pin("numpy", "numpy==2.1.0"), Pin("pillow", "pillow==11.0.0"), Pin("tqdm", "tqdm==4.65.0"),
                Pin("foo", "foo==1.0")))  # fmt: skip
    changes = diff(pin_versions(old), pin_versions(new))
    assert [(c.name, c.kind) for c in changes] == [
        ("foo", "changed"),  # a URL pin has no version: the spec is compared
        ("numpy", "upgraded"),
        ("pillow", "added"),
        ("scipy", "removed"),
        ("tqdm", "downgraded"),
    ]
    assert summarize(changes) == "1 added, 1 removed, 1 upgraded, 1 downgraded, 1 changed"
    assert diff(pin_versions(old), pin_versions(old)) == [] and summarize([]) == "no changes"
    assert Change("a", "1.0", None).kind == "removed"


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("NumPy==1.26.4", "numpy"),
        ("Foo_Bar @ https://example.invalid/foo_bar-1.0-py3-none-any.whl", "foo-bar"),
        ("torch==2.5.1+cu124", "torch"),
        ("not a requirement!", None),
    ],
)
def test_pin_name_reads_freeze_lines(line: str, name: str | None) -> None:
    assert pin_name(line) == name
