"""Assemble the best SAE a family of widths can make under a width and/or L0 budget: greedy
add, remove and swap moves priced exactly by the quadratic objective, then a closed-form refit.

The moves (all scales 1, best output bias; see :mod:`sae_lens_stitch.assembly.objective`):

- *add* latent j (not in S):  ΔSSE = Q_jj - 2 c_j + 2 h_j,      h = Q[:, S] 1
- *remove* latent i (in S):   ΔSSE = Q_ii + 2 c_i - 2 h_i
- *swap* (remove i, add j):   ΔSSE = add_j + remove_i - 2 Q_ij

``h`` is kept up to date with one column of ``Q`` per move (computed from the co-activations
of the moved latent). Each step takes the best feasible move: first any removal that lowers
the error (it also frees budget), then the best addition (by ΔSSE, or by ΔSSE per unit of L0
when an L0 budget is set), and when no addition fits or helps, the best swap between the
``swap_candidates`` least useful removable latents and every candidate. Ties go to the lowest
index: the result is deterministic. Every move after the start lowers the fit error, so the
path from the start SAE to the budget is a monotone interpolation (on fit tokens). When the
start itself exceeds the budget (``keep_start=False``), the least useful latents are removed
first, and those moves raise the error.

The error on evaluation tokens is tracked along the path with the bias fitted on the fit
tokens (exactly: the eval SSE with a foreign bias is the eval SSE with its own best bias plus
N_eval |gap|², and the gap is updated per move).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import SAE

from sae_lens_stitch.assembly.objective import Objective, build_objective, check_family
from sae_lens_stitch.assembly.refit import ScaleSolve, solve_scales, write_decoder
from sae_lens_stitch.errors import BudgetError, InvalidActivationsError
from sae_lens_stitch.evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    ActivationsLike,
    Metrics,
    evaluate,
    materialize,
)
from sae_lens_stitch.progress import track
from sae_lens_stitch.provenance import (
    Operation,
    describe_sae,
    display_name,
    get_provenance,
    set_provenance,
)
from sae_lens_stitch.registry import Part
from sae_lens_stitch.surgery.operations import join
from sae_lens_stitch.validation import check_fraction

Move = Literal["start", "add", "remove", "swap", "refit"]

MIN_TOKENS = 16
"""Fewest tokens accepted for the fit part and for the evaluation part."""

DEFAULT_EVAL_FRACTION = 0.25
"""Share of the tokens kept for evaluation when no ``eval_activations`` are given."""


class LatentRef(BaseModel):
    """Latent ``index`` of the family's SAE number ``sae``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sae: int
    index: int


class PathStep(BaseModel):
    """The SAE after one move of the assembly (MSE and FVU: lower is better; L0: lower is
    sparser). Fit values are on the fit tokens, eval values on the evaluation tokens with the
    output bias fitted on the fit tokens."""

    model_config = ConfigDict(extra="forbid")

    step: int
    move: Move
    added: list[LatentRef] = Field(default_factory=list)
    removed: list[LatentRef] = Field(default_factory=list)
    width: int
    """Latents in the SAE after the move."""
    l0: float
    """Mean active latents per fit token."""
    mse_fit: float
    mse_eval: float
    fvu_eval: float


class AssemblyResult(BaseModel):
    """Everything :func:`assemble` decided and measured, as stable JSON."""

    model_config = ConfigDict(extra="forbid")

    saes: list[str]
    """The family, as given (descriptions)."""
    widths: list[int]
    start: int | None
    keep_start: bool
    pool: list[int]
    width_budget: int | None
    """Most latents allowed (None: no width budget)."""
    l0_budget: float | None
    """Highest mean L0 on fit tokens allowed (None: no L0 budget)."""
    refit: bool
    n_fit_tokens: int
    n_eval_tokens: int
    stopped: str
    """Why the greedy search ended: ``no improving move``, ``max_moves``."""
    path: list[PathStep]
    eval_rises: int
    """Moves of the path (refit excluded) after which the evaluation MSE rose. Lower is
    better; the fit MSE never rises after the start (except forced removals)."""
    selected_per_sae: list[int]
    """Latents of the final SAE taken from each SAE of the family."""
    n_dropped_zero_scale: int
    """Latents dropped because the non-negative refit gave them scale 0 (latents of a kept
    start SAE stay, with scale 0)."""
    solve: ScaleSolve | None
    fit: Metrics
    """Metrics of the final SAE on the fit tokens (from the objective: exact, no pass)."""
    eval: Metrics
    """Metrics of the final SAE on the evaluation tokens (its own forward pass)."""
    seconds: dict[str, float]
    """Wall time of each phase: objective, selection, refit, build, evaluate."""


