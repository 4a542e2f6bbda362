"""Step 3d: decompose an SAE's latents into meta-latents. A *meta-SAE* (an SAE-Lens TopK SAE)
is trained on the unit-normalised decoder rows of the SAE, so that every latent's direction is
approximated by a sparse combination of ``k`` meta-latent directions ("Sparse autoencoders do
not find canonical units of analysis", ICLR 2025).

Training is a short full-batch Adam loop of this package's own (every decoder row is one
example): seeded, and deterministic on the CPU. The forward pass is the SAE-Lens SAE's own
``encode`` / ``decode``; meta-decoder rows are kept at unit norm after every step (the usual
TopK constraint), which leaves the encoding free to scale.

Explained variance is ``1 - SSE / total centred sum of squares`` of the unit rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE, TopKSAE, TopKSAEConfig

from sae_lens_stitch.analysis.families import FeatureFamily, feature_families
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD, _normalised
from sae_lens_stitch.errors import InvalidSettingError
from sae_lens_stitch.evaluation.metrics import Metric
from sae_lens_stitch.progress import track

DEFAULT_STEPS = 300
DEFAULT_LR = 5e-3
DEFAULT_SEED = 0


class FamilyAgreement(BaseModel):
    """Do latents of one family (at the threshold, against another SAE of the family) share
    meta-latents more often than latents chosen at random? (stable JSON)"""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    threshold: float
    other_d_sae: int
    """Width of the SAE the families were formed with."""
    n_families: int
    """Families with at least two latents of the decomposed SAE."""
    n_pairs: int
    """Pairs of decomposed latents in the same family."""
    shared_in_family: Metric
    """Fraction of those pairs that use at least one common meta-latent. Higher is better."""
    shared_at_random: Metric
    """The same fraction over all pairs of latents (the chance level; a reference)."""
    lift: Metric
    """shared_in_family / shared_at_random. Higher is better (1: no relation)."""


class DecompositionSummary(BaseModel):
    """A meta-SAE's settings and how well it explains the decoder (stable JSON)."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    d_sae: int
    """Latents decomposed (the decomposed SAE's width)."""
    d_in: int
    width: int
    """Meta-latents."""
    k: int
    """Meta-latents active per latent (TopK)."""
    steps: int
    lr: float
    seed: int
    explained_variance: Metric
    """1 - SSE / centred sum of squares of the unit decoder rows. Higher is better."""
    mse: Metric
    """Mean over latents of the squared error summed over dimensions. Lower is better."""
    mean_meta_latents_per_latent: float
    """Active (non-zero) meta-latents per latent, at most k."""
    n_dead_meta_latents: Metric
    """Meta-latents no latent uses. Lower is better."""
    family_agreement: FamilyAgreement | None = None


@dataclass(frozen=True)
class Decomposition:
    """A trained meta-SAE and the meta-latents each latent uses."""

    sae: SAE[Any]
    """The meta-SAE: an SAE-Lens TopK SAE, d_in = the decomposed SAE's d_in, d_sae = width
    (save with ``save_model`` or :func:`sae_lens_stitch.save_sae`, load with SAE-Lens)."""
    meta_indices: torch.Tensor
    """[d_sae, k] meta-latents of each latent, by activation (descending); -1 where fewer
    than k are non-zero."""
    meta_values: torch.Tensor
    """[d_sae, k] their activations (0 where the index is -1)."""
    summary: DecompositionSummary
    loss_curve: list[float]
    """Training loss (mean squared error summed over dimensions) every step."""

    def meta_latents_of(self, latent: int) -> list[int]:
        """Meta-latents the decomposed SAE's ``latent`` uses (by activation, descending)."""
        return [int(i) for i in self.meta_indices[latent].tolist() if i >= 0]


