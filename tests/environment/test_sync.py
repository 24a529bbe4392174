"""comfylock.environment.sync: plan() computes what syncing a lock changes and touches nothing; apply()
only acts, through uv; remove_torn() clears what a killed uv left half-written. Real uv, hand-written
wheels, no network."""

from __future__ import annotations

from pathlib import Path

from helpers import install, installed, run
from wheels import make_wheel

from comfylock.cli.main import main
from comfylock.environment import sync
from comfylock.lockfile.lock import Lock, Pin, read_lock
from comfylock.resolve.uv import IndexOptions


def lock_of(*specs: str, options: tuple[str, ...] = ()) -> Lock:
    pins = [Pin(s.partition("==")[0].partition(" @ ")[0], s) for s in specs]
    return Lock(tuple(sorted(pins, key=lambda p: p.name)), options=options)


def test_protected_comes_from_comfylocks_own_metadata():
    import importlib.metadata as md
    import re

    from comfylock.environment.owndeps import protected

    needs = [r for r in md.requires("comfylock") or [] if "extra ==" not in r]
    names = {re.split(r"[\s\[(;<>=!~]", r, maxsplit=1)[0].lower().replace("_", "-") for r in needs}
    assert protected() == {"comfylock", "pip", "setuptools", "wheel", *names}


def test_sync_into_another_environment_is_exact_for_comfylocks_own_dependencies(comfy, venv, index):
    # comfylock does not run from `venv`: its never-remove list does not apply there (the other side,
    # where it does, is in test_trust_sync.py)
    make_wheel(index.parent / "extra", "packaging", "24.0")
    install(venv, index.parent / "extra", "packaging==24.0")
    root = comfy("tqdm\n")
    assert run(root, venv, index, "compile") == 0
    assert run(root, venv, index, "sync") == 0
    assert installed(venv) == {"tqdm": "4.66.0"}


def test_sync_replaces_a_build_that_differs_only_in_its_local_label(comfy, venv, tmp_path):
    """uv counts torch 2.5.1+cu124 as satisfying torch==2.5.1 and would keep it: sync forces that one
    package (and only such packages: a plain version change needs no forcing)."""
    cpu, cuda = tmp_path / "cpu", tmp_path / "cuda"
    make_wheel(cpu, "torch", "2.5.1")
    make_wheel(cpu, "tqdm", "4.66.0")
    make_wheel(cpu, "tqdm", "4.67.0")
    make_wheel(cuda, "torch", "2.5.1+cu124")
    install(venv, cuda, "torch==2.5.1+cu124")
    install(venv, cpu, "tqdm==4.66.0")
    root = comfy("torch==2.5.1\ntqdm==4.67.0\n", {})
    base = ["--comfyui", str(root), "--python", str(venv)]
    assert main(["compile", *base, "--no-default-policy", "--no-index", "--find-links", str(cpu)]) == 0
    from comfylock import api
    from comfylock.environment import sync

    ctx = api.Context.open(root, python=venv)
    plan = api.sync_env(ctx, dry_run=True).plan
    assert plan.reinstall == ("torch",) and {c.name for c in plan.changes} == {"torch", "tqdm"}
    assert main(["sync", *base]) == 0
    assert installed(venv)["torch"] == "2.5.1" and installed(venv)["tqdm"] == "4.67.0"
    assert sync.plan(read_lock(root / "comfylock.lock"), {"torch": "2.5.1"}).reinstall == ()


def test_plan_lists_each_change_and_keeps_what_is_protected() -> None:
    lock = lock_of("numpy==1.26.4", "pillow==11.0.0", "tqdm==4.66.0", "scipy==1.0")
    have = {"numpy": "2.1.0", "pillow": "10.4.0", "tqdm": "4.66.0", "requests": "2.32.3", "pip": "24.2",
            "scipy": "1.0.0"}  # fmt: skip
    p = sync.plan(lock, have)
    assert [(c.name, c.old, c.new, c.kind) for c in p.changes] == [
        ("numpy", "2.1.0", "1.26.4", "downgraded"),
        ("pillow", "10.4.0", "11.0.0", "upgraded"),
        ("requests", "2.32.3", None, "removed"),
    ]  # tqdm is in place, scipy 1.0.0 is 1.0, pip is never removed
    assert p.kept == ("pip",) and p.sync_text.endswith("tqdm==4.66.0\npip==24.2\n")
    assert p.reinstall == () and not p.is_noop
    assert sync.plan(lock, {**have, "requests": "2.32.3"}, keep=frozenset({"requests"})).kept == ("requests",)
    assert sync.plan(lock, {"numpy": "1.26.4", "pillow": "11.0.0", "tqdm": "4.66.0", "scipy": "1.0"}).is_noop


def test_a_plan_that_removes_nothing_hands_uv_only_what_it_changes() -> None:
    lock = lock_of(
        "numpy==1.26.4", "pillow==11.0.0", "tqdm==4.66.0", options=("--index-url https://i/simple",)
    )
    p = sync.plan(lock, {"numpy": "2.1.0", "tqdm": "4.66.0", "pip": "24.2"}, unfinished=["tqdm"])
    # numpy moves, pillow arrives, tqdm is reinstalled (a killed sync was changing it); pip stays
    assert p.install_text == "--index-url https://i/simple\nnumpy==1.26.4\npillow==11.0.0\ntqdm==4.66.0\n"
    assert sync.plan(lock, {"numpy": "2.1.0", "requests": "2.32.3"}).install_text == ""  # removes one
    assert sync.plan(lock, {"numpy": "1.26.4", "pillow": "11.0.0", "tqdm": "4.66.0"}).install_text == ""


