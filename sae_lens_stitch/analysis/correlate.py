"""Step 2b: relate latents of two SAEs by the Pearson correlation of their activations over
tokens, for every pair of latents, in bounded memory.

One pass over the activations encodes each batch with both SAEs (their own ``encode``) and
accumulates, in float64: the firing count, sum and sum of squares of every latent, and the
co-activation sums ``C_ij = sum_t a_i(t) b_j(t)`` as a *sparse* matrix (activations are sparse,
so a batch adds about ``batch x L0_source x L0_target`` products, never
``batch x n_source x n_target``). The dense tokens x latents matrices are never held beyond one
batch. Then, row block by row block,

    corr_ij = (C_ij - N m_i m_j) / sqrt((SS_i - N m_i^2) (SS_j - N m_j^2))

and the top k per source latent are kept. A latent that never fires (or fires with the same
value on every token) has no variance and so no correlation: its value is NaN, never 0, and it
is reported as dead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sae_lens import SAE

from sae_lens_stitch.analysis.match import FeatureMatches
from sae_lens_stitch.checks import check_compatible
from sae_lens_stitch.errors import InvalidActivationsError, InvalidSettingError
from sae_lens_stitch.evaluation.metrics import DEFAULT_BATCH_SIZE, ActivationsLike, iter_batches
from sae_lens_stitch.progress import track

DEFAULT_DENSE_BYTES = 512 * 2**20
"""Co-activation sums are kept as a dense float64 [n_source, n_target] array when it takes at
most this many bytes (fast scattered adds), else as a sparse matrix (memory grows with the pairs
of latents that fire together, not with n_source x n_target)."""

DEFAULT_ROW_BLOCK_BYTES = 64 * 2**20
"""Budget of one dense float64 row block of correlations (the largest temporary after the pass)."""


@dataclass(frozen=True)
class CoactivationStats:
    """Sufficient statistics for the correlation of every source latent with every target
    latent over ``n_tokens`` tokens (float64, on the CPU)."""

    n_tokens: int
    sum_S: np.ndarray
    sumsq_S: np.ndarray
    count_S: np.ndarray
    """Tokens on which each source latent is non-zero."""
    sum_T: np.ndarray
    sumsq_T: np.ndarray
    count_T: np.ndarray
    cross_ST: np.ndarray | sp.csr_matrix
    """``sum_t a_i(t) b_j(t)``: dense, or sparse with entries only where the two latents fire
    together."""

    def transposed(self) -> CoactivationStats:
        """The same statistics with source and target exchanged."""
        return CoactivationStats(
            n_tokens=self.n_tokens,
            sum_S=self.sum_T,
            sumsq_S=self.sumsq_T,
            count_S=self.count_T,
            sum_T=self.sum_S,
            sumsq_T=self.sumsq_S,
            count_T=self.count_S,
            cross_ST=self.cross_ST.T
            if isinstance(self.cross_ST, np.ndarray)
            else self.cross_ST.T.tocsr(),
        )

    @staticmethod
    def _std(n: int, s: np.ndarray, ss: np.ndarray) -> np.ndarray:
        """sqrt of the centred sum of squares; NaN where there is no variance."""
        var = ss - s * s / n
        # a constant latent leaves only rounding in var: treat it as no variance
        tiny = var <= 1e-12 * np.maximum(ss, np.finfo(np.float64).tiny)
        std = np.sqrt(np.maximum(var, 0.0))
        std[tiny] = np.nan
        return std

    @property
    def std_S(self) -> np.ndarray:
        return self._std(self.n_tokens, self.sum_S, self.sumsq_S)

    @property
    def std_T(self) -> np.ndarray:
        return self._std(self.n_tokens, self.sum_T, self.sumsq_T)

    @property
    def dead_S(self) -> np.ndarray:
        """Source latents without a correlation: never firing, or constant over the tokens."""
        return np.isnan(self.std_S)

    @property
    def dead_T(self) -> np.ndarray:
        return np.isnan(self.std_T)

    def correlation_block(self, s0: int, s1: int) -> np.ndarray:
        """[s1 - s0, n_target] float64 Pearson correlations of source rows s0..s1 (NaN where
        either latent has no variance)."""
        n = self.n_tokens
        rows = self.cross_ST[s0:s1]
        block = np.array(rows) if isinstance(rows, np.ndarray) else rows.toarray()
        block -= np.outer(self.sum_S[s0:s1], self.sum_T / n)
        block /= np.outer(self.std_S[s0:s1], self.std_T)
        return block


def _nonzero_csr(acts_NL: torch.Tensor) -> sp.csr_matrix:
    """One batch of activations as a scipy CSR matrix of its non-zero entries (float64)."""
    nz = acts_NL.nonzero()
    tok, lat = nz[:, 0], nz[:, 1]
    val = acts_NL[tok, lat].double().cpu().numpy()
    ptr = np.zeros(acts_NL.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(tok.cpu().numpy(), minlength=acts_NL.shape[0]), out=ptr[1:])
    return sp.csr_matrix((val, lat.cpu().numpy(), ptr), shape=tuple(acts_NL.shape))


def _check_batch(x_ND: torch.Tensor, offset: int) -> None:
    bad = ~torch.isfinite(x_ND)
    if bool(bad.any()):
        rows = (bad.any(dim=1).nonzero().squeeze(1) + offset)[:10].tolist()
        raise InvalidActivationsError(
            f"activations hold {int(bad.sum())} non-finite value(s) (NaN or inf) on tokens {rows}"
        )


def _too_few(n_tokens: int) -> InvalidActivationsError:
    return InvalidActivationsError(
        f"a correlation needs at least 2 tokens; the activations hold {n_tokens}"
    )


def _check_tensor(activations: ActivationsLike, d_in: int) -> None:
    """What can be checked before the pass: the shape of a tensor and its number of tokens."""
    if not isinstance(activations, torch.Tensor):
        return
    if activations.ndim < 1 or activations.shape[-1] != d_in:
        raise InvalidActivationsError(
            f"activations have shape {tuple(activations.shape)}; the SAEs need [..., {d_in}]"
        )
    if activations.numel() // d_in < 2:
        raise _too_few(activations.numel() // d_in)


def _batches(
    activations: ActivationsLike, d_in: int, batch_size: int, show_progress: bool | None
) -> Iterator[torch.Tensor]:
    """``iter_batches`` with its bad-shape errors as InvalidActivationsError."""
    batches = iter_batches(
        activations,
        d_in,
        batch_size=batch_size,
        show_progress=show_progress,
        description="correlating latents",
    )
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except ValueError as err:
            raise InvalidActivationsError(str(err)) from None
        yield batch


@torch.no_grad()
def coactivation_stats(
    source: SAE[Any],
    target: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    dense_bytes: int = DEFAULT_DENSE_BYTES,
) -> CoactivationStats:
    """One pass over ``activations`` ([..., d_in], a tensor or an iterable of batches): the
    statistics :func:`correlate_features` needs, with both SAEs' activations kept one batch
    at a time. Bad input: :class:`~sae_lens_stitch.errors.InvalidActivationsError` (wrong last
    dimension, NaN/inf, fewer than 2 tokens)."""
    check_compatible(source, target, names=("source", "target"))
    d_in = source.cfg.d_in
    _check_tensor(activations, d_in)
    n_s, n_t = source.cfg.d_sae, target.cfg.d_sae
    sum_S, sumsq_S, count_S = np.zeros(n_s), np.zeros(n_s), np.zeros(n_s, dtype=np.int64)
    sum_T, sumsq_T, count_T = np.zeros(n_t), np.zeros(n_t), np.zeros(n_t, dtype=np.int64)
    dense = 8 * n_s * n_t <= dense_bytes
    cross_flat = np.zeros(n_s * n_t if dense else 0)
    cross = sp.csr_matrix((n_s, n_t), dtype=np.float64)
    pending: list[sp.csr_matrix] = []
    pending_nnz = 0
    n_tokens = 0
    dev_s, dev_t = source.W_dec.device, target.W_dec.device
    for x_ND in _batches(activations, d_in, batch_size, show_progress):
        _check_batch(x_ND, n_tokens)
        n_tokens += x_ND.shape[0]
        a_NS = _nonzero_csr(source.encode(x_ND.to(dev_s)))
        b_NT = _nonzero_csr(target.encode(x_ND.to(dev_t)))
        for m, s, ss, c in ((a_NS, sum_S, sumsq_S, count_S), (b_NT, sum_T, sumsq_T, count_T)):
            lat = m.indices
            s += np.bincount(lat, weights=m.data, minlength=s.shape[0])
            ss += np.bincount(lat, weights=m.data * m.data, minlength=s.shape[0])
            c += np.bincount(lat, minlength=s.shape[0])
        prod = (a_NS.T.tocsr() @ b_NT).tocoo()
        if dense:  # a product's entries are distinct: a plain scattered add is exact
            cross_flat[prod.row.astype(np.int64) * n_t + prod.col] += prod.data
            continue
        pending.append(prod.tocsr())
        pending_nnz += prod.nnz
        # sum the batch products in groups: one addition per group keeps the running
        # sparse total from being copied once per batch
        if pending_nnz >= max(cross.nnz, 1 << 22):
            cross = _sum_csr(cross, pending)
            pending, pending_nnz = [], 0
    cross = _sum_csr(cross, pending)
    if n_tokens < 2:
        raise _too_few(n_tokens)
    return CoactivationStats(
        n_tokens=n_tokens,
        sum_S=sum_S,
        sumsq_S=sumsq_S,
        count_S=count_S,
        sum_T=sum_T,
        sumsq_T=sumsq_T,
        count_T=count_T,
        cross_ST=cross_flat.reshape(n_s, n_t) if dense else cross,
    )


def _sum_csr(total: sp.csr_matrix, parts: list[sp.csr_matrix]) -> sp.csr_matrix:
    """``total + sum(parts)`` as canonical CSR (building CSR from COO sums duplicates)."""
    if not parts:
        return total
    coos = [total.tocoo(), *(p.tocoo() for p in parts)]
    row = np.concatenate([c.row for c in coos])
    col = np.concatenate([c.col for c in coos])
    data = np.concatenate([c.data for c in coos])
    out = sp.csr_matrix((data, (row, col)), shape=total.shape)
    out.sum_duplicates()
    return out


def top_correlations(
    stats: CoactivationStats,
    *,
    k: int = 1,
    block_bytes: int = DEFAULT_ROW_BLOCK_BYTES,
    show_progress: bool | None = None,
) -> FeatureMatches:
    """The ``k`` highest correlations of every source latent with the target latents, from
    :func:`coactivation_stats`, in dense float64 row blocks of at most ``block_bytes``.
    Dead source latents: values NaN, indices -1; dead target latents are never chosen (a row
    with fewer than ``k`` live targets is padded with NaN / -1)."""
    n_s, n_t = stats.sum_S.shape[0], stats.sum_T.shape[0]
    if not 1 <= k <= n_t:
        raise InvalidSettingError(f"k must be between 1 and the target's {n_t} latents, got {k}")
    rows = max(1, min(n_s, block_bytes // (8 * max(n_t, 1))))
    values_SK = np.full((n_s, k), np.nan)
    indices_SK = np.full((n_s, k), -1, dtype=np.int64)
    starts = range(0, n_s, rows)
    for s0 in track(starts, total=len(starts), description="top correlations", show=show_progress):
        s1 = min(s0 + rows, n_s)
        block = stats.correlation_block(s0, s1)
        np.nan_to_num(block, copy=False, nan=-np.inf)
        if k == 1:
            arg = block.argmax(axis=1)[:, None]
        else:
            part = np.argpartition(-block, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
            arg = np.take_along_axis(part, order, axis=1)
        val = np.take_along_axis(block, arg, axis=1)
        found = np.isfinite(val)
        values_SK[s0:s1] = np.where(found, val, np.nan)
        indices_SK[s0:s1] = np.where(found, arg, -1)
    return FeatureMatches(
        values=torch.from_numpy(values_SK).float(),
        indices=torch.from_numpy(indices_SK),
        weights="activation",
        dead_source=torch.from_numpy(stats.dead_S),
        dead_target=torch.from_numpy(stats.dead_T),
        n_tokens=stats.n_tokens,
    )


def correlate_features(
    source: SAE[Any],
    target: SAE[Any],
    activations: ActivationsLike,
    *,
    k: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    dense_bytes: int = DEFAULT_DENSE_BYTES,
) -> FeatureMatches:
    """For every latent of ``source``, the ``k`` target latents whose activations correlate
    most (Pearson, over the tokens of ``activations``) with its own, and those correlations.

    Every pair of latents is considered, in memory bounded by one batch and the co-activation
    sums (dense float64 up to ``dense_bytes``, else a sparse matrix): see the module docstring. ``weights`` of the result is
    ``"activation"``; ``dead_source`` / ``dead_target`` mark latents with no correlation (never
    firing, or constant): a dead source latent has values NaN and indices -1.

    Bad input raises :class:`~sae_lens_stitch.errors.InvalidActivationsError` (last dimension
    not d_in, NaN/inf values, fewer than 2 tokens) or
    :class:`~sae_lens_stitch.errors.InvalidSettingError` (``k`` outside 1..target width),
    before the pass where it can."""
    n_t = target.cfg.d_sae
    if not 1 <= k <= n_t:
        raise InvalidSettingError(f"k must be between 1 and the target's {n_t} latents, got {k}")
    stats = coactivation_stats(
        source,
        target,
        activations,
        batch_size=batch_size,
        show_progress=show_progress,
        dense_bytes=dense_bytes,
    )
    return top_correlations(stats, k=k, show_progress=show_progress)