def _check_settings(n: int, width: int, k: int, steps: int, lr: float) -> None:
    if width < 1:
        raise InvalidSettingError(f"meta width must be at least 1, got {width}")
    if not 1 <= k <= width:
        raise InvalidSettingError(f"k must be between 1 and the meta width {width}, got {k}")
    if k >= n:
        raise InvalidSettingError(
            f"k must be below the {n} latents decomposed (k {k} would copy them), got {k}"
        )
    if steps < 0:
        raise InvalidSettingError(f"steps must be 0 or more, got {steps}")
    if not 0 < lr < float("inf"):
        raise InvalidSettingError(f"lr must be a positive number, got {lr}")


def _meta_sae(d_in: int, width: int, k: int, device: torch.device) -> TopKSAE:
    cfg = TopKSAEConfig(
        d_in=d_in,
        d_sae=width,
        k=k,
        dtype="float32",
        device=str(device),
        apply_b_dec_to_input=True,
    )
    return TopKSAE(cfg)


def _init(meta: TopKSAE, rows_ND: torch.Tensor, generator: torch.Generator) -> None:
    """Meta-decoder rows: latents' own (centred, unit) directions drawn at random, plus a little
    noise; encoder its transpose; b_dec the mean row."""
    n, d = rows_ND.shape
    width = meta.cfg.d_sae
    mean_D = rows_ND.mean(0)
    picks = torch.randint(0, n, (width,), generator=generator)
    noise = torch.randn(width, d, generator=generator) * (0.1 / d**0.5)
    dec = rows_ND[picks].cpu() - mean_D.cpu() + noise
    dec = dec / dec.norm(dim=-1, keepdim=True)
    with torch.no_grad():
        meta.W_dec.copy_(dec.to(meta.W_dec.device))
        meta.W_enc.copy_(dec.T.to(meta.W_enc.device))
        meta.b_enc.zero_()
        meta.b_dec.copy_(mean_D.to(meta.b_dec.device))


def unit_rows(sae: SAE[Any]) -> torch.Tensor:
    """[d_sae, d_in] the SAE's decoder rows scaled to unit norm (float32), what is decomposed."""
    return _normalised(sae.W_dec.detach(), name="decomposed SAE W_dec rows")


