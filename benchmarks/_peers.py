"""Case 7: comfylock against its peers on the hermetic tree: pip-tools (pip-compile, pip-sync) and
comfy-cli's dependency compiler, installed from PyPI into their own venv (.bench/peers-venv)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from _common import BenchError, Row, compare, not_measured, rmtree, run, timed, venv_bin, venv_python
from _hermetic import Hermetic
from _trees import Tree, add_node, cached_node_requirements

# comfy-cli exposes its compiler as comfy_cli.uv.DependencyCompiler (what `comfy install` and
# `comfy node install --uv-compile` use); compile_deps() resolves core alone, then core + nodes.
_COMFY_CLI_DRIVER = """\
import sys
from comfy_cli.uv import DependencyCompiler

dc = DependencyCompiler(cwd=sys.argv[1], executable=sys.executable, outDir=sys.argv[2], skip_torch=True)
dc.compile_deps()
"""


class Peers:
    def __init__(
        self, work: Path, *, repeat: int, warmup: int, nodes: int, log: Callable[[str], None]
    ) -> None:
        self.h = Hermetic(work / "peers", repeat=repeat, warmup=warmup, nodes=nodes, sizes=(), log=log)
        self.venv, self.log = work / "peers-venv", log
        self.versions = ""

    def install(self) -> str | None:
        """Make the peers' venv (once); the reason it cannot be made, or None."""
        py = venv_python(self.venv)
        probe = "import importlib.metadata as m; print(*map(m.version, ('comfy-cli', 'pip-tools', 'pip')))"
        if not py.is_file() or run([py, "-c", probe], os.environ, check=False).returncode != 0:
            self.log(f"installing comfy-cli and pip-tools from PyPI into {self.venv}")
            rmtree(self.venv)
            run([sys.executable, "-m", "venv", self.venv], os.environ)
            # The machine's ordinary pip set-up, not the benchmark's hermetic env: this is a real install.
            proc = run(
                [py, "-m", "pip", "install", "--quiet", "comfy-cli", "pip-tools"], os.environ, check=False
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                return f"cannot install comfy-cli and pip-tools from PyPI: {last}"
        cli, tools, pip = run([py, "-c", probe], os.environ).stdout.split()
        self.versions = f"comfy-cli {cli}, pip-tools {tools} (pip {pip})"
        return None

    def all_rows(self) -> list[Row]:
        why = self.install()
        if why is not None:
            return [not_measured("7", "peers", "comfy-cli, pip-tools", "", why)]
        h, env = self.h, self.h.env
        d = h.work / "c7"
        t, py = h.tree.clone(d / "ComfyUI"), h.venv(d / "venv")
        lock, out = t.root / "comfylock.lock", d / "pip-compile.txt"
        pip_compile = [
            venv_bin(self.venv, "pip-compile"), "--quiet", "--no-index", "--find-links", t.index,
            "--cache-dir", h.work / "pip-tools-cache", "--output-file", out, *t.inputs,
        ]  # fmt: skip
        self.log("case 7: pip-compile")

        def full_ours() -> float:
            lock.unlink(missing_ok=True)
            return timed(h.cl("compile", t, py), env)

        def full_pip() -> float:
            out.unlink(missing_ok=True)
            return timed(pip_compile, env, cwd=d)

        full = h.pairs([full_ours, full_pip])
        noop = h.pairs([lambda: timed(h.cl("compile", t, py), env), lambda: timed(pip_compile, env, cwd=d)])
        rows = [
            compare("7a", "full compile", full[0], "pip-compile", full[1], None),
            compare(
                "7b",
                "no-op compile",
                noop[0],
                "pip-compile, previous output in place",
                noop[1],
                None,
                "pip-compile has no no-op path: it resolves again",
            ),
        ]
        rows += self._sync_rows(t, out)
        rows.append(self._comfy_cli_row(t, py))
        if rows[-1].ratio is not None:  # comfy-cli ran
            rows.append(self._comfy_cli_add_node_row(t, py))
        return rows

    def _sync_rows(self, t: Tree, out: Path) -> list[Row]:
        h, env = self.h, self.h.env
        self.log("case 7: pip-sync")
        template, d = h.pip_template(), h.work / "c7"
        pip_sync = [venv_bin(self.venv, "pip-sync"), "--quiet", "--no-index", "--find-links", t.index]

        def fresh(name: str) -> Path:
            rmtree(d / name)
            shutil.copytree(template, d / name, symlinks=True)
            return venv_python(d / name)

        def ours() -> float:
            py = fresh("venv-comfylock")
            rmtree(t.root / "user")  # history is comfylock's own bookkeeping; start each run alike
            return timed(h.cl("sync", t, py, "--lock", t.root / "comfylock.lock"), env)

        def theirs() -> float:
            py = fresh("venv-pip-sync")
            return timed([*pip_sync, "--python-executable", py, out], env)

        into_fresh = h.pairs([ours, theirs])
        py_ours, py_theirs = venv_python(d / "venv-comfylock"), venv_python(d / "venv-pip-sync")
        noop = h.pairs(
            [
                lambda: timed(h.cl("sync", t, py_ours), env),
                lambda: timed([*pip_sync, "--python-executable", py_theirs, out], env),
            ]
        )
        return [
            compare("7c", "sync into a fresh venv", into_fresh[0], "pip-sync", into_fresh[1], None),
            compare("7d", "no-op sync", noop[0], "pip-sync, nothing to do", noop[1], None),
        ]

    def _comfy_cli_row(self, t: Tree, py: Path) -> Row:
        h = self.h
        self.log("case 7: comfy-cli's DependencyCompiler")
        d = h.work / "c7"
        driver = d / "comfy_cli_driver.py"
        driver.write_text(_COMFY_CLI_DRIVER, encoding="utf-8")
        empty = d / "empty-index"
        empty.mkdir(exist_ok=True)
        # comfy-cli passes no index options to uv; uv's own variables keep it on the local wheels.
        env = {**h.env, "UV_DEFAULT_INDEX": empty.as_uri(), "UV_FIND_LINKS": str(t.index)}
        outdir = d / "comfy-cli-out"
        lock = t.root / "comfylock.lock"

        def theirs() -> float:
            rmtree(outdir)
            outdir.mkdir()
            return timed([venv_python(self.venv), driver, t.root, outdir], env)

        def ours() -> float:
            lock.unlink(missing_ok=True)
            return timed(h.cl("compile", t, py), h.env)

        try:
            times = h.pairs([ours, theirs])
        except BenchError as e:
            return not_measured(
                "7e",
                "full compile",
                "comfy-cli DependencyCompiler.compile_deps()",
                "",
                f"comfy-cli failed: {e}",
            )
        if not (outdir / "requirements.compiled").is_file():
            raise BenchError("comfy-cli wrote no requirements.compiled")
        return compare(
            "7e",
            "full compile",
            times[0],
            "comfy-cli DependencyCompiler.compile_deps()",
            times[1],
            None,
            "comfy-cli resolves twice (core alone for its overrides, then core + nodes)",
        )

    def _comfy_cli_add_node_row(self, t: Tree, py: Path) -> Row:
        """7f: a node added to a compiled tree: comfylock recompiles from its lock; comfy-cli (which
        keeps no lock to start from) runs its whole compile again, as `comfy node install` does."""
        h = self.h
        self.log("case 7f: compile after adding one node, against comfy-cli")
        d = h.work / "c7"
        driver, outdir, lock = d / "comfy_cli_driver.py", d / "comfy-cli-out", t.root / "comfylock.lock"
        empty = d / "empty-index"
        env = {**h.env, "UV_DEFAULT_INDEX": empty.as_uri(), "UV_FIND_LINKS": str(t.index)}
        node = t.root / "custom_nodes" / "ComfyUI-NewNode"
        rmtree(node)
        run(h.cl("compile", t, py), h.env)
        base_lock = lock.read_bytes()

        def ours() -> float:
            rmtree(node)
            lock.write_bytes(base_lock)  # the lock before the node arrived
            add_node(t, node.name, cached_node_requirements())
            return timed(h.cl("compile", t, py), h.env)

        def theirs() -> float:
            rmtree(outdir)
            outdir.mkdir()
            add_node(t, node.name, cached_node_requirements())
            return timed([venv_python(self.venv), driver, t.root, outdir], env)

        try:
            times = h.pairs([ours, theirs])
        except BenchError as e:
            return not_measured("7f", "compile after adding one node", "comfy-cli", "≤ 0.2", f"failed: {e}")
        finally:
            rmtree(node)
        return compare(
            "7f",
            "compile after adding one node, its packages in uv's cache",
            times[0],
            "comfy-cli DependencyCompiler.compile_deps(), same tree",
            times[1],
            None,
            "comfy-cli has no lock to start from: it resolves core, then core + nodes, again. The goal "
            "(≤ 0.2) is checked on the real corpus (real section, row 7f): here uv resolves the tiny "
            "wheels in 30 ms, less than Python takes to start and import packaging",
        )

    def describe(self) -> str:
        return (
            f"Peers: {self.versions}, in {self.venv.name} (Python {sys.version.split()[0]}); the hermetic "
            f"tree ({len(self.h.tree.inputs) - 1} nodes) and wheels; pip-sync and comfylock sync into copies "
            "of the same fresh venv holding pip."
        )
