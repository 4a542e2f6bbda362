"""Progress bars for long work (rich), shown on a terminal or when asked for."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled(show: bool | None) -> bool:
    """``show`` if given; else on when stderr is a terminal and SAE_STITCH_NO_PROGRESS is unset."""
    if show is not None:
        return show
    return sys.stderr.isatty() and not os.environ.get("SAE_STITCH_NO_PROGRESS")


def track(
    iterable: Iterable[T], *, total: int | None, description: str, show: bool | None = None
) -> Iterator[T]:
    """Iterate with a progress bar on stderr when enabled."""
    if not progress_enabled(show):
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
