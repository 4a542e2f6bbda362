"""The exact quadratic objective of assembly: what any subset of a family's latents, with any
decoder scales and the best output bias, reconstructs, priced from numbers gathered in one pass.

With exact stitching every kept latent ``i`` fires as in its own SAE (activation ``a_i(t)``,
decoder row ``w_i``). An SAE made of a subset ``S`` with decoder scales ``s`` and output bias
``b`` reconstructs ``x̂(t) = b + Σ_{i∈S} s_i a_i(t) w_i``. With the best ``b``
(``x̄ - Σ s_i ā_i w_i``) its summed squared error is

    SSE(S, s) = R - 2 Σ_S s_i c_i + Σ_{i,j∈S} s_i s_j Q_ij
    R    = Σ_t |x_t - x̄|²
    c_i  = Σ_t a_i(t) (x_t - x̄)·w_i
    Q_ij = (Σ_t a_i(t) a_j(t) - N ā_i ā_j) (w_i·w_j)

:class:`Objective` holds ``R``, ``c``, the firing counts, the decoder rows and the sparse
activations (by token and by latent), never the dense ``Q``: a column of ``Q`` is computed on
demand from the co-activations of one latent (the tokens where it fires), and products
``Q_SS v`` from two sparse-dense products. Memory is O(non-zero activations + latents x d_in).

Exact for SAEs whose decode is ``acts @ W_dec + b_dec`` and whose latents fire independently
of each other once joined: every architecture whose registry rule is exact (standard, JumpReLU,
gated). Not for TopK families (joined TopK latents compete in their group) nor transcoders
(they reconstruct another hook). A single TopK SAE is fine for :func:`refit`.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_stitch.analysis.effects import check_linear_decode
from sae_lens_stitch.errors import (
    IncompatibleSAEsError,
    InvalidActivationsError,
    InvalidIndicesError,
)
from sae_lens_stitch.evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    ActivationsLike,
    Metrics,
    iter_batches,
    metrics_from_sums,
)
from sae_lens_stitch.registry import get_rule

COLUMN_CACHE_BYTES = 256 * 2**20
"""Memory for cached columns of Q."""

_CHUNK_LATENTS = 16384
"""Tokens per chunk in the sparse products (bounds the dense [tokens, d_in] temporaries)."""


@dataclass
class Objective:
    """R, c, firing statistics, decoder rows and sparse activations of a family of SAEs on one
    set of activations. Latents of the family are numbered in one union: SAE ``k``'s latent
    ``i`` is union latent ``offsets[k] + i``."""

    offsets: list[int]
    """[n_saes + 1] start of each SAE's latents in the union."""
    n_tokens: int
    """N: tokens gathered."""
    total_variance: float
    """R = Σ_t |x_t - x̄|²."""
    mean_D: torch.Tensor
    """x̄, float64 [d_in]."""
    W_UD: torch.Tensor
    """Decoder rows of the union's latents [n, d_in] (the SAEs' dtype)."""
    c_U: torch.Tensor
    """c_i, float64 [n]."""
    counts_U: torch.Tensor
    """n_i: tokens on which each latent fires, int64 [n]."""
    sum_a_U: torch.Tensor
    """Σ_t a_i(t), float64 [n]."""
    sum_a2_U: torch.Tensor
    """Σ_t a_i(t)², float64 [n]."""
    by_token: torch.Tensor
    """Sparse CSR [N, n] of the activations (rows: tokens)."""
    by_latent: torch.Tensor
    """Sparse CSR [n, N]: the same activations, rows: latents."""

    @property
    def n_latents(self) -> int:
        return int(self.c_U.numel())

    @property
    def d_in(self) -> int:
        return int(self.W_UD.shape[1])

    @functools.cached_property
    def mean_a_U(self) -> torch.Tensor:
        """ā_i, float64 [n]."""
        return self.sum_a_U / self.n_tokens

    @functools.cached_property
    def sq_norms_U(self) -> torch.Tensor:
        """|w_i|², float64 [n]."""
        return _rowwise_dot(self.W_UD, self.W_UD)

    @functools.cached_property
    def q_diag_U(self) -> torch.Tensor:
        """Q_ii = (Σ a_i² - N ā_i²) |w_i|², float64 [n]."""
        return (self.sum_a2_U - self.sum_a_U * self.mean_a_U) * self.sq_norms_U

    def union_indices(self, sae_index: int) -> torch.Tensor:
        """Union indices of SAE ``sae_index``'s latents."""
        return torch.arange(self.offsets[sae_index], self.offsets[sae_index + 1])

    def source_of(self, union_U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(SAE index, latent index in that SAE) of each union index."""
        bounds = torch.tensor(self.offsets[1:-1], dtype=torch.long)
        sae_U = torch.bucketize(union_U.long().cpu(), bounds, right=True)
        return sae_U, union_U.long().cpu() - torch.tensor(self.offsets, dtype=torch.long)[sae_U]

    # --- columns of Q ----------------------------------------------------------------------
    def latent_entries(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens, float64 activations) where latent ``k`` fires."""
        crow = self.by_latent.crow_indices()
        s, e = int(crow[k]), int(crow[k + 1])
        return self.by_latent.col_indices()[s:e], self.by_latent.values()[s:e].double()

    def coactivations(self, k: int) -> torch.Tensor:
        """Σ_t a_i(t) a_k(t) for every union latent i, float64 [n], from the tokens where k
        fires only."""
        toks, a_k = self.latent_entries(k)
        out = torch.zeros(self.n_latents, dtype=torch.float64, device=a_k.device)
        if toks.numel() == 0:
            return out
        t_crow, t_col, t_vals = (
            self.by_token.crow_indices(),
            self.by_token.col_indices(),
            self.by_token.values(),
        )
        starts = t_crow[toks]
        lengths = t_crow[toks + 1] - starts
        entries = _segments(starts, lengths)
        weights = torch.repeat_interleave(a_k, lengths) * t_vals[entries].double()
        return out.index_add_(0, t_col[entries], weights)

    def column(self, k: int) -> torch.Tensor:
        """Q[:, k], float64 [n] (on the objective's device). The most recent columns are
        cached (up to ``COLUMN_CACHE_BYTES``): greedy swap rounds ask for the same ones."""
        col = self._columns.pop(k, None)
        self._remember(k, self._column(k) if col is None else col)
        return self._columns[k]

    def columns(self, ks: list[int]) -> list[torch.Tensor]:
        """Q[:, k] for each k in ``ks`` (the uncached ones' decoder Gram columns in one matrix
        product: one pass over the decoder rows instead of one per column)."""
        missing = [k for k in dict.fromkeys(ks) if k not in self._columns]
        if len(missing) > 1:
            gram_UM = self.W_UD @ self.W_UD[missing].T
            mean_a = self.mean_a_U
            for j, k in enumerate(missing):
                cov = self.coactivations(k).sub_(mean_a, alpha=self.n_tokens * float(mean_a[k]))
                self._remember(k, cov.mul_(gram_UM[:, j]))
        return [self.column(k) for k in ks]

    def _remember(self, k: int, col: torch.Tensor) -> None:
        cache = self._columns
        while cache and (len(cache) + 1) * col.numel() * 8 > COLUMN_CACHE_BYTES:
            cache.pop(next(iter(cache)))
        cache[k] = col

    @functools.cached_property
    def _columns(self) -> dict[int, torch.Tensor]:
        return {}

    def _column(self, k: int) -> torch.Tensor:
        mean_a = self.mean_a_U
        cov = self.coactivations(k).sub_(mean_a, alpha=self.n_tokens * float(mean_a[k]))
        return cov.mul_(self.W_UD @ self.W_UD[k])

    # --- products with Q_SS ----------------------------------------------------------------
    def reconstructions(self, union_S: torch.Tensor, v_S: torch.Tensor) -> torch.Tensor:
        """y_t = Σ_{i∈S} v_i a_i(t) w_i for every token, float64 [N, d_in]."""
        idx = union_S.to(self.W_UD.device).long()
        rows = self.W_UD[idx].double() * v_S.to(self.W_UD.device, torch.float64)[:, None]
        return _spmm(self.restrict(idx).by_token, rows)

    def matvec(
        self, union_S: torch.Tensor, v_S: torch.Tensor, y_ND: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q[:, S] v for every union latent, float64 [n] from float32 sparse products: with
        y = A_S diag(v) W_S (``y_ND`` if already computed), (Qv)_i = w_i · (Σ_t a_i(t) y_t)
        - N ā_i w_i · ȳ."""
        idx = union_S.to(self.W_UD.device).long()
        if y_ND is None:
            rows = self.W_UD[idx].float() * v_S.to(self.W_UD.device, torch.float32)[:, None]
            y_ND = self.restrict(idx).by_token @ rows
        y_ND = y_ND.float()
        mean_y_D = y_ND.double().sum(0) / self.n_tokens
        out = torch.empty(self.n_latents, dtype=torch.float64, device=self.W_UD.device)
        crow, col, vals = (
            self.by_latent.crow_indices(),
            self.by_latent.col_indices(),
            self.by_latent.values(),
        )
        for r0 in range(0, self.n_latents, _CHUNK_LATENTS):
            r1 = min(r0 + _CHUNK_LATENTS, self.n_latents)
            s, e = int(crow[r0]), int(crow[r1])
            chunk = _sparse_csr(
                crow[r0 : r1 + 1] - s, col[s:e], vals[s:e], (r1 - r0, self.n_tokens)
            )
            out[r0:r1] = _rowwise_dot(chunk @ y_ND, self.W_UD[r0:r1])
        centre = (self.W_UD.float() @ mean_y_D.float()).double()
        return out - self.n_tokens * self.mean_a_U * centre

    def quadratic(
        self, union_S: torch.Tensor, s_S: torch.Tensor, y_ND: torch.Tensor | None = None
    ) -> float:
        """s^T Q_SS s = Σ_t |y_t - ȳ|² with y_t = Σ s_i a_i(t) w_i (``y_ND`` if given)."""
        if y_ND is None:
            y_ND = self.reconstructions(union_S, s_S)
        mean_y_D = y_ND.sum(0) / self.n_tokens
        return float(y_ND.pow(2).sum() - self.n_tokens * mean_y_D.pow(2).sum())

    def sse(
        self,
        union_S: torch.Tensor,
        s_S: torch.Tensor | None = None,
        y_ND: torch.Tensor | None = None,
    ) -> float:
        """SSE(S, s) with the best output bias (scales 1 by default; ``y_ND``: the float64
        reconstructions of S, if already computed)."""
        s_S = _ones_like(union_S) if s_S is None else s_S.double()
        linear = float((self.c_U[union_S.to(self.c_U.device)] * s_S.to(self.c_U.device)).sum())
        return self.total_variance - 2 * linear + self.quadratic(union_S, s_S, y_ND)

    def metrics(
        self,
        union_S: torch.Tensor,
        s_S: torch.Tensor | None = None,
        *,
        bias_D: torch.Tensor | None = None,
        dense_threshold: float = 0.1,
    ) -> Metrics:
        """The package's :class:`~sae_lens_stitch.evaluation.metrics.Metrics` of the SAE made of
        latents S with scales s and output bias ``bias_D`` (default: the best one), on these
        tokens, from the objective alone (exact: equal to evaluating that SAE, up to float
        rounding)."""
        idx = union_S.to(self.c_U.device).long()
        return metrics_from_sums(
            sse=self.sse(idx, s_S) if bias_D is None else self.sse_with_bias(idx, s_S, bias_D),
            total_variance=self.total_variance,
            n_tokens=self.n_tokens,
            counts_L=self.counts_U[idx].cpu(),
            dense_threshold=dense_threshold,
        )

    def best_bias(self, union_S: torch.Tensor, s_S: torch.Tensor | None = None) -> torch.Tensor:
        """b = x̄ - Σ_S s_i ā_i w_i, float64 [d_in]."""
        s_S = _ones_like(union_S) if s_S is None else s_S.double()
        idx = union_S.to(self.W_UD.device)
        weights = self.mean_a_U[idx] * s_S.to(self.mean_a_U.device)
        return self.mean_D - weights @ self.W_UD[idx].double()

    def sse_with_bias(
        self, union_S: torch.Tensor, s_S: torch.Tensor | None, bias_D: torch.Tensor
    ) -> float:
        """SSE(S, s) with output bias ``bias_D`` (e.g. fitted on other tokens):
        the best-bias SSE plus N |x̄ - b - Σ s_i ā_i w_i|²."""
        gap_D = self.best_bias(union_S, s_S) - bias_D.to(self.mean_D.device, torch.float64)
        return self.sse(union_S, s_S) + self.n_tokens * float(gap_D.pow(2).sum())

    def restrict(self, union_S: torch.Tensor) -> Restricted:
        """The objective on latents ``union_S`` only (in that order), for repeated products
        ``Q_SS v``. For sorted ``union_S`` both CSR copies are filtered, never re-sorted."""
        dev = self.W_UD.device
        idx = union_S.to(dev).long()
        n_s = int(idx.numel())
        if int(idx.unique().numel()) != n_s:
            raise InvalidIndicesError(f"latents listed twice in a selection of {n_s}")
        pos_U = torch.full((self.n_latents,), -1, dtype=torch.long, device=dev)
        pos_U[idx] = torch.arange(n_s, device=dev)
        crow, col, vals = (
            self.by_token.crow_indices(),
            self.by_token.col_indices(),
            self.by_token.values(),
        )
        keep = pos_U[col] >= 0
        new_col, new_val = pos_U[col[keep]], vals[keep].float()
        if n_s > 1 and not bool((idx[1:] > idx[:-1]).all()):  # unsorted: build by sorting
            row_of = torch.repeat_interleave(
                torch.arange(self.n_tokens, device=dev), crow[1:] - crow[:-1]
            )[keep]
            by_token = _csr(row_of, new_col, new_val, self.n_tokens, n_s)
        else:  # filtering keeps each row's columns in order
            kept_before = torch.zeros(col.numel() + 1, dtype=torch.long, device=dev)
            kept_before[1:] = keep.long().cumsum(0)
            by_token = _sparse_csr(kept_before[crow], new_col, new_val, (self.n_tokens, n_s))
        l_crow = self.by_latent.crow_indices()
        starts, lengths = l_crow[idx], l_crow[idx + 1] - l_crow[idx]
        entries = _segments(starts, lengths)
        s_crow = torch.zeros(n_s + 1, dtype=torch.long, device=dev)
        s_crow[1:] = lengths.cumsum(0)
        by_latent = _sparse_csr(
            s_crow,
            self.by_latent.col_indices()[entries],
            self.by_latent.values()[entries].float(),
            (n_s, self.n_tokens),
        )
        return Restricted(
            by_token=by_token,
            by_latent=by_latent,
            W_SD=self.W_UD[idx].float(),
            mean_a_S=self.mean_a_U[idx],
            n_tokens=self.n_tokens,
        )


@dataclass
class Restricted:
    """Products ``Q_SS v`` for one fixed set of latents S, in float32 sparse products (for
    iterative solves; exact sums stay with :class:`Objective`)."""

    by_token: torch.Tensor
    by_latent: torch.Tensor
    W_SD: torch.Tensor
    mean_a_S: torch.Tensor
    n_tokens: int

    def matvec(self, v_S: torch.Tensor) -> torch.Tensor:
        """Q_SS v, float64 [|S|]."""
        rows = self.W_SD * v_S.to(self.W_SD.device, torch.float32)[:, None]
        y_ND = self.by_token @ rows
        mean_y_D = y_ND.double().sum(0) / self.n_tokens
        ay_SD = self.by_latent @ y_ND
        W = self.W_SD.double()
        return (ay_SD.double() * W).sum(-1) - self.n_tokens * self.mean_a_S * (W @ mean_y_D)

    def dense(self) -> torch.Tensor:
        """Q_SS as a dense float64 matrix (|S|² entries: for moderate |S| only). The
        co-activation Gram is a sparse product (scipy): Σ_t nnz_t² multiply-adds."""
        import numpy as np
        import scipy.sparse as sp

        n_s = self.W_SD.shape[0]
        a = sp.csr_matrix(
            (
                self.by_token.values().cpu().double().numpy(),
                self.by_token.col_indices().cpu().numpy(),
                self.by_token.crow_indices().cpu().numpy(),
            ),
            shape=(self.n_tokens, n_s),
        )
        co = torch.from_numpy(np.asarray((a.T @ a).toarray()))
        mean_a = self.mean_a_S.cpu()
        co -= self.n_tokens * mean_a[:, None] * mean_a[None, :]
        W = self.W_SD.cpu().double()
        return co.mul_(W @ W.T)


def _segments(starts: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Positions ``starts[k] .. starts[k] + lengths[k] - 1`` for every k, concatenated."""
    total = int(lengths.sum())
    base = torch.repeat_interleave(starts - (lengths.cumsum(0) - lengths), lengths)
    return base + torch.arange(total, device=starts.device)


def _rowwise_dot(a_RD: torch.Tensor, b_RD: torch.Tensor) -> torch.Tensor:
    """Σ_d a[r, d] b[r, d] in float64, chunked over rows (no float64 copy of the whole)."""
    out = torch.empty(a_RD.shape[0], dtype=torch.float64, device=a_RD.device)
    for r0 in range(0, a_RD.shape[0], _CHUNK_LATENTS):
        r1 = r0 + _CHUNK_LATENTS
        out[r0:r1] = (a_RD[r0:r1].double() * b_RD[r0:r1].double()).sum(-1)
    return out


def _ones_like(union_S: torch.Tensor) -> torch.Tensor:
    return torch.ones(union_S.numel(), dtype=torch.float64, device=union_S.device)


def _spmm(sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """sparse (CSR, float32) @ dense, as float64 [rows, d]: one float32 sparse product (the
    relative error, ~1e-7, is that of the SAEs' own float32 forward pass)."""
    return (sparse @ dense.to(sparse.values().dtype)).double()


def check_family(saes: Sequence[SAE[Any]], *, need_exact: bool = True) -> None:
    """Raise unless ``saes`` read the same activations (d_in, hook, model, dtype, ...) and
    their decode is linear; with ``need_exact``, unless their latents keep firing as in their
    own SAE once joined (registry rule ``exact``) and they reconstruct their input."""
    from sae_lens_stitch.checks import check_compatible, check_finite
    from sae_lens_stitch.errors import UnsupportedArchitectureError

    if not saes:
        raise ValueError("no SAEs given")
    names = [_label(i, s) for i, s in enumerate(saes)]
    for i, sae in enumerate(saes):
        check_finite(sae, name=names[i])
        check_linear_decode(sae, name=names[i])
        rule = get_rule(sae)
        if not rule.reconstructs_input:
            raise UnsupportedArchitectureError(
                sae.cfg.architecture(),
                [],
                reason="it reconstructs another hook than it reads; assembly and refit "
                "need SAEs that reconstruct their input",
            )
        if need_exact and len(saes) > 1 and not rule.exact:
            raise UnsupportedArchitectureError(
                sae.cfg.architecture(),
                [],
                reason="its latents do not fire independently once joined (TopK groups), "
                "so the assembly objective is not exact for it",
            )
        if i:
            check_compatible(saes[0], sae, names=(names[0], names[i]))
            if get_rule(saes[0]).family != rule.family:
                raise IncompatibleSAEsError(
                    "architecture",
                    saes[0].cfg.architecture(),
                    sae.cfg.architecture(),
                    names=(names[0], names[i]),
                )


def _label(i: int, sae: SAE[Any]) -> str:
    return f"SAE {i} (d_sae={sae.cfg.d_sae})"


def _check_batch(x_ND: torch.Tensor, seen: int) -> None:
    if x_ND.is_complex():
        raise InvalidActivationsError(f"activations are complex ({x_ND.dtype}); expected real")
    finite = torch.isfinite(x_ND)
    if not bool(finite.all()):
        bad = int((~finite.all(-1)).nonzero()[0, 0]) + seen
        raise InvalidActivationsError(
            f"activations hold NaN or inf (first at token {bad}); clean them before assembling"
        )


@torch.no_grad()
def build_objective(
    saes: Sequence[SAE[Any]],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    check: bool = True,
    description: str = "objective",
) -> Objective:
    """Gather R, c, firing counts and the sparse activations of every latent of ``saes`` over
    ``activations`` (tensor [..., d_in] or iterable of batches), in one pass of each SAE's own
    ``encode``. Everything is on the first SAE's device."""
    if check:
        check_family(saes)
    first = saes[0]
    dev, d_in = first.W_dec.device, first.cfg.d_in
    offsets = [0]
    for sae in saes:
        offsets.append(offsets[-1] + sae.cfg.d_sae)
    n = offsets[-1]
    work = torch.float64 if first.W_dec.dtype == torch.float64 else torch.float32
    W_UD = torch.cat([sae.W_dec.detach().to(dev, work) for sae in saes])
    axw_U = torch.zeros(n, dtype=torch.float64, device=dev)  # Σ_t a_i(t) x_t · w_i
    sum_a = torch.zeros(n, dtype=torch.float64, device=dev)
    sum_a2 = torch.zeros(n, dtype=torch.float64, device=dev)
    sum_x = torch.zeros(d_in, dtype=torch.float64, device=dev)
    sum_x2 = torch.zeros((), dtype=torch.float64, device=dev)
    toks: list[torch.Tensor] = []
    lats: list[torch.Tensor] = []
    vals: list[torch.Tensor] = []
    n_tokens = 0
    for x_ND in iter_batches(
        activations,
        d_in,
        batch_size=batch_size,
        show_progress=show_progress,
        description=description,
    ):
        _check_batch(x_ND, n_tokens)
        x_ND = x_ND.to(dev, first.W_dec.dtype)
        sum_x += x_ND.sum(0, dtype=torch.float64)
        sum_x2 += x_ND.pow(2).sum(dtype=torch.float64)
        for k, sae in enumerate(saes):
            acts_NL = sae.encode(x_ND)
            nz = acts_NL.nonzero()
            t, lat = nz[:, 0], nz[:, 1]
            v = acts_NL[t, lat]
            u = lat + offsets[k]
            # x_t · w_i at every non-zero (t, i) only: a sampled dense product (SDDMM)
            pattern = _sparse_csr(
                _row_pointers(t, x_ND.shape[0]),
                lat,
                torch.zeros_like(v),
                (x_ND.shape[0], sae.cfg.d_sae),
            )
            dots = torch.sparse.sampled_addmm(  # float32 at least: no half kernel on the CPU
                pattern.to(work), x_ND.to(work), W_UD[offsets[k] : offsets[k + 1]].T
            ).values()
            axw_U.index_add_(0, u, (dots * v).double())
            sum_a.index_add_(0, u, v.double())
            sum_a2.index_add_(0, u, v.double().pow(2))
            toks.append(t + n_tokens)
            lats.append(u)
            vals.append(v.float())
        n_tokens += x_ND.shape[0]
    if n_tokens == 0:
        raise InvalidActivationsError("activations are empty: no tokens to build the objective")
    mean_D = sum_x / n_tokens
    total_variance = float(sum_x2 - n_tokens * mean_D.pow(2).sum())
    c_U = axw_U - sum_a * _rowwise_dot(W_UD, mean_D.expand(n, d_in))
    tok = torch.cat(toks) if toks else torch.zeros(0, dtype=torch.long, device=dev)
    lat = torch.cat(lats) if lats else torch.zeros(0, dtype=torch.long, device=dev)
    val = torch.cat(vals) if vals else torch.zeros(0, device=dev)
    del toks, lats, vals
    counts_U = torch.bincount(lat, minlength=n)
    # each (batch, SAE) block is in (token, latent) order and SAEs come in union order, so a
    # stable sort by token gives (token, latent) order, and then one by latent (latent, token)
    order = torch.sort(tok, stable=True).indices
    tok, lat, val = tok[order], lat[order], val[order]
    by_token = _sparse_csr(_row_pointers(tok, n_tokens), lat, val, (n_tokens, n))
    order = torch.sort(lat, stable=True).indices
    by_latent = _sparse_csr(_row_pointers(lat, n), tok[order], val[order], (n, n_tokens))
    del order
    if not math.isfinite(total_variance) or not bool(torch.isfinite(c_U).all()):
        raise InvalidActivationsError("activations overflow: their squares are not finite")
    return Objective(
        offsets=offsets,
        n_tokens=n_tokens,
        total_variance=total_variance,
        mean_D=mean_D,
        W_UD=W_UD,
        c_U=c_U,
        counts_U=counts_U,
        sum_a_U=sum_a,
        sum_a2_U=sum_a2,
        by_token=by_token,
        by_latent=by_latent,
    )


def family_union(
    sae: SAE[Any], family: Sequence[SAE[Any]], offsets: Sequence[int]
) -> torch.Tensor | None:
    """Union indices (``offsets`` as in :class:`Objective`) of ``sae``'s latents, when ``sae``
    is made of unscaled latents of the ``family`` SAEs (a stitched or Frankenstein SAE of
    them, by its provenance); None otherwise."""
    from sae_lens_stitch.provenance import get_provenance

    keys: dict[str, int] = {}
    for k, member in enumerate(family):
        member_prov = get_provenance(member)
        if len(member_prov.sources) != 1 or member_prov.operations:
            return None
        keys[next(iter(member_prov.sources))] = k
    union: list[int] = []
    for origin in get_provenance(sae).latents:
        k = keys.get(origin.source)
        if k is None or (origin.scale is not None and origin.scale != 1.0):
            return None
        union.append(offsets[k] + origin.index)
    if len(set(union)) != len(union):
        return None
    return torch.tensor(union, dtype=torch.long)


def _row_pointers(rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    """CSR row pointers of sorted row indices."""
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.bincount(rows, minlength=n_rows).cumsum(0)
    return crow


def _csr(
    rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, n_rows: int, n_cols: int
) -> torch.Tensor:
    """CSR [n_rows, n_cols] from coordinates (sorted by row, then column)."""
    order = torch.argsort(rows * n_cols + cols)
    return _sparse_csr(_row_pointers(rows, n_rows), cols[order], vals[order], (n_rows, n_cols))


def _sparse_csr(
    crow: torch.Tensor, col: torch.Tensor, vals: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used are not
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, vals, size=size, check_invariants=False)
