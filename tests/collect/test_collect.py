"""Stage 2 (collect): every quirk of real node requirement files, on tmp_path trees and the corpus."""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfylock._exceptions import InputError
from comfylock.collect.gather import (
    CORE,
    USER,
    NodeSettings,
    collect,
    parse_pyproject,
    parse_requirements_file,
)
from comfylock.workspace.layout import Node, Workspace

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)  # no newline translation
    return path


def workspace(root: Path) -> Workspace:
    folder = root / "custom_nodes"
    found = sorted(folder.iterdir(), key=lambda p: (p.name.lower(), p.name)) if folder.is_dir() else []
    return Workspace(root, tuple(Node(p.name, p) for p in found if p.is_dir()), Path(sys.executable))


def parse(tmp_path: Path, content: str | bytes, **kwargs):  # type: ignore[no-untyped-def]
    folder = tmp_path / "N"
    path = write(folder / "requirements.txt", content)
    return parse_requirements_file(path, node="N", folder=folder, **kwargs)


def names_and_lines(tmp_path: Path, content: str | bytes) -> list[tuple[str, int]]:
    reqs, _, _, _ = parse(tmp_path, content)
    return [(r.name, r.source.line) for r in reqs]


# --- plain lines -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("# main\r\ngguf>=0.13.0\r\n# optional\r\nsentencepiece\r\n", [("gguf", 2), ("sentencepiece", 4)]),
        ("opencv-python \ntransformers  \t\n", [("opencv-python", 1), ("transformers", 2)]),
        ("\n\n  \nnumpy\n\n", [("numpy", 4)]),
        ("einshape", [("einshape", 1)]),  # no trailing newline
        ("", []),
        ("\n", []),
        ("numpy  # pinned later\n#torch\n   # indented comment\n", [("numpy", 1)]),
        ("a\rb\r", [("a", 1), ("b", 2)]),  # old Mac line ends
    ],
    ids=["crlf-comments", "trailing-space", "blank-lines", "no-newline", "empty", "newline-only",
         "comments", "bare-cr"],
)
def test_plain_lines(tmp_path: Path, content: str, expected: list[tuple[str, int]]) -> None:
    assert names_and_lines(tmp_path, content) == expected


def test_text_is_the_stripped_logical_line(tmp_path: Path) -> None:
    reqs, _, _, _ = parse(tmp_path, "  accelerate >= 1.2.1   # comment\r\n")
    assert reqs[0].text == "accelerate >= 1.2.1"
    assert str(reqs[0].requirement.specifier) == ">=1.2.1"


def test_hash_inside_url_is_not_a_comment(tmp_path: Path) -> None:
    reqs, _, _, _ = parse(tmp_path, "pkg @ git+https://github.com/o/r.git@v1#egg=pkg\n")
    assert reqs[0].requirement.url == "git+https://github.com/o/r.git@v1#egg=pkg"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("foo>=1,\\\n<2\nbar\n", [("foo", 1, ">=1,<2"), ("bar", 3, "")]),
        ("foo \\\n  >=1 \\\n  ; python_version >= '3'\n", [("foo", 1, ">=1")]),
        ("foo \\\n# comment\nbar\n", [("foo", 1, ""), ("bar", 3, "")]),
        ("# comment \\\nfoo\n", [("foo", 2, "")]),
        ("foo\\", [("foo", 1, "")]),  # continuation at end of file
    ],
    ids=["spec", "marker", "comment-ends-it", "comment-does-not-continue", "eof"],
)
def test_line_continuations(tmp_path: Path, content: str, expected: list[tuple[str, int, str]]) -> None:
    reqs, _, _, _ = parse(tmp_path, content)
    got = [(r.name, r.source.line, ",".join(sorted(str(s) for s in r.requirement.specifier))) for r in reqs]
    assert got == [(n, line, ",".join(sorted(spec.split(",")))) if spec else (n, line, "")
                   for n, line, spec in expected]


@pytest.mark.parametrize(
    ("line", "name", "spec", "marker", "extras"),
    [
        ("onnxruntime-gpu; sys_platform != 'darwin' and platform_machine == 'x86_64'",
         "onnxruntime-gpu", "", 'sys_platform != "darwin" and platform_machine == "x86_64"', set()),
        ("transformers[timm]>=4.50.0", "transformers", ">=4.50.0", None, {"timm"}),
        ("trimesh[easy]", "trimesh", "", None, {"easy"}),
        ("ninja~=1.11.1.4", "ninja", "~=1.11.1.4", None, set()),
        ("transformers>=4.39.0,!=4.50.*", "transformers", "!=4.50.*,>=4.39.0", None, set()),
        ("accelerate >= 1.2.1", "accelerate", ">=1.2.1", None, set()),
        ("numpy<=1.26.4", "numpy", "<=1.26.4", None, set()),
    ],
)
def test_specifiers_markers_extras(
    tmp_path: Path, line: str, name: str, spec: str, marker: str | None, extras: set[str]
) -> None:
    reqs, _, _, _ = parse(tmp_path, line + "\n")
    req = reqs[0].requirement
    assert (reqs[0].name, str(req.specifier), req.extras) == (name, spec, extras)
    assert (str(req.marker) if req.marker else None) == marker


