"""Conflict attribution: unit tests over a fake oracle (bounds), then real uv on hermetic trees."""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import run

from comfylock._exceptions import ResolutionError, UvError
from comfylock.collect import gather as collect
from comfylock.explain import conflicts as explain
from comfylock.resolve import request as _compile
from comfylock.resolve import uv as resolve
from comfylock.resolve.types import ResolveRequest
from comfylock.workspace.layout import open_workspace

# --- a fake oracle: a set of groups conflicts when it holds every group of some rule ----------------


class Fake:
    def __init__(self, rules: Sequence[tuple[set[str], str, str]], fail_after: int | None = None) -> None:
        self.rules, self.calls, self.fail_after = rules, 0, fail_after  # (groups, package, message)

    def __call__(
        self,
        inputs: Mapping[str, Sequence[str]],
        *,
        constraints: Sequence[str] = (),
        overrides: Sequence[str] = (),
    ) -> Mapping[str, str]:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise UvError("uv pip compile failed: network down")
        for groups, pkg, message in self.rules:
            if groups <= set(inputs) and not any(o.startswith(f"{pkg}==") for o in overrides):
                raise ResolutionError("conflict", explanation=message)
        return {"numpy": "1.26.4" if "Old" in inputs else "2.1.0"}


DIRECT = "Because you require numpy<2 and numpy>=2, we can conclude that your requirements are unsatisfiable."


def groups_of(n: int, **special: list[str]) -> dict[str, list[str]]:
    out = {f"n{i:02d}": ["tqdm", "numpy"] for i in range(n)}
    out.update(special)
    return out


def test_message_names_the_culprits_so_few_resolutions():
    inputs = groups_of(40, Old=["numpy<2"], New=["numpy>=2"])
    msg = "  cause: " + DIRECT
    fake = Fake([({"Old", "New"}, "numpy", msg)])
    a = explain.attribute(inputs, fake, explanation=msg, installed={"numpy": "1.26.4"})
    assert a.groups == ("Old", "New") and a.complete
    assert [(x.node, x.text) for x in a.lines] == [("Old", "numpy<2"), ("New", "numpy>=2")]
    assert a.packages == ("numpy",)
    assert a.resolutions_used == fake.calls <= 12
    kinds = [(w.kind, w.verified) for w in a.ways_out]
    assert ("skip-node", True) in kinds and ("force-version", True) in kinds
    force = [w for w in a.ways_out if w.kind == "force-version"]
    assert (
        json.loads(force[0].text)["numpy"]["apply_first_match"][0]["version"] == "1.26.4"
    )  # installed first
    assert "New's numpy>=2" in force[0].note


def test_no_help_from_the_message_bisection_is_logarithmic():
    inputs = groups_of(60, A=["x"], B=["y"])
    fake = Fake([({"A", "B"}, "zzz", "")])
    a = explain.attribute(inputs, fake, budget=100)
    assert set(a.groups) == {"A", "B"} and a.complete
    n, k = len(inputs), 2
    search = fake.calls - sum(1 for w in a.ways_out)  # ways out cost one resolution each
    assert search <= 2 * k * math.log2(n / k) + 2 * k + 1  # QuickXplain's bound (+1: the full set)


def test_budget_stops_the_search_and_says_so():
    inputs = groups_of(60, A=["x"], B=["y"])
    fake = Fake([({"A", "B"}, "zzz", "")])
    a = explain.attribute(inputs, fake, budget=3)
    assert fake.calls == a.resolutions_used == 3
    assert not a.complete and "budget" in a.note
    assert {"A", "B"} <= set(a.groups)  # the smallest set known to conflict, not a guess
    assert "not proven minimal" in explain.format_attribution(a)[0]


def test_ways_out_unchecked_when_budget_runs_out():
    msg = (
        "Because you require numpy<2 and numpy>=2, we can conclude that your requirements are unsatisfiable."
    )
    fake = Fake([({"Old", "New"}, "numpy", msg)])
    a = explain.attribute(groups_of(5, Old=["numpy<2"], New=["numpy>=2"]), fake, budget=3, explanation=msg)
    assert a.groups == ("Old", "New") and a.complete and a.resolutions_used == 3
    assert a.ways_out and all(not w.verified and "not checked" in w.note for w in a.ways_out)


def test_uv_failing_mid_search_keeps_what_is_known():
    msg = (
        "Because you require numpy<2 and numpy>=2, we can conclude that your requirements are unsatisfiable."
    )
    fake = Fake([({"Old", "New"}, "numpy", msg)], fail_after=1)
    a = explain.attribute(groups_of(5, Old=["numpy<2"], New=["numpy>=2"]), fake, explanation=msg)
    assert a.groups == ("Old", "New") and not a.complete and "network down" in a.note


