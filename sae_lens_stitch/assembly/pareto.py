"""Where an assembled SAE stands: the width-FVU and L0-FVU planes with the trained widths, their
refits, the method's fixed rules (stitch all novel latents, Frankenstein, the swap curve in the
seed's order) and the assembly path, all measured on the same evaluation tokens (refits fitted
on the fit tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD
from sae_lens_stitch.assembly.assemble import Assembly
from sae_lens_stitch.assembly.objective import Objective, family_union
from sae_lens_stitch.assembly.refit import refit, solve_scales
from sae_lens_stitch.evaluation.curves import Curve
from sae_lens_stitch.evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    Metrics,
    evaluate,
)
from sae_lens_stitch.progress import track
from sae_lens_stitch.validation import check_threshold

PointKind = Literal["trained", "stitch_all_novel", "frankenstein", "assembled"]


class ParetoPoint(BaseModel):
    """One SAE in the planes. FVU and MSE on the evaluation tokens (lower is better); width
    and L0 (on the evaluation tokens) are the costs (lower is cheaper)."""

    model_config = ConfigDict(extra="forbid")

    label: str
    kind: PointKind
    refit: bool
    width: int
    l0: float
    fvu: float
    mse: float


class ParetoCurve(BaseModel):
    """A sequence of SAEs (one point per step)."""

    model_config = ConfigDict(extra="forbid")

    label: str
    kind: Literal["swap_curve", "assembly_path"]
    width: list[int]
    l0: list[float]
    """Mean active latents per token (the path's L0 is on the fit tokens)."""
    fvu: list[float]
    """On the evaluation tokens."""


class Pareto(BaseModel):
    """Everything the Pareto plot shows, as stable JSON."""

    model_config = ConfigDict(extra="forbid")

    n_fit_tokens: int
    n_eval_tokens: int
    threshold: float
    points: list[ParetoPoint]
    curves: list[ParetoCurve]
    directions: dict[str, Literal["lower", "higher"]] = {
        "fvu": "lower",
        "mse": "lower",
        "width": "lower",
        "l0": "lower",
    }

    def best_below(self, width: int, *, refit: bool | None = None) -> ParetoPoint | None:
        """The lowest-FVU point of at most ``width`` latents (refit or not, or either)."""
        chosen = [
            p for p in self.points if p.width <= width and (refit is None or p.refit == refit)
        ]
        return min(chosen, key=lambda p: p.fvu) if chosen else None


def _point(label: str, kind: PointKind, refit_: bool, m: Metrics) -> ParetoPoint:
    return ParetoPoint(
        label=label,
        kind=kind,
        refit=refit_,
        width=m.d_sae,
        l0=m.l0.value,
        fvu=m.fvu.value,
        mse=m.mse.value,
    )


def _refit_priced(fit: Objective, ev: Objective, union_S: torch.Tensor) -> Metrics:
    """What :func:`refit` of the SAE made of ``union_S`` measures on the evaluation tokens:
    scales and bias fitted on ``fit`` (latents that never fire there keep scale 1)."""
    idx = union_S.to(fit.c_U.device).long()
    alive = fit.counts_U[idx] > 0
    s_alive, _ = solve_scales(fit, idx[alive])
    scales = torch.ones(idx.numel(), dtype=torch.float64, device=idx.device)
    scales[alive] = s_alive.to(scales.device)
    bias = fit.best_bias(idx[alive], s_alive)
    return ev.metrics(idx, scales, bias_D=bias)


def pareto(
    saes: Sequence[SAE[Any]],
    fit_activations: torch.Tensor,
    eval_activations: torch.Tensor,
    assembly: Assembly | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    swap_pair: tuple[int, int] = (0, 1),
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    objectives: tuple[Objective, Objective] | None = None,
    swap: Curve | None = None,
) -> Pareto:
    """Measure the trained SAEs of the family, their refits, the smallest with every novel
    latent of the largest stitched in (and refit), Frankenstein's SAE (and refit), the
    seed-order swap curve from the ``swap_pair[0]``-th to the ``swap_pair[1]``-th smallest SAE
    (families in order, then novel latents), and ``assembly``'s path and result. ``saes`` may
    come in any order: they are taken smallest first.

    ``objectives``: the (fit, eval) objectives of the sorted family over the fit and
    evaluation tokens (as :func:`assemble` takes them): every point and refit is then priced
    from them (exactly, without a pass per SAE). ``swap``: the swap curve, if already
    measured on the evaluation tokens."""
    threshold = check_threshold(threshold)
    saes = sorted(saes, key=lambda s: s.cfg.d_sae)
    from sae_lens_stitch.evaluation.curves import swap_curve
    from sae_lens_stitch.surgery.operations import frankenstein, stitch

    def ev(sae: SAE[Any]) -> Metrics:
        union = None if objectives is None else family_union(sae, saes, objectives[1].offsets)
        if objectives is not None and union is not None:
            return objectives[1].metrics(union, bias_D=sae.b_dec.detach().double())
        return evaluate(sae, eval_activations, batch_size=batch_size, show_progress=False)

    def fitted(sae: SAE[Any]) -> Metrics:
        union = None if objectives is None else family_union(sae, saes, objectives[0].offsets)
        if objectives is not None and union is not None:
            return _refit_priced(*objectives, union)
        return ev(refit(sae, fit_activations, batch_size=batch_size, show_progress=False))

    points: list[ParetoPoint] = []
    jobs: list[tuple[str, PointKind, Any]] = [
        (f"trained {s.cfg.d_sae}", "trained", lambda s=s: s) for s in saes
    ]
    if len(saes) >= 2:
        jobs.append(
            (
                f"{saes[0].cfg.d_sae} + all novel of {saes[-1].cfg.d_sae}",
                "stitch_all_novel",
                lambda: stitch(saes[0], saes[-1], threshold=threshold, activations=fit_activations),
            )
        )
        jobs.append(
            (
                "Frankenstein " + "/".join(str(s.cfg.d_sae) for s in saes),
                "frankenstein",
                lambda: frankenstein(saes, threshold=threshold, activations=fit_activations),
            )
        )
    for label, kind, make in track(
        jobs, total=len(jobs), description="pareto: baselines", show=show_progress
    ):
        sae = make()
        points.append(_point(label, kind, False, ev(sae)))
        points.append(_point(label + " (refit)", kind, True, fitted(sae)))
    curves: list[ParetoCurve] = []
    if len(saes) >= 2:
        small, large = saes[swap_pair[0]], saes[swap_pair[1]]
        curve = swap or swap_curve(
            small,
            large,
            eval_activations,
            threshold=threshold,
            include_novel=True,
            batch_size=batch_size,
            show_progress=show_progress,
        )
        curves.append(
            ParetoCurve(
                label=f"swap curve {small.cfg.d_sae} -> {large.cfg.d_sae} (seed order)",
                kind="swap_curve",
                width=[p.n_latents for p in curve.points],
                l0=[p.l0 for p in curve.points],
                fvu=[p.fvu for p in curve.points],
            )
        )
    n_fit = int(fit_activations.reshape(-1, fit_activations.shape[-1]).shape[0])
    n_eval = int(eval_activations.reshape(-1, eval_activations.shape[-1]).shape[0])
    if assembly is not None:
        steps = [p for p in assembly.path if p.move != "refit"]
        curves.append(
            ParetoCurve(
                label="assembly path",
                kind="assembly_path",
                width=[p.width for p in steps],
                l0=[p.l0 for p in steps],
                fvu=[p.fvu_eval for p in steps],
            )
        )
        budget = assembly.result.width_budget
        label = "assembled" + (f" (width {budget})" if budget else "")
        if assembly.result.l0_budget is not None:
            label += f" (L0 <= {assembly.result.l0_budget:g})"
        points.append(_point(label, "assembled", assembly.result.refit, assembly.eval))
    return Pareto(
        n_fit_tokens=n_fit, n_eval_tokens=n_eval, threshold=threshold, points=points, curves=curves
    )
