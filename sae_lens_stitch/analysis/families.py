"""Step 3b: families of related latents, the connected components of the bipartite graph
joining small latent j and large latent i when cos(W_dec_L[i], W_dec_S[j]) >= threshold."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from sae_lens_stitch.analysis.match import (
    DEFAULT_THRESHOLD,
    FeatureMatches,
    WeightsKind,
    order_by_match,
    similar_pairs,
)
from sae_lens_stitch.checks import check_compatible
from sae_lens_stitch.validation import check_threshold


class FeatureFamily(BaseModel):
    """A connected component with members in both SAEs."""

    model_config = ConfigDict(extra="forbid")

    small_indices: list[int]
    """Latents of the smaller SAE, ascending."""
    large_indices: list[int]
    """Latents of the larger SAE, ascending."""
    max_cosine: float
    """Highest cosine on any edge of the family."""

    @property
    def kind(self) -> str:
        """``1->n`` style label: how many small latents map to how many large ones."""
        return f"{len(self.small_indices)}->{len(self.large_indices)}"


def feature_families(
    small: SAE[Any],
    large: SAE[Any],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    weights: WeightsKind = "decoder",
    chunk_size: int | None = None,
    show_progress: bool | None = None,
) -> list[FeatureFamily]:
    """Families of ``small`` and ``large`` latents at ``threshold``, ordered by their first
    small latent. Built from the blocked similarity: the dense matrix is never held."""
    check_compatible(small, large, names=("small", "large"))
    threshold = check_threshold(threshold)
    n_s, n_l = small.cfg.d_sae, large.cfg.d_sae
    large_idx, small_idx, cos = similar_pairs(
        large,
        small,
        threshold=threshold,
        weights=weights,
        chunk_size=chunk_size,
        show_progress=show_progress,
        names=("large", "small"),
    )
    # nodes 0..n_s-1 are small latents, n_s..n_s+n_l-1 large latents
    rows = small_idx.numpy()
    cols = large_idx.numpy() + n_s
    graph = coo_matrix(
        (np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n_s + n_l, n_s + n_l)
    )
    _, labels = connected_components(graph, directed=False)
    edge_label = labels[rows]
    best_cos = np.full(labels.max() + 1 if len(labels) else 0, -np.inf)
    np.maximum.at(best_cos, edge_label, cos.numpy())
    has_edge = np.zeros_like(best_cos, dtype=bool)
    has_edge[edge_label] = True
    members: dict[int, tuple[list[int], list[int]]] = {}
    for node in np.flatnonzero(has_edge[labels]):
        small_list, large_list = members.setdefault(int(labels[node]), ([], []))
        if node < n_s:
            small_list.append(int(node))
        else:
            large_list.append(int(node - n_s))
    families = [
        FeatureFamily(small_indices=s, large_indices=lg, max_cosine=float(best_cos[label]))
        for label, (s, lg) in members.items()
    ]
    families.sort(key=lambda f: f.small_indices[0])
    return families


def pair_families(
    matches: FeatureMatches, *, min_value: float | None = None
) -> list[FeatureFamily]:
    """The pairs of a one-to-one matching of a larger SAE's latents (source) to a smaller one's
    (target) as 1 -> 1 families, for :func:`sae_lens_stitch.swap` and
    :func:`sae_lens_stitch.swap_curve`: best matched first (the order of the list is the swap
    order). ``min_value``: keep only pairs whose cosine is at least this."""
    if not matches.one_to_one:
        raise ValueError(
            "pair_families needs a one-to-one matching: match_features(large, small, one_to_one=True)"
        )
    values = matches.best_values.cpu()
    indices = matches.best_indices.cpu()
    families = []
    for i in order_by_match(matches):
        j, v = int(indices[i]), float(values[i])
        if j < 0 or (min_value is not None and v < min_value):
            continue
        families.append(FeatureFamily(small_indices=[j], large_indices=[i], max_cosine=v))
    return families
