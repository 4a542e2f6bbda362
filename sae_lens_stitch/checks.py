"""Input validation shared by every step: compatible SAEs, valid indices, finite weights."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch
from sae_lens import SAE

from sae_lens_stitch._joined import JOINED, already_checked
from sae_lens_stitch.errors import IncompatibleSAEsError, InvalidWeightsError
from sae_lens_stitch.validation import check_indices, check_sae

__all__ = [
    "IndexLike",
    "bad_rows",
    "check_compatible",
    "check_finite",
    "check_indices",
    "check_joinable",
    "checks_pair_once",
    "joinable",
    "marked_joinable",
]

P = ParamSpec("P")
R = TypeVar("R")

IndexLike = Sequence[int] | torch.Tensor | Iterable[int]
"""Latent indices: a sequence of ints, a 1-D integer tensor, or an integer numpy array."""

_COMPARED_FIELDS: tuple[tuple[str, str], ...] = (
    ("d_in", "d_in"),
    ("metadata.hook_name", "hook_name"),
    ("metadata.model_name", "model_name"),
    ("normalize_activations", "normalize_activations"),
    ("reshape_activations", "reshape_activations"),
    ("dtype", "dtype"),
)


def _field(sae: SAE[Any], path: str) -> Any:
    if path.startswith("metadata."):
        return sae.cfg.metadata.get(path.split(".", 1)[1])
    return getattr(sae.cfg, path)


def check_compatible(
    first: SAE[Any], second: SAE[Any], *, names: tuple[str, str] = ("base", "donor")
) -> None:
    """Raise :class:`IncompatibleSAEsError` unless the two SAEs read the same activations the
    same way: d_in, hook name, model name, normalize_activations, reshape_activations, dtype.
    Skipped for a pair already checked by the :func:`joinable` operation now running."""
    check_sae(first, names[0])
    check_sae(second, names[1])
    if already_checked(first, second):
        return
    for path, label in _COMPARED_FIELDS:
        a, b = _field(first, path), _field(second, path)
        if a != b:
            raise IncompatibleSAEsError(label, a, b, names=names)


def check_finite(sae: SAE[Any], *, name: str = "SAE") -> None:
    """Raise :class:`InvalidWeightsError` naming the parameter if any weight is NaN or inf
    (skipped for an SAE already checked by the :func:`joinable` operation now running)."""
    check_sae(sae, name)
    if already_checked(sae, sae):
        return
    for pname, tensor in sae.state_dict().items():
        # fast path: a finite sum means every entry is finite (NaN/inf propagate), in one pass
        # with no temporary; only a non-finite sum (or an overflow) needs the count, in chunks
        if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum())):
            continue
        flat = tensor.detach().reshape(-1)
        n_bad = sum(
            int((~torch.isfinite(flat[i : i + 2**22])).sum()) for i in range(0, flat.numel(), 2**22)
        )
        if n_bad:
            raise InvalidWeightsError(f"{name}: parameter {pname} has {n_bad} NaN/inf entries")


def bad_rows(rows_RD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of rows with NaN/inf entries and of rows with zero norm."""
    nonfinite_R = ~torch.isfinite(rows_RD).all(dim=-1)
    zero_R = (rows_RD == 0).all(dim=-1)
    return nonfinite_R.nonzero().flatten(), zero_R.nonzero().flatten()


def check_joinable(
    base: SAE[Any], *others: SAE[Any], names: tuple[str, str] = ("base", "donor")
) -> None:
    """Raise unless ``base`` and each of ``others`` can be joined: same activations, same
    architecture family, finite weights (pairs already checked by the operation now running
    are skipped)."""
    from sae_lens_stitch.registry import check_same_family

    check_finite(base, name=names[0])
    for other in others:
        if other is not base and not already_checked(base, other):
            check_compatible(base, other, names=names)
            check_same_family(base, other)
            check_finite(other, name=names[1])


@contextmanager
def marked_joinable(base: SAE[Any], *others: SAE[Any]) -> Iterator[None]:
    """Inside the block, the pairs (base, other) count as checked (call only after
    :func:`check_joinable` on them)."""
    marks = {(id(base), id(base))}
    for other in others:
        marks |= {(id(base), id(other)), (id(other), id(base)), (id(other), id(other))}
    token = JOINED.set(JOINED.get() | marks)
    try:
        yield
    finally:
        JOINED.reset(token)


@contextmanager
def joinable(
    base: SAE[Any], *others: SAE[Any], names: tuple[str, str] = ("base", "donor")
) -> Iterator[None]:
    """Check once that ``base`` and each of ``others`` can be joined; inside the block the
    checks of those pairs and SAEs are not repeated, however many steps the operation takes."""
    check_joinable(base, *others, names=names)
    with marked_joinable(base, *others):
        yield


def checks_pair_once(
    fn: Callable[Concatenate[Any, Any, P], R],
) -> Callable[Concatenate[Any, Any, P], R]:
    """Decorate an operation on (base, donor, ...) so it checks the pair once, on entry
    (:func:`joinable`), and none of the steps below it checks the pair again."""

    @functools.wraps(fn)
    def wrapper(base: Any, donor: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with joinable(base, donor):
            return fn(base, donor, *args, **kwargs)

    return wrapper
