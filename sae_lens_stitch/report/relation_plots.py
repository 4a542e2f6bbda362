"""Plots of how latents relate beyond decoder cosine: the cosine view against the activation
view (:mod:`sae_lens_stitch.analysis.agreement`) and the meta-SAE curve
(:mod:`sae_lens_stitch.analysis.decompose`). PNG and SVG, as :mod:`sae_lens_stitch.report.plots`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from matplotlib.figure import Figure

from sae_lens_stitch.analysis.agreement import ViewAgreement
from sae_lens_stitch.analysis.decompose import DecompositionSummary
from sae_lens_stitch.report.document import PlotFiles
from sae_lens_stitch.report.plots import _save


def plot_view_agreement(
    stem: str | os.PathLike[str],
    max_cosine: torch.Tensor,
    max_correlation: torch.Tensor,
    agreement: ViewAgreement,
) -> PlotFiles:
    """Left: max correlation against max cosine of every large latent (threshold marked).
    Right: the novel / reconstruction categories split by max-correlation bin."""
    cos = max_cosine.detach().double().cpu()
    corr = max_correlation.detach().double().cpu()
    live = ~torch.isnan(corr)
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    left.scatter(cos[live].numpy(), corr[live].numpy(), s=2, alpha=0.25, color="#4c72b0")
    left.axvline(agreement.threshold, color="#c44e52", linestyle="--", linewidth=1)
    left.set_xlabel("max decoder cosine with the smaller SAE")
    left.set_ylabel("max activation correlation")
    left.set_title(
        f"{agreement.d_sae_large} -> {agreement.d_sae_small}: Spearman "
        f"{agreement.rank_correlation.value:.2f}, same partner "
        f"{agreement.best_partner_agreement.value:.0%}",
        fontsize=9,
    )
    colours = ["#dddddd", "#b3cde3", "#6497b1", "#005b96", "#03396c", "#011f4b"]
    cats = [row.category for row in agreement.crosstab]
    bottoms = [0.0] * len(cats)
    for b, label in enumerate(agreement.bins):
        shares = [
            row.counts[b] / row.n_latents if row.n_latents else 0.0 for row in agreement.crosstab
        ]
        left_edge = bottoms
        right.barh(cats, shares, left=left_edge, color=colours[b % len(colours)], label=label)
        bottoms = [x + s for x, s in zip(bottoms, shares, strict=True)]
    right.set_xlim(0, 1)
    right.set_xlabel("share of the category's latents")
    right.legend(title="max correlation", fontsize=7, title_fontsize=8, loc="lower right")
    right.set_title(
        "categories at cosine threshold "
        f"{agreement.threshold:g} ({', '.join(f'{r.category} {r.n_latents}' for r in agreement.crosstab)})",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Cosine view against activation view, large -> small: each large latent's max decoder "
        "cosine and max activation correlation, and the categories by correlation bin.",
    )


def plot_decomposition_curve(
    stem: str | os.PathLike[str], summaries: Sequence[DecompositionSummary]
) -> PlotFiles:
    """Explained variance of the unit decoder rows against meta width, one line per k."""
    if not summaries:
        raise ValueError("no decompositions to plot")
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    for k in sorted({s.k for s in summaries}):
        points = sorted((s.width, s.explained_variance.value) for s in summaries if s.k == k)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"k = {k}")
    ax.set_xscale("log", base=2)
    widths = sorted({s.width for s in summaries})
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.minorticks_off()
    ax.set_xlabel("meta-latents (meta width)")
    ax.set_ylabel("explained variance of unit decoder rows")
    ax.set_title(f"meta-SAEs of a {summaries[0].d_sae}-latent SAE", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Explained variance (1 - SSE / centred sum of squares) of the unit decoder rows by "
        "TopK meta-SAEs, against meta width and k.",
    )
