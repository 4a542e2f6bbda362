"""Step 6: plots (matplotlib, no display needed), each written as PNG and SVG.

- :func:`plot_max_cosine_histograms`: histogram of max cosine large -> small per width pair,
  threshold marked.
- :func:`plot_insert_effects`: insert effect (ΔMSE) against max cosine.
- :func:`plot_curves`: FVU and L0 along insertion / swap curves.
- :func:`plot_frankenstein_plane`: trained vs Frankenstein SAEs in the L0-FVU plane.
- :func:`plot_pareto`: width-FVU and L0-FVU planes with every way the family can be combined.

matplotlib is imported here only (``import sae_lens_stitch`` does not import it). Figures are
built with ``matplotlib.figure.Figure`` (Agg canvas), never pyplot, so no global state or GUI
backend is touched. Files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sae_lens_stitch._atomic import atomic_path
from sae_lens_stitch.analysis.classify import FeatureClassification
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD
from sae_lens_stitch.report.document import PlotFiles

if TYPE_CHECKING:
    from sae_lens_stitch.analysis.effects import InsertEffects
    from sae_lens_stitch.assembly.pareto import Pareto
    from sae_lens_stitch.evaluation.curves import Curve, FrankensteinPlane


def _save(fig: Figure, stem: str | os.PathLike[str], caption: str = "") -> PlotFiles:
    FigureCanvasAgg(fig)
    base = Path(stem)
    base.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    for ext in ("png", "svg"):
        target = base.with_name(base.name + "." + ext)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=ext, dpi=120, bbox_inches="tight")
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
    for colour, meaning in (
        ("#55a868", "helps by effect (MSE down)"),
        ("#c44e52", "hurts by effect (MSE up)"),
        ("#bbbbbb", "never fires"),
    ):  # empty scatters: legend entries for the colours
        ax.scatter([], [], s=12, c=colour, label=meaning)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.axvline(
        threshold, color="#4c72b0", linestyle="--", label=f"threshold {threshold:g} (left: novel)"
    )
    linthresh = max(1e-8, _linthresh(delta))
    # linscale 2: the linear band around 0 gets room, so the ticks 0 and ±linthresh do not crowd
    ax.set_yscale("symlog", linthresh=linthresh, linscale=2.0)
    # symlog autoscaling can put the extreme points on the frame: pad by a factor of 2
    lo, hi = min(delta, default=0.0), max(delta, default=0.0)
    ax.set_ylim(
        2 * lo if lo < -linthresh else -2 * linthresh, 2 * hi if hi > linthresh else 2 * linthresh
    )
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
    """Edge of symlog's linear band: the 10th percentile of |values|, rounded down to a power
    of 10 so that the ticks ±linthresh sit on the band's edges, clear of the 0 tick."""
    nz = sorted(abs(v) for v in values if v != 0)
    return 10.0 ** math.floor(math.log10(nz[len(nz) // 10])) if nz else 1.0


_KIND_NAMES = {
    "insert_novel": "insert novel",
    "insert_reconstruction": "insert reconstruction",
    "insert": "insert",
    "swap_families": "swap families",
}


def _short_name(name: str, limit: int = 28) -> str:
    """The last part of an SAE's description (after ``/`` or ``:``), at most ``limit`` chars."""
    tail = name.replace(":", "/").rstrip("/").rsplit("/", 1)[-1] or name
    return tail if len(tail) <= limit else "…" + tail[-(limit - 1) :]


def _pair_name(c: Curve, by_width: bool) -> str:
    if by_width and c.base_d_sae is not None and c.donor_d_sae is not None:
        return f"{c.base_d_sae} → {c.donor_d_sae}"
    return f"{_short_name(c.base)} → {_short_name(c.donor)}"


def _curve_labels(curves: Sequence[Curve]) -> list[str]:
    """Legend labels that tell the curves apart: base → donor (widths, or short names where
    widths are missing or shared by two curves), then what was done and in which order."""
    widths = [(c.base_d_sae, c.donor_d_sae) for c in curves]
    by_width = None not in (w for pair in widths for w in pair) and len(set(widths)) == len(widths)
    labels = []
    for c in curves:
        how = f"{_KIND_NAMES.get(c.kind, c.kind)}, {c.order.split(' ')[0]} order"
        if c.kind == "swap_families" and "novel" in c.order:
            how += ", novel first" if c.order.startswith("novel") else ", then novel"
        labels.append(f"{_pair_name(c, by_width)}: {how}" + ("" if c.exact else " (~)"))
    return labels


def _phase_changes(c: Curve) -> list[int]:
    """Steps after which a swap curve changes from swapping families to inserting novel
    latents or back (the point before the change)."""
    novel = [p.label.endswith("(novel)") for p in c.points[1:]]
    return [i for i in range(1, len(novel)) if novel[i] != novel[i - 1]]


def plot_curves(
    curves: Sequence[Curve], stem: str | os.PathLike[str], *, title: str | None = None
) -> PlotFiles:
    """FVU (left) and L0 (right) against step for each curve, labelled base → donor (widths)
    and what each step does; on swap curves with novel latents, a marker where the steps
    change between swapping families and inserting novel latents."""
    if not curves:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(12, 4.6))
    ax_fvu, ax_l0 = fig.subplots(1, 2)
    marked = False
    for c, label in zip(curves, _curve_labels(curves), strict=True):
        steps = [p.step for p in c.points]
        (line,) = ax_fvu.plot(steps, [p.fvu for p in c.points], label=label, linewidth=1.2)
        ax_l0.plot(steps, [p.l0 for p in c.points], linewidth=1.2, color=line.get_color())
        changes = _phase_changes(c)
        for ax, values in ((ax_fvu, [p.fvu for p in c.points]), (ax_l0, [p.l0 for p in c.points])):
            ax.plot(
                [steps[i] for i in changes],
                [values[i] for i in changes],
                "o",
                markersize=6,
                markerfacecolor="white",
                color=line.get_color(),
                zorder=3,
            )
        marked = marked or bool(changes)
    ax_fvu.set_xlabel("step (one family swapped or one latent inserted)")
    ax_fvu.set_ylabel("FVU (lower is better)")
    ax_fvu.set_title("fraction of variance unexplained")
    ax_l0.set_xlabel("step (one family swapped or one latent inserted)")
    ax_l0.set_ylabel("L0 (mean active latents per token)")
    ax_l0.set_title("L0")
    if marked:
        ax_fvu.plot(
            [],
            [],
            "o",
            markerfacecolor="white",
            color="black",
            label="where swaps end and novel inserts begin (or the reverse)",
        )
    # below the axes, so that the legend never hides a curve
    fig.legend(
        *ax_fvu.get_legend_handles_labels(),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(2, len(curves) + marked),
        fontsize=8,
        frameon=False,
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "FVU and L0 along the curves, one line per base → donor pair (widths); "
        "(~): approximate, see the curves docs.",
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
    ax.margins(0.1)  # room for the width labels at the edges
    ax.set_xlabel("L0 (mean active latents per token)")
    ax.set_ylabel("FVU (lower is better)")
    ax.set_title(title or "Frankenstein vs trained SAEs (labels: d_sae)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(
        fig,
        stem,
        "Trained SAEs and Frankenstein SAEs in the L0-FVU plane; labels are widths.",
    )


_PARETO_STYLE: dict[str, tuple[str, str]] = {
    "trained": ("o", "tab:blue"),
    "stitch_all_novel": ("^", "tab:red"),
    "frankenstein": ("s", "tab:purple"),
    "assembled": ("*", "tab:green"),
}


def plot_pareto(
    result: Pareto, stem: str | os.PathLike[str], *, title: str | None = None
) -> PlotFiles:
    """FVU against width and FVU against L0 (evaluation tokens): trained SAEs and their refits,
    stitch-all-novel, Frankenstein, the seed-order swap curve and the assembly path. Filled
    markers: as built; hollow: refit (decoder scales and bias fitted on the fit tokens)."""
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, cost, xlabel in (
        (axes[0], "width", "width (latents; lower is cheaper)"),
        (axes[1], "l0", "L0 (mean active latents per token; lower is sparser)"),
    ):
        for curve in result.curves:
            xs = curve.width if cost == "width" else curve.l0
            style = ("-", "tab:orange") if curve.kind == "swap_curve" else ("-", "tab:green")
            ax.plot(xs, curve.fvu, style[0], color=style[1], lw=1, alpha=0.8, label=curve.label)
        trained = sorted(
            (p for p in result.points if p.kind == "trained" and not p.refit), key=lambda p: p.width
        )
        ax.plot(
            [getattr(p, cost) for p in trained],
            [p.fvu for p in trained],
            ":",
            color="tab:blue",
            lw=1,
        )
        for p in result.points:
            marker, color = _PARETO_STYLE[p.kind]
            ax.plot(
                getattr(p, cost),
                p.fvu,
                marker,
                color=color,
                mfc="none" if p.refit else color,
                ms=11 if p.kind == "assembled" else 7,
                label=p.label,
                linestyle="none",
            )
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("FVU on evaluation tokens (lower is better)")
    fig.suptitle(title or "What the family's latents can make: width and L0 against FVU")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return _save(
        fig,
        stem,
        f"FVU on {result.n_eval_tokens} evaluation tokens against width and L0; hollow markers "
        f"are refits fitted on {result.n_fit_tokens} other tokens.",
    )


def plot_match_histogram(
    path: str | os.PathLike[str],
    forward: torch.Tensor,
    backward: torch.Tensor,
    threshold: float,
    titles: tuple[str, str],
    *,
    title: str | None = None,
) -> PlotFiles:
    """Overlaid histograms of max cosines in both directions, threshold marked, as PNG and SVG
    (``path``: ``NAME.png`` or a stem); the x-range is fitted to the data and the threshold,
    ``title`` names the pair."""
    fig = Figure(figsize=(6, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fwd = forward.float().cpu().numpy()
    bwd = backward.float().cpu().numpy()
    finite = [v for v in (*fwd.tolist(), *bwd.tolist(), threshold) if v == v]
    lo, hi = min(finite), max(finite)
    pad = max(0.02, 0.03 * (hi - lo))
    lo, hi = max(-1.0, lo - pad), min(1.0, hi + pad)
    bins = [lo + (hi - lo) * i / 60 for i in range(61)]
    ax.hist(fwd, bins=bins, alpha=0.6, label=titles[0])
    ax.hist(bwd, bins=bins, alpha=0.6, label=titles[1])
    ax.set_xlim(lo, hi)
    if title:
        ax.set_title(title, fontsize=10)
    ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    ax.set_xlabel("max cosine similarity of decoder rows")
    ax.set_ylabel("latents")
    ax.legend(fontsize=8)
    fig.tight_layout()
    stem = Path(path)
    return _save(
        fig,
        stem.with_suffix("") if stem.suffix == ".png" else stem,
        "Max decoder cosine of each latent with the other SAE, both directions; dashed: threshold.",
    )
