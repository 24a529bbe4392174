"""Hermetic data: hand-written wheels (tests/wheels.py) and generated ComfyUI trees, deterministic.

The realistic tree has the shape of a real install: core plus about 20 nodes, about 80 packages in
dependency chains (leaf <- mid <- top), packages shared by many nodes, and the two classic breakages of
installing nodes one by one: a node pinning numpy-like `numlib<2` after core pulled a scipy-like package
that needs numlib 2, and a node pinning `libx==1.5.0` after another node's `widget` pulled libx 2.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from _common import REPO

_SPECS = ("", "", ">=1.0", "<3", ">=1.1", "!=1.0.0")  # every one admits 2.0.0: the tree always resolves
_VERSIONS = ("1.0.0", "1.1.0", "2.0.0")
_NODE_WORDS = (
    "Alpha", "Bloom", "Canvas", "Depth", "Echo", "Flux", "Glow", "Hue", "Ink", "Jitter", "Kiln", "Lumen",
    "Mosaic", "Noise", "Orbit", "Prism", "Quill", "Ripple", "Sketch", "Tiler", "Umbra", "Vapor", "Warp",
)  # fmt: skip


def _wheels() -> ModuleType:
    """tests/wheels.py, imported by path (the tests folder is not a package)."""
    spec = importlib.util.spec_from_file_location("_bench_wheels", REPO / "tests" / "wheels.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Tree:
    root: Path  # the ComfyUI folder
    index: Path  # the --find-links folder holding every package the tree can need
    inputs: tuple[Path, ...]  # core's file, then each node's, in comfylock's node order

    def clone(self, dest: Path, index: Path | None = None) -> Tree:
        """A private copy of the ComfyUI folder; the wheel index is shared unless `index` asks for a copy
        (a case that adds wheels must not slow the cases after it down with a bigger folder)."""
        for path in (dest, index):
            if path is not None and path.exists():
                shutil.rmtree(path)
        shutil.copytree(self.root, dest, symlinks=True)
        if index is not None:
            shutil.copytree(self.index, index)
        inputs = tuple(dest / p.relative_to(self.root) for p in self.inputs)
        return Tree(dest, index or self.index, inputs)


def _write_root(root: Path, core: list[str], nodes: dict[str, list[str]]) -> tuple[Path, ...]:
    if root.exists():
        shutil.rmtree(root)
    (root / "custom_nodes").mkdir(parents=True)
    (root / "main.py").write_text("", encoding="utf-8")
    inputs = [root / "requirements.txt"]
    inputs[0].write_text("# core\n" + "".join(f"{r}\n" for r in core), encoding="utf-8")
    for name in sorted(nodes, key=lambda n: (n.casefold(), n)):  # comfylock's node order
        path = root / "custom_nodes" / name / "requirements.txt"
        path.parent.mkdir()
        path.write_text("".join(f"{r}\n" for r in nodes[name]), encoding="utf-8")
        inputs.append(path)
    return tuple(inputs)


def _universe(rng: random.Random) -> dict[str, dict[str, list[str]]]:
    """About 80 packages: leaves, mids needing leaves, tops needing mids, and the special ones."""
    spec: dict[str, dict[str, list[str]]] = {}
    leaves = [f"leaf-{i:02d}" for i in range(25)]
    mids = [f"mid-{i:02d}" for i in range(30)]
    tops = [f"top-{i:02d}" for i in range(20)]
    for name in leaves + [f"extra-{i}" for i in range(5)]:
        spec[name] = {v: [] for v in _VERSIONS}
    for name in mids:
        spec[name] = {
            v: [f"{d}{rng.choice(_SPECS)}" for d in rng.sample(leaves, rng.randint(1, 3))] for v in _VERSIONS
        }
    for name in tops:
        spec[name] = {
            v: [f"{d}{rng.choice(_SPECS)}" for d in rng.sample(mids, rng.randint(1, 3))]
            + (["numlib>=1.20"] if rng.random() < 0.4 else [])
            + (["imglib"] if rng.random() < 0.3 else [])
            for v in _VERSIONS
        }
    spec.update(
        {
            "numlib": {"1.24.0": [], "1.26.4": [], "2.1.0": []},
            "scilib": {"1.11.4": ["numlib<2,>=1.21"], "1.14.0": ["numlib>=2"]},
            "libx": {"1.5.0": [], "2.1.0": []},
            "widget": {"1.0.0": ["libx<2"], "2.0.0": ["libx>=2"]},
            "imglib": {"10.4.0": [], "11.0.0": []},
            "idnalib": {"3.7": [], "3.10": []},
            "httplib": {"2.31.0": ["idnalib>=2"], "2.32.3": ["idnalib>=2"]},
            "progress": {"4.66.0": [], "4.67.1": []},
        }
    )
    return spec


def realistic_tree(dest: Path, nodes: int = 20, seed: int = 6) -> Tree:
    """Core + `nodes` nodes (at least 3: the ones whose pins break one-by-one installs are always there)."""
    rng = random.Random(seed)
    spec = _universe(rng)
    index = dest / "wheels"
    if index.exists():
        shutil.rmtree(index)
    _wheels().make_index(index, spec)
    pool = [n for n in spec if n.startswith(("top-", "mid-"))] * 2 + [
        n for n in spec if n.startswith("leaf-")
    ]
    common = ["imglib", "httplib", "progress", "numlib"]
    core = [
        "numlib>=1.25",
        "scilib",
        "imglib",
        "httplib",
        "progress",
        *rng.sample([n for n in spec if n.startswith("top-")], 5),
    ]
    tree: dict[str, list[str]] = {
        # Sorted first: pulls widget 2.0.0 and so libx 2 when installed on its own.
        "ComfyUI-Aardvark": ["widget", "progress", *rng.sample(pool, 3)],
        # Like Impact-Pack's numpy<2: downgrades numlib under core's scilib 1.14.0 when installed alone.
        "ComfyUI-Mpact": ["numlib<2", "imglib", *rng.sample(pool, 4)],
        # Sorted last: the legacy pin that breaks widget 2.0.0.
        "zz-legacy-nodes": ["libx==1.5.0", *rng.sample(pool, 2)],
    }
    for word in itertools.islice(itertools.cycle(_NODE_WORDS), max(0, nodes - 3)):
        name = f"ComfyUI-{word}{'' if len(tree) < len(_NODE_WORDS) + 3 else len(tree)}"
        reqs = {p: f"{p}{rng.choice(_SPECS)}" for p in rng.sample(pool, rng.randint(2, 6))}
        # The shared packages have their own version numbers: only bounds that admit them.
        reqs |= {
            p: f"{p}{rng.choice(('', '', '>=1.0', '!=0.1'))}" for p in rng.sample(common, rng.randint(0, 2))
        }
        tree[name] = sorted(reqs.values())
    root = dest / "ComfyUI"
    return Tree(root, index, _write_root(root, core, tree))


def add_node(tree: Tree, name: str, requirements: list[str]) -> Path:
    """Drop a new node folder into the tree; returns its requirements file."""
    path = tree.root / "custom_nodes" / name / "requirements.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
    return path


def cached_node_requirements() -> list[str]:
    """A new node's requirements: packages in the index that no node of the tree asks for."""
    return [f"extra-{i}>=1.0" for i in range(4)] + ["imglib", "leaf-03"]


