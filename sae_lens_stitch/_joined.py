"""The pairs of SAEs already checked as joinable in the operation now running (a context
variable), so that an operation checks each pair once however many steps it goes through."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

JOINED: ContextVar[frozenset[tuple[int, int]]] = ContextVar(
    "sae_lens_stitch_joined", default=frozenset()
)
"""(id(a), id(b)) for every checked pair, both orders; (id(a), id(a)): a's weights are finite."""


def already_checked(first: Any, second: Any) -> bool:
    """Whether this pair (or, with first is second, this SAE's weights) was checked in the
    operation now running."""
    return (id(first), id(second)) in JOINED.get()