@pytest.mark.parametrize(("written", "name"), [("color_matcher", "color-matcher"), ("PyYAML", "pyyaml"),
                                                ("Foo.Bar__baz", "foo-bar-baz"), ("GitPython", "gitpython")])
def test_names_are_canonicalized(tmp_path: Path, written: str, name: str) -> None:
    reqs, _, _, _ = parse(tmp_path, written)
    assert reqs[0].name == name and reqs[0].requirement.name == written


def test_duplicates_are_kept_with_their_lines(tmp_path: Path) -> None:
    assert names_and_lines(tmp_path, "yapf\nnumpy\nyapf\n") == [("yapf", 1), ("numpy", 2), ("yapf", 3)]


# --- includes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["-r sub/base.txt", "--requirement sub/base.txt",
                                  "--requirement=sub/base.txt", "-rsub/base.txt", "-r 'sub/base.txt'"])
def test_requirement_include(tmp_path: Path, form: str) -> None:
    write(tmp_path / "N" / "sub" / "base.txt", "numpy\n-r more.txt\n")  # relative to the including file
    write(tmp_path / "N" / "sub" / "more.txt", "scipy\n")
    reqs, _, files, _ = parse(tmp_path, f"torch\n{form}\npillow\n")
    assert [(r.name, r.source.path.name, r.source.line) for r in reqs] == [
        ("torch", "requirements.txt", 1), ("numpy", "base.txt", 1), ("scipy", "more.txt", 1),
        ("pillow", "requirements.txt", 3)]
    assert not any(r.constraint for r in reqs)
    assert [f.name for f in files] == ["requirements.txt", "base.txt", "more.txt"]


@pytest.mark.parametrize("form", ["-c constraints.txt", "--constraint constraints.txt",
                                  "--constraint=constraints.txt"])
def test_constraint_include(tmp_path: Path, form: str) -> None:
    write(tmp_path / "N" / "constraints.txt", "numpy<2\n")
    reqs, _, files, _ = parse(tmp_path, f"numpy\n{form}\n")
    assert [(r.name, r.constraint) for r in reqs] == [("numpy", False), ("numpy", True)]
    assert len(files) == 2


def test_requirement_include_inside_constraints_file_adds_requirements_as_pip_does(tmp_path: Path) -> None:
    write(tmp_path / "N" / "c.txt", "numpy<2\n-r r.txt\n")
    write(tmp_path / "N" / "r.txt", "scipy\n")
    reqs, _, _, _ = parse(tmp_path, "-c c.txt\n")
    assert [(r.name, r.constraint) for r in reqs] == [("numpy", True), ("scipy", False)]


def test_include_read_once_when_included_twice(tmp_path: Path) -> None:
    write(tmp_path / "N" / "a.txt", "-r common.txt\n")
    write(tmp_path / "N" / "b.txt", "-r common.txt\n")
    write(tmp_path / "N" / "common.txt", "numpy\n")
    reqs, _, files, _ = parse(tmp_path, "-r a.txt\n-r b.txt\n")
    assert [r.name for r in reqs] == ["numpy"]
    assert [f.name for f in files] == ["requirements.txt", "a.txt", "common.txt", "b.txt"]


@pytest.mark.parametrize("target", ["../outside.txt", "sub/../../outside.txt", "ABSOLUTE", "link.txt"])
def test_include_must_stay_inside_node_folder(tmp_path: Path, target: str) -> None:
    outside = write(tmp_path / "outside.txt", "evil\n")
    (tmp_path / "N").mkdir()
    if target == "link.txt":
        (tmp_path / "N" / "link.txt").symlink_to(outside)
    target = str(outside) if target == "ABSOLUTE" else target
    with pytest.raises(InputError, match="outside the node folder") as err:
        parse(tmp_path, f"numpy\n-r {target}\n")
    assert "requirements.txt:2:" in str(err.value) and "N:" in str(err.value)


def test_include_inside_via_absolute_path_is_fine(tmp_path: Path) -> None:
    base = write(tmp_path / "N" / "base.txt", "numpy\n")
    reqs, _, _, _ = parse(tmp_path, f"-r {base}\n")
    assert [r.name for r in reqs] == ["numpy"]


@pytest.mark.parametrize("other", ["-r requirements.txt", "-r b.txt", "-c requirements.txt"])
def test_include_cycle(tmp_path: Path, other: str) -> None:
    write(tmp_path / "N" / "a.txt", f"numpy\n{other}\n")
    write(tmp_path / "N" / "b.txt", "-r a.txt\n")
    with pytest.raises(InputError, match="cycle") as err:
        parse(tmp_path, "-r a.txt\n")
    assert ":2:" in str(err.value) or "b.txt:1:" in str(err.value)


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cycle") as err:
        parse(tmp_path, "numpy\n\n-r requirements.txt\n")
    assert "requirements.txt:3:" in str(err.value)


