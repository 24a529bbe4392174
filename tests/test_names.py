"""The version comparisons comfylock makes without packaging agree with packaging's."""

from __future__ import annotations

import itertools

from packaging.version import Version

from comfylock._names import release, same_version
from comfylock.lockfile.lock import Change

VERSIONS = [
    "1.0", "1.0.0", "1.0rc1", "1.0.0rc1", "1!1.0", "0!1.0", "01.0", "1.0rc01", "1.0.post1",
    "1.0.0.post1", "1.0.post01", "2.5.1+cu124", "2.5.1", "2.5.1+cu121", "2.5.1+cu0124", "1.0.dev0",
    "1.0a1", "1.0b1", "0.10", "0.1", "10.0", "1.0.0.0.dev1", "1.0.dev1", "1.0+abc.1", "1.0+abc.01",
    "1.0+10", "1.0+1", "1.0+01", "1.0+1.0", "1.0+1.00", "1.0rc1.post1.dev1", "2.31.0", "2.32.3",
]  # fmt: skip


def test_same_version_agrees_with_packaging_wherever_it_answers() -> None:
    answered = 0
    for a, b in itertools.product(VERSIONS, VERSIONS):
        same = same_version(a, b)
        if same is not None:
            answered += 1
            assert same == (Version(a) == Version(b)), (a, b)
    assert answered == len(VERSIONS) ** 2  # every normal-form pair is answered without packaging
    assert same_version("1.0-rc1", "1.0rc1") is None  # not in normal form: packaging decides


def test_change_kind_orders_as_packaging_does() -> None:
    for a, b in itertools.permutations(VERSIONS, 2):
        if Version(a) == Version(b):
            continue
        want = "upgraded" if Version(b) > Version(a) else "downgraded"
        assert Change("x", a, b).kind == want, (a, b)
    assert release("1.26.4") == (1, 26, 4) and release("1.0.0") == (1,) and release("1.0rc1") is None