@dataclass
class Assembly:
    """The assembled SAE and how it was made."""

    sae: SAE[Any]
    """An SAE-Lens SAE of the family's architecture."""
    result: AssemblyResult

    @property
    def path(self) -> list[PathStep]:
        return self.result.path

    @property
    def fit(self) -> Metrics:
        return self.result.fit

    @property
    def eval(self) -> Metrics:
        return self.result.eval


def split_tokens(
    activations: ActivationsLike,
    d_in: int,
    eval_activations: ActivationsLike | None,
    eval_fraction: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit, eval) tensors: the given pair, or the first and last parts of ``activations``."""
    check_fraction(eval_fraction, "eval_fraction")
    try:
        x = materialize(activations, d_in)
        ev_x = None if eval_activations is None else materialize(eval_activations, d_in)
    except ValueError as err:
        raise InvalidActivationsError(str(err)) from None
    if ev_x is not None:
        fit, ev = x, ev_x
    else:
        n_eval = round(x.shape[0] * eval_fraction)
        fit, ev = x[: x.shape[0] - n_eval], x[x.shape[0] - n_eval :]
    for name, part in (("fit", fit), ("evaluation", ev)):
        if part.shape[0] < MIN_TOKENS:
            raise InvalidActivationsError(
                f"too few tokens for the {name} part: {part.shape[0]} (need at least {MIN_TOKENS}"
                f"; {x.shape[0]} tokens given)"
            )
    return fit, ev


class _Search:
    """Greedy state: the selection with a decoder scale per selected latent, the gains
    bookkeeping (h = Q[:, S] s), and the eval error along the way.

    ``scaled=False``: every latent has scale 1 (the plain stitched SAE). ``scaled=True``: the
    start is refit first and each added latent enters with its best scale given the others
    (s_j = (c_j - h_j) / Q_jj, never negative), so moves are priced for the refit SAE."""

    def __init__(
        self,
        fit: Objective,
        ev: Objective,
        selected_U: torch.Tensor,
        removable_U: torch.Tensor,
        candidate_U: torch.Tensor,
        width: int | None,
        l0: float | None,
        scaled: bool,
        fit_x: torch.Tensor,
        significance: float,
    ):
        self.fit, self.ev = fit, ev
        self.fit_x = fit_x
        self.z = significance
        dev = fit.c_U.device
        self.in_S = selected_U.to(dev).clone()
        self.removable = removable_U.to(dev).clone()
        # a latent whose activation does not vary (Q_jj ~ 0) cannot enter: nothing to fit
        self.q_floor = 1e-12 * max(float(fit.q_diag_U.max()) if fit.n_latents else 0.0, 1e-300)
        self.candidate = candidate_U.to(dev) & (fit.counts_U > 0) & (fit.q_diag_U > self.q_floor)
        self.width_budget, self.l0_budget = width, l0
        self.scaled = scaled
        self.cost_U = fit.counts_U.double() / fit.n_tokens  # L0 of each latent
        self.q_diag, self.c = fit.q_diag_U, fit.c_U
        self.ev_q_diag, self.ev_c = ev.q_diag_U, ev.c_U
        self.delta_mean_U = ev.mean_a_U - fit.mean_a_U
        self.tol = 1e-10 * max(fit.total_variance, 1e-30)
        idx = self.in_S.nonzero().flatten()
        self.s_U = torch.zeros(fit.n_latents, dtype=torch.float64, device=dev)
        self.s_U[idx] = 1.0
        if scaled and idx.numel():
            self.s_U[idx] = solve_scales(fit, idx)[0].to(dev)
        self.refresh()

    def refresh(self) -> None:
        """Compute h, the SSEs and the eval bias gap exactly from the selection (at the start;
        afterwards each move updates them exactly, up to float64 rounding)."""
        idx = self.in_S.nonzero().flatten()
        s_S = self.s_U[idx]
        y_ND = self.fit.reconstructions(idx, s_S)
        self.h = self.fit.matvec(idx, s_S, y_ND)
        self.sse = self.fit.sse(idx, s_S, y_ND)
        # eval reconstruction of S (scaled, no bias) and Σ_S s_i ā_i w_i on the eval tokens:
        # what Σ_{i∈S} Q^e_ik s_i needs, without a column of Q^e per move
        self.ev_y_ND = self.ev.reconstructions(idx, s_S)
        self.ev_sse = self.ev.sse(idx, s_S, self.ev_y_ND)
        self.gap_D = self.ev.best_bias(idx, s_S) - self.fit.best_bias(idx, s_S)
        self.ev_m_D = (self.ev.mean_a_U[idx] * s_S) @ self.ev.W_UD[idx].double()
        # fit residual without the bias (x - Σ_S s_i a_i w_i) and the best bias, for the
        # per-token changes a significance test needs
        if self.z > 0:
            self.res_ND = self.fit_x.to(y_ND.device, torch.float64) - y_ND
            self.bias_D = self.fit.best_bias(idx, s_S)

    # --- measures -------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return int(self.in_S.sum())

    @property
    def l0(self) -> float:
        return float(self.cost_U[self.in_S].sum())

    def over_budget(self) -> bool:
        return (self.width_budget is not None and self.width > self.width_budget) or (
            self.l0_budget is not None and self.l0 > self.l0_budget + 1e-12
        )

    def _entry(self, r: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(entry scale, ΔSSE) of adding latents with residuals r = c - h and diagonals q:
        scale 1, or in scaled mode the best non-negative one, r / q; ΔSSE = s² q - 2 s r."""
        if not self.scaled:
            s = torch.ones_like(r)
        else:
            s = torch.where(q > self.q_floor, r / q.clamp_min(self.q_floor), 0.0).clamp_min(0.0)
        return s, s * (s * q - 2 * r)

    def add_gain(self, residual_U: torch.Tensor | None = None) -> torch.Tensor:
        """ΔSSE of adding each latent at its entry scale."""
        r = self.c - self.h if residual_U is None else residual_U
        return self._entry(r, self.q_diag)[1]

    def remove_gain(self) -> torch.Tensor:
        """ΔSSE of removing each selected latent: s² Q_ii + 2 s (c_i - h_i)."""
        s = self.s_U
        return s * (s * self.q_diag + 2 * (self.c - self.h))

    # --- moves ----------------------------------------------------------------------------
    def apply(self, k: int, add: bool) -> None:
        if add:
            s_k, g_k = self._entry(self.c[k : k + 1] - self.h[k : k + 1], self.q_diag[k : k + 1])
            scale, gain = float(s_k), float(g_k)
        else:
            scale = float(self.s_U[k])
            gain = float(self.remove_gain()[k])
        sign = scale if add else -scale
        toks, a_k = self.ev.latent_entries(k)
        w_k = self.ev.W_UD[k].double()
        mean_a_k = float(self.ev.mean_a_U[k])
        # Σ_{i∈S} Q^e_ik s_i = w_k · Σ_{t: k fires} a_k(t) y(t) - N ā_k w_k · Σ_S s_i ā_i w_i
        h_e = float(w_k @ (a_k @ self.ev_y_ND[toks])) - self.ev.n_tokens * mean_a_k * float(
            w_k @ self.ev_m_D
        )
        q_e, c_e = float(self.ev_q_diag[k]), float(self.ev_c[k])
        if add:
            self.ev_sse += scale * scale * q_e - 2 * scale * c_e + 2 * scale * h_e
        else:
            self.ev_sse += scale * scale * q_e + 2 * scale * c_e - 2 * scale * h_e
        self.ev_y_ND.index_add_(0, toks, sign * a_k[:, None] * w_k[None, :])
        self.ev_m_D += sign * mean_a_k * w_k
        self.gap_D -= sign * float(self.delta_mean_U[k]) * self.fit.W_UD[k].double()
        if self.z > 0:
            f_toks, f_a = self.fit.latent_entries(k)
            w_f = self.fit.W_UD[k].double()
            self.res_ND.index_add_(0, f_toks, -sign * f_a[:, None] * w_f[None, :])
            self.bias_D -= sign * float(self.fit.mean_a_U[k]) * w_f
        self.h += sign * self.fit.column(k)
        self.sse += gain
        self.in_S[k] = add
        self.s_U[k] = scale if add else 0.0

    def significant(self, moves: list[tuple[int, float]], gain: float) -> bool:
        """Whether a move's fit gain is at least ``z`` standard errors below 0. ``moves``:
        (latent, signed scale: + entering, - leaving). The per-token changes of the squared
        error, |r_t - Δy_t|² - |r_t|² with Δy_t the summed change of the reconstruction (bias
        held), have a spread; a gain smaller than its noise would not hold on other tokens."""
        if self.z <= 0:
            return True
        entries = [(self.fit.latent_entries(k), k, scale) for k, scale in moves]
        if len(entries) == 1:  # one latent: Δy_t = s a_t w, so the change is s a (s a |w|² - 2 r·w)
            (toks, a), k, scale = entries[0]
            w = self.fit.W_UD[k].double()
            sa = scale * a
            change = sa * (sa * float(w @ w) - 2 * ((self.res_ND[toks] - self.bias_D) @ w))
        else:
            toks = torch.cat([t for (t, _), _, _ in entries]).unique()
            delta_y = torch.zeros(
                toks.numel(), self.fit.d_in, dtype=torch.float64, device=toks.device
            )
            for (t, a), k, scale in entries:
                rows = torch.searchsorted(toks, t)
                delta_y.index_add_(
                    0, rows, (scale * a)[:, None] * self.fit.W_UD[k].double()[None, :]
                )
            r_T = self.res_ND[toks] - self.bias_D
            change = (delta_y * (delta_y - 2 * r_T)).sum(-1)  # |r - Δy|² - |r|²
        per_token = torch.zeros(self.fit.n_tokens, dtype=torch.float64, device=change.device)
        per_token[toks] = change
        se = float(per_token.std()) * self.fit.n_tokens**0.5
        return gain < -self.z * se

    def entry_scale(self, k: int, residual_shift: float = 0.0) -> float:
        """The scale latent k would enter with (its residual c - h raised by ``residual_shift``,
        e.g. s_i Q_ik when i leaves in the same swap)."""
        r = self.c[k : k + 1] - self.h[k : k + 1] + residual_shift
        return float(self._entry(r, self.q_diag[k : k + 1])[0])

    def mse_eval(self) -> float:
        return (self.ev_sse + self.ev.n_tokens * float(self.gap_D.pow(2).sum())) / self.ev.n_tokens

    # --- choosing -------------------------------------------------------------------------
    def _score(self, gain: torch.Tensor) -> torch.Tensor:
        if self.l0_budget is None:
            return gain
        return gain / self.cost_U.clamp_min(1e-12)

    def best_forced_removal(self) -> int | None:
        """The least useful removable latent (per unit of L0 when L0 is over budget)."""
        mask = self.in_S & self.removable
        if not bool(mask.any()):
            return None
        score = self.remove_gain()
        if self.l0_budget is not None and self.l0 > self.l0_budget:
            score = score / self.cost_U.clamp_min(1e-12)
        return int(torch.where(mask, score, torch.inf).argmin())

    def best_removal(self) -> int | None:
        """A removal that lowers the error significantly, the best one (a latent whose
        removal is not significant is not proposed again)."""
        while True:
            gain = torch.where(self.in_S & self.removable, self.remove_gain(), torch.inf)
            k = int(gain.argmin())
            if not float(gain[k]) < -self.tol:
                return None
            if self.significant([(k, -float(self.s_U[k]))], float(gain[k])):
                return k
            self.removable[k] = False

    def _fits(self, extra_width: int, extra_l0_U: torch.Tensor) -> torch.Tensor:
        ok = torch.ones_like(self.in_S)
        if self.width_budget is not None and self.width + extra_width > self.width_budget:
            ok = torch.zeros_like(self.in_S)
        if self.l0_budget is not None:
            ok = ok & (self.l0 + extra_l0_U <= self.l0_budget + 1e-12)
        return ok

    def best_addition(self) -> int | None:
        """The best feasible addition whose gain is significant (candidates whose gain is
        not are dropped from the pool)."""
        gain = self.add_gain()
        feasible = self.candidate & ~self.in_S & self._fits(1, self.cost_U) & (gain < -self.tol)
        score = torch.where(feasible, self._score(gain), torch.inf)
        while bool(feasible.any()):
            k = int(score.argmin())
            if self.significant([(k, self.entry_scale(k))], float(gain[k])):
                return k
            self.candidate[k] = False
            feasible[k] = False
            score[k] = torch.inf
        return None

    def best_swap(self, n_candidates: int) -> tuple[int, int] | None:
        """Remove i, add j: ΔSSE = remove_i + add_j with h_j lowered by s_i Q_ij."""
        removable = self.in_S & self.removable
        if not bool(removable.any()):
            return None
        residual, rem_gain = self.c - self.h, self.remove_gain()
        order = torch.where(removable, rem_gain, torch.inf).argsort()
        n_rem = min(n_candidates, int(removable.sum()))
        outside = self.candidate & ~self.in_S
        best: tuple[float, int, int, float] | None = None
        chosen = order[:n_rem].tolist()
        for i, col_i in zip(chosen, self.fit.columns(chosen), strict=True):
            swap_gain = self.add_gain(residual + float(self.s_U[i]) * col_i) + float(rem_gain[i])
            feasible = outside & self._fits(0, self.cost_U - float(self.cost_U[i]))
            if not bool(feasible.any()):
                continue
            masked = torch.where(feasible, swap_gain, torch.inf)
            j = int(masked.argmin())
            value = float(masked[j])
            if value < -self.tol and (best is None or value < best[0]):
                best = (value, i, j, float(self.s_U[i]) * float(col_i[j]))
        if best is None:
            return None
        value, i, j, shift = best
        moves = [(i, -float(self.s_U[i])), (j, self.entry_scale(j, shift))]
        return (i, j) if self.significant(moves, value) else None