def test_a_sync_that_removes_nothing_ends_exactly_at_the_lock(comfy, venv, index):
    """Changing and adding packages goes through `uv pip install --no-deps` of just those pins: what is
    left is exactly the lock, as `uv pip sync` leaves it, and check agrees; removing one syncs."""
    root = comfy("idna==3.7\n")
    assert run(root, venv, index, "compile") == 0 and run(root, venv, index, "sync") == 0
    (root / "requirements.txt").write_text("idna==3.10\nnumpy==1.26.4\n", encoding="utf-8")
    assert run(root, venv, index, "compile") == 0
    from comfylock import api

    ctx = api.Context.open(root, python=venv)
    plan = api.sync_env(ctx, dry_run=True).plan
    assert plan.install_text.splitlines()[-2:] == ["idna==3.10", "numpy==1.26.4"]
    assert run(root, venv, index, "sync") == 0
    assert installed(venv) == {"numpy": "1.26.4", "idna": "3.10"}
    assert run(root, venv, index, "check") == 0
    assert run(root, venv, index, "rollback") == 0  # removes numpy: uv pip sync
    assert installed(venv) == {"idna": "3.7"}


def test_plan_reinstalls_what_an_interrupted_sync_was_changing() -> None:
    lock = lock_of("numpy==1.26.4", "tqdm==4.66.0")
    p = sync.plan(lock, {"numpy": "1.26.4", "tqdm": "4.66.0"}, unfinished=["numpy", "gone"])
    assert p.changes == () and p.reinstall == ("numpy",) and not p.is_noop


def test_same_source_tells_registry_url_editable_and_vcs_installs_apart() -> None:
    url = "https://example.invalid/foo-1.0-py3-none-any.whl"
    assert sync.same_source("foo==1.0", None)
    assert not sync.same_source("foo==1.0", {"url": url})  # a URL install is not the registry's
    assert sync.same_source(f"foo @ {url}", {"url": url.replace("https://", "https://u:secret@")})
    assert not sync.same_source(f"foo @ {url}", None)
    assert not sync.same_source("-e foo @ file:///src/foo", {"url": "file:///src/foo"})
    assert sync.same_source("-e foo @ file:///src/foo", {"url": "file:///src/foo", "editable": True})
    vcs, repo = "foo @ git+https://example.invalid/foo.git@abc123", "https://example.invalid/foo.git"
    assert sync.same_source(vcs, {"url": repo, "vcs": "git", "commit": "abc123"})
    assert not sync.same_source(vcs, {"url": repo, "vcs": "git", "commit": "def456"})


def test_apply_makes_the_environment_the_lock(venv: Path, index: Path) -> None:
    install(venv, index, "pillow==10.4.0", "numpy==2.1.0")
    lock = lock_of("numpy==1.26.4", "tqdm==4.66.0", options=("--no-index", f"--find-links {index}"))
    p = sync.plan(lock, installed(venv), keep=frozenset())
    kinds = {(c.name, c.kind) for c in p.changes}
    assert kinds == {("numpy", "downgraded"), ("pillow", "removed"), ("tqdm", "added")}
    sync.apply(p, venv, IndexOptions.from_lines(lock.options))
    assert installed(venv) == {"numpy": "1.26.4", "tqdm": "4.66.0"}
    assert sync.plan(lock, installed(venv), keep=frozenset()).is_noop


def test_remove_torn_clears_a_half_removed_package_and_nothing_else(venv: Path, index: Path) -> None:
    install(venv, index, "numpy==2.1.0", "tqdm==4.66.0", "pillow==11.0.0")
    site = next(p for p in venv.parent.parent.rglob("site-packages") if p.is_dir())
    torn = site / "tqdm-4.66.0.dist-info"
    (torn / "METADATA").unlink()  # a kill between uv's removal of METADATA and of the folder
    untouched = site / "pillow-11.0.0.dist-info"
    (untouched / "METADATA").unlink()  # just as torn, but no sync was changing it
    removed = sync.remove_torn([site], ["tqdm", "numpy"])
    assert removed == [torn] and not torn.exists() and not (site / "tqdm" / "__init__.py").exists()
    assert (site / "numpy" / "__init__.py").is_file()  # whole: left to uv
    assert untouched.is_dir() and (site / "pillow" / "__init__.py").is_file()
    assert "tqdm" not in installed(venv)


def test_what_uv_is_about_to_do_is_said_in_the_right_words():
    from comfylock.environment.sync import SyncPlan, _doing
    from comfylock.lockfile.lock import Change

    def plan(*changes: Change, reinstall: tuple[str, ...] = ()) -> SyncPlan:
        return SyncPlan(tuple(changes), (), "", reinstall)

    assert _doing(plan(Change("a", None, "1"), Change("b", None, "2"))) == "installing 2 packages"
    assert _doing(plan(Change("a", "1", None))) == "removing 1 package"
    mixed = plan(Change("a", None, "1"), Change("b", "1.0", "2.0"), Change("c", "1", None))
    assert _doing(mixed) == "changing 3 packages (1 installed, 1 upgraded, 1 removed)"
    assert _doing(plan(reinstall=("torch",))) == "reinstalling 1 package"
    down = plan(Change("a", "2.0", "1.0"), Change("b", "4.70.1", "4.66.0"))
    assert _doing(down) == "downgrading 2 packages"
