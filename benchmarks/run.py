"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--only NAME ...] [--repeat N]``.

Every figure is printed beside a baseline measured in the same run, as a ratio of CPU times
(process CPU seconds, all threads: steadier than wall time on a shared machine) with the
wall-time ratio beside it. Times are the minimum over the repeats, run round-robin. Peak memory
is the rise of the process's peak RSS (VmHWM) during the call; see ``benchmarks/_measure.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("SAE_STITCH_NO_PROGRESS", "1")

BENCHMARKS: dict[str, str] = {
    "match": "benchmarks.bench_match",
    "effects": "benchmarks.bench_effects",
    "curves": "benchmarks.bench_curves",
    "cli": "benchmarks.bench_cli",
    "stitch": "benchmarks.bench_stitch_memory",
    "assemble": "benchmarks.bench_assemble",
    "study": "benchmarks.bench_study",
    "relations": "benchmarks.bench_relations",
}


def machine() -> dict[str, Any]:
    """The machine the figures come from."""
    import torch

    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": None if mem is None else round(mem, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument(
        "--only",
        nargs="+",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only these benchmarks ({', '.join(BENCHMARKS)})",
    )
    p.add_argument("--quick", action="store_true", help="toy scale (seconds; for smoke tests)")
    p.add_argument(
        "--repeat", type=int, default=None, help="repeats per figure (default 3, quick 1)"
    )
    p.add_argument(
        "--no-large",
        action="store_true",
        help="skip the 98,304 x 49,152 match_features run and the synthetic assembly families "
        "(minutes to half an hour on 2 cores)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    import importlib

    from benchmarks._measure import Row, write_json

    repeat = args.repeat or (1 if args.quick else 3)
    info = machine()
    print(
        f"# {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, torch {info['torch']} "
        f"({info['torch_threads']} threads); repeat {repeat}{', quick' if args.quick else ''}",
        flush=True,
    )
    rows: list[Row] = []
    t0 = time.perf_counter()
    for name in args.only or list(BENCHMARKS):
        module = importlib.import_module(BENCHMARKS[name])
        runner: Callable[..., list[Row]] = module.run
        kwargs: dict[str, Any] = {"quick": args.quick, "repeat": repeat}
        if name in ("match", "assemble"):
            kwargs["large"] = not args.no_large
        rows += runner(**kwargs)
    print(f"# done in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.json is not None:
        write_json(rows, args.json, {"machine": info, "argv": sys.argv[1:], "repeat": repeat})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