def test_missing_include(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as err:
        parse(tmp_path, "numpy\n-r nope.txt\n")
    assert "requirements.txt:2:" in str(err.value)


@pytest.mark.parametrize("line", ["-r https://example.com/req.txt", "-r", "-c"])
def test_bad_includes(tmp_path: Path, line: str) -> None:
    with pytest.raises(InputError) as err:
        parse(tmp_path, line)
    assert "requirements.txt:1:" in str(err.value)


def test_deep_include_chain_is_refused_cleanly(tmp_path: Path) -> None:
    for i in range(40):
        write(tmp_path / "N" / f"{i}.txt", f"-r {i + 1}.txt\n")
    write(tmp_path / "N" / "40.txt", "numpy\n")
    with pytest.raises(InputError, match="nested"):
        parse(tmp_path, "-r 0.txt\n")


# --- URLs and VCS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "name", "url"),
    [
        ("sam2 @ git+https://github.com/facebookresearch/sam2.git@v1.0",
         "sam2", "git+https://github.com/facebookresearch/sam2.git@v1.0"),
        ("git+https://github.com/o/Repo.git@ref#egg=my_pkg", "my-pkg", "git+https://github.com/o/Repo.git@ref"),
        ("git+https://github.com/o/Repo.git@ref#egg=pkg&subdirectory=python", "pkg",
         "git+https://github.com/o/Repo.git@ref#subdirectory=python"),
        ("git+https://github.com/o/Segment-Anything.git@v1.2", "segment-anything",
         "git+https://github.com/o/Segment-Anything.git@v1.2"),
        ("git+https://github.com/o/clip.git", "clip", "git+https://github.com/o/clip.git"),
        ("git+ssh://git@github.com/o/thing.git", "thing", "git+ssh://git@github.com/o/thing.git"),
        ("https://files.example.com/pkgs/foo_bar-1.2.3.tar.gz", "foo-bar",
         "https://files.example.com/pkgs/foo_bar-1.2.3.tar.gz"),
        ("https://x.org/whl/torch-2.1.0%2Bcu121-cp311-cp311-linux_x86_64.whl", "torch",
         "https://x.org/whl/torch-2.1.0%2Bcu121-cp311-cp311-linux_x86_64.whl"),
        ("https://github.com/o/insightface/archive/v0.7.3.zip#egg=insightface", "insightface",
         "https://github.com/o/insightface/archive/v0.7.3.zip"),
    ],
)
def test_url_requirements(tmp_path: Path, line: str, name: str, url: str) -> None:
    reqs, _, _, _ = parse(tmp_path, line + "\n")
    assert (reqs[0].name, reqs[0].requirement.url, reqs[0].text) == (name, url, line)


def test_unnamed_url_with_marker_and_extras(tmp_path: Path) -> None:
    reqs, _, _, _ = parse(tmp_path, "git+https://github.com/o/r.git#egg=pkg[gpu] ; sys_platform == 'linux'\n")
    req = reqs[0].requirement
    assert (req.name, req.extras, str(req.marker)) == ("pkg", {"gpu"}, 'sys_platform == "linux"')


@pytest.mark.parametrize("line", ["https://example.com/", "git+https://github.com/o/-.git", "https://[::1/x"])
def test_unnamed_url_without_a_name_is_invalid(tmp_path: Path, line: str) -> None:
    with pytest.raises(InputError, match="not a valid requirement") as err:
        parse(tmp_path, line)
    assert "requirements.txt:1:" in str(err.value)


# --- refused options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "option", "value"),
    [
        ("-i https://mirror.example/simple", "--index-url", "https://mirror.example/simple"),
        ("-ihttps://mirror.example/simple", "--index-url", "https://mirror.example/simple"),
        ("--index-url https://mirror.example/simple", "--index-url", "https://mirror.example/simple"),
        ("--index-url=https://mirror.example/simple", "--index-url", "https://mirror.example/simple"),
        ("--extra-index-url https://download.pytorch.org/whl/cu121", "--extra-index-url",
         "https://download.pytorch.org/whl/cu121"),
        ("--extra-index-url=https://x/simple  # mirror", "--extra-index-url", "https://x/simple"),
        ("-f https://example.com/wheels.html", "--find-links", "https://example.com/wheels.html"),
        ("--find-links=./wheels", "--find-links", "./wheels"),
        ("--trusted-host example.com", "--trusted-host", "example.com"),
        ("--pre", "--pre", None),
        ("--no-index", "--no-index", None),
    ],
)
def test_index_options_refused_unless_allowed(
    tmp_path: Path, line: str, option: str, value: str | None
) -> None:
    with pytest.raises(InputError, match="refused") as err:
        parse(tmp_path, f"numpy\n\n{line}\n")
    text = str(err.value)
    assert text.startswith(str(tmp_path / "N" / "requirements.txt") + ":3: N: option " + option)
    assert f'[nodes."N"] allow-options = ["{option}"]' in text and "--skip-node N" in text
    assert "\n" not in text
    _, options, _, _ = parse(tmp_path, f"numpy\n\n{line}\n", allow_options=frozenset({option}))
    assert [(o.option, o.source.line) for o in options] == [(option, 3)]
    assert options[0].value == value


