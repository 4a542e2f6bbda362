"""One encode of each SAE per token set, shared by every step of a study.

:class:`SharedEncodings` holds the assembly objectives (:mod:`sae_lens_stitch.assembly.objective`)
of a family on the fit and the evaluation tokens: one pass of each SAE's own ``encode`` per
token set. From them, without another pass and exactly (for the architectures whose stitching
is exact), come each trained SAE's metrics, its latents' firing counts (dead latents), every
large latent's insert effect into a smaller SAE, and the metrics of any SAE made of the
family's latents with a given output bias (a stitched SAE, Frankenstein's SAE).

Insert effect of latent ``j`` into base ``B`` (latents ``S``, output bias ``b``), with the
objective's sums (``y_t = Σ_S a_k(t) w_k``, ``ȳ = Σ_S ā_k w_k``)::

    Σ_t a_j(t) r_t·w_j = c_j + (Σ_t a_j) w_j·(x̄ - b - ȳ) - (Q 1_S)_j
    ΔSSE_j = (Σ_t a_j²) |w_j|² - 2 Σ_t a_j(t) r_t·w_j
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_stitch.assembly.objective import Objective, build_objective
from sae_lens_stitch.evaluation.curves import PairEncodings
from sae_lens_stitch.evaluation.metrics import DEFAULT_BATCH_SIZE, Metrics
from sae_lens_stitch.evaluation.sparse_cache import SparseLatents


@dataclass
class SharedEncodings:
    """The family's objectives on the fit and the evaluation tokens."""

    saes: list[SAE[Any]]
    fit: Objective
    eval: Objective

    @classmethod
    def build(
        cls,
        saes: Sequence[SAE[Any]],
        fit_ND: torch.Tensor,
        eval_ND: torch.Tensor,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress: bool | None = None,
    ) -> SharedEncodings:
        """Encode every SAE once on the fit tokens and once on the evaluation tokens."""
        fit = build_objective(
            saes,
            fit_ND,
            batch_size=batch_size,
            show_progress=show_progress,
            description="study: encode fit tokens",
        )
        ev = build_objective(
            saes,
            eval_ND,
            batch_size=batch_size,
            show_progress=show_progress,
            check=False,
            description="study: encode evaluation tokens",
        )
        return cls(saes=list(saes), fit=fit, eval=ev)

    def union(self, k: int, latents: torch.Tensor | None = None) -> torch.Tensor:
        """Union indices of SAE ``k``'s latents (all, or ``latents``)."""
        all_U = self.eval.union_indices(k)
        return all_U if latents is None else all_U[latents.long().cpu()]

    def bias(self, k: int) -> torch.Tensor:
        """SAE ``k``'s output bias (its ``b_dec``), float64."""
        return self.saes[k].b_dec.detach().to(self.eval.mean_D.device, torch.float64)

    def metrics(self, union_S: torch.Tensor, bias_D: torch.Tensor) -> Metrics:
        """Evaluation metrics of the SAE made of latents ``union_S`` (scales 1) with output
        bias ``bias_D``: equal to evaluating that SAE on the evaluation tokens."""
        return self.eval.metrics(union_S, bias_D=bias_D)

    def trained_metrics(self, k: int) -> Metrics:
        """SAE ``k`` as trained, on the evaluation tokens."""
        return self.metrics(self.union(k), self.bias(k))

    def firing_counts(self, k: int) -> torch.Tensor:
        """Evaluation tokens on which each latent of SAE ``k`` fires, int64 [d_sae]."""
        return self.eval.counts_U[self.union(k).to(self.eval.counts_U.device)].cpu()

    def latents(self, k: int) -> SparseLatents:
        """Every latent of SAE ``k`` on the evaluation tokens, as the curves store them."""
        ev = self.eval
        every = SparseLatents(
            ptr=ev.by_latent.crow_indices().cpu(),
            tokens=ev.by_latent.col_indices().cpu(),
            values=ev.by_latent.values().cpu(),
            rows_PD=ev.W_UD.cpu(),
        )
        return every.take(self.union(k))

    def pair(self, small: int, large: int, eval_ND: torch.Tensor) -> PairEncodings:
        """What a swap curve from SAE ``small`` to SAE ``large`` on the evaluation tokens
        (``eval_ND``, the tokens these encodings were built on) needs, without an encode."""
        ev = self.eval
        union = self.union(small).to(ev.W_UD.device)
        recon_ND = ev.reconstructions(union, torch.ones(union.numel(), dtype=torch.float64))
        residual = (eval_ND.to(recon_ND.device).double() - recon_ND - self.bias(small)).float()
        return PairEncodings(
            residual_ND=residual.cpu(),
            active=int(ev.counts_U[union].sum()),
            small=self.latents(small),
            large=self.latents(large),
        )

    def insert_delta_sse(self, base: int, donor: int) -> tuple[torch.Tensor, float]:
        """(ΔSSE of inserting each latent of SAE ``donor`` alone into SAE ``base``, float64
        [donor d_sae]; the base's SSE), on the evaluation tokens."""
        ev = self.eval
        dev = ev.c_U.device
        base_U = self.union(base).to(dev)
        donor_U = self.union(donor).to(dev)
        b_D = self.bias(base)
        q1_U = ev.matvec(base_U, torch.ones(base_U.numel(), dtype=torch.float64, device=dev))
        mean_y_D = ev.mean_a_U[base_U] @ ev.W_UD[base_U].double()
        w_PD = ev.W_UD[donor_U].double()
        cross_P = (
            ev.c_U[donor_U]
            + ev.sum_a_U[donor_U] * (w_PD @ (ev.mean_D - b_D - mean_y_D))
            - q1_U[donor_U]
        )
        delta_P = ev.sum_a2_U[donor_U] * ev.sq_norms_U[donor_U] - 2 * cross_P
        return delta_P.cpu(), ev.sse_with_bias(base_U, None, b_D)
