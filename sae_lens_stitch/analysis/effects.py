"""Step 5b: the behavioural test of the cosine proxy. For every donor latent, the change in
reconstruction error when that latent alone is inserted into a base SAE, for all latents from
one pass over the activations.

With the base SAE's residual ``r_n = x_n - x̂_base(x_n)``, the inserted latent's activation
``a_in`` and its output direction ``w_i``, the stitched reconstruction is
``x̂_base(x_n) + a_in w_i``, so

    ΔSSE_i = Σ_n ( a_in² |w_i|² - 2 a_in r_n · w_i )

and each batch needs only ``R @ W.T`` (never one evaluation per latent). ``ΔMSE = ΔSSE / N`` and
``ΔFVU = ΔSSE / Σ_n ||x_n - μ||²`` (definitions as in :mod:`sae_lens_stitch.evaluation.metrics`).

Which activation a latent has once inserted ("stitched semantics"):

- standard, JumpReLU, gated (and every architecture whose registry rule is exact): its
  activation in the donor, ``donor.encode(x)[:, i]`` (stitching corrects the encoder bias for a
  different ``b_dec``, so it fires identically).
- TopK / AbsTopK / block_topk: a single inserted latent becomes a ``block_topk`` group of one
  latent with k = 1, which fires whenever its pre-activation is positive (TopK) or non-zero
  (AbsTopK). We compute that with the encode of a shallow view of the donor whose activation
  function is the element-wise one (ReLU, or identity for AbsTopK); the donor itself is left
  untouched. This is exactly
  what :func:`sae_lens_stitch.stitch` builds for one latent.

The output direction ``w_i`` is read from ``donor.decode`` (``decode(e_i) - decode(0)``), so
decoder-norm rescaling is honoured. SAEs with run-time activation normalisation
(``constant_norm_rescale``, ``layer_norm``) decode non-linearly per token and are refused with
:class:`~sae_lens_stitch.errors.UnsupportedSAEError`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.analysis.classify import FeatureCategory
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD, match_features
from sae_lens_stitch.checks import IndexLike, check_indices, checks_pair_once
from sae_lens_stitch.errors import InvalidActivationsError, UnsupportedSAEError
from sae_lens_stitch.evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    ActivationsLike,
    Metric,
    VarianceAccumulator,
    fraction_unexplained,
    iter_pairs,
)
from sae_lens_stitch.provenance import display_name
from sae_lens_stitch.registry import encode_and_reconstruct, get_rule, output_dim
from sae_lens_stitch.validation import check_threshold

_NONLINEAR_NORMS = ("constant_norm_rescale", "layer_norm")

InsertedActivations = Literal["alone", "in_donor"]
"""How an inserted TopK latent fires: ``alone`` as the only member of its block_topk group
(what stitching one latent builds), or ``in_donor`` with its activation in the donor SAE."""


def check_linear_decode(sae: SAE[Any], *, name: str = "SAE") -> None:
    """Raise :class:`UnsupportedSAEError` if ``sae.decode`` is not affine in the activations
    (run-time activation normalisation), which the closed forms here rely on."""
    norm = sae.cfg.normalize_activations
    if norm in _NONLINEAR_NORMS:
        raise UnsupportedSAEError(
            f"{name} uses normalize_activations={norm!r}: its decode rescales per token, so the "
            "closed-form insert effects and incremental curves do not apply"
        )


@torch.no_grad()
def decoder_directions(
    sae: SAE[Any], indices_P: torch.Tensor, *, chunk_size: int = 4096
) -> torch.Tensor:
    """[P, d_out] what one unit of each latent's activation adds to ``sae.decode``'s output,
    i.e. ``decode(e_i) - decode(0)`` (the decoder row, rescaled if the SAE rescales by decoder
    norm)."""
    check_linear_decode(sae)
    dev, dtype = sae.W_dec.device, sae.W_dec.dtype
    zero_1L = torch.zeros(1, sae.cfg.d_sae, device=dev, dtype=dtype)
    offset_1D = sae.decode(zero_1L)
    rows = []
    idx_P = indices_P.to(dev)
    for s in range(0, idx_P.numel(), chunk_size):
        chunk = idx_P[s : s + chunk_size]
        onehot_CL = torch.zeros(chunk.numel(), sae.cfg.d_sae, device=dev, dtype=dtype)
        onehot_CL[torch.arange(chunk.numel(), device=dev), chunk] = 1
        rows.append(sae.decode(onehot_CL) - offset_1D)
    if not rows:
        return torch.zeros(0, offset_1D.shape[-1], device=dev, dtype=dtype)
    return torch.cat(rows)


@contextmanager
def inserted_encoder(
    donor: SAE[Any], mode: InsertedActivations = "alone"
) -> Iterator[Callable[[torch.Tensor], torch.Tensor]]:
    """An encode function giving each donor latent the activation it has once inserted
    (see the module docstring). For TopK donors in ``alone`` mode it is the encode of a shallow
    view of the donor (shared parameters, its own submodule table) whose activation function
    is the element-wise one; the donor itself is never modified, so ``donor`` may also be the
    base of the same computation."""
    rule = get_rule(donor)
    if rule.exact or mode == "in_donor":
        yield donor.encode
        return
    if rule.single_latent_activation is None:
        raise UnsupportedSAEError(
            f"no single-latent semantics for inexact architecture {donor.cfg.architecture()!r}"
        )
    view = copy.copy(donor)
    view._modules = dict(donor._modules)  # own submodule table: parameters stay shared
    view.activation_fn = rule.single_latent_activation(donor)
    yield view.encode


class ProxyAgreement(BaseModel):
    """How well the cosine proxy (max cosine < threshold -> novel) predicts the behavioural
    label (inserting the latent alone lowers MSE -> novel). Latents that never fire are
    excluded (their effect is exactly zero)."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    n_latents: int
    """Latents compared (those that fire at least once)."""
    n_excluded_dead: int
    both_novel: int
    """Proxy novel and behaviour novel."""
    both_reconstruction: int
    """Proxy reconstruction and behaviour reconstruction."""
    proxy_novel_behaviour_reconstruction: int
    """Cosine says novel, but inserting it raises MSE."""
    proxy_reconstruction_behaviour_novel: int
    """Cosine says reconstruction, but inserting it lowers MSE."""
    accuracy: Metric
    """Fraction of latents on which the proxy and the behaviour agree (higher is better)."""
    auroc: Metric | None
    """Area under the ROC curve of max cosine as a score for "behaviour reconstruction"
    (probability that a random behaviour-reconstruction latent has a higher max cosine than a
    random behaviour-novel one; ties count half). None if either class is empty."""


