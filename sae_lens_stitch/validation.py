"""One validation layer for every way in: the Python API and the command line call the same
checks, so a value the CLI refuses is refused by the API with the same typed error and words.

Each check names the offending value (``repr``, shortened) and what was expected, and raises a
typed error from :mod:`sae_lens_stitch.errors`. Checks run before anything is allocated: an
index range such as ``0-200000000`` is compared with the SAE's width before it is expanded.

This module imports neither torch nor SAE-Lens at import time (the CLI validates its
arguments before loading anything); the checks that need torch import it when called.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from sae_lens_stitch.errors import (
    DeviceError,
    InvalidActivationsError,
    InvalidArgumentError,
    InvalidDestinationError,
    InvalidIndicesError,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_INDEX_SPEC_LENGTH",
    "check_activation_batch",
    "check_choice",
    "check_count",
    "check_device",
    "check_dtype",
    "check_fraction",
    "check_index_ranges",
    "check_indices",
    "check_number",
    "check_path_in_repo",
    "check_repo_id",
    "check_revision",
    "check_sae",
    "check_threshold",
    "parse_index_ranges",
    "show",
]

_REPR_LIMIT = 80
MAX_INDEX_SPEC_LENGTH = 1_000_000
"""Longest index list text (characters) parsed; longer input is refused before parsing."""


def show(value: Any) -> str:
    """``repr(value)`` shortened to one readable piece (a value in an error message)."""
    if _is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if type(value).__module__ == "numpy" and hasattr(value, "shape") and value.shape != ():
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 5] + " ...)"
    return f"{text} ({type(value).__name__})"


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype")


# ---------------------------------------------------------------------------- numbers


def _real(value: Any) -> bool:
    """A real number (int, float, numpy scalar, 0-d real tensor), not a bool or a string."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return False
    if _is_tensor(value):
        return value.ndim == 0 and not value.is_complex() and value.dtype != _torch().bool
    return isinstance(value, numbers.Real)


