"""Step 6: plots (matplotlib, no display needed), each written as PNG and SVG.

- :func:`plot_max_cosine_histograms`: histogram of max cosine large -> small per width pair,
  threshold marked.
- :func:`plot_insert_effects`: insert effect (ΔMSE) against max cosine.
- :func:`plot_curves`: FVU and L0 along insertion / swap curves.
- :func:`plot_frankenstein_plane`: trained vs Frankenstein SAEs in the L0-FVU plane.

matplotlib is imported here only (``import sae_lens_stitch`` does not import it). Figures are
built with ``matplotlib.figure.Figure`` (Agg canvas), never pyplot, so no global state or GUI
backend is touched. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sae_lens_stitch.classify import DEFAULT_THRESHOLD, FeatureClassification
from sae_lens_stitch.report import PlotFiles

if TYPE_CHECKING:
    from sae_lens_stitch.curves import Curve, FrankensteinPlane
    from sae_lens_stitch.effects import InsertEffects


def _save(fig: Figure, stem: str | os.PathLike[str], caption: str = "") -> PlotFiles:
    FigureCanvasAgg(fig)
    base = Path(stem)
    base.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for ext in ("png", "svg"):
        target = base.with_name(base.name + "." + ext)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fig.savefig(fh, format=ext, dpi=120, bbox_inches="tight")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        out[ext] = str(target)
    return PlotFiles(png=out["png"], svg=out["svg"], caption=caption)


def _values(x: torch.Tensor | FeatureClassification) -> list[float]:
    t = x.max_cosine if isinstance(x, FeatureClassification) else x
    return t.detach().float().cpu().tolist()


def plot_max_cosine_histograms(
    pairs: Mapping[str, torch.Tensor | FeatureClassification],
    stem: str | os.PathLike[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    bins: int = 50,
) -> PlotFiles:
    """One histogram per width pair (label -> classification or max-cosine tensor, large ->
    small), with the threshold marked; writes ``stem.png`` and ``stem.svg``."""
    if not pairs:
        raise ValueError("no width pairs to plot")
    n = len(pairs)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (label, value) in zip(axes.flat, pairs.items(), strict=False):
        vals = _values(value)
        novel = sum(v < threshold for v in vals)
        ax.hist(vals, bins=bins, range=(min(0.0, *vals), 1.0), color="#4c72b0")
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_title(f"{label}\nnovel {novel}/{len(vals)} ({novel / max(len(vals), 1):.0%})")
        ax.set_xlabel("max cosine with smaller SAE")
        ax.set_ylabel("latents")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Max cosine of each larger-SAE latent with the smaller SAE (large -> small); dashed: threshold.",
    )


def plot_insert_effects(
    effects: InsertEffects, stem: str | os.PathLike[str], *, title: str | None = None
) -> PlotFiles:
    """Scatter of each donor latent's insert effect (ΔMSE) against its max cosine, threshold
    and zero marked; dead latents (never firing) in grey."""
    cos = effects.max_cosine.tolist()
    delta = effects.delta_mse.tolist()
    live = (effects.firing_counts > 0).tolist()
    threshold = effects.summary.threshold
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    colors = [
        ("#bbbbbb" if not lv else ("#55a868" if d < 0 else "#c44e52"))
        for d, lv in zip(delta, live, strict=True)
    ]
    ax.scatter(cos, delta, s=8, c=colors, alpha=0.7, linewidths=0)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_yscale("symlog", linthresh=max(1e-8, _linthresh(delta)))
    ax.set_xlabel("max cosine with base SAE")
    ax.set_ylabel("ΔMSE when inserted alone (lower is better)")
    p = effects.summary.proxy
    auroc = f"{p.auroc.value:.3f}" if p.auroc is not None else "n/a"
    ax.set_title(title or f"insert effects: accuracy {p.accuracy.value:.2f}, AUROC {auroc}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Change in MSE when each donor latent alone is inserted into the base, against its max cosine. Green: MSE down; red: up; grey: never fires.",
    )


def _linthresh(values: Sequence[float]) -> float:
    nz = sorted(abs(v) for v in values if v != 0)
    return nz[len(nz) // 10] if nz else 1.0


def plot_curves(
    curves: Sequence[Curve], stem: str | os.PathLike[str], *, title: str | None = None
) -> PlotFiles:
    """FVU (left) and L0 (right) against step for each curve."""
    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(11, 4))
    ax_fvu, ax_l0 = fig.subplots(1, 2)
    for c in curves:
        steps = [p.step for p in c.points]
        label = f"{c.kind} ({c.order.split(' ')[0]})" + ("" if c.exact else " ~")
        ax_fvu.plot(steps, [p.fvu for p in c.points], label=label, linewidth=1.2)
        ax_l0.plot(steps, [p.l0 for p in c.points], label=label, linewidth=1.2)
    ax_fvu.set_xlabel("step")
    ax_fvu.set_ylabel("FVU (lower is better)")
    ax_l0.set_xlabel("step")
    ax_l0.set_ylabel("L0 (mean active latents)")
    ax_fvu.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "FVU and L0 along the curves (~: approximate, see the curves docs).",
    )


def plot_frankenstein_plane(
    plane: FrankensteinPlane, stem: str | os.PathLike[str], *, title: str | None = None
) -> PlotFiles:
    """Trained SAEs (a line through widths) and Frankenstein SAEs in the L0-FVU plane."""
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for kind, style in (("trained", "o-"), ("frankenstein", "s--")):
        pts = [p for p in plane.points if p.kind == kind]
        ax.plot([p.l0 for p in pts], [p.fvu for p in pts], style, label=kind)
        for p in pts:
            ax.annotate(
                str(p.d_sae), (p.l0, p.fvu), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
    ax.set_xlabel("L0 (mean active latents)")
    ax.set_ylabel("FVU (lower is better)")
    ax.set_title(title or "Frankenstein vs trained SAEs (labels: d_sae)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Trained SAEs and Frankenstein SAEs in the L0-FVU plane; labels are widths.",
    )
