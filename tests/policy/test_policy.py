"""comfylock.policy: loading, checking, merging and applying pip-policy.json files. No uv, no network."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import ONNX, OPENCVS
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.requirements import Requirement

from comfylock._exceptions import PolicyError
from comfylock.collect.gather import Req, Source
from comfylock.policy.apply import (
    BASE_POLICY,
    Facts,
    Policy,
    PolicyOutcome,
    SoftPin,
    apply,
    check_policy_files,
    check_policy_text,
    load_policy,
)


def R(text: str, node: str = "node", line: int = 1, *, constraint: bool = False) -> Req:
    return Req(
        Requirement(text),
        Source(node, Path(f"/comfy/custom_nodes/{node}/requirements.txt"), line),
        text,
        constraint,
    )


def F(
    installed: Mapping[str, str] | None = None,
    os: str = "linux",
    gpu: bool = False,
    comfyui: str | None = "0.3.10",
) -> Facts:
    return Facts(installed=dict(installed or {}), os=os, has_gpu=gpu, comfyui_version=comfyui)


def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc, indent=2))
    return path


def only(tmp_path: Path, doc: Any) -> Policy:
    """A policy made of this one document, without the shipped defaults."""
    return load_policy(None, [write(tmp_path, "policy.json", doc)], base=False)


def names(outcome: PolicyOutcome) -> list[str]:
    return [r.name for r in outcome.requirements if not r.constraint]


def kept(outcome: PolicyOutcome) -> set[str]:
    """Packages the resolution will be asked for: inputs minus what uv --excludes drops."""
    return set(names(outcome)) - set(outcome.excludes)


def first(section: str, **entry: Any) -> dict[str, Any]:
    return {section: [entry]}


# --- each action alone ---------------------------------------------------------------------------


def test_skip_excludes_and_names_requesters(tmp_path: Path) -> None:
    policy = only(tmp_path, {"foo": first("apply_first_match", type="skip", reason="broken")})
    reqs = [R("foo>=1", "a", 3), R("bar", "b"), R("foo", "c", 7)]
    out = apply(policy, reqs, F())
    assert out.excludes == ("foo",)
    assert names(out) == ["foo", "bar", "foo"]  # kept as inputs: uv --excludes drops them
    [action] = out.actions
    assert (action.package, action.kind, action.detail, action.reason) == ("foo", "skip", "foo", "broken")
    assert [s.node for s in action.requested_by] == ["a", "c"]
    assert action.requested_by[0].line == 3


def test_entry_for_a_package_nobody_asks_for_does_nothing(tmp_path: Path) -> None:
    policy = only(tmp_path, {"foo": first("apply_first_match", type="skip")})
    out = apply(policy, [R("bar")], F())
    assert out.excludes == () and out.actions == () and out.considered == ()


def test_constraint_reqs_do_not_trigger(tmp_path: Path) -> None:
    policy = only(tmp_path, {"foo": first("apply_first_match", type="skip")})
    out = apply(policy, [R("foo<2", constraint=True)], F())
    assert out.excludes == ()


def test_force_version_is_an_override_with_its_index(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "foo": first(
                "apply_first_match",
                type="force_version",
                version="1.2.3",
                extra_index_url="https://example.org/simple",
            )
        },
    )
    out = apply(policy, [R("foo>=2", "a")], F())
    assert out.overrides == ("foo==1.2.3",)
    assert out.extra_index_urls == ("https://example.org/simple",)
    assert out.excludes == ()
    assert names(out) == ["foo"]
    assert [(a.kind, a.detail) for a in out.actions] == [("force_version", "foo==1.2.3")]


@pytest.mark.parametrize(
    ("asked", "version", "expected"),
    [
        ('foo[x,y]>=1; sys_platform == "linux"', ">=2", 'bar[x,y]>=2; sys_platform == "linux"'),
        # No version in the entry: the original's specifier is kept (the families share version lines).
        ('foo[x,y]>=1; sys_platform == "linux"', None, 'bar[x,y]>=1; sys_platform == "linux"'),
        ("foo==1.0", None, "bar==1.0"),
        ("foo", "==3.1", "bar==3.1"),
    ],
)
def test_replace_keeps_extras_marker_and_source(
    tmp_path: Path, asked: str, version: str | None, expected: str
) -> None:
    entry: dict[str, Any] = {"type": "replace", "replacement": "bar"}
    if version:
        entry["version"] = version
    policy = only(tmp_path, {"foo": {"apply_first_match": [entry]}})
    req = R(asked, "nodeA", 4)
    out = apply(policy, [R("baz"), req], F())
    assert [r.name for r in out.requirements] == ["baz", "bar"]
    new = out.requirements[1]
    assert new.requirement == Requirement(expected)
    assert new.source == req.source
    assert new.text == asked and new.policy == "replace foo"  # quoted as the node wrote it
    assert out.excludes == ("foo",)
    assert out.actions[0].detail == f"foo -> bar{version or ''}"
    assert out.actions[0].requested_by == (req.source,)


def test_replace_keeps_constraint_lines_of_the_old_package(tmp_path: Path) -> None:
    policy = only(tmp_path, {"foo": first("apply_first_match", type="replace", replacement="bar")})
    out = apply(policy, [R("foo<3", constraint=True), R("foo")], F())
    assert [(r.name, r.constraint) for r in out.requirements] == [("foo", True), ("bar", False)]


def test_pin_dependencies_pins_installed_only(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "foo": first(
                "apply_all_matches", type="pin_dependencies", pinned_packages=["NumPy", "pandas", "scipy"]
            )
        },
    )
    out = apply(policy, [R("foo", "a")], F({"numpy": "1.26.4", "scipy": "1.11.0"}))
    assert out.pins == (SoftPin("numpy==1.26.4", "fail", "foo"), SoftPin("scipy==1.11.0", "fail", "foo"))
    assert out.constraints == ()
    assert [(a.kind, a.detail) for a in out.actions] == [("pin_dependencies", "numpy==1.26.4, scipy==1.11.0")]


def test_pin_of_nothing_installed_is_no_action(tmp_path: Path) -> None:
    policy = only(
        tmp_path, {"foo": first("apply_all_matches", type="pin_dependencies", pinned_packages=["x"])}
    )
    out = apply(policy, [R("foo")], F())
    assert out.pins == () and out.actions == ()


@pytest.mark.parametrize(
    ("given_value", "carried"),
    [(None, "fail"), ("fail", "fail"), ("retry_without_pin", "retry_without_pin"), ("log", "warn")],
)
def test_on_failure_values_are_carried(tmp_path: Path, given_value: str | None, carried: str) -> None:
    entry: dict[str, Any] = {"type": "pin_dependencies", "pinned_packages": ["numpy"]}
    if given_value is not None:
        entry["on_failure"] = given_value
    policy = only(tmp_path, {"foo": {"apply_all_matches": [entry]}})
    out = apply(policy, [R("foo")], F({"numpy": "2.0.0"}))
    assert out.pins == (SoftPin("numpy==2.0.0", carried, "foo"),)


def test_install_with_adds_requirements_with_requester_source_and_marker(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "foo": first(
                "apply_all_matches",
                type="install_with",
                additional_packages=["bar>=1", 'baz; python_version >= "3.8"'],
            )
        },
    )
    a, b = R('foo; sys_platform == "win32"', "a", 2), R("foo", "b", 5)
    out = apply(policy, [a, b], F())
    added = out.requirements[2:]
    assert [(r.name, r.source.node) for r in added] == [
        ("bar", "a"),
        ("bar", "b"),
        ("baz", "a"),
        ("baz", "b"),
    ]
    assert added[0].requirement.marker is not None and added[1].requirement.marker is None
    assert str(added[2].requirement.marker) == 'python_version >= "3.8" and sys_platform == "win32"'
    assert [(x.kind, x.detail) for x in out.actions] == [
        ("install_with", 'bar>=1, baz; python_version >= "3.8"')
    ]


@pytest.mark.parametrize(("allow", "blocks"), [(None, False), (True, False), (False, True)])
def test_warn_and_blocking(tmp_path: Path, allow: bool | None, blocks: bool) -> None:
    entry: dict[str, Any] = {"type": "warn", "message": "TensorFlow next to PyTorch may fight over CUDA"}
    if allow is not None:
        entry["allow_continue"] = allow
    policy = only(tmp_path, {"tensorflow": {"apply_all_matches": [entry]}})
    out = apply(policy, [R("tensorflow")], F())
    message = "tensorflow: TensorFlow next to PyTorch may fight over CUDA"
    assert out.warnings == (message,)
    assert out.blocking == ((message,) if blocks else ())
    assert out.actions[0].kind == "warn"


def test_uninstall_excludes_target_even_unrequested(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "some-package": {
                "uninstall": [
                    {
                        "condition": {"type": "installed", "package": "conflicting", "spec": ">=2.0"},
                        "target": "conflicting",
                    }
                ]
            },
            "banned": {"uninstall": [{"target": "banned", "reason": "CVE"}]},
        },
    )
    out = apply(policy, [R("numpy")], F({"conflicting": "2.1"}))
    assert out.excludes == ("banned", "conflicting")
    # Only the one that was there gets an Action: the other was never going to be in the lock.
    assert [(a.package, a.kind, a.detail, a.requested_by) for a in out.actions] == [
        ("some-package", "uninstall", "conflicting", ())
    ]
    assert apply(policy, [R("numpy")], F({"conflicting": "1.9"})).excludes == ("banned",)


def test_uninstalled_package_requested_directly_gets_no_other_actions(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {"foo": {"uninstall": [{"target": "foo"}], "apply_all_matches": [{"type": "warn", "message": "hi"}]}},
    )
    out = apply(policy, [R("foo")], F())
    assert out.excludes == ("foo",) and out.warnings == ()
    assert [a.kind for a in out.actions] == ["uninstall"]


def test_restore_overrides_and_adds_an_input(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "urllib3": {
                "restore": [
                    {
                        "condition": {"type": "installed", "spec": "!=1.26.15"},
                        "target": "urllib3",
                        "version": "1.26.15",
                        "extra_index_url": "https://mirror.example/simple",
                    }
                ]
            }
        },
    )
    out = apply(policy, [], F({"urllib3": "2.2.0"}))
    assert out.overrides == ("urllib3==1.26.15",)
    [added] = out.requirements
    assert added.text == "urllib3==1.26.15" and added.source.node == "policy"
    assert added.source.path.name == "policy.json" and added.source.line == 2
    assert out.extra_index_urls == ("https://mirror.example/simple",)
    assert [(a.kind, a.requested_by) for a in out.actions] == [("restore", ())]
    assert apply(policy, [], F({"urllib3": "1.26.15"})).overrides == ()


def test_restore_wins_over_force_version_and_drops_the_pin(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "six": {
                "apply_first_match": [
                    {
                        "condition": {"type": "platform", "os": "linux"},
                        "type": "force_version",
                        "version": "1.15.0",
                    }
                ]
            },
            "keeper": {
                "restore": [
                    {"condition": {"type": "platform", "os": "linux"}, "target": "six", "version": "1.16.0"}
                ]
            },
            "foo": first("apply_all_matches", type="pin_dependencies", pinned_packages=["six", "numpy"]),
        },
    )
    out = apply(policy, [R("six"), R("foo")], F({"six": "1.14.0", "numpy": "1.26.4"}))
    assert out.overrides == ("six==1.16.0",)
    assert out.warnings == ("keeper: restore of six==1.16.0 wins over six==1.15.0 (six's policy)",)
    assert [p.requirement for p in out.pins] == ["numpy==1.26.4"]  # the explicit version wins over a pin


# --- conditions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "facts", "holds"),
    [
        ({"type": "installed"}, F({"foo": "1.0"}), True),
        ({"type": "installed"}, F({"bar": "1.0"}), False),
        ({"type": "installed", "spec": "<1.0"}, F({"foo": "1.0"}), False),
        ({"type": "installed", "package": "Colorama", "spec": "<0.5"}, F({"colorama": "0.4.6"}), True),
        (
            {"type": "installed", "package": "torch", "spec": ">=2.0"},
            F({"torch": "2.6.0.dev20241112+cu124"}),
            True,
        ),
        ({"type": "installed", "package": "weird", "spec": ">=1"}, F({"weird": "not-a-version"}), False),
        ({"type": "platform", "os": "linux"}, F(os="linux"), True),
        ({"type": "platform", "os": "windows"}, F(os="linux"), False),
        ({"type": "platform", "os": "win32"}, F(os="windows"), True),
        ({"type": "platform", "os": "darwin"}, F(os="macos"), True),
        ({"type": "platform", "os": "macOS"}, F(os="darwin"), True),
        ({"type": "platform", "has_gpu": True}, F(gpu=True), True),
        ({"type": "platform", "has_gpu": True}, F(gpu=False), False),
        ({"type": "platform", "has_gpu": False}, F(gpu=False), True),
        ({"type": "platform", "os": "linux", "has_gpu": True}, F(os="windows", gpu=True), False),
        ({"type": "platform", "comfyui_version": ">=0.3"}, F(comfyui="0.3.10"), True),
        ({"type": "platform", "comfyui_version": "<0.3"}, F(comfyui="0.3.10"), False),
        ({"type": "platform", "comfyui_version": ">=0.3"}, F(comfyui=None), False),
        ({"type": "platform"}, F(), True),
    ],
)
def test_condition(tmp_path: Path, condition: dict[str, Any], facts: Facts, holds: bool) -> None:
    policy = only(tmp_path, {"foo": {"apply_first_match": [{"condition": condition, "type": "skip"}]}})
    assert (apply(policy, [R("foo")], facts).excludes == ("foo",)) is holds


def test_unknown_condition_type_in_a_hand_built_policy_is_an_error() -> None:
    policy = Policy(
        entries={"foo": {"apply_first_match": [{"type": "skip", "condition": {"type": "gpu"}}]}},
        origins={"foo": "mine.json"},
        files=("mine.json",),
    )
    with pytest.raises(PolicyError, match="unknown condition type 'gpu'"):
        apply(policy, [R("foo")], F())


def test_facts_normalize_os_and_names() -> None:
    facts = Facts({"Foo_Bar": "1"}, "Darwin", False, None)
    assert facts.os == "macos" and dict(facts.installed) == {"foo-bar": "1"}
    with pytest.raises(ValueError, match="unknown os"):
        F(os="solaris")


# --- first match vs all matches, combined ---------------------------------------------------------------


def test_first_match_takes_only_the_first_matching_entry(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "pkg": {
                "apply_first_match": [
                    {
                        "condition": {"type": "platform", "comfyui_version": "<1.0"},
                        "type": "force_version",
                        "version": "0.9",
                    },
                    {
                        "condition": {"type": "platform", "comfyui_version": "<2.0"},
                        "type": "force_version",
                        "version": "1.5",
                    },
                    {"type": "skip"},
                ]
            }
        },
    )
    assert apply(policy, [R("pkg")], F(comfyui="0.5")).overrides == ("pkg==0.9",)
    assert apply(policy, [R("pkg")], F(comfyui="1.5")).overrides == ("pkg==1.5",)
    late = apply(policy, [R("pkg")], F(comfyui="2.5"))
    assert late.overrides == () and late.excludes == ("pkg",)


def test_all_matches_applies_every_matching_entry_in_order(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "pkg": {
                "apply_first_match": [{"type": "force_version", "version": "2.0"}],
                "apply_all_matches": [
                    {"type": "warn", "message": "one"},
                    {
                        "condition": {"type": "platform", "os": "windows"},
                        "type": "warn",
                        "message": "not here",
                    },
                    {"type": "install_with", "additional_packages": ["helper"]},
                    {"type": "warn", "message": "two"},
                    {"type": "pin_dependencies", "pinned_packages": ["numpy"]},
                ],
            }
        },
    )
    out = apply(policy, [R("pkg")], F({"numpy": "1.0"}))
    assert out.warnings == ("pkg: one", "pkg: two")
    assert [a.kind for a in out.actions] == [
        "force_version",
        "pin_dependencies",
        "install_with",
        "warn",
        "warn",
    ]
    assert names(out) == ["pkg", "helper"]
    assert out.overrides == ("pkg==2.0",) and len(out.pins) == 1


def test_skipped_package_gets_no_all_matches(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "pkg": {
                "apply_first_match": [{"type": "skip"}],
                "apply_all_matches": [{"type": "warn", "message": "x"}],
            }
        },
    )
    out = apply(policy, [R("pkg")], F())
    assert out.warnings == () and [a.kind for a in out.actions] == ["skip"]


def test_replacement_target_gets_its_all_matches(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "old": first("apply_first_match", type="replace", replacement="new"),
            "new": {"apply_all_matches": [{"type": "warn", "message": "new is heavy"}]},
        },
    )
    out = apply(policy, [R("old", "a")], F())
    assert out.warnings == ("new: new is heavy",)
    assert [a.package for a in out.actions] == ["new", "old"]
    assert out.actions[0].requested_by[0].node == "a"
    assert out.considered == ("new", "old")


# --- merging, priority, comments, normalization ---------------------------------------------------------


def test_base_user_extra_merge_and_priority(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        "pip-policy.user.json",
        {
            "numpy": first("apply_first_match", type="force_version", version="1.26.4"),
            "scipy": first("apply_first_match", type="skip"),
        },
    )
    extra1 = write(
        tmp_path, "a.json", {"scipy": first("apply_first_match", type="force_version", version="1.0")}
    )
    extra2 = write(
        tmp_path, "b.json", {"scipy": first("apply_first_match", type="force_version", version="2.0")}
    )
    policy = load_policy(user, [extra1, extra2])
    assert policy.files == ("default", str(user), str(extra1), str(extra2))
    assert policy.origins["numpy"] == str(user) and policy.origins["scipy"] == str(extra2)
    assert policy.origins["opencv-python"] == "default"
    out = apply(policy, [R("numpy"), R("scipy")], F())
    assert out.overrides == ("numpy==1.26.4", "scipy==2.0")
    assert {a.package: a.origin for a in out.actions} == {"numpy": str(user), "scipy": str(extra2)}


def test_higher_entry_replaces_the_lower_one_whole(tmp_path: Path) -> None:
    user = write(tmp_path, "u.json", {"opencv-python": {}})  # an empty entry disables the default one
    policy = load_policy(user)
    assert policy.entries["opencv-python"] == {}
    assert policy.shadowed == {"opencv-python": ("default",)}
    out = apply(policy, [R("opencv-python")], F())
    assert names(out) == ["opencv-python"] and out.excludes == ()


def test_requirements_the_shipped_policy_adds_name_it_the_same_everywhere() -> None:
    out = apply(load_policy(), [R("numpy")], F(), present={"opencv-python"})
    [added] = [r for r in out.requirements if r.name == "opencv-contrib-python-headless"]
    assert added.source.node == "policy"
    assert added.source.path == Path("comfylock/pip-policy.json")  # not where comfylock is installed
    assert BASE_POLICY.read_text().splitlines()[added.source.line - 1].strip() == '"opencv-python": {'


def test_missing_user_file_is_skipped_missing_extra_is_an_error(tmp_path: Path) -> None:
    assert load_policy(tmp_path / "nope.json").files == ("default",)
    with pytest.raises(PolicyError, match="policy file not found"):
        load_policy(None, [tmp_path / "nope.json"])
    assert load_policy(base=False).entries == {}


def test_comments_at_every_level(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "_comment": "top",
            "_anything": {"not": "checked"},
            "foo": {
                "_comment": ["package", "level"],
                "apply_first_match": [
                    {
                        "_why": 1,
                        "type": "replace",
                        "replacement": "bar",
                        "condition": {"_c": "x", "type": "platform", "os": "linux"},
                    }
                ],
            },
        },
    )
    assert policy.entries == {
        "foo": {
            "apply_first_match": [
                {"type": "replace", "replacement": "bar", "condition": {"type": "platform", "os": "linux"}}
            ]
        }
    }
    assert names(apply(policy, [R("foo")], F())) == ["bar"]


def test_names_are_normalized_everywhere(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "NumPy": first("apply_first_match", type="force_version", version="1.26.4"),
            "Foo.Bar": first("apply_first_match", type="replace", replacement="Other_Pkg"),
            "torch": {
                "apply_all_matches": [
                    {
                        "condition": {"type": "installed", "package": "TORCH"},
                        "type": "pin_dependencies",
                        "pinned_packages": ["Torch_Vision"],
                    }
                ]
            },
            "zz": {"uninstall": [{"target": "Bad_Pkg"}]},
        },
    )
    assert set(policy.entries) == {"numpy", "foo-bar", "torch", "zz"}
    out = apply(
        policy,
        [R("numpy"), R("foo_bar"), R("Torch")],
        F({"Torch": "2.1", "torch-vision": "0.1"}),
        present={"Bad.Pkg"},
    )
    assert out.overrides == ("numpy==1.26.4",)
    assert out.excludes == ("bad-pkg", "foo-bar")
    assert "other-pkg" in names(out)
    assert [p.requirement for p in out.pins] == ["torch-vision==0.1"]


def test_digest_is_stable_and_tracks_content_and_priority(tmp_path: Path) -> None:
    a = load_policy(write(tmp_path, "u.json", {"numpy": first("apply_first_match", type="skip")}))
    b = load_policy(write(tmp_path, "other-name.json", {"numpy": first("apply_first_match", type="skip")}))
    assert a.digest() == b.digest() and len(a.digest()) == 64
    assert a.digest() != load_policy().digest()
    c = load_policy(
        write(tmp_path, "v.json", {"numpy": first("apply_first_match", type="force_version", version="1.0")})
    )
    assert c.digest() != a.digest()


# --- replacements do not chain -------------------------------------------------------------------------


def test_replacements_do_not_chain_within_a_file(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "a": first("apply_first_match", type="replace", replacement="b"),
            "b": {
                "apply_first_match": [
                    {"condition": {"type": "platform", "os": "linux"}, "type": "replace", "replacement": "c"}
                ]
            },
        },
    )
    out = apply(policy, [R("a", "x"), R("b", "y")], F())
    # b was chosen as a replacement by a file of the same priority: its own replace no longer applies.
    assert sorted(kept(out)) == ["b"]
    assert out.excludes == ("a",)


def test_user_onnxruntime_to_gpu_wins_over_default_without_gpu(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        "pip-policy.user.json",
        {
            "onnxruntime": first(
                "apply_first_match", type="replace", replacement="onnxruntime-gpu", reason="I want CUDA"
            )
        },
    )
    policy = load_policy(user)
    facts = F(os="linux", gpu=False)
    for reqs in (
        [R("onnxruntime")],
        [R("onnxruntime-gpu")],
        [R("onnxruntime", "a"), R("onnxruntime-gpu", "b")],
    ):
        out = apply(policy, reqs, facts)
        assert kept(out) & ONNX == {"onnxruntime-gpu"}, reqs
        assert "onnxruntime-gpu" not in out.excludes


def test_user_gpu_to_onnxruntime_wins_over_default_with_gpu(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        "pip-policy.user.json",
        {"onnxruntime-gpu": first("apply_first_match", type="replace", replacement="onnxruntime")},
    )
    policy = load_policy(user)
    facts = F(os="linux", gpu=True)
    for reqs in (
        [R("onnxruntime")],
        [R("onnxruntime-gpu")],
        [R("onnxruntime", "a"), R("onnxruntime-gpu", "b")],
    ):
        out = apply(policy, reqs, facts)
        assert kept(out) & ONNX == {"onnxruntime"}, reqs
        assert "onnxruntime" not in out.excludes


def test_one_line_user_override_of_the_opencv_choice(tmp_path: Path) -> None:
    user = write(
        tmp_path,
        "u.json",
        {
            "opencv-contrib-python-headless": first(
                "apply_first_match", type="replace", replacement="opencv-python"
            )
        },
    )
    policy = load_policy(user)
    reqs = [
        R("opencv-python", "a"),
        R("opencv-python-headless", "b"),
        R("opencv-contrib-python", "c"),
        R("opencv-contrib-python-headless", "d"),
        R("cv2", "e"),
    ]
    out = apply(policy, reqs, F())
    assert kept(out) == {"opencv-python"}
    assert sorted(r.source.node for r in out.requirements if r.name == "opencv-python") == [
        "a",
        "b",
        "c",
        "d",
        "e",
    ]


# --- present, upgrade, torch --------------------------------------------------------------------------


def test_present_triggers_transitive_packages(tmp_path: Path) -> None:
    policy = only(
        tmp_path,
        {
            "skipme": first("apply_first_match", type="skip"),
            "forceme": first("apply_first_match", type="force_version", version="1.0"),
            "swapme": first("apply_first_match", type="replace", replacement="swapped", version=">=2"),
        },
    )
    reqs = [R("top")]
    assert apply(policy, reqs, F()).actions == ()
    out = apply(policy, reqs, F(), present={"SkipMe", "forceme", "swapme", "unrelated"})
    assert out.excludes == ("skipme", "swapme")
    assert out.overrides == ("forceme==1.0",)
    added = out.requirements[-1]
    assert added.text == "swapped>=2" and added.source.node == "policy"
    assert all(a.requested_by == () for a in out.actions)
    assert out.considered == ("forceme", "skipme", "swapme")


def test_present_and_direct_reqs_name_the_direct_requester(tmp_path: Path) -> None:
    policy = only(tmp_path, {"swapme": first("apply_first_match", type="replace", replacement="swapped")})
    out = apply(policy, [R("swapme", "a")], F(), present={"swapme"})
    assert [(r.name, r.source.node) for r in out.requirements] == [("swapped", "a")]


TORCH_INSTALLED = {"torch": "2.5.1+cu124", "torchvision": "0.20.1+cu124", "torchaudio": "2.5.1+cu124"}


def test_default_torch_pin_and_its_index() -> None:
    out = apply(load_policy(), [R("torch>=2.0", "node")], F(TORCH_INSTALLED, gpu=True))
    assert SoftPin("torch==2.5.1+cu124", "fail", "torch") in out.pins
    assert {p.requirement for p in out.pins} == {
        "torch==2.5.1+cu124",
        "torchvision==0.20.1+cu124",
        "torchaudio==2.5.1+cu124",
    }
    assert out.extra_index_urls == ("https://download.pytorch.org/whl/cu124",)
    assert names(out) == ["torch"] and out.overrides == () and out.excludes == ()


@pytest.mark.parametrize("asked", ["torch", "torchvision", "torchaudio", "xformers", "triton"])
def test_default_torch_pins_whichever_is_asked(asked: str) -> None:
    out = apply(load_policy(), [R(asked)], F(TORCH_INSTALLED))
    assert "torch==2.5.1+cu124" in {p.requirement for p in out.pins}


@pytest.mark.parametrize(
    ("version", "index"),
    [
        ("2.5.1+cu124", "/idx/cu124"),
        ("2.4.0+rocm6.1", "/idx/rocm6.1"),
        ("2.5.1+cpu", "/idx/cpu"),
        ("2.5.1", None),
        ("2.5.1+local", None),
    ],
)
def test_torch_local_tag_selects_the_index(version: str, index: str | None) -> None:
    out = apply(load_policy(), [R("torch")], F({"torch": version}), torch_index="file:///idx/")
    assert out.extra_index_urls == ((f"file://{index}",) if index else ())


def test_upgrade_drops_pins_of_those_packages() -> None:
    policy = load_policy()
    facts = F(TORCH_INSTALLED)
    out = apply(policy, [R("torch")], facts, upgrade={"Torch"})
    assert {p.requirement for p in out.pins} == {"torchvision==0.20.1+cu124", "torchaudio==2.5.1+cu124"}
    assert apply(policy, [R("torch")], facts, upgrade={"*"}).pins == ()
    everything = apply(policy, [R("torch")], facts, upgrade={"torch", "torchvision", "torchaudio"})
    assert everything.pins == () and everything.extra_index_urls == () and everything.actions == ()


def test_no_torch_installed_no_pin() -> None:
    out = apply(load_policy(), [R("torch")], F({"torchvision": "0.20.1"}))
    assert out.pins == ()  # the condition reads torch itself: a fresh env installs what resolves


# --- the shipped policy --------------------------------------------------------------------------------


def test_shipped_policy_is_valid_and_explained() -> None:
    assert check_policy_text(BASE_POLICY.read_text(), str(BASE_POLICY)) == []
    policy = load_policy()
    for name, sections in policy.entries.items():
        for section, entries in sections.items():
            for entry in entries:
                assert len(entry.get("reason", "")) > 20, (name, section)


def test_default_one_opencv_whoever_asks() -> None:
    reqs = [R("opencv-python>=4.8", "a"), R("opencv-python-headless", "b"), R("opencv-contrib-python", "c")]
    out = apply(load_policy(), reqs, F())
    opencv = [r for r in out.requirements if r.name in OPENCVS]
    assert {r.name for r in opencv} == {"opencv-contrib-python-headless"}
    assert sorted(r.source.node for r in opencv) == ["a", "b", "c"]
    assert set(out.excludes) == OPENCVS - {"opencv-contrib-python-headless"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(sorted(OPENCVS | {"cv2"})), min_size=1, max_size=8),
    st.lists(st.sampled_from(sorted(OPENCVS)), max_size=4),
)
def test_default_opencv_property(asked: list[str], transitive: list[str]) -> None:
    policy = load_policy()
    reqs = [R(name, f"n{i}") for i, name in enumerate(asked)]
    out = apply(policy, reqs, F(), present=set(transitive))
    assert kept(out) & OPENCVS == {"opencv-contrib-python-headless"}
    assert set(transitive) - {"opencv-contrib-python-headless"} <= set(out.excludes)
    assert apply(policy, reqs, F(), present=set(transitive)) == out


@pytest.mark.parametrize(
    ("os", "gpu", "expected"),
    [
        ("linux", True, "onnxruntime-gpu"),
        ("windows", True, "onnxruntime-gpu"),
        ("macos", True, "onnxruntime"),
        ("linux", False, "onnxruntime"),
        ("windows", False, "onnxruntime"),
        ("macos", False, "onnxruntime"),
    ],
)
@pytest.mark.parametrize("asked", [["onnxruntime"], ["onnxruntime-gpu"], ["onnxruntime", "onnxruntime-gpu"]])
def test_default_one_onnxruntime(os: str, gpu: bool, expected: str, asked: list[str]) -> None:
    out = apply(load_policy(), [R(name, name) for name in asked], F(os=os, gpu=gpu))
    assert kept(out) & ONNX == {expected}
    assert expected not in out.excludes


@pytest.mark.parametrize(
    ("wrong", "right"),
    [
        ("PIL", "pillow"),
        ("cv2", "opencv-contrib-python-headless"),
        ("sklearn", "scikit-learn"),
        ("skimage", "scikit-image"),
        ("yaml", "pyyaml"),
        ("dateutil", "python-dateutil"),
        ("pytorch", "torch"),
    ],
)
def test_default_import_names(wrong: str, right: str) -> None:
    out = apply(load_policy(), [R(f"{wrong}>=1")], F())
    assert names(out) == [right] and out.excludes == (canonical(wrong),)


def canonical(name: str) -> str:
    return name.lower()


def test_pytorch_typo_still_gets_torch_pins() -> None:
    out = apply(load_policy(), [R("pytorch")], F(TORCH_INSTALLED))
    assert "torch==2.5.1+cu124" in {p.requirement for p in out.pins}


def test_deterministic_and_linear() -> None:
    policy = load_policy()
    pool = [
        "numpy",
        "opencv-python",
        "torch>=2",
        "pillow",
        "PIL",
        "onnxruntime",
        "scipy",
        "einops",
        "opencv-python-headless",
        "transformers",
    ]
    reqs = [R(pool[(n + i) % len(pool)], f"node{n}", i) for n in range(1000) for i in range(10)]
    facts = F(TORCH_INSTALLED, gpu=True)
    start = time.perf_counter()
    out = apply(policy, reqs, facts)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, elapsed  # typically tens of milliseconds
    assert apply(policy, reqs, facts) == out
    assert len(out.requirements) == len(reqs)  # every replaced Req has exactly one replacement


# --- validation -------------------------------------------------------------------------------------------


def entry_doc(section: str, entry: Any, package: str = "numpy") -> str:
    return json.dumps({package: {section: [entry]}})


AFM = "$.numpy.apply_first_match[0]"
BAD_POLICIES = [
    ('{"numpy": ', "$", "invalid JSON: Expecting value (line 1, column 11)", None),
    ("[]", "$", "expected an object of package names, got list", None),
    ('{"not a name!": {}}', '$["not a name!"]', "invalid package name 'not a name!'", "a PyPI project name"),
    ('{"numpy": []}', "$.numpy", "expected an object of sections, got list", None),
    (
        '{"numpy": {"apply_firstmatch": []}}',
        "$.numpy.apply_firstmatch",
        "unknown section 'apply_firstmatch'",
        "expected one of uninstall, apply_first_match, apply_all_matches, restore",
    ),
    (
        '{"numpy": {"apply_first_match": {}}}',
        "$.numpy.apply_first_match",
        "expected a list of entries, got object",
        None,
    ),
    (entry_doc("apply_first_match", 1), AFM, "expected an object, got number", None),
    (
        entry_doc("apply_first_match", {"type": "skipp"}),
        AFM,
        "unknown action 'skipp'",
        "expected one of skip, force_version, replace",
    ),
    (
        entry_doc("apply_first_match", {"type": "pin_dependencies", "pinned_packages": []}),
        AFM,
        "unknown action 'pin_dependencies'",
        "'pin_dependencies' belongs in apply_all_matches",
    ),
    (entry_doc("apply_first_match", {"reason": "x"}), AFM, "missing field 'type'", None),
    (entry_doc("apply_first_match", {"type": "force_version"}), AFM, "missing field 'version'", None),
    (
        entry_doc("apply_first_match", {"type": "force_version", "version": 1.2}),
        AFM + ".version",
        "expected a string, got number",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "force_version", "version": "1.2.x"}),
        AFM + ".version",
        "invalid version '1.2.x'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "replace", "replacement": "x", "version": "=>1.0"}),
        AFM + ".version",
        "invalid version specifier '=>1.0'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "replace", "replacement": "x", "version": "1.0"}),
        AFM + ".version",
        "invalid version specifier '1.0'",
        "write '==1.0' or '>=1.0'",
    ),
    (
        entry_doc("apply_all_matches", {"type": "install_with", "additional_packages": ["numpy>>1"]}),
        "$.numpy.apply_all_matches[0].additional_packages[0]",
        "invalid requirement 'numpy>>1'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": {"type": "gpu"}}),
        AFM + ".condition.type",
        "unknown condition type 'gpu'",
        "expected one of installed, platform",
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": {"type": "installed", "version": "1"}}),
        AFM + ".condition.version",
        "unknown condition key 'version' for installed",
        "expected one of package, spec",
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": {"type": "platform", "os": "solaris"}}),
        AFM + ".condition.os",
        "unknown os 'solaris'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": {"type": "platform", "has_gpu": "yes"}}),
        AFM + ".condition.has_gpu",
        "expected true or false, got string",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": "linux"}),
        AFM + ".condition",
        "expected an object, got string",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "condition": {"os": "linux"}}),
        AFM + ".condition",
        "missing field 'type'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "replace", "replacement": "NumPy"}),
        AFM + ".replacement",
        "replace of 'numpy' by itself",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "force_version", "version": "1", "extra_index_urls": "x"}),
        AFM + ".extra_index_urls",
        "unknown field 'extra_index_urls' for force_version",
        None,
    ),
    (
        entry_doc(
            "apply_first_match", {"type": "force_version", "version": "1", "extra_index_url": "not a url"}
        ),
        AFM + ".extra_index_url",
        "invalid index URL 'not a url'",
        None,
    ),
    (
        entry_doc("apply_first_match", {"type": "skip", "reason": 5}),
        AFM + ".reason",
        "expected a string, got number",
        None,
    ),
    (
        entry_doc("apply_all_matches", {"type": "pin_dependencies", "pinned_packages": "torch"}),
        "$.numpy.apply_all_matches[0].pinned_packages",
        "expected a list of package names, got string",
        None,
    ),
    (
        entry_doc("apply_all_matches", {"type": "warn", "message": "m", "allow_continue": "no"}),
        "$.numpy.apply_all_matches[0].allow_continue",
        "expected true or false, got string",
        None,
    ),
    (
        entry_doc("apply_all_matches", {"type": "warn"}),
        "$.numpy.apply_all_matches[0]",
        "missing field 'message'",
        None,
    ),
    (entry_doc("uninstall", {"reason": "x"}), "$.numpy.uninstall[0]", "missing field 'target'", None),
    (
        entry_doc("restore", {"target": "six", "version": "latest"}),
        "$.numpy.restore[0].version",
        "invalid version 'latest'",
        None,
    ),
    (
        json.dumps(
            {
                "numpy": {"uninstall": [{"target": "six"}]},
                "six": {"restore": [{"target": "six", "version": "1"}]},
            }
        ),
        "$.six.restore[0]",
        "restore of 'six' conflicts with numpy's uninstall of it under the same condition",
        None,
    ),
    (
        json.dumps(
            {"numpy": {"apply_first_match": [{"type": "skip"}, {"type": "force_version", "version": "1"}]}}
        ),
        "$.numpy.apply_first_match[1]",
        "unreachable: entry [0] has no condition, so it always matches first",
        None,
    ),
    (
        json.dumps(
            {
                "numpy": {"apply_first_match": [{"type": "force_version", "version": "1.0"}]},
                "x": {"restore": [{"target": "numpy", "version": "2.0"}]},
            }
        ),
        "$.x.restore[0]",
        "numpy==2.0 conflicts with numpy==1.0 from numpy's policy",
        None,
    ),
    (
        json.dumps(
            {
                "numpy": {"apply_first_match": [{"type": "force_version", "version": "1.0"}]},
                "x": {"uninstall": [{"target": "numpy"}]},
            }
        ),
        AFM,
        "force_version of 'numpy' never applies: x's policy always uninstalls it",
        None,
    ),
    (
        json.dumps(
            {
                "numpy": {"apply_first_match": [{"type": "replace", "replacement": "b"}]},
                "b": {"apply_first_match": [{"type": "skip"}]},
            }
        ),
        AFM,
        "replacement 'b' is always skipped by its own entry",
        None,
    ),
    (
        json.dumps(
            {
                "numpy": {"apply_first_match": [{"type": "replace", "replacement": "b"}]},
                "b": {"apply_first_match": [{"type": "replace", "replacement": "c"}]},
            }
        ),
        AFM,
        "replacements do not chain: 'b' is itself replaced by 'c'",
        "replace 'numpy' by 'c' directly",
    ),
    ('{"NumPy": {}, "numpy": {}}', "$.numpy", "'numpy' and 'NumPy' are the same package", None),
    ('{"numpy": {}, "numpy": {}}', "$.numpy", "duplicate key 'numpy'", None),
]


@pytest.mark.parametrize(
    ("text", "json_path", "message", "hint"),
    BAD_POLICIES,
    ids=[f"{i:02d}-{case[2][:30]}" for i, case in enumerate(BAD_POLICIES)],
)
def test_validation_problem(
    tmp_path: Path, text: str, json_path: str, message: str, hint: str | None
) -> None:
    problems = check_policy_text(text, "p.json")
    assert problems, text
    problem = problems[0]
    assert problem.json_path == json_path
    assert problem.message == message or problem.message.startswith(f"{message}: ")  # + packaging's reason
    if hint is not None:
        assert problem.hint is not None and hint in problem.hint
    assert problem.line is not None and problem.file == "p.json"
    with pytest.raises(PolicyError) as raised:
        load_policy(None, [write(tmp_path, "p.json", text)], base=False)
    assert "\n" not in str(raised.value)
    assert f": {json_path}: {message}" in str(raised.value)


def test_policy_error_is_one_line_with_file_line_path_and_hint(tmp_path: Path) -> None:
    text = (
        '{\n  "_comment": "mine",\n  "scipy": {},\n  "numpy": {\n    "apply_first_match": [\n'
        '      {"type": "force_version", "version": "1.0"},\n      {\n        "type": "skipp"\n      }\n'
        "    ]\n  }\n}\n"
    )
    path = write(tmp_path, "pip-policy.user.json", text)
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert str(raised.value) == (
        f"{path}:7: $.numpy.apply_first_match[1]: unknown action 'skipp' "
        "(expected one of skip, force_version, replace)"
    )
    assert raised.value.line == 7 and raised.value.exit_code == 2
    [problem] = check_policy_text(text, "pip-policy.user.json")
    assert str(problem).startswith("pip-policy.user.json:7: $.numpy.apply_first_match[1]: unknown action")


def test_load_error_says_how_many_more_problems_follow(tmp_path: Path) -> None:
    doc = {"a": {"bogus": []}, "b": {"apply_first_match": [{"type": "nope"}]}, "c": {"restore": [{}]}}
    with pytest.raises(PolicyError) as raised:
        load_policy(None, [write(tmp_path, "p.json", doc)], base=False)
    assert str(raised.value).endswith(
        "$.a.bogus: unknown section 'bogus' (expected one of uninstall, apply_first_match, "
        "apply_all_matches, restore; 3 more problems in this file: `comfylock policy check` lists them)"
    )


def test_field_problem_points_at_its_own_line() -> None:
    text = (
        '{\n  "numpy": {\n    "apply_first_match": [\n      {\n        "type": "force_version",\n'
        '        "version": "1.x"\n      }\n    ]\n  }\n}\n'
    )
    [problem] = check_policy_text(text, "p.json")
    assert problem.line == 6 and problem.json_path == "$.numpy.apply_first_match[0].version"


def test_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    [problem] = check_policy_text('{\n  "numpy": {\n    "uninstall": [,]\n  }\n}', "p.json")
    assert problem.line == 3 and "(line 3, column 19)" in problem.message


def test_all_problems_are_listed_in_file_order() -> None:
    text = json.dumps({"a": {"bogus": []}, "b": {"apply_first_match": [{"type": "nope"}]}}, indent=1)
    problems = check_policy_text(text, "p.json")
    assert [p.json_path for p in problems] == ["$.a.bogus", "$.b.apply_first_match[0]"]
    assert (
        problems[0].line is not None and problems[1].line is not None and problems[0].line < problems[1].line
    )


def test_bom_and_comment_duplicates_are_fine() -> None:
    text = '\ufeff{"_comment": "a", "_comment": "b", "numpy": {"_comment": 1, "_comment": 2}}'
    assert check_policy_text(text, "p.json") == []


def test_conflict_across_files_is_found_after_merging(tmp_path: Path) -> None:
    base = write(tmp_path, "a.json", {"six": {"restore": [{"target": "six", "version": "1.16.0"}]}})
    user = write(tmp_path, "b.json", {"numpy": {"uninstall": [{"target": "six"}]}})
    assert (
        check_policy_text(base.read_text(), "a.json") == [] and check_policy_text(user.read_text(), "b") == []
    )
    with pytest.raises(PolicyError, match=r"a\.json:\d+: \$\.six\.restore\[0\]: restore of 'six' conflicts"):
        load_policy(None, [base, user], base=False)
    # Once a higher file replaces the package whose entry conflicted, the conflict is gone.
    fix = write(tmp_path, "c.json", {"six": {}})
    assert load_policy(None, [base, user, fix], base=False).entries["six"] == {}


def test_check_policy_files_lists_every_problem_of_every_file(tmp_path: Path) -> None:
    a = write(
        tmp_path, "a.json", {"six": {"restore": [{"target": "six", "version": "1.16.0"}]}, "x": {"bad": []}}
    )
    b = write(tmp_path, "b.json", '{\n  "numpy": {"uninstall": [{"target": "six"}]},\n  "y": []\n}')
    problems = check_policy_files([a, b, tmp_path / "gone.json"])
    assert [(Path(p.file).name, p.json_path, p.message.split(":")[0]) for p in problems] == [
        (
            "a.json",
            "$.six.restore[0]",
            "restore of 'six' conflicts with numpy's uninstall of it under the same condition",
        ),
        ("a.json", "$.x.bad", "unknown section 'bad'"),
        ("b.json", "$.y", "expected an object of sections, got list"),
        ("gone.json", "$", "policy file not found"),
    ]
    assert len(set(problems)) == len(problems)
    assert str(problems[-1]) == f"{tmp_path / 'gone.json'}: policy file not found (check the path given)"
    assert check_policy_files([]) == []  # the shipped policy alone is clean


def test_check_policy_files_reports_a_same_file_conflict_once(tmp_path: Path) -> None:
    doc = {
        "numpy": {"uninstall": [{"target": "six"}]},
        "six": {"restore": [{"target": "six", "version": "1"}]},
    }
    [problem] = check_policy_files([write(tmp_path, "p.json", doc)], base=False)
    assert problem.json_path == "$.six.restore[0]"


def test_unreadable_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"numpy": "\xff"}')
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(None, [path], base=False)
