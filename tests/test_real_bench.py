"""The verify cases of `make bench-real` (benchmarks/_verify.py) skip cleanly where they cannot run."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import lock_pins, table  # noqa: E402
from _verify import RealVerify, find_real_comfyui  # noqa: E402


def test_without_a_real_comfyui_the_verify_rows_say_why(tmp_path: Path) -> None:
    bench = RealVerify(tmp_path / "verify", None, tmp_path / "cache", repeat=1, warmup=0, log=lambda _: None)
    rows = bench.rows()
    assert [r.case for r in rows] == ["V1", "V2"]
    assert all(r.ours == "not measured" and "no real ComfyUI" in r.note for r in rows)
    assert "| V2 | no-op sync (nothing changed: no verify) | not measured |" in table(rows)
    assert not (tmp_path / "verify").exists()  # nothing made, nothing run


def test_a_real_comfyui_that_cannot_be_installed_is_reported_not_a_crash(tmp_path: Path) -> None:
    source = tmp_path / "ComfyUI"
    (source / "custom_nodes").mkdir(parents=True)
    (source / "main.py").write_text("")
    (source / "requirements.txt").write_text("no-such-package-anywhere-xyz==1\n")
    (source / "user").mkdir()  # never copied: the benchmark's copy starts without history
    bench = RealVerify(
        tmp_path / "verify", source, tmp_path / "cache", repeat=1, warmup=0, log=lambda _: None
    )
    empty = tmp_path / "empty-index"
    empty.mkdir()
    bench.env.update(UV_INDEX_URL=empty.as_uri())  # hermetic: an index that has nothing
    rows = bench.rows()
    assert [r.ours for r in rows] == ["not measured", "not measured"]
    assert "could not be installed" in rows[0].note
    assert not (tmp_path / "verify" / "ComfyUI" / "user" / "comfylock" / "history").exists()


def test_the_real_comfyui_is_found_beside_the_checkout_or_its_worktree_folder() -> None:
    found = find_real_comfyui()
    assert (
        found is None or (found / "main.py").is_file() and found.parts[-3:] == ("shared", "real", "ComfyUI")
    )


def test_a_lock_counts_its_pins_not_the_requested_by_lines_quoting_one() -> None:
    text = (
        "# comfylock-lock: 1\n# policy: pin_dependencies torch==2.5.1\n\n"
        "comfyui-frontend-package==1.27.10\n"
        "    # requested by core (requirements.txt:1): comfyui-frontend-package==1.27.10\n"
        "numpy==2.1.0\n    # needed by scipy\n"
    )
    assert lock_pins(text) == 2
