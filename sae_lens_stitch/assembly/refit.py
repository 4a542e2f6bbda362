"""Closed-form refit: the best non-negative decoder scale per latent and the best output bias
for a fixed set of latents, written into SAE-Lens parameters so every latent fires exactly as
before.

For latents S of an :class:`~sae_lens_stitch.assembly.objective.Objective`, the scales solve
``Q_SS s = c_S`` (the normal equations of the least-squares fit of the decoder scales). That
system is solved matrix-free by preconditioned conjugate gradients (each product ``Q_SS v`` is
two sparse-dense products), so no ``|S| x |S|`` matrix is formed.

**Negative scales.** A negative scale would flip a latent's direction: it is never what the
latent means, and the least-squares optimum only asks for it when latents overlap strongly. The
solve is non-negative (an active-set loop): latents whose scale comes out negative are held at 0
and the rest re-solved, and a held latent is released again when the gradient says a positive
scale would lower the error, until the Karush-Kuhn-Tucker conditions hold (or ``max_rounds``).
A latent with scale 0 still fires (L0 unchanged) but writes nothing; :func:`refit` reports how
many, and :func:`~sae_lens_stitch.assembly.assemble.assemble` drops them (same error, lower
width and L0). The result never reconstructs worse than the unrefit SAE: if it did (it does
not in exact arithmetic), the scales of 1 are kept.

**Writing it into the SAE.** Row i of ``W_dec`` is multiplied by ``s_i`` and ``b_dec`` is set
to the best bias. Where ``apply_b_dec_to_input`` is true, changing ``b_dec`` shifts every
encoder input, so the per-latent encoder biases are corrected by the registry rule's
``bias_shift`` (the same correction as stitching): pre-activations, and so which latents fire
and how much, are unchanged. Architectures whose activations depend on the decoder norm (TopK
with ``rescale_acts_by_decoder_norm``) are refused: their registry rule says why.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.assembly.objective import Objective, build_objective, check_family
from sae_lens_stitch.errors import UnsupportedArchitectureError
from sae_lens_stitch.evaluation.metrics import DEFAULT_BATCH_SIZE, ActivationsLike
from sae_lens_stitch.provenance import Operation, describe_sae, get_provenance, set_provenance
from sae_lens_stitch.registry import get_rule


class ScaleSolve(BaseModel):
    """How the non-negative solve of ``Q_SS s = c_S`` went."""

    model_config = ConfigDict(extra="forbid")

    n_latents: int
    """Latents whose scales were solved (those that fire)."""
    n_zero: int
    """Latents held at scale 0 (the unconstrained optimum wanted them negative)."""
    rounds: int
    """Active-set rounds."""
    cg_iterations: int
    """Conjugate-gradient iterations, all rounds together."""
    sse_before: float
    """SSE with scales 1 (and the best bias). Lower is better."""
    sse_after: float
    """SSE with the solved scales (and the best bias). Lower is better."""
    kept_ones: bool = False
    """True if the solve did not improve on scales of 1 and those were kept."""


def _pcg(
    apply: Any, rhs: torch.Tensor, diag: torch.Tensor, x0: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, int]:
    """Jacobi-preconditioned conjugate gradients for a symmetric positive semi-definite
    operator ``apply``; returns (solution, iterations)."""
    inv = torch.where(diag > 0, 1.0 / diag.clamp_min(1e-300), torch.ones_like(diag))
    x = x0.clone()
    r = rhs - apply(x)
    norm_rhs = float(rhs.norm()) or 1.0
    z = inv * r
    p = z.clone()
    rz = float(r @ z)
    it = 0
    while it < max_iter and float(r.norm()) > tol * norm_rhs:
        ap = apply(p)
        pap = float(p @ ap)
        if pap <= 0:
            break
        alpha = rz / pap
        x += alpha * p
        r -= alpha * ap
        z = inv * r
        rz_new = float(r @ z)
        p = z + (rz_new / rz) * p
        rz = rz_new
        it += 1
    return x, it


DENSE_LIMIT = 8192
"""Largest selection whose Q_SS is formed densely (8192² float64 = 512 MiB); larger ones are
solved matrix-free."""


def solve_scales(
    objective: Objective,
    union_S: torch.Tensor,
    *,
    tol: float = 1e-5,
    max_iter: int = 1000,
    max_rounds: int = 20,
) -> tuple[torch.Tensor, ScaleSolve]:
    """Non-negative scales s (float64 [|S|]) minimising SSE(S, s) with the best bias."""
    dev = objective.c_U.device
    idx = union_S.to(dev).long()
    n_s = int(idx.numel())
    ones = torch.ones(n_s, dtype=torch.float64, device=dev)
    sse_before = objective.sse(idx, ones)
    if n_s == 0:
        return ones, ScaleSolve(
            n_latents=0,
            n_zero=0,
            rounds=0,
            cg_iterations=0,
            sse_before=sse_before,
            sse_after=sse_before,
        )
    c_S = objective.c_U[idx]
    diag_S = objective.q_diag_U[idx]
    s = ones.clone()
    free = diag_S > 0
    s[~free] = 0.0
    rounds = iters = 0
    restricted = objective.restrict(idx)
    q_SS = restricted.dense().to(dev) if n_s <= DENSE_LIMIT else None
    full_apply = q_SS.__matmul__ if q_SS is not None else restricted.matvec
    tol_r = min(tol, 1e-10) if q_SS is not None else tol  # dense products are cheap
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (rounds is reported)
        if q_SS is not None:
            apply = q_SS[free][:, free].__matmul__
        else:
            apply = objective.restrict(idx[free]).matvec
        x, it = _pcg(apply, c_S[free], diag_S[free], s[free].clamp_min(0), tol_r, max_iter)
        iters += it
        if bool((x >= 0).all()):
            s[free] = x
            s[~free] = 0.0
            grad = full_apply(s) - c_S  # d SSE / d s, halved
            release = (~free) & (grad < -1e-9 * max(float(c_S.abs().max()), 1e-30)) & (diag_S > 0)
            if not bool(release.any()):
                break
            free |= release
        else:
            # hold every negative one at 0 at once and re-solve the rest; the KKT check
            # above releases any that should come back
            s_free = s[free]
            s_free[:] = x.clamp_min(0)
            s[free] = s_free
            negative = torch.zeros_like(free)
            negative[free] = x < 0
            free &= ~negative
    s[~free] = 0.0
    sse_after = objective.sse(idx, s)
    info = ScaleSolve(
        n_latents=n_s,
        n_zero=int((s == 0).sum()),
        rounds=rounds,
        cg_iterations=iters,
        sse_before=sse_before,
        sse_after=sse_after,
    )
    if not math.isfinite(sse_after) or sse_after > sse_before:
        return ones, info.model_copy(
            update={"kept_ones": True, "sse_after": sse_before, "n_zero": 0}
        )
    return s, info


def check_rescalable(sae: SAE[Any], *, name: str = "SAE") -> None:
    """Raise unless scaling ``sae``'s decoder rows leaves its activations unchanged."""
    reason = get_rule(sae).decoder_scaling(sae)
    if reason is not None:
        raise UnsupportedArchitectureError(
            sae.cfg.architecture(), [], reason=f"{name}: {reason}, so refit would change it"
        )