def _check_budgets(
    width: int | None, l0: float | None, start_width: int, start_l0: float, keep: bool
) -> None:
    if width is None and l0 is None:
        raise BudgetError("give a width budget, an L0 budget, or both (width=..., l0=...)")
    if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
        raise BudgetError(f"width budget must be a positive integer; got {width!r}")
    if l0 is not None and (isinstance(l0, bool) or not l0 > 0 or l0 != l0 or l0 == float("inf")):
        raise BudgetError(f"L0 budget must be a positive finite number; got {l0!r}")
    if keep and width is not None and width < start_width:
        raise BudgetError(
            f"width budget {width} is below the {start_width} latents of the kept start SAE "
            "(pass keep_start=False to let them be removed)"
        )
    if keep and l0 is not None and l0 < start_l0:
        raise BudgetError(
            f"L0 budget {l0:g} is below the L0 {start_l0:.4g} of the kept start SAE on the fit "
            "tokens (pass keep_start=False to let its latents be removed)"
        )


def _check_pool(pool: Sequence[int] | None, start: int | None, n: int) -> list[int]:
    if start is not None and (
        isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < n
    ):
        raise BudgetError(f"start must be None or an SAE index in 0..{n - 1}; got {start!r}")
    chosen = [k for k in range(n) if k != start] if pool is None else list(pool)
    if not chosen:
        raise BudgetError("the pool of SAEs whose latents may enter is empty")
    for k in chosen:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < n:
            raise BudgetError(f"pool entries must be SAE indices in 0..{n - 1}; got {k!r}")
    if len(set(chosen)) != len(chosen):
        raise BudgetError(f"pool lists an SAE twice: {chosen}")
    return chosen


