"""Step 2: match latents of two SAEs by the cosine similarity of their decoder (or encoder)
directions, in blocks whose temporaries stay bounded (the dense matrix is never built)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.checks import bad_rows
from sae_lens_stitch.errors import InvalidWeightsError
from sae_lens_stitch.evaluation.metrics import Metric
from sae_lens_stitch.progress import track
from sae_lens_stitch.validation import (
    check_choice,
    check_count,
    check_device,
    check_sae,
    check_threshold,
)

WeightsKind = Literal["decoder", "encoder"]
MatchKind = Literal["decoder", "encoder", "activation"]
"""What relates the latents: decoder or encoder cosine, or activation correlation."""

DEFAULT_BLOCK_BYTES = 256 * 2**20
"""Budget of one similarity block (float32), the largest temporary match_features makes."""

DEFAULT_THRESHOLD = 0.7
"""Max cosine below which a large latent is novel (the method's default): matching's
cut-off for categories and families."""


@dataclass(frozen=True)
class FeatureMatches:
    """Top-k cosine matches of every latent of a source SAE among a target SAE's latents."""

    values: torch.Tensor
    """[n_source, k] cosine similarities, descending along k."""
    indices: torch.Tensor
    """[n_source, k] target latent indices attaining ``values``."""
    weights: MatchKind
    """Which directions were compared (``"activation"``: Pearson correlation of activations,
    :func:`sae_lens_stitch.analysis.correlate.correlate_features`)."""
    dead_source: torch.Tensor | None = None
    """[n_source] bool, correlations only: source latents with no correlation (never firing or
    constant on the tokens); their values are NaN and indices -1."""
    dead_target: torch.Tensor | None = None
    """[n_target] bool, correlations only: target latents with no correlation (never chosen)."""
    n_tokens: int | None = None
    """Tokens the correlations were measured on (correlations only)."""
    one_to_one: bool = False
    """Each target latent is the partner of at most one source latent (optimal assignment);
    source latents left without a partner have index -1 and value NaN."""

    @property
    def best_values(self) -> torch.Tensor:
        """[n_source] maximum cosine similarity."""
        return self.values[:, 0]

    @property
    def best_indices(self) -> torch.Tensor:
        """[n_source] target index of the maximum."""
        return self.indices[:, 0]


def directions(sae: SAE[Any], weights: WeightsKind = "decoder") -> torch.Tensor:
    """[d_sae, d] latent directions: decoder rows or encoder columns (a view, not a copy)."""
    check_sae(sae)
    check_choice(weights, "weights", ("decoder", "encoder"))
    if weights == "decoder":
        return sae.W_dec.detach()
    if weights == "encoder":
        return sae.W_enc.detach().T
    raise ValueError(f"weights must be 'decoder' or 'encoder', got {weights!r}")


def _labels(names: tuple[str, str], weights: WeightsKind) -> tuple[str, str]:
    param = "W_dec rows" if weights == "decoder" else "W_enc columns"
    return f"{names[0]} SAE {param}", f"{names[1]} SAE {param}"


def _normalised(rows_RD: torch.Tensor, *, name: str, offset: int = 0) -> torch.Tensor:
    rows_RD = rows_RD.float()
    # fast path: one pass for the norms, then the checks on the [R] norms only (a row has a
    # NaN/inf entry or is all zero only if its norm is non-finite or zero)
    norm_R1 = rows_RD.norm(dim=-1, keepdim=True)
    if bool(torch.isfinite(norm_R1).all()) and bool((norm_R1 > 0).all()):
        return rows_RD / norm_R1
    nonfinite_R, zero_R = bad_rows(rows_RD)
    if nonfinite_R.numel():
        rows = (nonfinite_R + offset)[:10].tolist()
        raise InvalidWeightsError(
            f"{name}: rows with NaN/inf entries: {rows}"
            + (" ..." if nonfinite_R.numel() > 10 else "")
        )
    if zero_R.numel():
        rows = (zero_R + offset)[:10].tolist()
        raise InvalidWeightsError(
            f"{name}: zero-norm rows (no direction): {rows}"
            + (" ..." if zero_R.numel() > 10 else "")
        )
    # finite, non-zero rows whose norm overflowed or underflowed: rescale first
    scaled_RD = rows_RD / rows_RD.abs().amax(dim=-1, keepdim=True)
    return scaled_RD / scaled_RD.norm(dim=-1, keepdim=True)


def _block_sizes(n_source: int, n_target: int, chunk_size: int | None) -> tuple[int, int]:
    if chunk_size is not None:
        chunk_size = check_count(chunk_size, "chunk_size")
        return chunk_size, chunk_size
    tgt = min(n_target, 16384)
    src = max(1, min(n_source, DEFAULT_BLOCK_BYTES // (4 * tgt)))
    return src, tgt


def similarity_blocks(
    source_SD: torch.Tensor,
    target_TD: torch.Tensor,
    *,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    names: tuple[str, str] = ("source", "target"),
    show_progress: bool | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(source_start, target_start, sims_BC)`` cosine blocks covering the whole
    [n_source, n_target] matrix, row block by row block.

    ``sims_BC`` is a view of one buffer that is reused for every block (a fresh block each
    time costs page faults on the CPU): use it, or copy it, before asking for the next one."""
    dev = check_device(device) if device is not None else source_SD.device
    n_s, n_t = source_SD.shape[0], target_TD.shape[0]
    if source_SD.shape[1] != target_TD.shape[1]:
        raise ValueError(
            f"direction sizes differ: {names[0]} {source_SD.shape[1]}, {names[1]} {target_TD.shape[1]}"
        )
    bs, bt = _block_sizes(n_s, n_t, chunk_size)
    # normalise the target once (float32, the size of its weights), in blocks
    target_TD_n = torch.empty((n_t, target_TD.shape[1]), dtype=torch.float32, device=dev)
    for t0 in range(0, n_t, bt):
        target_TD_n[t0 : t0 + bt] = _normalised(
            target_TD[t0 : t0 + bt].to(dev), name=names[1], offset=t0
        )
    buffer = torch.empty(min(bs, n_s) * min(bt, n_t), dtype=torch.float32, device=dev)
    starts = range(0, n_s, bs)
    for s0 in track(starts, total=len(starts), description="matching latents", show=show_progress):
        src_BD = _normalised(source_SD[s0 : s0 + bs].to(dev), name=names[0], offset=s0)
        for t0 in range(0, n_t, bt):
            tgt_CD = target_TD_n[t0 : t0 + bt]
            sims_BC = buffer[: src_BD.shape[0] * tgt_CD.shape[0]].view(
                src_BD.shape[0], tgt_CD.shape[0]
            )
            torch.mm(src_BD, tgt_CD.T, out=sims_BC)
            yield s0, t0, sims_BC


def match_features(
    source: SAE[Any],
    target: SAE[Any],
    *,
    k: int = 1,
    weights: WeightsKind = "decoder",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    show_progress: bool | None = None,
    names: tuple[str, str] = ("source", "target"),
    one_to_one: bool = False,
) -> FeatureMatches:
    """For every latent of ``source``, the ``k`` highest cosine similarities with latents of
    ``target`` and their indices. Exact, computed in bounded blocks on the weights' device.

    ``one_to_one``: instead, the optimal assignment (scipy's ``linear_sum_assignment``,
    maximising the summed cosine) pairing each latent of the narrower SAE with a distinct
    latent of the other; ``k`` must be 1 and a source latent left without a partner (when
    the source is the wider SAE) has index -1 and value NaN. This needs the dense cosine
    matrix (float64, ``8 * n_source * n_target`` bytes).

    ``names`` label the two SAEs in errors (e.g. ``("large", "small")``): NaN/inf or zero-norm
    directions raise :class:`InvalidWeightsError` naming the SAE, the parameter and the rows."""
    dir_SD, dir_TD = directions(source, weights), directions(target, weights)
    n_s, n_t = dir_SD.shape[0], dir_TD.shape[0]
    check_count(k, "k", maximum=n_t)
    if one_to_one:
        if k != 1:
            raise ValueError(
                f"one-to-one matching gives one partner per latent: k must be 1, got {k}"
            )
        return _one_to_one(
            dir_SD,
            dir_TD,
            weights=weights,
            chunk_size=chunk_size,
            device=device,
            names=_labels(names, weights),
            show_progress=show_progress,
        )
    dev = check_device(device) if device is not None else dir_SD.device
    values_SK = torch.full((n_s, k), -torch.inf, device=dev)
    indices_SK = torch.zeros((n_s, k), dtype=torch.long, device=dev)
    with torch.no_grad():
        for s0, t0, sims_BC in similarity_blocks(
            dir_SD,
            dir_TD,
            chunk_size=chunk_size,
            device=dev,
            names=_labels(names, weights),
            show_progress=show_progress,
        ):
            s1 = s0 + sims_BC.shape[0]
            if k == 1:
                best_B, arg_B = sims_BC.max(dim=1)
                better_B = best_B > values_SK[s0:s1, 0]
                values_SK[s0:s1, 0] = torch.where(better_B, best_B, values_SK[s0:s1, 0])
                indices_SK[s0:s1, 0] = torch.where(better_B, arg_B + t0, indices_SK[s0:s1, 0])
                continue
            kk = min(k, sims_BC.shape[1])
            top_BK = sims_BC.topk(kk, dim=1)
            merged_v = torch.cat([values_SK[s0:s1], top_BK.values], dim=1)
            merged_i = torch.cat([indices_SK[s0:s1], top_BK.indices + t0], dim=1)
            keep = merged_v.topk(k, dim=1)
            values_SK[s0:s1] = keep.values
            indices_SK[s0:s1] = merged_i.gather(1, keep.indices)
    return FeatureMatches(values=values_SK, indices=indices_SK, weights=weights)


def _one_to_one(
    dir_SD: torch.Tensor,
    dir_TD: torch.Tensor,
    *,
    weights: WeightsKind,
    chunk_size: int | None,
    device: torch.device | str | None,
    names: tuple[str, str],
    show_progress: bool | None,
) -> FeatureMatches:
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    n_s, n_t = dir_SD.shape[0], dir_TD.shape[0]
    cos_ST = np.empty((n_s, n_t), dtype=np.float64)
    with torch.no_grad():
        for s0, t0, sims_BC in similarity_blocks(
            dir_SD,
            dir_TD,
            chunk_size=chunk_size,
            device=device,
            names=names,
            show_progress=show_progress,
        ):
            b, c = sims_BC.shape
            cos_ST[s0 : s0 + b, t0 : t0 + c] = sims_BC.cpu().numpy()
    rows, cols = linear_sum_assignment(cos_ST, maximize=True)
    values_S1 = torch.full((n_s, 1), torch.nan, dtype=torch.float32)
    indices_S1 = torch.full((n_s, 1), -1, dtype=torch.long)
    values_S1[rows, 0] = torch.from_numpy(cos_ST[rows, cols]).float()
    indices_S1[rows, 0] = torch.from_numpy(cols).long()
    return FeatureMatches(values=values_S1, indices=indices_S1, weights=weights, one_to_one=True)


class OneToOneSummary(BaseModel):
    """One-to-one matching next to the many-to-one maximum (stable JSON)."""

    model_config = ConfigDict(extra="forbid")

    n_source: int
    n_matched: int
    """Source latents given a partner (the narrower side's width)."""
    n_unmatched: int
    """Source latents left without a partner (index -1)."""
    objective: float
    """Sum of the matched cosines (what the assignment maximises)."""
    mean_matched_cosine: Metric
    """Mean cosine of the one-to-one pairs. Higher is better."""
    mean_max_cosine_matched: Metric
    """Mean many-to-one max cosine of the same (matched) source latents: an upper bound."""
    mean_max_cosine: Metric
    """Mean many-to-one max cosine over every source latent."""
    n_changed_partner: int
    """Matched source latents whose one-to-one partner is not their best (many-to-one) one."""
    n_shared_best: int
    """Target latents that are the many-to-one best partner of more than one source latent."""


def one_to_one_summary(many: FeatureMatches, one: FeatureMatches) -> OneToOneSummary:
    """Compare a one-to-one matching with the many-to-one top-1 matching of the same SAEs."""
    if not one.one_to_one or many.one_to_one:
        raise ValueError("pass the many-to-one matches first, then the one-to-one matches")
    if many.values.shape[0] != one.values.shape[0]:
        raise ValueError(
            f"the matchings cover {many.values.shape[0]} and {one.values.shape[0]} source latents"
        )
    best_v, best_i = many.best_values.cpu().double(), many.best_indices.cpu()
    one_v, one_i = one.best_values.cpu().double(), one.best_indices.cpu()
    matched = one_i >= 0
    counts = torch.bincount(best_i, minlength=int(best_i.max()) + 1)
    return OneToOneSummary(
        n_source=int(one_i.numel()),
        n_matched=int(matched.sum()),
        n_unmatched=int((~matched).sum()),
        objective=float(one_v[matched].sum()),
        mean_matched_cosine=Metric(value=float(one_v[matched].mean()), better="higher"),
        mean_max_cosine_matched=Metric(value=float(best_v[matched].mean()), better="higher"),
        mean_max_cosine=Metric(value=float(best_v.mean()), better="higher"),
        n_changed_partner=int((matched & (one_i != best_i)).sum()),
        n_shared_best=int((counts > 1).sum()),
    )


def order_by_match(matches: FeatureMatches) -> list[int]:
    """Source latents by their best value, highest first, unmatched or NaN (dead) ones last:
    an ``order`` for :func:`sae_lens_stitch.insertion_curve` when the source is the inserted
    SAE (e.g. its most faithfully matched latents first)."""
    v = matches.best_values.cpu().double()
    key = torch.where(torch.isnan(v), torch.tensor(-torch.inf, dtype=torch.float64), v)
    return torch.argsort(key, descending=True, stable=True).tolist()


def similar_pairs(
    source: SAE[Any],
    target: SAE[Any],
    *,
    threshold: float,
    weights: WeightsKind = "decoder",
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    show_progress: bool | None = None,
    names: tuple[str, str] = ("source", "target"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs (source i, target j) with cosine >= ``threshold``, found block by block:
    ``(source_indices, target_indices, cosines)`` on the CPU. ``names`` label the SAEs in errors."""
    threshold = check_threshold(threshold)
    src_parts: list[torch.Tensor] = []
    tgt_parts: list[torch.Tensor] = []
    cos_parts: list[torch.Tensor] = []
    with torch.no_grad():
        for s0, t0, sims_BC in similarity_blocks(
            directions(source, weights),
            directions(target, weights),
            chunk_size=chunk_size,
            device=device,
            names=_labels(names, weights),
            show_progress=show_progress,
        ):
            rows, cols = (sims_BC >= threshold).nonzero(as_tuple=True)
            src_parts.append((rows + s0).cpu())
            tgt_parts.append((cols + t0).cpu())
            cos_parts.append(sims_BC[rows, cols].cpu())
    if not src_parts:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    return torch.cat(src_parts), torch.cat(tgt_parts), torch.cat(cos_parts)


def similarity_histogram(
    values_L: torch.Tensor, bins: int = 20
) -> dict[str, list[float] | list[int]]:
    """Histogram of cosine similarities on [-1, 1] in ``2 * bins`` equal bins (stable JSON)."""
    edges = torch.linspace(-1.0, 1.0, 2 * bins + 1)
    counts = torch.histc(values_L.float().cpu().clamp(-1, 1), bins=2 * bins, min=-1.0, max=1.0)
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def similarity_stats(values_L: torch.Tensor, threshold: float) -> dict[str, float]:
    """Mean, min, max, quantiles of best-match similarities and the share at or above
    ``threshold`` (stable JSON)."""
    threshold = check_threshold(threshold)
    v = values_L.float().cpu()  # quantile's q lives on the CPU
    q = torch.quantile(v, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
    return {
        "mean": float(v.mean()),
        "min": float(v.min()),
        "max": float(v.max()),
        "q10": float(q[0]),
        "q25": float(q[1]),
        "median": float(q[2]),
        "q75": float(q[3]),
        "q90": float(q[4]),
        "fraction_at_or_above_threshold": float((v >= threshold).float().mean()),
    }