def test_allow_options_accepts_short_names_and_other_options_stay_refused(tmp_path: Path) -> None:
    _, options, _, _ = parse(tmp_path, "-i https://a/simple\n", allow_options={"-i"})
    assert options[0].option == "--index-url"
    with pytest.raises(InputError, match="--extra-index-url"):
        parse(tmp_path, "--extra-index-url https://b\n", allow_options={"--index-url"})


@pytest.mark.parametrize(
    "line",
    ["-e .", "-e git+https://github.com/o/r.git#egg=r", "--editable=./sub", "./foo", "../x", "/abs/pkg", ".",
     "file:///tmp/pkg", "FILE:///tmp/pkg", "foo @ file:///tmp/foo", "foo @ ./bar",
     "dist/foo-1.0-py3-none-any.whl", "foo-1.0.tar.gz", "C:\\wheels\\foo.whl", "~/src/pkg"],
)
def test_editable_and_local_paths_always_refused(tmp_path: Path, line: str) -> None:
    for keep_going in (False, True):
        with pytest.raises(InputError, match="not allowed") as err:
            parse(tmp_path, f"numpy\n{line}\n", keep_going=keep_going)
        assert "requirements.txt:2:" in str(err.value)


@pytest.mark.parametrize(
    "line",
    ["--no-binary :all:", "--only-binary=:all:", "--prefer-binary", "--use-feature=fast-deps", "-U numpy",
     "--upgrade", "foo --global-option=--x", "foo==1 --config-settings k=v", "--hash=sha256:abc",
     "--index-url x numpy", "-", "--pre=yes"],
)
def test_unknown_options_refused(tmp_path: Path, line: str) -> None:
    with pytest.raises(InputError) as err:
        parse(tmp_path, f"# c\n{line}\n", keep_going=True)
    assert "requirements.txt:2:" in str(err.value)


def test_unknown_option_hints_to_skip_the_node(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--skip-node N"):
        parse(tmp_path, "--no-binary :all:\n")


def test_hash_options_are_dropped(tmp_path: Path) -> None:
    content = "foo==1.0 \\\n    --hash=sha256:aaa \\\n    --hash sha256:bbb\nbar==2 --hash=sha256:ccc\n"
    reqs, _, _, _ = parse(tmp_path, content)
    assert [(str(r.requirement), r.source.line) for r in reqs] == [("foo==1.0", 1), ("bar==2", 4)]
    assert "--hash" in reqs[0].text


# --- invalid lines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["foo/bar", "foo;rm x", "foo$(id)", "foo|bar", "foo && bar", "foo`id`", "a\\b", "foo>=", "numpy==1.0 2.0",
     "pkg[", "foo @", "==1.0", "foo; os_name = 'nt'"],
)
def test_invalid_requirement_names_file_line_and_text(tmp_path: Path, line: str) -> None:
    with pytest.raises(InputError, match="not a valid requirement") as err:
        parse(tmp_path, f"numpy\n# x\n{line}\n")
    text = str(err.value)
    assert "requirements.txt:3:" in text and "N: " in text and repr(line) in text and "\n" not in text


def test_shell_line_with_dash_is_refused_as_an_option(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="requirements.txt:1: N: option --requirement"):
        parse(tmp_path, "foo;rm -rf /", keep_going=True)


def test_invalid_line_text_is_truncated(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        parse(tmp_path, "x" * 50 + " " + "y" * 200)
    assert "yyy...'" in str(err.value) and "y" * 150 not in str(err.value)


def test_keep_going_records_bad_lines(tmp_path: Path) -> None:
    reqs, _, _, bad = parse(tmp_path, "numpy\nfoo/bar\nscipy\nhttps://example.com/\n", keep_going=True)
    assert [r.name for r in reqs] == ["numpy", "scipy"]
    assert [(b.source.line, b.text) for b in bad] == [(2, "foo/bar"), (4, "https://example.com/")]
    assert all(b.reason for b in bad)


# --- encodings and sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"\xef\xbb\xbfnumpy\r\nscipy\r\n", "numpy\nscipy\n".encode("utf-16"),
     "numpy\nscipy\n".encode("utf-16-be"), "\ufeffnumpy\nscipy\n".encode("utf-16-le"),
     "# café\nnumpy\nscipy".encode()],
    ids=["utf8-bom", "utf16", "utf16-be-no-bom-is-nul", "utf16-le-bom", "utf8-comment"],
)
def test_encodings(tmp_path: Path, data: bytes) -> None:
    if data.startswith(b"\x00"):  # UTF-16 without a BOM is not something we guess at
        with pytest.raises(InputError, match="not a text file"):
            parse(tmp_path, data)
        return
    assert [r.name for r in parse(tmp_path, data)[0]] == ["numpy", "scipy"]
    assert names_and_lines(tmp_path, data)[0][1] in (1, 2)