@torch.no_grad()
def write_decoder(sae: SAE[Any], scales_L: torch.Tensor, bias_D: torch.Tensor) -> None:
    """In place: scale ``sae``'s decoder rows by ``scales_L``, set ``b_dec`` to ``bias_D`` and
    correct the encoder biases so every latent fires exactly as before; record the scales in
    the provenance."""
    check_rescalable(sae)
    dev, dtype = sae.W_dec.device, sae.W_dec.dtype
    scales = scales_L.to(dev, torch.float64)
    old_b = sae.b_dec.detach().double().clone()
    new_b = bias_D.to(dev, torch.float64)
    sae.W_dec.data = (sae.W_dec.detach().double() * scales[:, None]).to(dtype)
    rule = get_rule(sae)
    if rule.bias_shift is not None and sae.cfg.apply_b_dec_to_input:
        delta_D = (new_b - old_b).to(dtype)
        idx = torch.arange(sae.cfg.d_sae, device=dev)
        for bias, shift in rule.bias_shift(sae, idx, delta_D).items():
            param = getattr(sae, bias)
            param.data = (param.detach().double() + shift.double()).to(dtype)
    sae.b_dec.data = new_b.to(dtype)
    prov = get_provenance(sae)
    prov.latents = [
        o.model_copy(update={"scale": o.scale * float(x)})
        for o, x in zip(prov.latents, scales.tolist(), strict=True)
    ]
    set_provenance(sae, prov)