def test_conflict_that_does_not_come_back_blames_no_one():
    a = explain.attribute(groups_of(4), Fake([]), explanation="Because you require numpy<2 and numpy>=2, ...")
    assert a.groups == () and not a.complete and "did not come back" in a.note
    assert explain.format_attribution(a)[0].startswith("could not narrow")


def test_required_terms_reads_uv_phrasing():
    msg = (
        "Because scipy<=1.11.4 depends on numpy<1.28 and you require scipy[foo]==1.11.4, we can "
        "conclude that you require numpy<1.28.\n   And because you require foo and "
        "numpy{sys_platform == 'linux'}>=2, we can conclude that your requirements are unsatisfiable. "
        "Because you require numpy>=1.20,<1.28 and x"
    )
    got = [str(r) for r in explain.required_terms(msg)]
    assert got == [
        "scipy[foo]==1.11.4",
        "numpy<1.28",
        "foo",
        'numpy>=2; sys_platform == "linux"',
        "numpy<1.28,>=1.20",
        "x",
    ]


def test_json_report_is_plain_data():
    msg = (
        "Because you require numpy<2 and numpy>=2, we can conclude that your requirements are unsatisfiable."
    )
    a = explain.attribute(
        groups_of(3, Old=["numpy<2"], New=["numpy>=2"]), Fake([({"Old", "New"}, "numpy", msg)])
    )
    data = json.loads(json.dumps(explain.to_json(a)))
    assert data["groups"] == ["Old", "New"] and data["resolutions_used"] == a.resolutions_used
    assert {w["kind"] for w in data["ways_out"]} >= {"skip-node"}


def test_with_attribution_keeps_the_error_and_adds_the_report():
    msg = (
        "Because you require numpy<2 and numpy>=2, we can conclude that your requirements are unsatisfiable."
    )
    e = ResolutionError("the requirements cannot be satisfied together", explanation=msg)
    a = explain.attribute(
        groups_of(3, Old=["numpy<2"], New=["numpy>=2"]), Fake([({"Old", "New"}, "numpy", msg)])
    )
    err = explain.with_attribution(e, a)
    assert "involved: Old, New" in str(err) and err.exit_code == 1 and err.explanation == msg
    assert err.involved[0].startswith("cannot hold together: Old, New")  # type: ignore[attr-defined]
    assert "uv says:" not in "\n".join(err.involved)  # type: ignore[attr-defined]


# --- real uv on hermetic trees -------------------------------------------------------------------


def split(reqs: Sequence[collect.Req]) -> tuple[dict[str, list[str]], list[str]]:
    """The input groups (node -> lines) and the constraint lines, as compile hands them to uv (compile
    reads only the outcome's requirements for this)."""
    return _compile.inputs(SimpleNamespace(requirements=reqs))  # type: ignore[arg-type]


def attribute_tree(root: Path, venv: Path, index: Path, **kw: object) -> explain.Attribution:
    ws = open_workspace(root, venv)
    user = ws.user_dir / "requirements.txt"
    coll = collect.collect(ws, user_requirements=user if user.exists() else None)
    groups, constraints = split(coll.requirements())
    request = ResolveRequest(
        inputs=groups,
        python=ws.python,
        constraints=(*constraints, *kw.pop("policy_constraints", ())),  # type: ignore[misc]
        index=resolve.IndexOptions(find_links=(str(index),), no_index=True),
    )
    with pytest.raises(ResolutionError) as info:
        resolve.compile(request)
    folders = {i.node: i.path for i in coll.inputs}
    return explain.explain_failure(info.value, coll.requirements(), request, folders=folders, **kw)  # type: ignore[arg-type]


def ways(a: explain.Attribution) -> dict[str, bool]:
    return {w.text: w.verified for w in a.ways_out}