@pytest.mark.parametrize(("data", "message"), [
    (b"numpy\n\xe9t\xe9\n", "not UTF-8"), (b"numpy\x00\x01\x02", "not a text file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "not a text file"), (b"\xff\xfen\x00u\x00\x00", "not UTF-16"),
])
def test_not_text(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        parse(tmp_path, data)
    assert "requirements.txt" in str(err.value)


def test_huge_file_refused_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "N" / "requirements.txt"
    path.parent.mkdir()
    with path.open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: costs nothing on disk
    monkeypatch.setattr(Path, "open", lambda *a, **k: pytest.fail("read a 50 MB file"))
    with pytest.raises(InputError, match="1 MiB") as err:
        parse_requirements_file(path, node="N", folder=path.parent)
    assert "requirements.txt" in str(err.value)


def test_file_just_under_the_limit_is_read(tmp_path: Path) -> None:
    assert parse(tmp_path, "numpy\n" + "#" * (1024 * 1024 - 10) + "\n")[0][0].name == "numpy"


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="no Unix sockets here")
def test_socket_is_not_a_regular_file(tmp_path: Path) -> None:
    folder = tmp_path / "N"
    folder.mkdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(folder / "requirements.txt"))
    except OSError as e:  # a path too long for a socket address on some systems
        pytest.skip(str(e))
    try:
        with pytest.raises(InputError, match="not a regular file"):
            parse_requirements_file(folder / "requirements.txt", node="N", folder=folder)
    finally:
        server.close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_or_directory_is_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "N"
    folder.mkdir()
    os.mkfifo(folder / "requirements.txt")
    with pytest.raises(InputError, match="not a regular file"):
        parse_requirements_file(folder / "requirements.txt", node="N", folder=folder)
    (folder / "d").mkdir()
    with pytest.raises(InputError, match="not a regular file"):
        parse_requirements_file(folder / "d", node="N", folder=folder)


# --- pyproject ----------------------------------------------------------------------------------------


PYPROJECT = """\
[build-system]
requires = ["setuptools"]

[project]
name = "Comfy-Thing"
dependencies = [
    "accelerate >= 1.2.1",
    'numpy<2',
    "yapf",
    "yapf",
    "onnxruntime-gpu; sys_platform != 'darwin'",
]
"""


def test_pyproject_static_dependencies_with_lines(tmp_path: Path) -> None:
    reqs = parse_pyproject(write(tmp_path / "pyproject.toml", PYPROJECT), node="N")
    assert reqs is not None
    assert [(r.name, r.source.line, r.source.node) for r in reqs] == [
        ("accelerate", 7, "N"), ("numpy", 8, "N"), ("yapf", 9, "N"), ("yapf", 10, "N"),
        ("onnxruntime-gpu", 11, "N")]


def test_pyproject_line_falls_back_to_dependencies_key(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\n\ndependencies = ["nu\\u006dpy"]\n'
    reqs = parse_pyproject(write(tmp_path / "pyproject.toml", text), node="N")
    assert reqs is not None and [(r.name, r.source.line) for r in reqs] == [("numpy", 4)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[project]\nname = "x"\ndependencies = []\n', []),
        ('[project]\nname = "x"\n', None),
        ('[project]\nname = "x"\ndynamic = ["dependencies"]\n', None),
        ('[tool.comfy]\nPublisherId = "x"\n', None),
        ("", None),
    ],
    ids=["empty", "absent", "dynamic", "no-project", "empty-file"],
)
def test_pyproject_without_static_dependencies(tmp_path: Path, text: str, expected: list[str] | None) -> None:
    assert parse_pyproject(write(tmp_path / "pyproject.toml", text), node="N") == expected


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ('[project]\nname = "x"\ndependencies = [\n', 3, "invalid TOML"),
        ('[project]\nname = \n', 2, "invalid TOML"),
        ('[project]\ndependencies = "numpy"\n', None, "list of strings"),
        ('[project]\ndependencies = [1]\n', None, "list of strings"),
        ('project = 3\n', None, "not a table"),
        ('[project]\ndependencies = ["numpy", "foo/bar"]\n', 2, "not a valid requirement"),
        ('[project]\ndependencies = ["x @ file:///tmp/x"]\n', 2, "not allowed"),
    ],
)
def test_pyproject_errors(tmp_path: Path, text: str, line: int | None, match: str) -> None:
    with pytest.raises(InputError, match=match) as err:
        parse_pyproject(write(tmp_path / "pyproject.toml", text), node="N")
    assert err.value.line == line and "pyproject.toml" in str(err.value)


# --- collect ------------------------------------------------------------------------------------------


def tree(tmp_path: Path, files: dict[str, str | bytes]) -> Workspace:
    root = tmp_path / "ComfyUI"
    (root / "custom_nodes").mkdir(parents=True)
    for rel, content in files.items():
        if rel.endswith("/"):
            (root / rel).mkdir(parents=True)
        else:
            write(root / rel, content)
    return workspace(root)


DEPS = '[project]\nname = "x"\ndependencies = ["from-pyproject"]\n'