def copy_sae(sae: SAE[Any]) -> SAE[Any]:
    """A new SAE of the same class, config and weights (provenance included)."""
    new = SAE.from_dict(sae.cfg.to_dict())
    new.load_state_dict({k: v.detach().clone() for k, v in sae.state_dict().items()})
    new = new.to(device=sae.W_dec.device, dtype=sae.W_dec.dtype)
    set_provenance(new, get_provenance(sae))
    from sae_lens_stitch.io.sparsity import get_log_sparsity, set_log_sparsity

    set_log_sparsity(new, get_log_sparsity(sae))
    return new


class RefitResult(BaseModel):
    """What :func:`refit` did."""

    model_config = ConfigDict(extra="forbid")

    solve: ScaleSolve
    n_dead: int
    """Latents that never fire on the activations (scale left at 1)."""
    n_tokens: int
    mse_before: float
    """MSE with the SAE's own decoder rows and the best output bias. Lower is better."""
    mse_original: float
    """MSE of the SAE as it was (its own b_dec). Lower is better."""
    mse_after: float
    """Predicted MSE after refit. Lower is better."""
    scale_min: float
    scale_median: float
    scale_max: float


def refit(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    objective: Objective | None = None,
) -> SAE[Any]:
    """A copy of ``sae`` with the best non-negative decoder scale per latent and the best
    output bias on ``activations``, every latent firing exactly as before (L0 unchanged).
    Usable on any trained SAE of an architecture whose registry rule allows decoder scaling.
    The copy's provenance records each latent's scale and a ``refit`` operation whose details
    hold a :class:`RefitResult`."""
    new, _ = refit_with_result(
        sae, activations, batch_size=batch_size, show_progress=show_progress, objective=objective
    )
    return new


def refit_with_result(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    objective: Objective | None = None,
) -> tuple[SAE[Any], RefitResult]:
    """:func:`refit`, and what it did."""
    check_family([sae])
    check_rescalable(sae)
    obj = objective or build_objective(
        [sae],
        activations,
        batch_size=batch_size,
        show_progress=show_progress,
        check=False,
        description="refit: objective",
    )
    alive = (obj.counts_U > 0).nonzero().flatten()
    s_S, info = solve_scales(obj, alive)
    scales = torch.ones(sae.cfg.d_sae, dtype=torch.float64)
    scales[alive.cpu()] = s_S.cpu()
    bias = obj.best_bias(alive, s_S)
    own_bias = sae.b_dec.detach().double()
    all_idx = torch.arange(sae.cfg.d_sae)
    mse_original = obj.sse_with_bias(all_idx, None, own_bias) / obj.n_tokens
    n = obj.n_tokens
    s_alive = s_S if s_S.numel() else torch.ones(1, dtype=torch.float64)
    result = RefitResult(
        solve=info,
        n_dead=sae.cfg.d_sae - int(alive.numel()),
        n_tokens=n,
        mse_before=info.sse_before / n,
        mse_original=mse_original,
        mse_after=info.sse_after / n,
        scale_min=float(s_alive.min()),
        scale_median=float(s_alive.median()),
        scale_max=float(s_alive.max()),
    )
    new = copy_sae(sae)
    write_decoder(new, scales, bias)
    prov = get_provenance(new)
    prov.operations.append(
        Operation(
            operation="refit",
            inputs=[describe_sae(sae)],
            n_latents_in=sae.cfg.d_sae,
            details={"exact": True, **result.model_dump(mode="json")},
        )
    )
    set_provenance(new, prov)
    return new, result