def _explained(meta: SAE[Any], rows_ND: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    with torch.no_grad():
        acts_NM = meta.encode(rows_ND)
        err = (meta.decode(acts_NM) - rows_ND).double().pow(2).sum()
        total = (rows_ND.double() - rows_ND.double().mean(0)).pow(2).sum()
    n = rows_ND.shape[0]
    return 1.0 - float(err / total), float(err) / n, acts_NM


def _shared_fraction(codes: torch.Tensor, pairs: torch.Tensor | None) -> tuple[float, int]:
    """Fraction of latent pairs (``pairs`` [P, 2], or all distinct pairs) that share at least
    one meta-latent; the number of pairs. ``codes``: [n, width] bool."""
    c = codes.float()
    if pairs is not None:
        if pairs.shape[0] == 0:
            return float("nan"), 0
        shared = (c[pairs[:, 0]] * c[pairs[:, 1]]).sum(-1) > 0
        return float(shared.double().mean()), int(pairs.shape[0])
    n = c.shape[0]
    hits = 0
    for r0 in range(0, n, 1024):
        block = c[r0 : r0 + 1024] @ c.T > 0
        hits += int(block.sum()) - int(block.diagonal(offset=r0).sum())
    total = n * (n - 1)
    return hits / total, total // 2


def family_agreement(
    codes: torch.Tensor,
    families: Sequence[FeatureFamily],
    *,
    side: str,
    threshold: float,
    other_d_sae: int,
) -> FamilyAgreement:
    """Agreement of meta-latent groups with ``families`` (members of the decomposed SAE on
    ``side``, ``"small"`` or ``"large"``); ``codes`` [d_sae, width] bool: which meta-latents
    each latent uses."""
    pairs: list[tuple[int, int]] = []
    n_fam = 0
    for fam in families:
        members = fam.large_indices if side == "large" else fam.small_indices
        if len(members) < 2:
            continue
        n_fam += 1
        pairs += [(a, b) for i, a in enumerate(members) for b in members[i + 1 :]]
    within, n_pairs = _shared_fraction(codes, torch.tensor(pairs, dtype=torch.long).reshape(-1, 2))
    chance, _ = _shared_fraction(codes, None)
    lift = within / chance if chance > 0 and n_pairs else float("nan")
    return FamilyAgreement(
        threshold=threshold,
        other_d_sae=other_d_sae,
        n_families=n_fam,
        n_pairs=n_pairs,
        shared_in_family=Metric(value=within, better="higher"),
        shared_at_random=Metric(value=chance, better="higher"),
        lift=Metric(value=lift, better="higher"),
    )


def decompose(
    sae: SAE[Any],
    *,
    width: int,
    k: int,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    seed: int = DEFAULT_SEED,
    other: SAE[Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    device: torch.device | str | None = None,
    show_progress: bool | None = None,
) -> Decomposition:
    """Train a TopK meta-SAE with ``width`` meta-latents, ``k`` active per latent, on the unit
    decoder rows of ``sae`` (``steps`` full-batch Adam steps at ``lr``, from ``seed``; the same
    seed gives the same meta-SAE on the CPU).

    ``other``: another SAE of the same hook; the families of the two at ``threshold`` are
    compared with the meta-latents (:class:`FamilyAgreement`). Bad settings (width < 1, k
    outside 1..width or not below the number of latents, steps < 0, lr <= 0) raise
    :class:`~sae_lens_stitch.errors.InvalidSettingError` naming the value."""
    n, d = sae.cfg.d_sae, sae.cfg.d_in
    _check_settings(n, width, k, steps, lr)
    dev = torch.device(device) if device is not None else sae.W_dec.device
    rows_ND = unit_rows(sae).to(dev)
    generator = torch.Generator().manual_seed(seed)
    meta = _meta_sae(d, width, k, dev)
    _init(meta, rows_ND, generator)
    optimiser = torch.optim.Adam(meta.parameters(), lr=lr)
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in track(
            range(steps), total=steps, description="training meta-SAE", show=show_progress
        ):
            optimiser.zero_grad(set_to_none=True)
            loss = (meta.decode(meta.encode(rows_ND)) - rows_ND).pow(2).sum(-1).mean()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                meta.W_dec.div_(meta.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            losses.append(float(loss.detach()))
    meta.requires_grad_(False)
    ev, mse, acts_NM = _explained(meta, rows_ND)
    top = acts_NM.topk(k, dim=-1)
    active = top.values != 0
    meta_indices = torch.where(active, top.indices, -1).cpu()
    meta_values = torch.where(active, top.values, 0.0).cpu()
    codes = (acts_NM != 0).cpu()
    agreement = None
    if other is not None:
        from sae_lens_stitch.checks import check_compatible

        check_compatible(sae, other, names=("decomposed", "other"))
        side = "large" if other.cfg.d_sae <= n else "small"
        small, large = (other, sae) if side == "large" else (sae, other)
        fams = feature_families(small, large, threshold=threshold, show_progress=show_progress)
        agreement = family_agreement(
            codes, fams, side=side, threshold=threshold, other_d_sae=other.cfg.d_sae
        )
    summary = DecompositionSummary(
        d_sae=n,
        d_in=d,
        width=width,
        k=k,
        steps=steps,
        lr=lr,
        seed=seed,
        explained_variance=Metric(value=ev, better="higher"),
        mse=Metric(value=mse, better="lower"),
        mean_meta_latents_per_latent=float(active.sum(-1).double().mean()),
        n_dead_meta_latents=Metric(value=float(int((~codes.any(0)).sum())), better="lower"),
        family_agreement=agreement,
    )
    return Decomposition(
        sae=meta,
        meta_indices=meta_indices,
        meta_values=meta_values,
        summary=summary,
        loss_curve=losses,
    )