def assemble(
    saes: Sequence[SAE[Any]],
    activations: ActivationsLike,
    *,
    eval_activations: ActivationsLike | None = None,
    width: int | None = None,
    l0: float | None = None,
    start: int | None = None,
    keep_start: bool = True,
    pool: Sequence[int] | None = None,
    refit: bool = True,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    max_moves: int | None = None,
    swap_candidates: int = 32,
    scaled: bool | None = None,
    significance: float = 2.0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    objectives: tuple[Objective, Objective] | None = None,
) -> Assembly:
    """Choose latents from the union of ``saes`` (one hook, same activations) under a width
    budget, an L0 budget (mean active latents on the fit tokens), or both.

    ``start``: index of the SAE to begin from (None: begin empty); ``keep_start``: whether its
    latents must stay; ``pool``: indices of the SAEs whose latents may enter (default: all but
    the start). Without ``eval_activations`` the last ``eval_fraction`` of the tokens is held
    out for evaluation. With ``refit`` the final latents get their best non-negative decoder
    scales (latents whose scale is 0 are dropped); without it they keep scales 1. Either way
    the output bias is the best one on the fit tokens, and latents fire exactly as in their own
    SAE. ``max_moves`` bounds the greedy moves (default: no bound but the budget).

    ``scaled`` (with ``refit``): price moves for the refit SAE: the start is refit first, and
    each latent enters with its best decoder scale given the others (its scale is kept until
    the final refit). Otherwise every move is priced at scale 1 (the plain stitched SAE).
    Default (None): scaled under an L0 budget, where it picks sparser latents; at scale 1
    under a width budget alone, where on a real family it reached a lower error.

    ``significance``: a move is taken only if its fit gain is at least this many standard
    errors (of the per-token changes it makes) below zero; candidates that fail are dropped.
    It keeps the greedy from fitting noise in its last, smallest moves (0 turns it off).

    ``objectives``: the (fit, eval) objectives of ``saes`` over exactly the fit and evaluation
    tokens, already built (:func:`~sae_lens_stitch.assembly.objective.build_objective`, e.g. by
    :func:`sae_lens_stitch.run_study`), to skip the two passes over the data."""
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    check_family(saes)
    pool_k = _check_pool(pool, start, len(saes))
    if max_moves is not None and (
        isinstance(max_moves, bool) or not isinstance(max_moves, int) or max_moves < 0
    ):
        raise BudgetError(f"max_moves must be None or a non-negative integer; got {max_moves!r}")
    if isinstance(significance, bool) or not (
        isinstance(significance, int | float) and 0 <= significance < float("inf")
    ):
        raise BudgetError(f"significance must be a finite number >= 0; got {significance!r}")
    if not isinstance(swap_candidates, int) or swap_candidates < 0:
        raise BudgetError(
            f"swap_candidates must be a non-negative integer; got {swap_candidates!r}"
        )
    start_width = saes[start].cfg.d_sae if start is not None else 0
    _check_budgets(width, l0, start_width, 0.0, keep_start)  # before any pass over the data
    fit_x, ev_x = split_tokens(activations, saes[0].cfg.d_in, eval_activations, eval_fraction)
    if objectives is not None:
        fit, ev = objectives
        n_union = sum(s.cfg.d_sae for s in saes)
        if (fit.n_tokens, ev.n_tokens) != (fit_x.shape[0], ev_x.shape[0]) or not (
            fit.n_latents == ev.n_latents == n_union
        ):
            raise InvalidActivationsError(
                f"objectives over {fit.n_tokens} fit / {ev.n_tokens} eval tokens and "
                f"{fit.n_latents} latents do not match the split ({fit_x.shape[0]} / "
                f"{ev_x.shape[0]} tokens) and the family ({n_union} latents)"
            )
    else:
        fit = build_objective(
            saes,
            fit_x,
            batch_size=batch_size,
            show_progress=show_progress,
            check=False,
            description="assemble: fit objective",
        )
        ev = build_objective(
            saes,
            ev_x,
            batch_size=batch_size,
            show_progress=show_progress,
            check=False,
            description="assemble: eval objective",
        )
    times["objective"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    n = fit.n_latents
    dev = fit.c_U.device
    selected = torch.zeros(n, dtype=torch.bool, device=dev)
    if start is not None:
        selected[fit.union_indices(start).to(dev)] = True
    removable = ~selected if keep_start else torch.ones(n, dtype=torch.bool, device=dev)
    candidate = torch.zeros(n, dtype=torch.bool, device=dev)
    for k in pool_k:
        candidate[fit.union_indices(k).to(dev)] = True
    start_l0 = float(fit.counts_U[selected].double().sum()) / fit.n_tokens
    _check_budgets(width, l0, start_width, start_l0, keep_start)
    search = _Search(
        fit,
        ev,
        selected,
        removable,
        candidate,
        width,
        l0,
        scaled=refit and (l0 is not None if scaled is None else scaled),
        fit_x=fit_x,
        significance=significance,
    )
    path: list[PathStep] = []

    def record(move: Move, added: list[int], removed: list[int]) -> None:
        mse_eval = search.mse_eval()
        path.append(
            PathStep.model_construct(  # built from checked values, many times: no validation
                step=len(path),
                move=move,
                added=_refs(fit, added),
                removed=_refs(fit, removed),
                width=search.width,
                l0=search.l0,
                mse_fit=search.sse / fit.n_tokens,
                mse_eval=mse_eval,
                fvu_eval=mse_eval * ev.n_tokens / ev.total_variance,
            )
        )

    record("start", [], [])
    limit = max_moves if max_moves is not None else 4 * n + 16
    stopped = "no improving move"
    target = width if width is not None else n
    bar = track(
        range(limit),
        total=min(limit, max(target - search.width, 1)),
        description="assemble: moves",
        show=show_progress,
    )
    moves = 0
    for moves in bar:  # noqa: B007 (counts moves)
        if search.over_budget():
            k = search.best_forced_removal()
            if k is None:
                raise BudgetError(
                    f"the budget (width {width}, L0 {l0}) cannot be met: no removable latent left"
                )
            search.apply(k, add=False)
            record("remove", [], [k])
            continue
        k = search.best_removal()
        if k is not None:
            search.apply(k, add=False)
            record("remove", [], [k])
            continue
        k = search.best_addition()
        if k is not None:
            search.apply(k, add=True)
            record("add", [k], [])
            continue
        pair = search.best_swap(swap_candidates) if swap_candidates else None
        if pair is None:
            break
        i, j = pair
        search.apply(i, add=False)
        search.apply(j, add=True)
        record("swap", [j], [i])
    else:
        stopped = "max_moves"
    if search.over_budget():
        raise BudgetError(
            f"max_moves={max_moves} ran out before the start SAE was cut down to the budget "
            f"(width {width}, L0 {l0}): it is at width {search.width}, L0 {search.l0:.4g}"
        )
    times["selection"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    union_S = search.in_S.nonzero().flatten()
    solve: ScaleSolve | None = None
    scales_S = torch.ones(union_S.numel(), dtype=torch.float64, device=union_S.device)
    n_dropped = 0
    if refit and union_S.numel():
        scales_S, solve = solve_scales(fit, union_S)
        kept = ~removable.to(scales_S.device)[union_S.to(scales_S.device)]
        keep = (scales_S > 0) | kept  # a kept start latent stays, even at scale 0
        n_dropped = int((~keep).sum())
        union_S, scales_S = union_S[keep], scales_S[keep]
    if union_S.numel() == 0:
        raise BudgetError(
            f"no latent of the pool lowers the error within the budget (width {width}, L0 {l0})"
        )
    bias_D = fit.best_bias(union_S, scales_S)
    if refit:
        mse_fit = fit.sse(union_S, scales_S) / fit.n_tokens
        mse_eval = ev.sse_with_bias(union_S, scales_S, bias_D) / ev.n_tokens
        in_final = torch.zeros(n, dtype=torch.bool, device=dev)
        in_final[union_S] = True
        path.append(
            PathStep(
                step=len(path),
                move="refit",
                removed=_refs(fit, (search.in_S & ~in_final).nonzero().flatten().tolist()),
                width=int(union_S.numel()),
                l0=float(search.cost_U[union_S].sum()),
                mse_fit=mse_fit,
                mse_eval=mse_eval,
                fvu_eval=mse_eval * ev.n_tokens / ev.total_variance,
            )
        )
    times["refit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sae = _build(saes, fit, union_S, scales_S, bias_D, start)
    times["build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_metrics = fit.metrics(union_S, scales_S)  # exact, without another pass
    eval_metrics = evaluate(sae, ev_x, batch_size=batch_size, show_progress=show_progress)
    times["evaluate"] = time.perf_counter() - t0
    sae_of, _ = fit.source_of(union_S)
    result = AssemblyResult(
        saes=[display_name(s) for s in saes],
        widths=[s.cfg.d_sae for s in saes],
        start=start,
        keep_start=keep_start,
        pool=pool_k,
        width_budget=width,
        l0_budget=l0,
        refit=refit,
        n_fit_tokens=fit.n_tokens,
        n_eval_tokens=ev.n_tokens,
        stopped=stopped,
        path=path,
        eval_rises=sum(
            1 for a, b in itertools.pairwise(path) if b.move != "refit" and b.mse_eval > a.mse_eval
        ),
        selected_per_sae=torch.bincount(sae_of, minlength=len(saes)).tolist(),
        n_dropped_zero_scale=n_dropped,
        solve=solve,
        fit=fit_metrics,
        eval=eval_metrics,
        seconds=times,
    )
    prov = get_provenance(sae)
    prov.operations[-1] = prov.operations[-1].model_copy(
        update={
            "details": {
                **prov.operations[-1].details,
                "width_budget": width,
                "l0_budget": l0,
                "start": start,
                "keep_start": keep_start,
                "pool": pool_k,
                "refit": refit,
                "moves": len(path) - 1,
                "n_fit_tokens": fit.n_tokens,
                "mse_fit": result.fit.mse.value,
                "mse_eval": result.eval.mse.value,
            }
        }
    )
    set_provenance(sae, prov)
    return Assembly(sae=sae, result=result)


def _refs(obj: Objective, union: list[int]) -> list[LatentRef]:
    if not union:
        return []
    sae_of, idx = obj.source_of(torch.tensor(union))
    return [
        LatentRef.model_construct(sae=int(s), index=int(i))
        for s, i in zip(sae_of, idx, strict=True)
    ]


def _build(
    saes: Sequence[SAE[Any]],
    obj: Objective,
    union_S: torch.Tensor,
    scales_S: torch.Tensor,
    bias_D: torch.Tensor,
    start: int | None,
) -> SAE[Any]:
    """Join the chosen latents (grouped by SAE, in index order), then write scales and bias."""
    order = union_S.sort().indices
    union_S, scales_S = union_S[order], scales_S[order]
    sae_of, latent_of = obj.source_of(union_S)
    parts = [
        Part(saes[k], latent_of[sae_of == k]) for k in range(len(saes)) if bool((sae_of == k).any())
    ]
    base = saes[start] if start is not None else parts[0].sae
    op = Operation(
        operation="assemble",
        inputs=[describe_sae(s) for s in saes],
        n_latents_in=int(union_S.numel()),
        details={"exact": True, "per_sae": [int((sae_of == k).sum()) for k in range(len(saes))]},
    )
    sae = join(base, parts, op)
    write_decoder(sae, scales_S, bias_D)
    return sae