def test_collect_choices(tmp_path: Path) -> None:
    ws = tree(tmp_path, {
        "requirements.txt": "torch\n",
        "custom_nodes/both/requirements.txt": "from-req\n",
        "custom_nodes/both/pyproject.toml": DEPS,
        "custom_nodes/req-only/requirements.txt": "from-req\n",
        "custom_nodes/py-only/pyproject.toml": DEPS,
        "custom_nodes/dynamic/pyproject.toml": '[project]\nname = "x"\ndynamic = ["dependencies"]\n',
        "custom_nodes/absent/pyproject.toml": '[project]\nname = "x"\n',
        "custom_nodes/variants/requirements-no-cupy.txt": "a\n",
        "custom_nodes/variants/pyproject.toml": '[project]\nname = "x"\n',
        "custom_nodes/empty/": "",
    })
    got = {i.node: i for i in collect(ws).inputs}
    assert list(got) == [CORE, "absent", "both", "dynamic", "empty", "py-only", "req-only", "variants"]
    assert got["both"].chosen == "requirements.txt" and "wins over pyproject.toml" in got["both"].why
    assert [r.name for r in got["both"].requirements] == ["from-req"]
    assert [f.name for f in got["both"].files] == ["requirements.txt"]
    assert (got["req-only"].chosen, got["req-only"].why) == ("requirements.txt", "requirements.txt")
    assert got["py-only"].chosen == "pyproject.toml"
    assert got["py-only"].why == "pyproject.toml [project].dependencies"
    assert [r.name for r in got["py-only"].requirements] == ["from-pyproject"]
    assert got["dynamic"].chosen == "pyproject.toml" and "dynamic" in got["dynamic"].why
    assert got["absent"].requirements == () and "no [project].dependencies" in got["absent"].why
    assert "requirements-no-cupy.txt not read" in got["variants"].why and got["variants"].requirements == ()
    assert (got["empty"].chosen, got["empty"].why) == (None, "no requirements file")
    assert got["empty"].requirements == got["empty"].files == ()
    assert got["empty"].path == ws.root / "custom_nodes" / "empty"
    assert all("\n" not in i.why for i in got.values())


def test_collect_settings_override_the_choice(tmp_path: Path) -> None:
    ws = tree(tmp_path, {
        "custom_nodes/A/requirements.txt": "from-req\n",
        "custom_nodes/A/pyproject.toml": DEPS,
        "custom_nodes/B/requirements-no-cupy.txt": "torch\n-r sub/more.txt\n",
        "custom_nodes/B/sub/more.txt": "kornia\n",
        "custom_nodes/C/requirements.txt": "from-req\n",
        "custom_nodes/D/requirements.txt": "--extra-index-url https://download.pytorch.org/whl/cu121\nx\n",
    })
    settings = {"A": NodeSettings(source="pyproject.toml"),
                "B": NodeSettings(source="requirements-no-cupy.txt"),
                "C": NodeSettings(source="none"),
                "D": NodeSettings(allow_options=frozenset({"--extra-index-url"}))}
    got = {i.node: i for i in collect(ws, settings=settings).inputs}
    assert (got["A"].chosen, got["A"].why) == ("pyproject.toml", "pyproject.toml (config)")
    assert [r.name for r in got["A"].requirements] == ["from-pyproject"]
    assert got["B"].chosen == "requirements-no-cupy.txt"
    assert got["B"].why == "requirements-no-cupy.txt (config)"
    assert [r.name for r in got["B"].requirements] == ["torch", "kornia"]
    assert [f.name for f in got["B"].files] == ["requirements-no-cupy.txt", "more.txt"]
    assert (got["C"].chosen, got["C"].why, got["C"].requirements, got["C"].files) == (
        None, "none (config)", (), ())
    assert [(o.option, o.value) for o in got["D"].index_options] == [
        ("--extra-index-url", "https://download.pytorch.org/whl/cu121")]
    with pytest.raises(InputError, match="refused"):
        collect(ws)


@pytest.mark.parametrize(("source", "match"), [("../B/requirements.txt", "not a file inside"),
                                               ("/etc/passwd", "not a file inside"),
                                               ("missing.txt", "does not exist")])
def test_collect_bad_configured_source(tmp_path: Path, source: str, match: str) -> None:
    ws = tree(tmp_path, {"custom_nodes/A/requirements.txt": "a\n", "custom_nodes/B/requirements.txt": "b\n"})
    with pytest.raises(InputError, match=match) as err:
        collect(ws, settings={"A": NodeSettings(source=source)})
    assert source in str(err.value) and str(err.value).startswith("custom_nodes/A")


def test_collect_skip_nodes(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"custom_nodes/bad/requirements.txt": "--index-url https://evil\n",
                         "custom_nodes/good/requirements.txt": "numpy\n"})
    with pytest.raises(InputError, match="--skip-node bad"):
        collect(ws)
    assert [i.node for i in collect(ws, skip_nodes={"bad"}).inputs] == [CORE, "good"]