def test_direct_conflict_between_two_nodes(comfy, venv, index):
    root = comfy(
        "tqdm\n", {"Old": {"requirements.txt": "tqdm\nnumpy<2\n"}, "New": {"requirements.txt": "numpy>=2\n"}}
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("New", "Old") and a.complete
    assert [(x.node, x.file, x.line, x.text) for x in a.lines] == [
        ("New", "requirements.txt", 1, "numpy>=2"),
        ("Old", "requirements.txt", 2, "numpy<2"),
    ]
    assert ways(a)["comfylock compile --skip-node Old"] and ways(a)["comfylock compile --skip-node New"]
    assert a.resolutions_used <= explain.DEFAULT_BUDGET
    text = "\n".join(explain.format_attribution(a))
    assert "uv says:" in text and "you require numpy" in text


def test_transitive_conflict_through_a_third_package(comfy, venv, index):
    root = comfy(
        "",
        {
            "Sci": {"requirements.txt": "numpy\nscipy==1.11.4\n"},
            "New": {"requirements.txt": "numpy>=2\n"},
            "Other": {"requirements.txt": "tqdm\nnumpy\n"},
        },
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("New", "Sci")
    assert {(x.node, x.text) for x in a.lines} == {("Sci", "scipy==1.11.4"), ("New", "numpy>=2")}
    assert a.packages[0] == "numpy"
    force = [w for w in a.ways_out if w.kind == "force-version"]
    assert force and all(w.verified for w in force)
    assert {json.loads(w.text)["numpy"]["apply_first_match"][0]["version"] for w in force} == {
        "1.26.4",
        "2.1.0",
    }


def test_conflict_with_core(comfy, venv, index):
    root = comfy(
        "pillow>=11\nnumpy\n",
        {"Old": {"requirements.txt": "pillow<11\n"}, "Fine": {"requirements.txt": "pillow\n"}},
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("core", "Old")
    assert ("core", "requirements.txt", 1, "pillow>=11") in [
        (x.node, x.file, x.line, x.text) for x in a.lines
    ]
    assert ways(a) == {
        "comfylock compile --skip-node Old": True,
        json.dumps(
            {
                "pillow": {
                    "apply_first_match": [
                        {
                            "type": "force_version",
                            "version": "11.0.0",
                            "reason": "comfylock: settles a conflict",
                        }
                    ]
                }
            }
        ): True,
    }
    assert not any("--skip-node core" in w for w in ways(a))


def test_conflict_only_with_the_users_requirements(comfy, venv, index):
    root = comfy(
        "tqdm\n", {"New": {"requirements.txt": "numpy>=2\n"}, "Fine": {"requirements.txt": "numpy\n"}}
    )
    (root / "user" / "comfylock").mkdir(parents=True)
    (root / "user" / "comfylock" / "requirements.txt").write_text("tqdm\nnumpy<2\n")
    a = attribute_tree(root, venv, index)
    assert a.groups == ("New", "user")
    assert ("user", "requirements.txt", 2, "numpy<2") in [(x.node, x.file, x.line, x.text) for x in a.lines]
    assert ways(a)["comfylock remove numpy"] and ways(a)["comfylock compile --skip-node New"]


def test_three_nodes_only_two_conflict(comfy, venv, index):
    root = comfy(
        "",
        {
            "A": {"requirements.txt": "numpy>=1.20\nscipy\n"},  # names numpy, holds with both sides
            "B": {"requirements.txt": "numpy<2\n"},
            "C": {"requirements.txt": "numpy>=2\n"},
        },
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("B", "C") and "A" not in {x.node for x in a.lines}
    assert "A" not in "\n".join(explain.format_attribution(a, explanation=False))


def test_same_line_in_several_nodes_skips_them_together(comfy, venv, index):
    root = comfy(
        "",
        {
            "B1": {"requirements.txt": "numpy<2\n"},
            "B2": {"requirements.txt": "numpy<2.0\n"},
            "C": {"requirements.txt": "numpy>=2\n"},
        },
    )
    a = attribute_tree(root, venv, index)
    assert len(a.groups) == 2 and "C" in a.groups
    other = "B2" if "B1" in a.groups else "B1"
    assert [ln.node for ln in next(iter(a.also.values()))] == [other]
    assert any(w.verified and "--skip-node B1 --skip-node B2" in w.text for w in a.ways_out)


def test_skip_way_out_takes_every_node_on_one_side_and_none_of_the_other(comfy, venv, index):
    nodes = {
        "Old": {"requirements.txt": "numpy<2\n"},
        "Old2": {"requirements.txt": "numpy<=1.26.4\n"},
        "New": {"requirements.txt": "numpy>=2\n"},
        "New2": {"requirements.txt": "numpy>=2\n"},
    }
    a = attribute_tree(comfy("", nodes), venv, index)
    assert len(a.groups) == 2
    skips = {frozenset(w.text.split(" --skip-node ")[1:]) for w in a.ways_out if w.kind == "skip-node"}
    assert skips == {frozenset({"Old", "Old2"}), frozenset({"New", "New2"})}
    assert all(w.verified for w in a.ways_out if w.kind == "skip-node")
    sides = {g: {ln.node for ln in v} for g, v in a.also.items()}
    assert sides in ({"Old2": {"Old"}, "New": {"New2"}}, {"Old": {"Old2"}, "New": {"New2"}})


def test_policy_pin_gives_way_to_upgrade_package(comfy, venv, index):
    root = comfy("", {"New": {"requirements.txt": "numpy>=2\n"}, "Fine": {"requirements.txt": "tqdm\n"}})
    a = attribute_tree(root, venv, index, policy_constraints=("numpy==1.26.4",))
    assert a.groups == ("New",)
    assert ("policy", "numpy==1.26.4") in [(x.node, x.text) for x in a.lines]
    assert ways(a)["comfylock compile --upgrade-package numpy"]


def test_node_constraint_file_takes_part(comfy, venv, index):
    root = comfy(
        "",
        {
            "Con": {"requirements.txt": "tqdm\n-c pins.txt\n", "pins.txt": "numpy<2\n"},
            "New": {"requirements.txt": "numpy>=2\n"},
        },
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("Con", "New")
    assert ("Con", "pins.txt", 1, "numpy<2") in [(x.node, x.file, x.line, x.text) for x in a.lines]
    assert ways(a)["comfylock compile --skip-node Con"]


def test_missing_package_blames_the_one_node(comfy, venv, index):
    root = comfy(
        "tqdm\n", {"Typo": {"requirements.txt": "tqdm\nnumpyy\n"}, "Fine": {"requirements.txt": "numpy\n"}}
    )
    a = attribute_tree(root, venv, index)
    assert a.groups == ("Typo",) and [x.text for x in a.lines] == ["numpyy"]
    assert ways(a) == {"comfylock compile --skip-node Typo": True}


# --- the real corpus with PyPI -------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "ComfyUI"


@pytest.mark.pypi
@pytest.mark.corpus
def test_corpus_numpy2_node_next_to_impact_pack(tmp_path, venv, capsys, pypi_env):
    root = tmp_path / "ComfyUI"
    shutil.copytree(CORPUS, root, symlinks=True)
    (root / "main.py").write_text("")
    (root / "custom_nodes" / "Needs-Numpy2").mkdir()
    (root / "custom_nodes" / "Needs-Numpy2" / "requirements.txt").write_text("numpy>=2\n")
    ws = open_workspace(root, venv)
    coll = collect.collect(ws, keep_going=True)
    request = ResolveRequest(inputs=split(coll.requirements())[0], python=ws.python)
    t0 = time.monotonic()
    try:
        resolve.compile(request)
    except ResolutionError as e:
        error = e
    except UvError as e:
        pytest.skip(f"PyPI did not answer: {e}")
    else:
        pytest.fail("expected numpy>=2 to conflict with Impact-Pack's numpy<2")
    t1 = time.monotonic()
    a = explain.explain_failure(
        error, coll.requirements(), request, folders={i.node: i.path for i in coll.inputs}
    )
    t2 = time.monotonic()
    with capsys.disabled():
        print(
            f"\n[corpus] failed compile {t1 - t0:.1f}s; attribution {t2 - t1:.1f}s, "
            f"{a.resolutions_used} resolutions"
        )
        print("\n".join(explain.format_attribution(a)))
    # uv names one numpy<2 pin (Impact-Pack's numpy<2 or segment-anything-2's numpy<=1.26.4): the
    # smallest set holds that one, the skip-node way out leaves out every node on that side.
    low = {"ComfyUI-Impact-Pack", "ComfyUI-segment-anything-2"}
    assert "Needs-Numpy2" in a.groups and len(a.groups) == 2 and set(a.groups) & low
    assert a.resolutions_used <= explain.DEFAULT_BUDGET
    skip = [w for w in a.ways_out if w.kind == "skip-node" and "Needs-Numpy2" not in w.text]
    assert skip and skip[0].verified and all(f"--skip-node {n}" in skip[0].text for n in low)


# --- through the command line ----------------------------------------------------------------------


def test_cli_compile_conflict_prints_the_attribution(comfy, venv, index, capsys):
    nodes = {
        "Old": {"requirements.txt": "numpy<2\n"},
        "New": {"requirements.txt": "numpy>=2\n"},
        "Bystander": {"requirements.txt": "tqdm\n"},
    }
    root = comfy("", nodes)
    assert run(root, venv, index, "compile") == 1
    err = capsys.readouterr().err
    assert "involved: New, Old" in err and "cannot hold together: New, Old" in err
    assert "Old: requirements.txt:1: numpy<2" in err and "New: requirements.txt:1: numpy>=2" in err
    assert "comfylock compile --skip-node Old  (checked: resolves)" in err
    assert "Bystander" not in err and "you require numpy" in err
    assert run(root, venv, index, "compile", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "comfylock.error/1" and data["exit_code"] == 1
    assert data["attribution"]["groups"] == ["New", "Old"] and data["attribution"]["resolutions_used"] > 0
    assert not (root / "comfylock.lock").exists()
