"""Score a novel/reconstruction classification against the synthetic model's ground truth.

Definitions (cosines are between unit-normalised decoder rows and ground-truth directions):

* An SAE *represents* ground-truth feature k when some latent's decoder row has cosine
  >= ``represent_threshold`` (default 0.9) with feature k's direction.
* A latent *tracks* the ground-truth feature whose direction has the highest cosine with its
  decoder row, provided that cosine is >= ``track_threshold`` (default 0.5); otherwise it
  tracks nothing.
* A latent of the larger SAE is *truly novel* when it tracks a feature that the smaller SAE does
  not represent.

Precision of "novel" = truly novel among the latents classified novel; recall = classified
novel among the truly novel latents. Feature recall = among the features the larger SAE
represents and the smaller does not, those represented by at least one latent classified novel.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from sae_lens_stitch.demo.synthetic import HierarchicalFeatures

REPRESENT_THRESHOLD = 0.9
TRACK_THRESHOLD = 0.5


class NoveltyScore(BaseModel):
    """Precision and recall of the "novel" category against the ground truth (higher is better)."""

    model_config = ConfigDict(extra="forbid")

    represent_threshold: float
    track_threshold: float
    n_features_small: int
    """Ground-truth features the smaller SAE represents."""
    n_features_large: int
    """Ground-truth features the larger SAE represents."""
    n_new_features: int
    """Features the larger SAE represents and the smaller does not."""
    n_classified_novel: int
    n_truly_novel: int
    n_untracked: int
    """Large latents that track no ground-truth feature."""
    true_positives: int
    precision: float | None
    """Truly novel among those classified novel (None when none is classified novel)."""
    recall: float | None
    """Classified novel among the truly novel (None when none is truly novel)."""
    feature_recall: float | None
    """New features represented by a latent classified novel."""


def cosines(sae_rows_LD: torch.Tensor, truth: HierarchicalFeatures) -> torch.Tensor:
    """[L, F] cosine of each decoder row with each ground-truth direction."""
    rows_LD = torch.nn.functional.normalize(sae_rows_LD.detach().float().cpu(), dim=-1)
    dirs_FD = torch.nn.functional.normalize(truth.directions_FD.float(), dim=-1)
    return rows_LD @ dirs_FD.T


def represented(
    sae: Any, truth: HierarchicalFeatures, threshold: float = REPRESENT_THRESHOLD
) -> torch.Tensor:
    """[F] bool: ground-truth features the SAE represents."""
    return cosines(sae.W_dec, truth).max(0).values >= threshold


def tracked_feature(
    sae: Any, truth: HierarchicalFeatures, threshold: float = TRACK_THRESHOLD
) -> torch.Tensor:
    """[L] index of the feature each latent tracks, -1 for none."""
    best = cosines(sae.W_dec, truth).max(1)
    return torch.where(best.values >= threshold, best.indices, torch.full_like(best.indices, -1))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def score_novelty(
    small: Any,
    large: Any,
    novel_mask_L: torch.Tensor,
    truth: HierarchicalFeatures,
    *,
    represent_threshold: float = REPRESENT_THRESHOLD,
    track_threshold: float = TRACK_THRESHOLD,
) -> NoveltyScore:
    """Score ``novel_mask_L`` ([large.d_sae] bool, the latents classified novel)."""
    rep_small_F = represented(small, truth, represent_threshold)
    cos_LF = cosines(large.W_dec, truth)
    rep_large_F = cos_LF.max(0).values >= represent_threshold
    track_L = tracked_feature(large, truth, track_threshold)
    tracked = track_L >= 0
    truly_L = tracked & ~rep_small_F[track_L.clamp(min=0)]
    novel_L = novel_mask_L.cpu().bool()
    tp = int((truly_L & novel_L).sum())
    new_F = rep_large_F & ~rep_small_F
    novel_rep_F = (
        (cos_LF[novel_L] >= represent_threshold).any(0)
        if novel_L.any()
        else torch.zeros_like(new_F)
    )
    return NoveltyScore(
        represent_threshold=represent_threshold,
        track_threshold=track_threshold,
        n_features_small=int(rep_small_F.sum()),
        n_features_large=int(rep_large_F.sum()),
        n_new_features=int(new_F.sum()),
        n_classified_novel=int(novel_L.sum()),
        n_truly_novel=int(truly_L.sum()),
        n_untracked=int((~tracked).sum()),
        true_positives=tp,
        precision=_ratio(tp, int(novel_L.sum())),
        recall=_ratio(tp, int(truly_L.sum())),
        feature_recall=_ratio(int((new_F & novel_rep_F).sum()), int(new_F.sum())),
    )
