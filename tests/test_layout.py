"""The package's shape: no import loop at module level, value types in leaf modules.

Read from the source with ast (nothing is imported), so a loop hidden by import order still shows.
An import inside a function or under `if TYPE_CHECKING:` runs later or never, so it makes no loop.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import comfylock
from comfylock import _names
from comfylock.environment import scan

PACKAGE = Path(comfylock.__file__).parent

# Value types passed between stages: they import nothing of comfylock's, at any level.
LEAVES = (
    "comfylock._names",
    "comfylock.collect.types",
    "comfylock.environment.target",
    "comfylock.resolve.index",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, body: list[ast.stmt], top_only: bool) -> set[str]:
    """The comfylock modules `body` imports; with `top_only`, not those inside functions."""
    found: set[str] = set()
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in body:
        if isinstance(node, ast.Import):
            found |= {_existing(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else _existing(base))
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            found |= _imports(module, node.orelse, top_only)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not top_only:
                found |= _imports(module, node.body, top_only)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    found |= _imports(module, [c for c in children if isinstance(c, ast.AST)], top_only)
            if isinstance(node, ast.ExceptHandler):
                found |= _imports(module, node.body, top_only)
    return {m for m in found if m in MODULES and m != module}


def _existing(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _tree(module: str) -> list[ast.stmt]:
    return ast.parse(MODULES[module].read_text(encoding="utf-8")).body


def _graph() -> dict[str, set[str]]:
    return {m: _imports(m, _tree(m), top_only=True) for m in MODULES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph`, as the modules along it; None when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_graph_sees_the_imports_it_must() -> None:
    graph = _graph()
    assert "comfylock.environment.target" in graph["comfylock.environment.probe"]
    assert "comfylock.resolve.index" in graph["comfylock.resolve.uv"]
    assert "comfylock.resolve.uv" in graph["comfylock.resolve.request"]  # `from pkg import module`
    # Imported inside functions only: no edge.
    assert "comfylock.collect.gather" not in graph["comfylock.api"]


def test_a_loop_would_be_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_loop_at_module_level() -> None:
    assert _cycle(_graph()) is None


def test_value_types_import_nothing_of_comfylocks() -> None:
    for leaf in LEAVES:
        assert _imports(leaf, _tree(leaf), top_only=False) == set(), leaf
    # What a resolution is asked and answers: built on IndexOptions alone.
    types = "comfylock.resolve.types"
    assert _imports(types, _tree(types), top_only=False) <= set(LEAVES)


def test_the_standalone_scan_spells_names_as_comfylock_does() -> None:
    # scan.py runs inside the target as it is, so it cannot import _names: the two copies must agree.
    assert scan.NORMAL_VERSION.pattern == _names.NORMAL_VERSION.pattern
    assert scan._SEPARATORS.pattern == _names._SEPARATORS.pattern
    for name in ("Foo_Bar", "a.b-c__d", "ZOPE.Interface", "x"):
        assert scan.canonical(name) == _names.canon(name)
    assert re.fullmatch(_names.NORMAL_VERSION, "2.1.0+cu121")