class InsertEffectsSummary(BaseModel):
    """Stable JSON summary of :class:`InsertEffects`."""

    model_config = ConfigDict(extra="forbid")

    base: str
    donor: str
    n_latents: int
    n_tokens: int
    threshold: float
    exact: bool
    """Whether the effects are exactly those of stitching each latent alone (always true for
    single-latent insertions: see the module docstring)."""
    semantics: str
    """How inserted latents fire."""
    base_mse: Metric
    base_fvu: Metric
    n_helps: int
    """Helps-by-effect: latents whose insertion lowers MSE (not to be confused with
    novel-by-cosine, the classification's "novel")."""
    n_hurts: int
    """Hurts-by-effect: latents whose insertion raises MSE."""
    n_dead: int
    """Latents that never fire (no effect)."""
    mean_delta_mse_helps: float | None
    """Mean ΔMSE of the helps-by-effect latents (lower is better)."""
    mean_delta_mse_hurts: float | None
    """Mean ΔMSE of the hurts-by-effect latents."""
    proxy: ProxyAgreement


@dataclass(frozen=True)
class InsertEffects:
    """Per-latent insert effects of donor latents ``indices`` into ``base``."""

    indices: torch.Tensor
    """[P] donor latent indices."""
    delta_sse: torch.Tensor
    """[P] float64 change of the summed squared error."""
    delta_mse: torch.Tensor
    """[P] change of MSE (mean over tokens of ||x - x̂||²): negative means it helps."""
    delta_fvu: torch.Tensor
    """[P] change of FVU."""
    max_cosine: torch.Tensor
    """[P] max cosine of each donor latent's decoder row with any base decoder row."""
    firing_counts: torch.Tensor
    """[P] tokens on which each latent fires once inserted."""
    labels: list[FeatureCategory]
    """[P] behavioural label: NOVEL (MSE down), RECONSTRUCTION (MSE up) or DEAD (never fires)."""
    summary: InsertEffectsSummary

    def helps_ranked(self) -> torch.Tensor:
        """Donor indices of the helps-by-effect latents (firing, ΔMSE < 0), most helpful
        first."""
        helps = (self.delta_mse < 0) & (self.firing_counts > 0)
        return self.indices[helps][torch.argsort(self.delta_mse[helps], stable=True)]