def _torch() -> Any:
    import torch

    return torch


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    expected: str | None = None,
) -> float:
    """``value`` as a finite float within the bounds, else :class:`InvalidArgumentError` naming
    ``name``, the value and the accepted range."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    what = expected or (
        f"a finite number in {'(' if low_open else '['}{lo}, {hi}{')' if high_open else ']'}"
    )
    if not _real(value):
        raise InvalidArgumentError(f"{name} must be {what}; got {show(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{name} must be {what}; got {number!r}")
    too_low = low is not None and (number <= low if low_open else number < low)
    too_high = high is not None and (number >= high if high_open else number > high)
    if too_low or too_high:
        raise InvalidArgumentError(f"{name} must be {what}; got {value!r}")
    return number


def check_threshold(value: Any, name: str = "threshold") -> float:
    """A cosine threshold: a finite real number in [-1, 1]."""
    return check_number(
        value, name, low=-1.0, high=1.0, expected="a cosine between -1 and 1 (a finite number)"
    )


def check_fraction(value: Any, name: str) -> float:
    """A share strictly between 0 and 1."""
    return check_number(
        value, name, low=0.0, high=1.0, low_open=True, high_open=True,
        expected="a number strictly between 0 and 1",
    )  # fmt: skip


def check_count(value: Any, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An integer (not a bool, not a float) of at least ``minimum`` (and at most ``maximum``)."""
    bound = f"between {minimum} and {maximum}" if maximum is not None else f"{minimum} or more"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgumentError(f"{name} must be an integer {bound}; got {show(value)}")
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        raise InvalidArgumentError(f"{name} must be an integer {bound}; got {number}")
    return number


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """One of ``choices`` (exactly: no surrounding whitespace, no other case)."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidArgumentError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {show(value)}"
        )
    return value


# ---------------------------------------------------------------------------- SAEs, devices


def check_sae(value: Any, name: str = "sae") -> Any:
    """An SAE-Lens SAE object (not a path, a source string or a state dict)."""
    from sae_lens import SAE

    if not isinstance(value, SAE):
        hint = (
            "; load it first with sae_lens_stitch.load_sae(...)"
            if isinstance(value, str) or hasattr(value, "__fspath__")
            else ""
        )
        raise InvalidArgumentError(f"{name} must be an SAE-Lens SAE; got {show(value)}{hint}")
    return value


def check_device(value: Any, name: str = "device") -> torch.device:
    """A torch device that parses and exists on this machine (checked before any allocation,
    so the error names the device rather than a failed load)."""
    torch = _torch()
    if isinstance(value, torch.device):
        device = value
    elif isinstance(value, str) and value == value.strip() and value:
        try:
            device = torch.device(value)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(
                f"invalid {name} {value!r}: expected a torch device such as cpu, cuda, cuda:1 or mps"
            ) from None
    else:
        raise DeviceError(
            f"invalid {name} {show(value)}: expected a torch device such as cpu, cuda, cuda:1 or mps"
        )
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"{name} {str(value)!r} is not available: torch sees no CUDA GPU here"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"{name} {str(value)!r} is not available: torch sees {count} CUDA GPU(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{name} {str(value)!r} is not available: MPS is not available here")
    elif device.type == "meta":
        raise DeviceError(f"{name} {str(value)!r} holds no data; use cpu or a GPU")
    try:
        torch.empty(0, device=device)
    except Exception as err:
        raise DeviceError(
            f"{name} {str(value)!r} is not available: {' '.join(str(err).split())[:200]}"
        ) from None
    return device


_DTYPES = ("float32", "float16", "bfloat16", "float64")


def check_dtype(value: Any, name: str = "dtype") -> str | None:
    """None, or a floating torch dtype (``torch.float16`` or its name); returns the name."""
    if value is None:
        return None
    torch = _torch()
    if isinstance(value, torch.dtype):
        text = str(value).removeprefix("torch.")
    elif isinstance(value, str):
        text = value.removeprefix("torch.")
    else:
        text = ""
    if text not in _DTYPES:
        raise InvalidArgumentError(
            f"{name} must be one of {', '.join(_DTYPES)} (or the torch dtype); got {show(value)}"
        )
    return text


# ---------------------------------------------------------------------------- names

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
_PATH_PART = re.compile(r"[A-Za-z0-9._+=-]+")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+=-]*")


def check_repo_id(value: Any, name: str = "repo_id") -> str:
    """``OWNER/NAME`` (letters, digits, ``. _ -``; no whitespace, newline or ``..``), matched as
    a whole string (a trailing newline is refused)."""
    if not isinstance(value, str) or not _REPO_ID.fullmatch(value) or ".." in value:
        raise InvalidDestinationError(
            f"{name} {show(value)} must be OWNER/NAME (letters, digits, '.', '_', '-'; "
            "no spaces, newlines or '..')"
        )
    if len(value) > 96:
        raise InvalidDestinationError(f"{name} {value!r} is longer than 96 characters")
    return value


def check_path_in_repo(value: Any, name: str = "path_in_repo") -> str:
    """A relative folder in a repo, e.g. ``blocks.8.hook_resid_pre_1234``: parts of letters,
    digits and ``. _ - + =``, none ``.`` or ``..``; not the root. Returns it without the
    surrounding slashes."""
    if not isinstance(value, str):
        raise InvalidDestinationError(f"{name} must be a string; got {show(value)}")
    path = value.strip("/")
    parts = path.split("/") if path else []
    if not parts or any(p in ("", ".", "..") or not _PATH_PART.fullmatch(p) for p in parts):
        raise InvalidDestinationError(
            f"{name} {value!r} must be a relative folder like 'blocks.8.hook_resid_pre_1234' "
            "(letters, digits, . _ - + =; no '..', spaces or newlines; not the repo root)"
        )
    return "/".join(parts)


def check_revision(value: Any, name: str = "revision") -> str:
    """A branch, tag or commit sha: no whitespace, control characters or ``..``."""
    if not isinstance(value, str) or not _REVISION.fullmatch(value) or ".." in value:
        raise InvalidDestinationError(
            f"{name} {show(value)} must be a branch, tag or commit sha (letters, digits, "
            "'.', '_', '-', '/'; no spaces, newlines or '..')"
        )
    return value


# ---------------------------------------------------------------------------- indices


def _index_value(value: Any, what: str) -> int:
    """One index: a Python or numpy integer, or a 0-d integer tensor."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        raise InvalidIndicesError(f"{what} must be integers; got {show(value)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if (
        _is_tensor(value)
        and value.ndim == 0
        and not (value.is_floating_point() or value.is_complex())
        and value.dtype != _torch().bool
    ):
        return int(value)
    raise InvalidIndicesError(f"{what} must be integers; got {show(value)}")


def check_indices(indices: Any, size: int, *, what: str = "indices") -> torch.Tensor:
    """Latent indices into ``range(size)`` as a 1-D long tensor.

    Accepts a list/tuple/range of ints, a 1-D integer tensor or numpy array. Raises
    :class:`InvalidIndicesError` naming the values for anything else: a single integer, a
    string, a 2-D tensor, floats or bools, values out of range (however large, e.g. 10**30)
    and duplicates."""
    torch = _torch()
    size = check_count(size, "size", minimum=0)
    if isinstance(indices, (str, bytes, numbers.Number)):
        raise InvalidIndicesError(
            f"{what} must be a 1-D list or tensor of integers; got {show(indices)}"
            + ("; wrap a single index in a list" if isinstance(indices, numbers.Integral) else "")
        )
    if _is_tensor(indices) or type(indices).__module__ == "numpy":
        array = indices
        if not _is_tensor(array):
            import numpy as np

            array = np.asarray(array)
            if array.dtype.kind not in "iu":
                raise InvalidIndicesError(
                    f"{what} must be integers; got an array of dtype {array.dtype}"
                )
            if array.ndim == 1 and array.size:
                lo, hi = int(array.min()), int(array.max())
                if lo < 0 or hi >= size:
                    bad = array[(array < 0) | (array >= size)]
                    _out_of_range(what, size, [int(v) for v in bad[:10]], bad.size)
            array = torch.from_numpy(np.ascontiguousarray(array).astype(np.int64))
        tensor = array.detach().to("cpu")
        if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
            raise InvalidIndicesError(
                f"{what} must be integers; got a tensor of dtype {tensor.dtype}"
            )
        if tensor.ndim != 1:
            raise InvalidIndicesError(
                f"{what} must be 1-D; got {show(tensor)}"
                + (" (flatten it if that is what you mean)" if tensor.ndim > 1 else "")
            )
        tensor = tensor.long()
    elif isinstance(indices, range):  # bounds first: range(10**12) is never expanded
        ends = sorted((indices[0], indices[-1])) if indices else []
        bad = [v for v in ends if not 0 <= v < size]
        if bad:  # (a range's smallest and largest values are its ends: no iteration)
            _out_of_range(what, size, bad, len(bad))
        tensor = torch.arange(indices.start, indices.stop, indices.step, dtype=torch.long)
    elif isinstance(indices, Iterable):
        values = [_index_value(v, what) for v in indices]
        bad = [v for v in values if not 0 <= v < size]
        if bad:
            _out_of_range(what, size, bad[:10], len(bad))
        tensor = torch.tensor(values, dtype=torch.long)
    else:
        raise InvalidIndicesError(
            f"{what} must be a 1-D list or tensor of integers; got {show(indices)}"
        )
    if tensor.numel():
        outside = tensor[(tensor < 0) | (tensor >= size)]
        if outside.numel():
            _out_of_range(what, size, outside[:10].tolist(), outside.numel())
        uniq, counts = torch.unique(tensor, return_counts=True)
        dup = uniq[counts > 1]
        if dup.numel():
            raise InvalidIndicesError(
                f"duplicate {what}: {dup[:10].tolist()}" + (" ..." if dup.numel() > 10 else "")
            )
    return tensor


def _out_of_range(what: str, size: int, bad: list[int], n_bad: int) -> None:
    allowed = f"0..{size - 1}" if size else "none: there are no latents"
    raise InvalidIndicesError(
        f"{what} out of range for {size} latents (allowed: {allowed}): {bad}"
        + (" ..." if n_bad > len(bad) else "")
    )


def parse_index_ranges(text: str, *, name: str = "indices") -> list[tuple[int, int]]:
    """``"3,5,10-12"`` -> ``[(3, 3), (5, 5), (10, 12)]`` (inclusive), nothing expanded.

    Refuses empty lists, non-integers, negative numbers and ranges that end before they start,
    each with :class:`InvalidIndicesError` naming the piece."""
    if not isinstance(text, str):
        raise InvalidIndicesError(f"{name} must be text like 3,5,10-12; got {show(text)}")
    if len(text) > MAX_INDEX_SPEC_LENGTH:
        raise InvalidIndicesError(
            f"{name} is {len(text)} characters long (at most {MAX_INDEX_SPEC_LENGTH}); "
            "use ranges like 10-5000"
        )
    ranges: list[tuple[int, int]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(-?\d+)(?:\s*-\s*(-?\d+))?", part, flags=re.ASCII)
        if match is None:
            raise InvalidIndicesError(
                f"bad {name} entry {part[:40]!r}: expected integers and ranges like 3,5,10-12"
            )
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if start < 0 or stop < 0:
            raise InvalidIndicesError(f"bad {name} entry {part!r}: latent indices are 0 or more")
        if stop < start:
            raise InvalidIndicesError(f"bad {name} range {part!r}: end before start")
        ranges.append((start, stop))
    if not ranges:
        raise InvalidIndicesError(
            f"no indices in {name} {text[:40]!r} (an explicitly empty list is not allowed)"
        )
    return ranges


def check_index_ranges(
    ranges: Sequence[tuple[int, int]], size: int, *, what: str = "indices"
) -> list[int]:
    """Expand inclusive ``ranges`` into indices of ``range(size)``, checking every bound and
    the total count against ``size`` first (so ``0-200000000`` is refused without allocating
    it); duplicates are refused."""
    size = check_count(size, "size", minimum=0)
    for start, stop in ranges:
        if start < 0 or stop >= size:
            piece = f"{start}" if start == stop else f"{start}-{stop}"
            allowed = f"0..{size - 1}" if size else "none"
            raise InvalidIndicesError(
                f"{what} {piece} out of range for {size} latents (allowed: {allowed})"
            )
    total = sum(stop - start + 1 for start, stop in ranges)
    if total > size:
        raise InvalidIndicesError(
            f"{what} list {total} latents but there are only {size}: some are listed twice"
        )
    out = [i for start, stop in ranges for i in range(start, stop + 1)]
    if len(set(out)) != len(out):
        seen: set[int] = set()
        dups = sorted({i for i in out if i in seen or seen.add(i)})
        raise InvalidIndicesError(
            f"duplicate {what}: {dups[:10]}" + (" ..." if len(dups) > 10 else "")
        )
    return out


# ---------------------------------------------------------------------------- activations


def check_activation_batch(batch: Any, d_in: int, *, what: str = "activations") -> torch.Tensor:
    """One tensor of activations [..., d_in] as [N, d_in]: real numbers (no complex, no bools),
    all finite. Raises :class:`InvalidActivationsError` naming the shape, dtype or count."""
    torch = _torch()
    if isinstance(batch, (str, bytes)) or hasattr(batch, "__fspath__"):
        raise InvalidActivationsError(
            f"{what} must be a tensor [..., {d_in}] or an iterable of them; got {show(batch)} "
            "(read a file with sae_lens_stitch.read_activations)"
        )
    if not _is_tensor(batch):
        if type(batch).__module__ != "numpy":
            raise InvalidActivationsError(
                f"{what} must be a tensor [..., {d_in}] or an iterable of them; got {show(batch)}"
            )
        if batch.dtype.kind not in "fiu":
            raise InvalidActivationsError(
                f"{what} hold {batch.dtype} values; expected real numbers"
            )
        batch = torch.as_tensor(batch)
    if batch.is_complex():
        raise InvalidActivationsError(
            f"{what} are complex ({batch.dtype}); expected real numbers (the imaginary part "
            "would be lost)"
        )
    if batch.dtype == torch.bool:
        raise InvalidActivationsError(f"{what} are booleans; expected real numbers")
    if batch.ndim == 0 or batch.shape[-1] != d_in:
        raise InvalidActivationsError(
            f"{what} must have last dimension d_in={d_in}; got shape {tuple(batch.shape)}"
        )
    flat = batch.reshape(-1, d_in)
    # fast path: a finite sum means every entry is finite (one pass, no temporary); only a
    # non-finite sum (NaN/inf, or an overflow of large finite values) needs the count
    if flat.is_floating_point() and flat.numel() and not bool(torch.isfinite(flat.sum())):
        bad_ND = ~torch.isfinite(flat)
        n_bad = int(bad_ND.sum())
        if n_bad:
            first = int(bad_ND.any(dim=1).nonzero()[0, 0])
            raise InvalidActivationsError(
                f"{what} hold {n_bad} non-finite value(s) (NaN or inf) of {flat.numel()}, "
                f"first at token {first}"
            )
    return flat
