"""Step 3a: classify the larger SAE's latents as novel or reconstruction (docs/concepts.md)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.analysis.match import (
    DEFAULT_THRESHOLD,
    FeatureMatches,
    WeightsKind,
    match_features,
)
from sae_lens_stitch.checks import check_compatible
from sae_lens_stitch.errors import InvalidArgumentError
from sae_lens_stitch.evaluation.metrics import DEFAULT_BATCH_SIZE, ActivationsLike, dead_latents
from sae_lens_stitch.io.sparsity import get_log_sparsity
from sae_lens_stitch.provenance import SourceSAE, display_name, sae_identity
from sae_lens_stitch.validation import check_count, check_threshold, show


class FeatureCategory(str, Enum):
    """Category of a latent of the larger SAE relative to the smaller one."""

    NOVEL = "novel"
    """Max cosine with the small SAE below the threshold: information the small SAE lacks."""
    RECONSTRUCTION = "reconstruction"
    """Max cosine at or above the threshold: re-expresses what a small latent reconstructs."""
    DEAD = "dead"
    """Never fires on the evaluation data (only assigned when activations are given)."""


class ClassificationSummary(BaseModel):
    """Counts and fractions of a classification (stable JSON)."""

    model_config = ConfigDict(extra="forbid")

    small: SourceSAE | str
    """Identity of the smaller SAE."""
    large: SourceSAE | str
    """Identity of the larger SAE."""
    small_name: str = ""
    """Display name of the smaller SAE (see :func:`sae_lens_stitch.display_name`)."""
    large_name: str = ""
    """Display name of the larger SAE."""
    d_sae_small: int
    d_sae_large: int
    threshold: float
    weights: str
    """Which directions were compared (decoder or encoder)."""
    n_novel: int
    n_reconstruction: int
    n_dead: int = 0
    novel_fraction: float
    """Novel / (novel + reconstruction); dead latents excluded."""
    reconstruction_fraction: float
    n_small_with_children: int
    """Small latents that are the best partner of at least one reconstruction latent."""
    n_small_without_partner: int
    """Small latents whose best cosine with any large latent is below the threshold."""
    mean_max_cosine: float
    """Mean over large latents of the max cosine with the small SAE."""


@dataclass(frozen=True)
class FeatureClassification:
    """Per-latent classification of ``large`` against ``small``."""

    categories: list[FeatureCategory]
    """[large.d_sae] category of each large latent."""
    max_cosine: torch.Tensor
    """[large.d_sae] max cosine with any small latent (large -> small)."""
    best_partner: torch.Tensor
    """[large.d_sae] index of the small latent attaining it."""
    small_max_cosine: torch.Tensor
    """[small.d_sae] max cosine with any large latent (small -> large)."""
    small_best_partner: torch.Tensor
    """[small.d_sae] index of the large latent attaining it."""
    n_children: torch.Tensor
    """[small.d_sae] number of reconstruction latents whose best partner is this small latent."""
    summary: ClassificationSummary

    def indices_of(self, category: FeatureCategory) -> torch.Tensor:
        """Large-latent indices of one category, ascending."""
        return torch.tensor(
            [i for i, c in enumerate(self.categories) if c is category], dtype=torch.long
        )

    @property
    def novel_indices(self) -> torch.Tensor:
        return self.indices_of(FeatureCategory.NOVEL)

    @property
    def reconstruction_indices(self) -> torch.Tensor:
        return self.indices_of(FeatureCategory.RECONSTRUCTION)


def classify_from_matches(
    small: SAE[Any],
    large: SAE[Any],
    forward: FeatureMatches,
    backward: FeatureMatches,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    dead_mask: torch.Tensor | None = None,
) -> FeatureClassification:
    """Build a classification from precomputed matches (large -> small and small -> large).

    ``dead_mask`` ([large.d_sae] bool) marks large latents that never fire: they are DEAD.
    """
    threshold = check_threshold(threshold)
    max_cos = forward.best_values.cpu()
    partner = forward.best_indices.cpu()
    recon = max_cos >= threshold
    dead = dead_mask.cpu().bool() if dead_mask is not None else torch.zeros_like(recon)
    categories = [
        FeatureCategory.DEAD
        if d
        else (FeatureCategory.RECONSTRUCTION if r else FeatureCategory.NOVEL)
        for r, d in zip(recon.tolist(), dead.tolist(), strict=True)
    ]
    counted = recon & ~dead
    n_children = torch.bincount(partner[counted], minlength=small.cfg.d_sae)
    small_max = backward.best_values.cpu()
    n_novel = sum(c is FeatureCategory.NOVEL for c in categories)
    n_recon = int(counted.sum())
    live = max(n_novel + n_recon, 1)
    summary = ClassificationSummary(
        small=sae_identity(small),
        large=sae_identity(large),
        small_name=display_name(small),
        large_name=display_name(large),
        d_sae_small=small.cfg.d_sae,
        d_sae_large=large.cfg.d_sae,
        threshold=threshold,
        weights=forward.weights,
        n_novel=n_novel,
        n_reconstruction=n_recon,
        n_dead=int(dead.sum()),
        novel_fraction=n_novel / live,
        reconstruction_fraction=n_recon / live,
        n_small_with_children=int((n_children > 0).sum()),
        n_small_without_partner=int((small_max < threshold).sum()),
        mean_max_cosine=float(max_cos.mean()) if max_cos.numel() else 0.0,
    )
    return FeatureClassification(
        categories=categories,
        max_cosine=max_cos,
        best_partner=partner,
        small_max_cosine=small_max,
        small_best_partner=backward.best_indices.cpu(),
        n_children=n_children,
        summary=summary,
    )


DEAD_LOG_SPARSITY = -9.5
"""Stored log10 firing rates below this mark a latent as never firing (SAE-Lens stores
log10(rate + 1e-10): -10 for a latent that never fired)."""


def _dead_mask(
    large: SAE[Any],
    dead_mask: torch.Tensor | None,
    activations: ActivationsLike | None,
    *,
    batch_size: int,
    use_stored_sparsity: bool,
    show_progress: bool | None,
) -> torch.Tensor | None:
    if dead_mask is not None and (
        not isinstance(dead_mask, torch.Tensor) or tuple(dead_mask.shape) != (large.cfg.d_sae,)
    ):
        raise InvalidArgumentError(
            f"dead_mask must have shape ({large.cfg.d_sae},), one entry per large latent; "
            f"got {show(dead_mask)}"
        )
    masks: list[torch.Tensor] = [] if dead_mask is None else [dead_mask.cpu().bool()]
    if activations is not None:
        masks.append(
            dead_latents(large, activations, batch_size=batch_size, show_progress=show_progress)
        )
    elif use_stored_sparsity:
        log_sparsity_L = get_log_sparsity(large)
        if log_sparsity_L is not None:
            masks.append(log_sparsity_L < DEAD_LOG_SPARSITY)
    if not masks:
        return None
    out = masks[0]
    for m in masks[1:]:
        out = out | m
    return out


def classify_features(
    small: SAE[Any],
    large: SAE[Any],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    weights: WeightsKind = "decoder",
    dead_mask: torch.Tensor | None = None,
    chunk_size: int | None = None,
    show_progress: bool | None = None,
    activations: ActivationsLike | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    use_stored_sparsity: bool = True,
) -> FeatureClassification:
    """Classify every latent of ``large`` as novel or reconstruction relative to ``small``
    (max cosine of decoder directions against ``threshold``), and count each small latent's
    children. Latents flagged in ``dead_mask`` are reported as dead instead.

    Dead latents keep random-looking decoder rows that the cosine proxy would call novel. With
    ``activations`` (a tensor [..., d_in] or an iterable of batches), large latents that fire on
    none of them are also dead; without, if ``use_stored_sparsity`` and ``large`` carries a
    stored log10 firing rate (:mod:`sae_lens_stitch.io.sparsity`), latents whose rate is below
    ``DEAD_LOG_SPARSITY`` (SAE-Lens stores log10(rate + 1e-10), so -10 means never fired) are."""
    check_compatible(small, large, names=("small", "large"))
    threshold = check_threshold(threshold)
    check_count(batch_size, "batch_size")
    dead_mask = _dead_mask(
        large,
        dead_mask,
        activations,
        batch_size=batch_size,
        use_stored_sparsity=use_stored_sparsity,
        show_progress=show_progress,
    )
    forward = match_features(
        large,
        small,
        weights=weights,
        chunk_size=chunk_size,
        show_progress=show_progress,
        names=("large", "small"),
    )
    backward = match_features(
        small,
        large,
        weights=weights,
        chunk_size=chunk_size,
        show_progress=show_progress,
        names=("small", "large"),
    )
    return classify_from_matches(
        small, large, forward, backward, threshold=threshold, dead_mask=dead_mask
    )