def test_collect_core_merges_pyproject_and_user_comes_last(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"requirements.txt": "torch\nnumpy>=1.25\n",
                         "pyproject.toml": '[project]\nname = "ComfyUI"\ndependencies = ["av>=14"]\n',
                         "custom_nodes/A/requirements.txt": "a\n",
                         "user/comfylock/requirements.txt": "# written by comfylock\nrich>=13\n"})
    user_file = ws.user_dir / "requirements.txt"
    inputs = collect(ws, user_requirements=user_file).inputs
    core, user = inputs[0], inputs[-1]
    assert (core.node, core.path, core.chosen) == (CORE, ws.root, "requirements.txt")
    assert core.why == "requirements.txt + pyproject.toml [project].dependencies"
    assert [(r.name, r.source.path.name, r.source.line) for r in core.requirements] == [
        ("torch", "requirements.txt", 1), ("numpy", "requirements.txt", 2), ("av", "pyproject.toml", 3)]
    assert [f.name for f in core.files] == ["requirements.txt", "pyproject.toml"]
    assert (user.node, user.path, user.chosen) == (USER, ws.user_dir, "requirements.txt")
    assert [(r.name, r.source.node, r.source.line) for r in user.requirements] == [("rich", USER, 2)]
    assert [r.name for r in collect(ws, user_requirements=user_file).requirements()] == [
        "torch", "numpy", "av", "a", "rich"]


def test_collect_core_pyproject_only_and_missing_user_file(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"pyproject.toml": '[project]\nname = "ComfyUI"\ndependencies = ["av"]\n'})
    inputs = collect(ws, user_requirements=ws.user_dir / "requirements.txt").inputs
    assert (inputs[0].chosen, [r.name for r in inputs[0].requirements]) == ("pyproject.toml", ["av"])
    assert (inputs[-1].node, inputs[-1].chosen, inputs[-1].requirements) == (USER, None, ())
    assert [i.node for i in collect(ws).inputs] == [CORE]  # no user path given: no user input


def test_collect_errors_are_relative_to_root_and_name_the_node(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"custom_nodes/X/requirements.txt": "numpy\n\nfoo/bar\n"})
    with pytest.raises(InputError) as err:
        collect(ws)
    expected = "custom_nodes/X/requirements.txt:3: X: not a valid requirement 'foo/bar':"
    assert str(err.value).startswith(expected)
    ws = tree(tmp_path / "2", {"requirements.txt": "--pre\n"})
    with pytest.raises(InputError) as err:
        collect(ws)
    assert str(err.value).startswith("requirements.txt:1: core: option --pre")
    assert "--skip-node" not in str(err.value)  # core cannot be skipped


def test_collect_error_in_an_include_is_shown_relative_to_root(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"custom_nodes/X/requirements.txt": "-r sub/base.txt\n",
                         "custom_nodes/X/sub/base.txt": "numpy\n-e .\n"})
    with pytest.raises(InputError) as err:
        collect(ws)
    assert str(err.value).startswith("custom_nodes/X/sub/base.txt:2: X: editable requirement '.'")


def test_collect_lists_every_file_read(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"custom_nodes/X/requirements.txt": "-r sub/base.txt\n-c c.txt\n",
                         "custom_nodes/X/sub/base.txt": "numpy\n", "custom_nodes/X/c.txt": "numpy<2\n"})
    node = collect(ws).inputs[1]
    assert [f.relative_to(ws.root).as_posix() for f in node.files] == [
        "custom_nodes/X/requirements.txt", "custom_nodes/X/sub/base.txt", "custom_nodes/X/c.txt"]
    assert all(f.is_absolute() for f in node.files)


def test_collect_keep_going(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"custom_nodes/X/requirements.txt": "numpy\nfoo/bar\n",
                         "custom_nodes/Y/pyproject.toml": '[project]\ndependencies = ["a b c", "scipy"]\n'})
    got = {i.node: i for i in collect(ws, keep_going=True).inputs}
    assert [b.text for b in got["X"].bad_lines] == ["foo/bar"]
    assert [b.text for b in got["Y"].bad_lines] == ["a b c"]
    assert [r.name for r in got["Y"].requirements] == ["scipy"]


def test_symlinks_outside_root_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "requirements.txt", "evil\n")
    ws = tree(tmp_path, {"custom_nodes/ok/requirements.txt": "numpy\n"})
    (ws.root / "custom_nodes" / "linked").symlink_to(outside)
    with pytest.raises(InputError, match="node folder is a symlink pointing outside") as err:
        collect(workspace(ws.root))
    assert "--skip-node linked" in str(err.value)
    (ws.root / "custom_nodes" / "linked").unlink()
    (ws.root / "custom_nodes" / "filelink").mkdir()
    (ws.root / "custom_nodes" / "filelink" / "requirements.txt").symlink_to(outside / "requirements.txt")
    with pytest.raises(InputError, match="requirements.txt is a symlink pointing outside"):
        collect(workspace(ws.root))


def test_symlinks_inside_root_are_fine(tmp_path: Path) -> None:
    ws = tree(tmp_path, {"shared/real-node/requirements.txt": "numpy\n", "shared/reqs.txt": "scipy\n",
                         "custom_nodes/B/": ""})
    (ws.root / "custom_nodes" / "A").symlink_to(ws.root / "shared" / "real-node")
    (ws.root / "custom_nodes" / "B" / "requirements.txt").symlink_to(ws.root / "shared" / "reqs.txt")
    got = {i.node: [r.name for r in i.requirements] for i in collect(workspace(ws.root)).inputs}
    assert got == {CORE: [], "A": ["numpy"], "B": ["scipy"]}


