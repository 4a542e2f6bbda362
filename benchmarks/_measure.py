"""Timing and peak-memory helpers shared by the benchmarks, and the result rows they print.

Peak memory is the process's peak resident set size (``VmHWM`` in ``/proc/self/status``),
reset before each measurement by writing ``5`` to ``/proc/self/clear_refs`` (Linux), and
reported as the rise above the resident size at the start of the measurement. It counts
every allocation (torch's CPU allocator included, which tracemalloc does not see).
"""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

MIB = 2**20


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> int | None:
    """Reset the peak-RSS counter; return the current RSS in bytes (None off Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    rss = _status_kib("VmRSS")
    return None if rss is None else rss * 1024


def peak_rss() -> int | None:
    """Peak RSS in bytes since the last :func:`reset_peak_rss` (None off Linux)."""
    hwm = _status_kib("VmHWM")
    return None if hwm is None else hwm * 1024


@dataclass
class Measurement:
    """Best (minimum) wall time over the repeats and the largest peak-RSS rise."""

    seconds: float
    peak_bytes: int | None
    cpu_seconds: float
    times: list[float] = field(default_factory=lambda: [])
    cpu_times: list[float] = field(default_factory=lambda: [])

    @property
    def peak_mib(self) -> float | None:
        return None if self.peak_bytes is None else self.peak_bytes / MIB


def measure_once(fn: Callable[[], Any]) -> tuple[float, int | None, float, Any]:
    """Run ``fn`` once: (wall seconds, peak RSS rise in bytes, process CPU seconds, result)."""
    gc.collect()
    start = reset_peak_rss()
    c0 = time.process_time()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = fn()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    peak = peak_rss()
    rise = None if start is None or peak is None else max(0, peak - start)
    return seconds, rise, cpu, out


def measure_interleaved(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, Measurement]:
    """Run each function ``repeat`` times, round-robin (so that a noisy spell on the shared
    machine hits all of them alike); keep the minimum time and the maximum peak rise."""
    results: dict[str, Measurement] = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            seconds, rise, cpu, out = measure_once(fn)
            del out
            m = results.get(name)
            if m is None:
                results[name] = Measurement(seconds, rise, cpu, [seconds], [cpu])
            else:
                m.times.append(seconds)
                m.cpu_times.append(cpu)
                m.seconds = min(m.seconds, seconds)
                m.cpu_seconds = min(m.cpu_seconds, cpu)
                if rise is not None:
                    m.peak_bytes = rise if m.peak_bytes is None else max(m.peak_bytes, rise)
    return results


@dataclass
class Row:
    """One printed figure: a variant of a case, optionally as a ratio to a baseline."""

    bench: str
    case: str
    variant: str
    seconds: float | None
    """Wall time (the minimum over the repeats)."""
    cpu_seconds: float | None = None
    """Process CPU time, all threads (the minimum over the repeats)."""
    peak_mib: float | None = None
    """Peak RSS rise during the call."""
    baseline: str | None = None
    ratio: float | None = None
    """CPU-time ratio to the baseline (steadier than wall time on a shared machine)."""
    wall_ratio: float | None = None
    goal: str | None = None
    met: bool | None = None
    note: str = ""


def ratio_row(
    bench: str,
    case: str,
    variant: str,
    m: Measurement,
    ref: Measurement,
    *,
    baseline: str,
    scale: float = 1.0,
    goal_ratio: float | None = None,
    note: str = "",
) -> Row:
    """A row for ``m`` (times multiplied by ``scale``, for extrapolated figures) as a ratio to
    ``ref``; with ``goal_ratio``, the goal ``<= goal_ratio x baseline`` and whether the CPU-time
    ratio meets it."""
    ratio = m.cpu_seconds * scale / ref.cpu_seconds
    return Row(
        bench,
        case,
        variant,
        m.seconds * scale,
        m.cpu_seconds * scale,
        m.peak_mib,
        baseline=baseline,
        ratio=ratio,
        wall_ratio=m.seconds * scale / ref.seconds,
        goal=None if goal_ratio is None else f"<= {goal_ratio}x {baseline}",
        met=None if goal_ratio is None else ratio <= goal_ratio,
        note=note,
    )


def fmt_row(row: Row) -> str:
    secs = "-" if row.seconds is None else f"{row.seconds:.3f}"
    cpu = "-" if row.cpu_seconds is None else f"{row.cpu_seconds:.3f}"
    peak = "-" if row.peak_mib is None else f"{row.peak_mib:.1f}"
    ratio = ""
    if row.ratio is not None:
        wall = "" if row.wall_ratio is None else f" (wall {row.wall_ratio:.2f}x)"
        ratio = f"{row.ratio:6.2f}x {row.baseline}{wall}"
    goal = ""
    if row.goal:
        verdict = "?" if row.met is None else ("MET" if row.met else "NOT MET")
        goal = f"  [goal {row.goal}: {verdict}]"
    note = f"  ({row.note})" if row.note else ""
    return (
        f"{row.bench:7} {row.case:22} {row.variant:28} wall {secs:>8} s  cpu {cpu:>8} s"
        f"  peak {peak:>8} MiB  {ratio}{goal}{note}"
    )


def print_rows(rows: Sequence[Row]) -> None:
    for row in rows:
        print(fmt_row(row), flush=True)


def write_json(rows: Sequence[Row], path: Path, extra: dict[str, Any]) -> None:
    path.write_text(json.dumps({**extra, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
