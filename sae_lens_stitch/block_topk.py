"""A TopK SAE whose latents fall in groups, each with its own k: how stitched TopK SAEs run.

A TopK SAE picks the k largest pre-activations over *all* its latents, so a latent cut out of
one TopK SAE and put beside another's cannot fire exactly as before: which latents win depends
on the ones left behind. ``block_topk`` keeps each source's selection separate: latents are
tagged with a group, and each group picks its own top ``group_k[g]``. The base SAE's latents
form one group with the base's k, so they fire exactly as in the base. Inserted latents form a
group per source with k = min(source k, number inserted); every token on which the donor fires
an inserted latent also fires it here with the same value (top-k of a subset contains the
subset's members of the full top-k), and the group may fire extra latents on tokens where the
donor's winners were left behind. :func:`sae_lens_stitch.evaluate` measures the resulting L0.

The class registers itself with SAE-Lens as architecture ``block_topk``; loading a saved
``block_topk`` SAE with plain SAE-Lens needs ``import sae_lens_stitch.block_topk`` first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
from torch import nn
from typing_extensions import override

ARCHITECTURE = "block_topk"


@dataclass
class BlockTopKSAEConfig(TopKSAEConfig):
    """Config of a :class:`BlockTopKSAE`.

    ``k`` (inherited) is the total of ``group_k``: the most latents that can fire on a token.
    """

    group_runs: list[list[int]] = field(default_factory=list)
    """Run-length encoded group of each latent: ``[[length, group], ...]`` summing to d_sae."""
    group_k: list[int] = field(default_factory=list)
    """k of each group, indexed by group id."""
    abs_selection: bool = False
    """Select by |pre-activation| and keep the sign (AbsTopK) instead of TopK with ReLU."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.group_runs:
            self.group_runs = [[self.d_sae, 0]]
            self.group_k = [self.k]
        total = sum(length for length, _ in self.group_runs)
        if total != self.d_sae:
            raise ValueError(f"group_runs cover {total} latents but d_sae is {self.d_sae}")
        n_groups = max(g for _, g in self.group_runs) + 1
        if len(self.group_k) != n_groups:
            raise ValueError(f"group_k has {len(self.group_k)} entries for {n_groups} groups")
        self.k = sum(self.group_k)

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    def latent_groups(self) -> list[int]:
        """Group id of every latent."""
        return [g for length, g in self.group_runs for _ in range(length)]


class BlockTopK(nn.Module):
    """Per-group top-k activation."""

    def __init__(self, cfg: BlockTopKSAEConfig):
        super().__init__()
        groups = cfg.latent_groups()
        self.members: list[list[int]] = [[] for _ in cfg.group_k]
        for latent, g in enumerate(groups):
            self.members[g].append(latent)
        self.group_k = list(cfg.group_k)
        self.abs_selection = cfg.abs_selection
        self._index_cache: dict[torch.device, list[torch.Tensor]] = {}

    def _indices(self, device: torch.device) -> list[torch.Tensor]:
        if device not in self._index_cache:
            self._index_cache[device] = [
                torch.tensor(m, dtype=torch.long, device=device) for m in self.members
            ]
        return self._index_cache[device]

    def forward(self, pre_acts: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(pre_acts)
        for idx_G, k in zip(self._indices(pre_acts.device), self.group_k, strict=True):
            if k == 0 or idx_G.numel() == 0:
                continue
            vals_NG = pre_acts.index_select(-1, idx_G)
            key_NG = vals_NG.abs() if self.abs_selection else vals_NG
            top_idx_NK = torch.topk(key_NG, k=min(k, idx_G.numel()), dim=-1, sorted=False).indices
            top_vals_NK = vals_NG.gather(-1, top_idx_NK)
            if not self.abs_selection:
                top_vals_NK = top_vals_NK.relu()
            out.scatter_(-1, idx_G[top_idx_NK], top_vals_NK)
        return out


class BlockTopKSAE(TopKSAE):
    """TopK SAE with one top-k selection per latent group (see the module docstring)."""

    cfg: BlockTopKSAEConfig  # type: ignore[assignment]

    def __init__(self, cfg: BlockTopKSAEConfig, use_error_term: bool = False):
        super().__init__(cfg, use_error_term)

    @override
    def get_activation_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return BlockTopK(self.cfg)


def register() -> None:
    """Register ``block_topk`` with SAE-Lens (idempotent)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, BlockTopKSAE, BlockTopKSAEConfig)


register()
