"""comfylock's benchmarks (issue 6): `make bench`, `make bench-real`, `make bench-peers`.

    python benchmarks/run.py            hermetic: generated trees, hand-written wheels, no network
    python benchmarks/run.py --real     ../shared/corpus/ComfyUI against PyPI (skipped when absent)
    python benchmarks/run.py --peers    comfy-cli and pip-tools on the hermetic tree (installs them
                                        from PyPI into .bench/peers-venv)

Prints a Markdown table (comfylock ÷ reference, medians of interleaved runs, goal, PASS/MISS) and
rewrites that run's section of benchmarks/RESULTS.md. Exit 0 whatever the goals say (a benchmark
reports; tests never assert speed), 1 when a command it measures fails, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, however we are started

from _common import BENCH_DIR, RESULTS, BenchError, Row, machine, shared, table, update_results  # noqa: E402


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of node counts: {text!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("node counts must be positive")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help="the corpus against PyPI")
    mode.add_argument("--peers", action="store_true", help="comfy-cli and pip-tools on the hermetic tree")
    p.add_argument("--repeat", type=int, help="timed runs per case (default: 5; 3 with --real)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (default: 1)")
    p.add_argument("--nodes", type=int, default=20, help="nodes of the hermetic tree (default: 20)")
    p.add_argument(
        "--sizes", type=_sizes, default=[10, 100, 1000], help="scale-case node counts (default: 10,100,1000)"
    )
    p.add_argument(
        "--only", help="comma-separated case groups to run: 1,3,4,5,6,8,9; V (verify, --real) (default: all)"
    )
    p.add_argument("--work", type=Path, default=BENCH_DIR, help="scratch folder (default: .bench/)")
    p.add_argument("--results", type=Path, default=RESULTS, help="the Markdown file to update")
    p.add_argument("--corpus", type=Path, default=shared("corpus", "ComfyUI"))
    p.add_argument(
        "--real-comfyui",
        type=Path,
        help="the real ComfyUI of the verify cases (--real; default: ../shared/real/ComfyUI when present)",
    )
    return p


def _section(title: str, how: str, rows: Sequence[Row], started: float, extra: str) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    took = time.perf_counter() - started
    return (
        f"## {title}\n\n"
        f"Measured {when} by `{how}` in {took:.0f} s on: {machine()}.\n\n"
        f"{extra}\n\n{table(rows)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.repeat is not None and args.repeat < 1 or args.warmup < 0 or args.nodes < 3:
        print("run.py: --repeat must be >= 1, --warmup >= 0, --nodes >= 3", file=sys.stderr)
        return 2
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    started = time.perf_counter()
    try:
        if args.real:
            from _real import Real

            real = Real(
                args.work / "real", args.corpus, repeat=args.repeat or 3, warmup=args.warmup, log=_log
            )
            skip = real.unavailable()
            if skip:
                _log(f"bench-real skipped: {skip}")
                return 0
            descs: list[str] = []
            rows = []
            if only is None or only - {"V"}:
                rows += real.all_rows(only)
                descs.append(real.describe())
            if only is None or "V" in only:
                from _verify import RealVerify, find_real_comfyui

                verify = RealVerify(
                    args.work / "real" / "verify",
                    args.real_comfyui or find_real_comfyui(),
                    args.work / "real" / "uv-cache",
                    repeat=min(args.repeat or 3, 3),
                    warmup=min(args.warmup, 1),
                    log=_log,
                )
                rows += verify.rows()
                descs.append(verify.describe())
            title, how, extra, section = (
                "Real corpus against PyPI",
                "make bench-real",
                " ".join(descs),
                "real",
            )
        elif args.peers:
            from _peers import Peers

            peers = Peers(args.work, repeat=args.repeat or 5, warmup=args.warmup, nodes=args.nodes, log=_log)
            rows = peers.all_rows()
            title, how, extra, section = (
                "Peers on the hermetic tree",
                "make bench-peers",
                peers.describe(),
                "peers",
            )
        else:
            from _hermetic import Hermetic

            h = Hermetic(
                args.work / "hermetic",
                repeat=args.repeat or 5,
                warmup=args.warmup,
                nodes=args.nodes,
                sizes=args.sizes,
                log=_log,
            )
            rows = h.all_rows(only)
            title, how, extra, section = "Hermetic", "make bench", h.describe(), "hermetic"
    except BenchError as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 1
    repeat = args.repeat or (3 if args.real else 5)
    extra += f" Each case: {args.warmup} untimed warm-up round(s), then {repeat} timed rounds, interleaved."
    text = _section(title, how, rows, started, extra)
    print(text)
    update_results(args.results, section, text)
    _log(f"wrote the {section} section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