_fresh = itertools.count()


def fresh_node_requirements(tree: Tree, tag: str) -> list[str]:
    """A new node needing packages no run has seen yet: new wheels, new names, written now."""
    wheels = _wheels()
    n = next(_fresh)
    names = [f"fresh-{tag}-{n}-{i}" for i in range(4)]
    for i, name in enumerate(names):
        for v in _VERSIONS:
            wheels.make_wheel(tree.index, name, v, [f"leaf-{(n + i) % 25:02d}>=1.0"])
    return [*names, "imglib"]


def scale_index(dest: Path, pool: int = 400, seed: int = 8) -> tuple[Path, list[str]]:
    """Wheels for the scale trees: `pool` packages, two versions each, some needing others."""
    rng = random.Random(seed)
    names = [f"scale-{i:03d}" for i in range(pool)]
    spec = {
        name: {
            v: [f"{d}>=1.0" for d in rng.sample(names[:i], min(i, rng.randint(0, 2)))]
            for v in ("1.0.0", "2.0.0")
        }
        for i, name in enumerate(names)
    }
    index = dest / "scale-wheels"
    if not index.is_dir():  # the same seed always writes the same wheels
        _wheels().make_index(index, spec)
    return index, names


def scale_tree(dest: Path, nodes: int, names: list[str], index: Path, seed: int = 9) -> Tree:
    """Core + `nodes` nodes of 5-15 requirements each, with comments and markers as real files have."""
    rng = random.Random(seed + nodes)
    specs = ("", ">=1.0", "<3", "!=1.0.0", ">=1.0,<3", '; python_version >= "3.8"')
    tree: dict[str, list[str]] = {}
    for i in range(nodes):
        picks = rng.sample(names, rng.randint(5, 15))
        lines = [f"{p}{rng.choice(specs)}" for p in picks]
        if i % 4 == 0:
            lines.insert(0, f"# requirements of node {i}")
        tree[f"node-{i:04d}"] = lines
    root = dest / f"scale-{nodes}" / "ComfyUI"
    return Tree(root, index, _write_root(root, [f"{n}>=1.0" for n in rng.sample(names, 10)], tree))
