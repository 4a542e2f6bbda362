"""Progress for long work: a bar (rich) on a terminal, progress lines in a log.

Off a terminal (output to a file, a CI log, ``nohup``) a bar would print nothing useful, so a
loop that runs longer than :data:`LOG_AFTER_S` prints one line on stderr at every tenth of its
length or every :data:`LOG_EVERY_S` seconds, whichever comes first, with the rate and the time
left, and a last line when it ends. ``SAE_STITCH_NO_PROGRESS=1`` (or ``--no-progress``, or
``show_progress=False``) silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar

T = TypeVar("T")

LOG_AFTER_S = 2.0
"""A loop shorter than this prints no progress line (tests and small jobs stay quiet)."""
LOG_EVERY_S = 10.0
"""Longest gap between two progress lines in a log."""

ProgressMode = Literal["bar", "log", "off"]


def progress_mode(show: bool | None) -> ProgressMode:
    """``"off"`` when ``show`` is False (or None and SAE_STITCH_NO_PROGRESS is set); else a
    ``"bar"`` when stderr is a terminal and ``"log"`` lines when it is not."""
    if show is False or (show is None and os.environ.get("SAE_STITCH_NO_PROGRESS")):
        return "off"
    return "bar" if sys.stderr.isatty() else "log"


def progress_enabled(show: bool | None) -> bool:
    """Whether :func:`track` shows anything (a bar or log lines)."""
    return progress_mode(show) != "off"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class _LogLines:
    """Progress lines for one loop (see the module docstring)."""

    def __init__(self, description: str, total: int | None):
        self.description = description
        self.total = total
        self.start = self.last = time.perf_counter()
        self.next_tenth = 1
        self.printed = False

    def _print(self, text: str) -> None:
        print(f"[sae-stitch] {self.description}: {text}", file=sys.stderr, flush=True)
        self.printed = True

    def step(self, done: int) -> None:
        now = time.perf_counter()
        elapsed = now - self.start
        tenth_due = (
            self.total is not None and self.total > 0 and done * 10 >= self.next_tenth * self.total
        )
        if tenth_due and self.total:
            self.next_tenth = done * 10 // self.total + 1
        if elapsed < LOG_AFTER_S or not (tenth_due or now - self.last >= LOG_EVERY_S):
            return
        self.last = now
        rate = done / elapsed if elapsed > 0 else float("inf")
        if self.total:
            left = (self.total - done) / rate if rate > 0 else float("inf")
            self._print(
                f"{done}/{self.total} ({done / self.total:.0%}), {rate:.3g}/s, "
                f"{_duration(elapsed)} elapsed, ~{_duration(left)} left"
            )
        else:
            self._print(f"{done} done, {rate:.3g}/s, {_duration(elapsed)} elapsed")

    def close(self, done: int) -> None:
        if self.printed:
            self._print(f"finished {done} in {_duration(time.perf_counter() - self.start)}")


def track(
    iterable: Iterable[T], *, total: int | None, description: str, show: bool | None = None
) -> Iterator[T]:
    """Iterate with a progress bar on a terminal, or progress lines in a log (stderr)."""
    mode = progress_mode(show)
    if mode == "off":
        yield from iterable
        return
    if mode == "log":
        lines = _LogLines(description, total)
        done = 0
        for item in iterable:
            yield item
            done += 1
            lines.step(done)
        lines.close(done)
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
