"""`make demo`: compile, sync, add a node, compile, sync, roll back; examples/ComfyUI against PyPI.

The example tree is copied to demo/ComfyUI, with a fresh virtual environment in demo/ComfyUI/venv
(comfylock finds `<comfyui>/venv` on its own), so nothing outside demo/ is changed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE.parent / "demo"
ROOT = WORK / "ComfyUI"


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}", flush=True)


def comfylock(*args: str, ok: tuple[int, ...] = (0,)) -> int:
    # --python is explicit: an activated venv (VIRTUAL_ENV) would otherwise win over <comfyui>/venv.
    cmd = [sys.executable, "-m", "comfylock", *args, "--comfyui", str(ROOT), "--python", str(ROOT / "venv")]
    print("$ comfylock " + " ".join(args), flush=True)
    code = subprocess.run(cmd).returncode
    if code not in ok:
        raise SystemExit(f"demo: `comfylock {' '.join(args)}` exited {code}")
    return code


def main() -> None:
    start = time.perf_counter()
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(HERE / "ComfyUI", ROOT)
    from uv import find_uv_bin

    subprocess.run(
        [find_uv_bin(), "venv", "--quiet", "--python", sys.executable, str(ROOT / "venv")], check=True
    )
    print(f"ComfyUI at {ROOT} with 4 custom nodes; target environment {ROOT / 'venv'} (empty)")

    step("1. compile: every node's requirements resolved at once into comfylock.lock")
    comfylock("compile")
    step("2. sync: the environment becomes exactly the lock")
    comfylock("sync")
    comfylock("check")

    step("3. install a new node (ComfyUI-GGUF) and compile again: only the change is shown")
    shutil.copytree(HERE / "new_nodes" / "ComfyUI-GGUF", ROOT / "custom_nodes" / "ComfyUI-GGUF")
    comfylock("compile")
    step("4. sync the new lock")
    comfylock("sync")

    step("5. roll back: the environment as it was before the last sync")
    comfylock("history")
    comfylock("rollback")
    print("(comfylock.lock still lists the GGUF packages, so `check` now reports the drift:)")
    comfylock("check", ok=(1,))
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s; files are in {WORK}")


if __name__ == "__main__":
    main()