def auroc(scores: torch.Tensor, positive: torch.Tensor) -> float | None:
    """AUROC of ``scores`` for the boolean ``positive`` labels (Mann-Whitney U with average
    ranks for ties); None if a class is empty."""
    from scipy.stats import rankdata

    pos = positive.bool().cpu()
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = torch.as_tensor(rankdata(scores.double().cpu().numpy()), dtype=torch.float64)
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def proxy_agreement(
    max_cosine: torch.Tensor,
    delta_sse: torch.Tensor,
    firing_counts: torch.Tensor,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> ProxyAgreement:
    """Confusion matrix of the cosine proxy against the behavioural label, and AUROC."""
    threshold = check_threshold(threshold)
    live = firing_counts.cpu() > 0
    cos, delta = max_cosine.cpu()[live], delta_sse.cpu()[live]
    proxy_novel = cos < threshold
    behav_novel = delta < 0
    n = int(live.sum())
    agree = int((proxy_novel == behav_novel).sum())
    score = auroc(cos, ~behav_novel)
    return ProxyAgreement(
        threshold=threshold,
        n_latents=n,
        n_excluded_dead=int((~live).sum()),
        both_novel=int((proxy_novel & behav_novel).sum()),
        both_reconstruction=int((~proxy_novel & ~behav_novel).sum()),
        proxy_novel_behaviour_reconstruction=int((proxy_novel & ~behav_novel).sum()),
        proxy_reconstruction_behaviour_novel=int((~proxy_novel & behav_novel).sum()),
        accuracy=Metric(value=agree / n if n else float("nan"), better="higher"),
        auroc=None if score is None else Metric(value=score, better="higher"),
    )


def _mean_or_none(values: torch.Tensor) -> float | None:
    return float(values.mean()) if values.numel() else None


@torch.no_grad()
@checks_pair_once
def insert_effects(
    base: SAE[Any],
    donor: SAE[Any],
    activations: ActivationsLike,
    *,
    indices: IndexLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_cosine: torch.Tensor | None = None,
    show_progress: bool | None = None,
    targets: ActivationsLike | None = None,
) -> InsertEffects:
    """For every donor latent in ``indices`` (default: all), the change in MSE and FVU when
    that latent alone is inserted into ``base``, from one pass over ``activations`` (a tensor
    [..., d_in] or an iterable of batches). Labels each latent by the sign of the change and
    measures the agreement of the cosine proxy at ``threshold`` with those labels.

    ``max_cosine`` ([donor.d_sae], large -> small) may be passed to skip the matching (e.g.
    ``classification.max_cosine``). For transcoders, ``targets`` are the output hook's
    activations; the residual is ``target - base(x)``."""
    threshold = check_threshold(threshold)
    check_linear_decode(base, name="base")
    check_linear_decode(donor, name="donor")
    idx_P = (
        torch.arange(donor.cfg.d_sae)
        if indices is None
        else check_indices(indices, donor.cfg.d_sae, what="donor indices")
    )
    dev = donor.W_dec.device
    rows_PD = decoder_directions(donor, idx_P).float()
    sq_norm_P = rows_PD.double().pow(2).sum(dim=-1).cpu()
    idx_dev = idx_P.to(dev)
    acc = VarianceAccumulator(output_dim(base))
    sum_a2_P = torch.zeros(idx_P.numel(), dtype=torch.float64)
    cross_P = torch.zeros(idx_P.numel(), dtype=torch.float64)
    fires_P = torch.zeros(idx_P.numel(), dtype=torch.long)
    with inserted_encoder(donor, "alone") as encode:
        for x_ND, y_ND in iter_pairs(
            base,
            activations,
            targets,
            batch_size=batch_size,
            show_progress=show_progress,
            description="insert effects",
        ):
            x_ND, y_ND = x_ND.to(base.W_dec.device), y_ND.to(base.W_dec.device)
            _, x_hat_ND = encode_and_reconstruct(base, x_ND)
            acc.add(y_ND, x_hat_ND)
            resid_ND = (y_ND - x_hat_ND).to(dev).float()
            a_NP = encode(x_ND.to(dev)).index_select(-1, idx_dev).float()
            proj_NP = resid_ND @ rows_PD.T
            cross_P += (a_NP * proj_NP).sum(dim=0).double().cpu()
            sum_a2_P += a_NP.double().pow(2).sum(dim=0).cpu()
            fires_P += (a_NP != 0).sum(dim=0).cpu()
    if acc.n == 0:
        raise InvalidActivationsError("activations are empty: no tokens to evaluate")
    if max_cosine is None:
        max_cosine = match_features(donor, base, show_progress=show_progress).best_values
    return effects_from_sums(
        base,
        donor,
        indices=idx_P,
        delta_sse=sum_a2_P * sq_norm_P - 2 * cross_P,
        firing_counts=fires_P,
        base_sse=acc.sse,
        total_variance=acc.total_variance,
        n_tokens=acc.n,
        max_cosine=max_cosine,
        threshold=threshold,
    )


def effects_from_sums(
    base: SAE[Any],
    donor: SAE[Any],
    *,
    indices: torch.Tensor,
    delta_sse: torch.Tensor,
    firing_counts: torch.Tensor,
    base_sse: float,
    total_variance: float,
    n_tokens: int,
    max_cosine: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
) -> InsertEffects:
    """:class:`InsertEffects` from sums already gathered: each donor latent's ΔSSE [P] and
    firing count [P] (for donor latents ``indices``), the base's SSE, the tokens' total
    variance and count, and every donor latent's max cosine with the base ([donor d_sae])."""
    idx_P = indices.long().cpu()
    delta_sse_P = delta_sse.double().cpu()
    fires_P = firing_counts.long().cpu()
    delta_fvu_P = (
        delta_sse_P / total_variance if total_variance > 0 else torch.zeros_like(delta_sse_P)
    )
    cos_P = max_cosine.detach().cpu().float()[idx_P]
    labels = [
        FeatureCategory.DEAD
        if f == 0
        else (FeatureCategory.NOVEL if d < 0 else FeatureCategory.RECONSTRUCTION)
        for d, f in zip(delta_sse_P.tolist(), fires_P.tolist(), strict=True)
    ]
    novel = torch.tensor([lab is FeatureCategory.NOVEL for lab in labels], dtype=torch.bool)
    recon = torch.tensor(
        [lab is FeatureCategory.RECONSTRUCTION for lab in labels], dtype=torch.bool
    )
    delta_mse_P = delta_sse_P / n_tokens
    base_mse = base_sse / n_tokens
    base_fvu = fraction_unexplained(base_sse, total_variance, n_tokens)
    exact_rule = get_rule(donor).exact
    summary = InsertEffectsSummary(
        base=display_name(base),
        donor=display_name(donor),
        n_latents=int(idx_P.numel()),
        n_tokens=n_tokens,
        threshold=threshold,
        exact=True,
        semantics="activation in the donor"
        if exact_rule
        else "alone in a block_topk group of one (k=1): fires whenever its pre-activation does",
        base_mse=Metric(value=base_mse, better="lower"),
        base_fvu=Metric(value=base_fvu, better="lower"),
        n_helps=int(novel.sum()),
        n_hurts=int(recon.sum()),
        n_dead=int((fires_P == 0).sum()),
        mean_delta_mse_helps=_mean_or_none(delta_mse_P[novel]),
        mean_delta_mse_hurts=_mean_or_none(delta_mse_P[recon]),
        proxy=proxy_agreement(cos_P, delta_sse_P, fires_P, threshold=threshold),
    )
    return InsertEffects(
        indices=idx_P,
        delta_sse=delta_sse_P,
        delta_mse=delta_mse_P,
        delta_fvu=delta_fvu_P,
        max_cosine=cos_P,
        firing_counts=fires_P,
        labels=labels,
        summary=summary,
    )