def test_collect_is_linear_on_a_big_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linear in the number of nodes, counted in file-system calls (its speed is `make bench` case 8's):
    a handful of calls per node, the same for 100 nodes as for 1000."""
    import collections
    import os

    calls: collections.Counter[str] = collections.Counter()
    for name in ("lstat", "stat", "open", "scandir", "listdir"):
        real = getattr(os, name)

        def counted(*a: object, _real: object = real, _name: str = name, **k: object) -> object:
            calls[_name] += 1
            return _real(*a, **k)  # type: ignore[operator]

        monkeypatch.setattr(os, name, counted)
    per_node = {}
    for n_nodes in (100, 1000):
        files: dict[str, str | bytes] = {}
        for n in range(n_nodes):
            lines = [f"package-{(n * 7 + i) % 300}>={i}.{n % 13}" for i in range(9)] + [f"node-only-{n}"]
            files[f"custom_nodes/node{n:04}/requirements.txt"] = "\n".join(lines) + "\n"
        ws = tree(tmp_path / str(n_nodes), files)
        calls.clear()
        result = collect(ws)
        assert len(result.requirements()) == 10 * n_nodes
        per_node[n_nodes] = sum(calls.values()) / n_nodes
    assert per_node[1000] <= 6, per_node
    assert per_node[1000] <= per_node[100] * 1.05, per_node


# --- the corpus of real node files --------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.skipif(not (CORPUS / "ComfyUI").is_dir(), reason="no shared corpus on this machine")
def test_corpus() -> None:
    root = CORPUS / "ComfyUI"
    ws = workspace(root)
    inputs = {i.node: i for i in collect(ws).inputs}
    assert all(not i.bad_lines for i in inputs.values())
    with (CORPUS / "MANIFEST.tsv").open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    with_req = [Path(r["corpus_dir"]).name for r in rows
                if "requirements.txt" in r["files_taken"].split() and r["corpus_dir"] != "ComfyUI"]
    assert len(with_req) > 20
    for name in with_req:
        if (root / "custom_nodes" / name).is_dir():
            assert inputs[name].chosen == "requirements.txt", name
    frame = inputs["ComfyUI-Frame-Interpolation"]
    assert frame.chosen == "pyproject.toml" and frame.requirements == ()
    assert "requirements-no-cupy.txt" in frame.why
    assert len([r for i in inputs.values() for r in i.requirements]) > 150

    def reqs(node: str) -> dict[str, str]:
        return {r.name: str(r.requirement) for r in inputs[node].requirements}

    assert [(r.name, r.source.line) for r in inputs["ComfyUI-GGUF"].requirements] == [
        ("gguf", 2), ("sentencepiece", 4), ("protobuf", 5)]  # CRLF and comments
    assert reqs("ComfyUI-InstantID")["opencv-python"] == "opencv-python"  # trailing whitespace
    for node in ("ComfyUI_InstantID", "PuLID_ComfyUI"):  # markers
        marked = {r.name: r.requirement.marker for r in inputs[node].requirements}
        assert str(marked["onnxruntime-gpu"]) == 'sys_platform != "darwin" and platform_machine == "x86_64"'
        assert marked["onnxruntime"] is None
    assert reqs("ComfyUI-Florence2")["transformers"] == "transformers!=4.50.*,>=4.39.0"
    assert reqs("ComfyUI-LTXVideo")["transformers"] == "transformers[timm]>=4.50.0"
    assert reqs("ComfyUI-HunyuanVideoWrapper")["accelerate"] == "accelerate>=1.2.1"
    assert inputs["rgthree-comfy"].requirements == () and inputs["rgthree-comfy"].chosen == "requirements.txt"
    assert [r.name for r in inputs["comfyui_controlnet_aux"].requirements].count("yapf") == 2
    assert "color-matcher" in reqs("ComfyUI_FaceAnalysis")  # underscore spelling, no trailing newline
    assert reqs(CORE)["pydantic"] == "pydantic~=2.0"


# --- fuzz ---------------------------------------------------------------------------------------------


LINES = st.sampled_from(["numpy", "-r x.txt", "-c x.txt", "--pre", "foo @ git+https://a/b.git", "#", "\\",
                         "a[b]>=1; python_version>'3'", "https://x/y.whl", "-e .", "\r\n", "\t", "'", "\x00"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.lists(st.one_of(LINES, st.text(max_size=20)), max_size=12).map(
                          lambda xs: "\n".join(xs).encode())),
       keep_going=st.booleans())
def test_fuzz_only_input_errors(tmp_path: Path, data: bytes, keep_going: bool) -> None:
    write(tmp_path / "N" / "x.txt", data)
    try:
        parse(tmp_path, data, keep_going=keep_going)
    except InputError as e:
        assert "\n" not in str(e)
