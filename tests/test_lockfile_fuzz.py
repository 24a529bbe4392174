"""Fuzzing the parsers that read text comfylock did not write (hypothesis): they return a value or
raise comfylock's own one-line error, never anything else; what comfylock writes reads back the same.
COMFYLOCK_FUZZ_EXAMPLES raises the example count (soak runs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from comfylock._exceptions import ComfylockError, InputError, LockFileError
from comfylock._redact import redact, restore, strip
from comfylock.collect.gather import parse_requirements_file
from comfylock.environment import history
from comfylock.environment.sync import plan
from comfylock.lockfile.lock import Lock, Pin, Request, format_lock, parse_lock, require_intact

EXAMPLES = int(os.environ.get("COMFYLOCK_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces real and hostile files are made of, so generated text reaches deep into the parsers.
FRAGMENTS = [
    "numpy", "numpy==1.26.4", "torch>=2", "Pillow[extra]", "a.b_c-d", "pkg @ https://h/p.whl", "  ",
    "; python_version < '3.12'", " # comment", "#", "\\", "-r ", "-c ", "-e ", "--index-url ", "-i",
    "--extra-index-url=", "--find-links", "-f", "--trusted-host", "--pre", "--no-index", "--hash=sha256:ab",
    "https://user:tok@host/simple", "file:///etc/passwd", "../", "./x", "C:\\x", "/abs", "req.txt",
    "requirements.txt", "$(touch pwned)", "`id`", "|", "&&", "'", '"', "\t", "\r", "\x00", "\x0c", "\u2028",
    "\ufeff", "é", "[", "]", "(", ")", "@", "==", "===", "~=", "!=", "*", ",", "egg=", "#egg=x",
    "# comfylock-lock: 1", "# body-sha256: 00", "# requested by n (f:1): t", "# needed by a, b", "\n",
]  # fmt: skip
fragment_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=30).map("".join)
NAMES = st.from_regex(r"[a-z][a-z0-9]{0,6}(-[a-z0-9]{1,4})?", fullmatch=True)
VERSIONS = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)
ANY_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
# Node names are folder names (never empty), files are paths inside them and texts are stripped lines;
# the provenance comment is prose for `why`, so only what real folders look like must read back.
NODE_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9 ._()\[\]-]{0,24}", fullmatch=True)
FILES = st.from_regex(r"[A-Za-z0-9_.-]{1,12}(/[A-Za-z0-9_.-]{1,12})?", fullmatch=True)


@FUZZ
@given(st.one_of(fragment_text, st.text(max_size=300)))
@example("# comfylock-lock: 1\n\n--index-url\n")
@example("\ufeffnumpy==1\n")
def test_parse_lock_returns_or_raises_lock_file_error(text: str) -> None:
    try:
        lock = parse_lock(text, "fuzz.lock")
    except LockFileError as e:
        assert "\n" not in str(e) and str(e).startswith("fuzz.lock")
        return
    for pin in lock.pins:
        assert pin.version is not None or "@" in pin.spec  # every pin exact, or a URL
    try:
        require_intact(lock, "fuzz.lock")
    except LockFileError as e:
        assert "\n" not in str(e)


@st.composite
def locks(draw: st.DrawFn) -> Lock:
    names = draw(st.lists(NAMES, unique=True, max_size=8))
    pins = []
    for name in names:
        spec = f"{name}=={draw(VERSIONS)}"
        requests = draw(
            st.lists(
                st.builds(Request, NODE_NAMES, FILES, st.integers(1, 10_000), ANY_TEXT.map(str.strip)),
                max_size=3,
            )
        )
        needed = tuple(draw(st.lists(st.sampled_from(names), max_size=3))) if names else ()
        pins.append(Pin(name, spec, tuple(requests), needed))
    url = draw(
        st.sampled_from(["https://pypi.org/simple", "https://u:s3cret@host.example/simple", "/wheels"])
    )
    options = tuple(
        draw(st.lists(st.sampled_from([f"--extra-index-url {url}", f"--find-links {url}"]), max_size=2))
    )
    meta = draw(st.dictionaries(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), ANY_TEXT, max_size=4))
    warnings = tuple(draw(st.lists(ANY_TEXT, max_size=3)))
    return Lock(
        pins=tuple(sorted(pins, key=lambda p: p.name)),
        options=options,
        meta=meta,
        lists={"warning": warnings},
    )


@FUZZ
@given(locks())
def test_written_lock_reads_back_the_same_pins_and_holds_no_secret(lock: Lock) -> None:
    text = format_lock(lock)
    back = parse_lock(text)
    require_intact(back, "x.lock")
    assert [(p.name, p.spec) for p in back.pins] == [(p.name, p.spec) for p in lock.pins]
    assert [p.needed_by for p in back.pins] == [p.needed_by for p in lock.pins]
    assert [len(p.requested_by) for p in back.pins] == [len(p.requested_by) for p in lock.pins]
    assert back.options == tuple(strip(o) for o in lock.options)
    assert "s3cret" not in text
    assert format_lock(back) == text  # a lock read and written again is byte-identical


@FUZZ
@given(locks(), st.data())
def test_any_edit_of_a_lock_is_refused_or_harmless(lock: Lock, data: st.DataObject) -> None:
    text = format_lock(lock)
    i = data.draw(st.integers(0, len(text)))
    edit = data.draw(st.sampled_from(["insert", "delete", "truncate"]))
    new = {
        "insert": text[:i] + data.draw(st.sampled_from(FRAGMENTS)) + text[i:],
        "delete": text[:i] + text[i + 1 :],
        "truncate": text[:i],
    }[edit]
    try:
        edited = parse_lock(new, "x.lock")
        require_intact(edited, "x.lock")
    except LockFileError:
        return
    # Accepted: the edit did not touch what sync acts on.
    assert [(p.name, p.spec) for p in edited.pins] == [(p.name, p.spec) for p in lock.pins]
    assert edited.options == parse_lock(text).options


@FUZZ
@given(
    st.one_of(fragment_text.map(str.encode), st.binary(max_size=400)), st.sampled_from(["utf-8", "utf-16"])
)
def test_requirement_file_parser_returns_or_raises_input_error(data: bytes, codec: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Node"
        folder.mkdir()
        (folder / "other.txt").write_text("numpy\n-r requirements.txt\n")
        path = folder / "requirements.txt"
        try:
            data = data.decode("utf-8").encode(codec) if codec != "utf-8" else data
        except UnicodeDecodeError:
            pass
        path.write_bytes(data)
        try:
            reqs, options, files, bad = parse_requirements_file(path, node="Node", folder=folder)
        except InputError as e:
            assert "\n" not in str(e) and "Node" in str(e) or "requirements.txt" in str(e)
            return
        assert not options  # nothing allowed: any index option must have been refused
        for r in reqs:
            assert r.source.path.parent == folder and r.source.line >= 1
            assert r.requirement.url is None or not r.requirement.url.startswith("file:")


@FUZZ
@given(
    st.sampled_from(["https", "http", "git+https"]),
    st.from_regex(r"[A-Za-z0-9_.~-]{1,12}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_.~%!$&*+=:-]{0,16}", fullmatch=True),
    st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9_./@-]{0,20}", fullmatch=True),
    st.text(max_size=12),
)
def test_credentials_never_survive_redaction(
    scheme: str, user: str, password: str, host: str, path: str, around: str
) -> None:
    url = f"{scheme}://{user}{':' + password if password else ''}@{host}/{path}"
    assert strip(url) == f"{scheme}://{host}/{path}"
    assert redact(url) == f"{scheme}://****@{host}/{path}"
    assert strip(strip(url)) == strip(url) and redact(redact(url)) == redact(url)
    assert restore(strip(url), ["https://other.example/simple", url]) == url
    text = f"{around} {url} {around}"
    assert f"{user}:{password}@" not in strip(text) and f"{user}:{password}@" not in redact(text)


@FUZZ
@given(st.binary(max_size=200))
def test_a_damaged_pending_marker_still_says_a_sync_is_owed(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        user = Path(tmp)
        (user / "history").mkdir()
        (user / "history" / "pending.json").write_bytes(data)
        mark = history.pending(user)
        assert mark is not None and all(isinstance(n, str) for n in mark.packages)


@FUZZ
@given(
    locks(), st.dictionaries(NAMES, VERSIONS | st.just("1.0+cu124") | ANY_TEXT, max_size=8), st.lists(NAMES)
)
def test_sync_plan_never_crashes_and_lands_on_the_lock(lock: Lock, installed: dict, unfinished: list) -> None:
    try:
        p = plan(lock, installed, unfinished=unfinished)
    except ComfylockError:
        raise AssertionError("plan() refused a lock comfylock wrote") from None
    after = dict(installed)
    for change in p.changes:
        if change.new is None:
            after.pop(change.name)
        else:
            after[change.name] = change.new
    assert set(after) - set(p.kept) == {pin.name for pin in lock.pins}
    assert set(p.reinstall) <= {pin.name for pin in lock.pins}
