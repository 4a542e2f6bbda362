"""The demo's synthetic activation model: ground-truth feature directions in superposition,
some of them organised as parent/child hierarchies.

A *root* feature fires on its own with probability ``firing_prob``. A *child* feature can only
fire when its parent fires: each time a parent fires, exactly one of its children fires too
(chosen with the children's relative ``firing_prob``). An activation is
``offset + sum over firing features of magnitude * direction``. Frequent roots are what a small
SAE learns; the rarer roots are the features only wider SAEs pick up (novel latents); the
children are what wider SAEs split a parent into (parent + child latents, reconstruction
latents). Only torch is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

GROUND_TRUTH_FILE = "ground_truth.safetensors"


@dataclass(frozen=True)
class HierarchicalFeatures:
    """Ground truth of the synthetic activation model (F features, D dimensions)."""

    directions_FD: torch.Tensor
    """[F, D] unit-norm direction of each feature."""
    firing_prob_F: torch.Tensor
    """[F] roots: firing probability; children: relative weight among their siblings."""
    parent_F: torch.Tensor
    """[F] index of the parent feature, -1 for a root."""
    magnitude_F: torch.Tensor
    """[F] mean magnitude when the feature fires."""
    offset_D: torch.Tensor
    """[D] constant added to every activation."""
    magnitude_noise: float = 0.2
    """Relative standard deviation of the magnitudes."""

    @property
    def n_features(self) -> int:
        return int(self.directions_FD.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.directions_FD.shape[1])

    def roots(self) -> torch.Tensor:
        return (self.parent_F < 0).nonzero().flatten()

    def children_of(self, feature: int) -> torch.Tensor:
        return (self.parent_F == feature).nonzero().flatten()

    def parents(self) -> torch.Tensor:
        """Features that have at least one child."""
        return torch.unique(self.parent_F[self.parent_F >= 0])

    def sample_features(self, n: int, *, generator: torch.Generator) -> torch.Tensor:
        """[n, F] feature magnitudes (zero where a feature does not fire)."""
        n_f = self.n_features
        fires_NF = torch.zeros(n, n_f, dtype=torch.bool)
        roots = self.roots()
        fires_NF[:, roots] = torch.rand(n, roots.numel(), generator=generator) < self.firing_prob_F[
            roots
        ].unsqueeze(0)
        parents_P = self.parents()
        if parents_P.numel():
            kids = [self.children_of(int(p)) for p in parents_P]
            width = max(int(k.numel()) for k in kids)
            kids_PC = torch.zeros(len(kids), width, dtype=torch.long)
            weight_PC = torch.zeros(len(kids), width)
            for row, k in enumerate(kids):
                kids_PC[row, : k.numel()] = k
                weight_PC[row, : k.numel()] = self.firing_prob_F[k]
            cum_PC = (weight_PC / weight_PC.sum(-1, keepdim=True)).cumsum(-1)
            u_NP = torch.rand(n, len(kids), generator=generator)
            pick_NP = (u_NP.unsqueeze(-1) > cum_PC.unsqueeze(0)).sum(-1).clamp(max=width - 1)
            chosen_NP = kids_PC.gather(1, pick_NP.T).T
            fires_NF.scatter_(1, chosen_NP, fires_NF[:, parents_P])
        noise_NF = 1 + self.magnitude_noise * torch.randn(n, n_f, generator=generator)
        mags_NF = self.magnitude_F.unsqueeze(0) * noise_NF.clamp(min=0.2)
        return mags_NF * fires_NF

    def sample(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """[n, D] activations, reproducible from ``seed``."""
        gen = torch.Generator().manual_seed(seed)
        feats_NF = self.sample_features(n, generator=gen)
        return feats_NF @ self.directions_FD + self.offset_D

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / GROUND_TRUTH_FILE
        save_file(
            {
                "directions_FD": self.directions_FD.contiguous(),
                "firing_prob_F": self.firing_prob_F.contiguous(),
                "parent_F": self.parent_F.contiguous(),
                "magnitude_F": self.magnitude_F.contiguous(),
                "offset_D": self.offset_D.contiguous(),
            },
            str(path),
            metadata={"magnitude_noise": str(self.magnitude_noise)},
        )
        return path

    @classmethod
    def load(cls, folder: str | Path) -> HierarchicalFeatures:
        from safetensors import safe_open

        path = Path(folder) / GROUND_TRUTH_FILE
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        return cls(
            directions_FD=tensors["directions_FD"],
            firing_prob_F=tensors["firing_prob_F"],
            parent_F=tensors["parent_F"],
            magnitude_F=tensors["magnitude_F"],
            offset_D=tensors["offset_D"],
            magnitude_noise=float(meta.get("magnitude_noise", 0.2)),
        )


def make_hierarchical_features(
    *,
    d_in: int = 48,
    n_parents: int = 8,
    children_per_parent: int = 3,
    n_singles: int = 96,
    parent_prob: tuple[float, float] = (0.12, 0.06),
    single_prob: tuple[float, float] = (0.10, 0.004),
    child_magnitude: float = 0.6,
    offset_norm: float = 0.5,
    seed: int = 0,
) -> HierarchicalFeatures:
    """A random ground truth: ``n_parents`` trees of one parent and ``children_per_parent``
    children, and ``n_singles`` independent features with log-linearly decreasing firing
    probabilities (from ``single_prob[0]`` to ``single_prob[1]``). Feature order: parents,
    then children (grouped by parent), then singles."""
    gen = torch.Generator().manual_seed(seed)
    n_children = n_parents * children_per_parent
    n_f = n_parents + n_children + n_singles
    dirs_FD = torch.randn(n_f, d_in, generator=gen)
    dirs_FD = dirs_FD / dirs_FD.norm(dim=-1, keepdim=True)
    p_parent = torch.logspace(
        torch.log10(torch.tensor(parent_prob[0])).item(),
        torch.log10(torch.tensor(parent_prob[1])).item(),
        n_parents,
    )
    p_single = torch.logspace(
        torch.log10(torch.tensor(single_prob[0])).item(),
        torch.log10(torch.tensor(single_prob[1])).item(),
        n_singles,
    )
    prob_F = torch.cat([p_parent, torch.ones(n_children), p_single])
    parent_F = torch.cat(
        [
            torch.full((n_parents,), -1, dtype=torch.long),
            torch.arange(n_parents).repeat_interleave(children_per_parent),
            torch.full((n_singles,), -1, dtype=torch.long),
        ]
    )
    mag_F = torch.cat(
        [torch.ones(n_parents), torch.full((n_children,), child_magnitude), torch.ones(n_singles)]
    )
    offset_D = torch.randn(d_in, generator=gen)
    offset_D = offset_D / offset_D.norm() * offset_norm
    return HierarchicalFeatures(
        directions_FD=dirs_FD,
        firing_prob_F=prob_F,
        parent_F=parent_F,
        magnitude_F=mag_F,
        offset_D=offset_D,
    )
