"""Step 3c: do the two views of how latents relate agree? The decoder-cosine view (a large
latent's best small partner by the cosine of their decoder rows, and the novel/reconstruction
category it implies) against the activation view (its best small partner by the Pearson
correlation of their activations over tokens)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from pydantic import BaseModel, ConfigDict

from sae_lens_stitch.analysis.effects import auroc
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD, FeatureMatches
from sae_lens_stitch.evaluation.metrics import Metric

DEFAULT_CORRELATION_THRESHOLDS = (0.3, 0.5, 0.7)
"""Max correlations at which the agreement reports AUROCs, and the edges of the cross-table's
correlation bins."""


class AurocAt(BaseModel):
    """AUROC of max cosine as a score for "max correlation >= correlation_threshold"."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    correlation_threshold: float
    n_positive: int
    """Live latents whose max correlation is at or above the threshold."""
    auroc: Metric | None
    """Probability that a random positive latent has a higher max cosine than a random negative
    one (ties count half). None if either class is empty. Higher is better."""


class CategoryRow(BaseModel):
    """One category of the cosine view against the correlation bins."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    category: str
    """``novel`` or ``reconstruction`` (by max cosine at the threshold)."""
    n_latents: int
    counts: list[int]
    """Latents per correlation bin (``ViewAgreement.bins``)."""
    mean_max_correlation: float
    """NaN if the category is empty."""


class ViewAgreement(BaseModel):
    """How the decoder-cosine and activation-correlation views of ``large -> small`` agree
    (stable JSON). Latents with no correlation (dead on the tokens) are left out and counted."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    small: str
    large: str
    d_sae_small: int
    d_sae_large: int
    threshold: float
    """Cosine threshold of the categories."""
    n_tokens: int | None
    n_latents: int
    """Large latents compared (those with a correlation)."""
    n_dead: int
    """Large latents with no correlation (never firing or constant), left out."""
    best_partner_agreement: Metric
    """Fraction of compared latents whose best partner by cosine is their best by correlation.
    Higher is better."""
    rank_correlation: Metric
    """Spearman correlation of max cosine and max correlation over the compared latents.
    Higher is better."""
    aurocs: list[AurocAt]
    bins: list[str]
    """Labels of the correlation bins of the cross-table."""
    crosstab: list[CategoryRow]


def _bin_labels(edges: Sequence[float]) -> list[str]:
    labels = [f"< {edges[0]:g}"]
    labels += [f"{lo:g} to {hi:g}" for lo, hi in itertools.pairwise(edges)]
    return [*labels, f">= {edges[-1]:g}"]


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    from scipy.stats import rankdata

    if a.numel() < 2:
        return float("nan")
    # Pearson correlation of the ranks (ties: average ranks), which is Spearman's
    ra, rb = (torch.from_numpy(rankdata(v.double().numpy())) for v in (a, b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / denom if denom > 0 else float("nan")


def view_agreement(
    cosine: FeatureMatches,
    correlation: FeatureMatches,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    correlation_thresholds: Sequence[float] = DEFAULT_CORRELATION_THRESHOLDS,
    names: tuple[str, str] = ("small", "large"),
) -> ViewAgreement:
    """Agreement of ``cosine`` (:func:`~sae_lens_stitch.match_features`, large -> small) and
    ``correlation`` (:func:`~sae_lens_stitch.correlate_features`, large -> small) over the
    large latents: best-partner agreement, the rank correlation of the two scores, the AUROC of
    max cosine for "max correlation >= t" at each of ``correlation_thresholds``, and the
    novel / reconstruction categories (max cosine below / at or above ``threshold``)
    cross-tabulated against bins of max correlation."""
    if cosine.values.shape[0] != correlation.values.shape[0]:
        raise ValueError(
            f"the matches cover {cosine.values.shape[0]} and {correlation.values.shape[0]} "
            "large latents; pass both as large -> small"
        )
    if (
        correlation.weights != "activation"
        or correlation.dead_target is None
        or cosine.weights == "activation"
    ):
        raise ValueError("pass the cosine matches first, then the correlation matches")
    edges = sorted(float(t) for t in correlation_thresholds)
    if not edges or not all(-1.0 <= t <= 1.0 for t in edges):
        raise ValueError(f"correlation_thresholds must lie in [-1, 1], got {list(edges)}")
    cos_L = cosine.best_values.cpu().double()
    corr_L = correlation.best_values.cpu().double()
    live = ~torch.isnan(corr_L)
    cos_v, corr_v = cos_L[live], corr_L[live]
    same = cosine.best_indices.cpu()[live] == correlation.best_indices.cpu()[live]
    n = int(live.sum())
    recon = cos_v >= threshold
    bin_of = torch.bucketize(corr_v, torch.tensor(edges, dtype=torch.float64), right=True)
    rows = []
    for name, mask in (("novel", ~recon), ("reconstruction", recon)):
        counts = torch.bincount(bin_of[mask], minlength=len(edges) + 1)
        rows.append(
            CategoryRow(
                category=name,
                n_latents=int(mask.sum()),
                counts=[int(c) for c in counts],
                mean_max_correlation=float(corr_v[mask].mean())
                if bool(mask.any())
                else float("nan"),
            )
        )
    aurocs = []
    for t in edges:
        positive = corr_v >= t
        score = auroc(cos_v, positive)
        aurocs.append(
            AurocAt(
                correlation_threshold=t,
                n_positive=int(positive.sum()),
                auroc=None if score is None else Metric(value=score, better="higher"),
            )
        )
    return ViewAgreement(
        small=names[0],
        large=names[1],
        d_sae_small=int(correlation.dead_target.numel()),
        d_sae_large=int(cos_L.numel()),
        threshold=threshold,
        n_tokens=correlation.n_tokens,
        n_latents=n,
        n_dead=int((~live).sum()),
        best_partner_agreement=Metric(
            value=float(same.double().mean()) if n else float("nan"), better="higher"
        ),
        rank_correlation=Metric(value=_spearman(cos_v, corr_v), better="higher"),
        aurocs=aurocs,
        bins=_bin_labels(edges),
        crosstab=rows,
    )
