"""Benchmark 4: wall time of ``sae-stitch --help`` against ``python -c "import sae_lens"``,
each in a fresh process. Goal: ``--help`` under one second."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._measure import Row, print_rows

NAME = "cli"
GOAL_SECONDS = 1.0


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "sae-stitch"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("sae-stitch")
    return [found] if found else [sys.executable, "-m", "sae_lens_stitch.cli"]


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def run(*, quick: bool, repeat: int) -> list[Row]:
    del quick
    cmds = {
        "sae-stitch --help": [*_cli(), "--help"],
        "python -c 'import sae_lens'": [sys.executable, "-c", "import sae_lens"],
        "python -c 'pass'": [sys.executable, "-c", "pass"],
    }
    best = {name: min(_wall(cmd) for _ in range(repeat)) for name, cmd in cmds.items()}
    ours, ref = best["sae-stitch --help"], best["python -c 'import sae_lens'"]
    rows = [
        Row(NAME, "fresh process", "python -c 'import sae_lens'", ref),
        Row(NAME, "fresh process", "python -c 'pass'", best["python -c 'pass'"]),
        Row(
            NAME,
            "fresh process",
            "sae-stitch --help",
            ours,
            baseline="import sae_lens",
            ratio=ours / ref,
            goal=f"< {GOAL_SECONDS:.0f} s",
            met=ours < GOAL_SECONDS,
            note="ratio of wall times",
        ),
    ]
    print_rows(rows)
    return rows
