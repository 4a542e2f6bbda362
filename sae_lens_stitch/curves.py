"""Step 5c: curves of reconstruction error and L0 as latents are inserted or swapped one at a
time, and the Frankenstein SAE against trained SAEs in the L0-FVU plane.

(a) :func:`insertion_curve` with ``category="novel"``: insert the donor's novel latents into the
    base one at a time; (b) the same with ``category="reconstruction"``; (c) :func:`swap_curve`:
    swap families one at a time from the small SAE towards the large one; (d)
    :func:`frankenstein_plane`.

Curves (a)-(c) are computed incrementally: the residual ``R = X - x̂`` of every token is kept
([N, d_in], the size of the activations), each latent's activations are stored sparsely
(token, value), and a step that adds (removes) latent i updates ``R`` only on the tokens where
i fires, ``R[t] -= a_ti w_i`` (``+=``), and the error sum by the change on those rows. L0
changes by the number of those tokens over N. The SAE is never re-run per point.

Exactness: for architectures whose registry rule is exact (standard, JumpReLU, gated, ...)
every point equals stitching / swapping that set of latents and evaluating (latents fire
independently). For TopK SAEs (joined as ``block_topk``) a latent's firing depends on its group:
we use fixed activations (inserted latents fire "alone", i.e. whenever their pre-activation is
positive, or with ``inserted_activations="in_donor"`` as in the donor; removed base latents
simply stop contributing while the others keep their activations). With ``alone``, points are
exact while at most k latents have been inserted from a donor (the group's k is then the
number inserted); later points, and every swap point, are approximations, and the curve says
``exact=False``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.checks import check_compatible, check_indices
from sae_lens_stitch.classify import (
    DEFAULT_THRESHOLD,
    FeatureCategory,
    classify_features,
    describe_sae,
)
from sae_lens_stitch.effects import (
    InsertedActivations,
    check_linear_decode,
    decoder_directions,
    inserted_encoder,
)
from sae_lens_stitch.evaluation import (
    DEFAULT_BATCH_SIZE,
    ActivationsLike,
    VarianceAccumulator,
    encode_and_reconstruct,
    evaluate,
    iter_batches,
    iter_pairs,
    materialize,
    output_dim,
)
from sae_lens_stitch.families import FeatureFamily, feature_families
from sae_lens_stitch.progress import track
from sae_lens_stitch.registry import check_same_family, get_rule

CurveKind = Literal["insert_novel", "insert_reconstruction", "insert", "swap_families"]
Order = Literal["effect", "index"]

METRIC_DIRECTIONS: dict[str, Literal["lower", "higher"]] = {
    "mse": "lower",
    "fvu": "lower",
    "l0": "lower",
}


class CurvePoint(BaseModel):
    """The SAE after ``step`` steps."""

    model_config = ConfigDict(extra="forbid")

    step: int
    n_latents: int
    """d_sae of the SAE at this point."""
    mse: float
    fvu: float
    l0: float
    label: str
    """What the step did (e.g. ``+L12`` inserted large latent 12; ``swap 3: -S[4] +L[9,10]``)."""


class Curve(BaseModel):
    """A sequence of SAEs between a base and a donor, one latent or family per step."""

    model_config = ConfigDict(extra="forbid")

    kind: CurveKind
    base: str
    donor: str
    order: str
    """How the steps were ordered (see the function that built the curve)."""
    exact: bool
    """Whether every point equals building that SAE and evaluating it (see module docstring)."""
    n_tokens: int
    directions: dict[str, Literal["lower", "higher"]] = METRIC_DIRECTIONS
    """Better direction of mse, fvu and l0."""
    points: list[CurvePoint]
    monotone: bool | None = None
    """For swap curves: whether MSE never rises from one point to the next (up to float
    rounding); None for other curves."""
    n_increases: int | None = None
    """For swap curves: the number of steps at which MSE rose."""


@dataclass(frozen=True)
class SparseLatents:
    """Activations of chosen latents over N tokens, stored per latent (CSR by latent)."""

    ptr: torch.Tensor
    """[P + 1] offsets into tokens/values."""
    tokens: torch.Tensor
    """[nnz] token index of each non-zero activation, grouped by latent."""
    values: torch.Tensor
    """[nnz] the activation."""
    rows_PD: torch.Tensor
    """[P, d_out] output direction of each latent."""

    def of(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, e = int(self.ptr[p]), int(self.ptr[p + 1])
        return self.tokens[s:e], self.values[s:e]

    @property
    def counts(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]


@torch.no_grad()
def sparse_activations(
    sae: SAE[Any],
    x_ND: torch.Tensor,
    indices_P: torch.Tensor,
    *,
    inserted: InsertedActivations | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
) -> SparseLatents:
    """Non-zero activations of ``sae``'s latents ``indices_P`` on every token, from one pass.
    ``inserted`` None: as the SAE itself computes them; else as once inserted elsewhere
    (:func:`sae_lens_stitch.effects.inserted_encoder`)."""
    dev = sae.W_dec.device
    idx = indices_P.to(dev)
    toks, lats, vals = [], [], []
    offset = 0
    with inserted_encoder(sae, inserted or "in_donor") as encode:
        for x in iter_batches(
            x_ND,
            sae.cfg.d_in,
            batch_size=batch_size,
            show_progress=show_progress,
            description="latent activations",
        ):
            a_NP = encode(x.to(dev)).index_select(-1, idx)
            nz = a_NP.nonzero()
            toks.append((nz[:, 0] + offset).cpu())
            lats.append(nz[:, 1].cpu())
            vals.append(a_NP[nz[:, 0], nz[:, 1]].float().cpu())
            offset += x.shape[0]
    tok = torch.cat(toks) if toks else torch.zeros(0, dtype=torch.long)
    lat = torch.cat(lats) if lats else torch.zeros(0, dtype=torch.long)
    val = torch.cat(vals) if vals else torch.zeros(0)
    order = torch.argsort(lat, stable=True)
    counts = torch.bincount(lat, minlength=idx.numel())
    ptr = torch.zeros(idx.numel() + 1, dtype=torch.long)
    ptr[1:] = counts.cumsum(0)
    return SparseLatents(
        ptr=ptr,
        tokens=tok[order],
        values=val[order],
        rows_PD=decoder_directions(sae, indices_P).float().cpu(),
    )


class _Residual:
    """The residual of every token under the current SAE, updated one latent at a time."""

    def __init__(
        self,
        base: SAE[Any],
        x_ND: torch.Tensor,
        y_ND: torch.Tensor | None,
        *,
        batch_size: int,
        show_progress: bool | None,
    ):
        self.acc = VarianceAccumulator(output_dim(base))
        parts = []
        active = 0
        dev = base.W_dec.device
        with torch.no_grad():
            for x, y in iter_pairs(
                base,
                x_ND,
                y_ND,
                batch_size=batch_size,
                show_progress=show_progress,
                description="base residual",
            ):
                f, x_hat = encode_and_reconstruct(base, x.to(dev))
                active += int((f != 0).sum())
                self.acc.add(y.to(dev), x_hat)
                parts.append((y.to(dev) - x_hat).float().cpu())
        if self.acc.n == 0:
            raise ValueError("activations are empty: no tokens to evaluate")
        self.R_ND = torch.cat(parts)
        self.sse = float(self.R_ND.double().pow(2).sum())
        self.active = active
        self.d_sae = base.cfg.d_sae

    def apply(self, lat: SparseLatents, p: int, sign: int) -> None:
        """sign +1: add latent p's contribution to x̂ (insert); -1: take it away (remove).

        Only the rows of the tokens where p fires are touched: with c_t = sign * a_t w,
        R_t -> R_t - c_t and the error changes by Σ_t (|c_t|² - 2 R_t·c_t)."""
        t, v = lat.of(p)
        if t.numel():
            w_D = lat.rows_PD[p]
            dots_T = (self.R_ND.index_select(0, t) @ w_D).double()
            v64 = v.double()
            w_sq = float(w_D.double().pow(2).sum())
            self.sse += float((v64.pow(2) * w_sq - 2 * sign * v64 * dots_T).sum())
            self.R_ND.index_add_(0, t, (-sign * v)[:, None] * w_D[None, :])
        self.active += sign * int(t.numel())
        self.d_sae += sign

    def effects(self, lat: SparseLatents, *, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """[P] closed-form ΔSSE of inserting each latent alone into the current SAE
        (Σ_t a_t²|w|² - 2 a_t R_t·w), by token batches: R_batch @ W.T, then the entries."""
        n_p = lat.ptr.numel() - 1
        out = torch.zeros(n_p, dtype=torch.float64)
        lat_of_entry = torch.repeat_interleave(torch.arange(n_p), lat.counts)
        sq_norm_P = lat.rows_PD.double().pow(2).sum(-1)
        by_token = torch.argsort(lat.tokens, stable=True)
        tok_sorted = lat.tokens[by_token]
        n = self.R_ND.shape[0]
        bounds = torch.searchsorted(tok_sorted, torch.arange(0, n + batch_size, batch_size))
        for b, s in enumerate(range(0, n, batch_size)):
            sel = by_token[int(bounds[b]) : int(bounds[b + 1])]
            if sel.numel() == 0:
                continue
            proj_NP = self.R_ND[s : s + batch_size] @ lat.rows_PD.T
            t, p, v = lat.tokens[sel], lat_of_entry[sel], lat.values[sel].double()
            dots = proj_NP[t - s, p].double()
            out.index_add_(0, p, v.pow(2) * sq_norm_P[p] - 2 * v * dots)
        return out

    def point(self, step: int, label: str) -> CurvePoint:
        n = self.acc.n
        return CurvePoint(
            step=step,
            n_latents=self.d_sae,
            mse=self.sse / n,
            fvu=self.acc.fvu(self.sse),
            l0=self.active / n,
            label=label,
        )


def _prepare(
    base: SAE[Any],
    donor: SAE[Any],
    activations: ActivationsLike,
    targets: ActivationsLike | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    check_compatible(base, donor)
    check_same_family(base, donor)
    check_linear_decode(base, name="base")
    check_linear_decode(donor, name="donor")
    x_ND = materialize(activations, base.cfg.d_in)
    y_ND = None if targets is None else materialize(targets, output_dim(base))
    if y_ND is not None and y_ND.shape[0] != x_ND.shape[0]:
        raise ValueError(f"{x_ND.shape[0]} activations but {y_ND.shape[0]} targets")
    return x_ND, y_ND


def _order(
    order: Order | Sequence[int], positions: int, effects: torch.Tensor | None
) -> tuple[list[int], str]:
    if isinstance(order, str):
        if order == "index":
            return list(range(positions)), "index"
        if order == "effect":
            assert effects is not None
            ranked = torch.argsort(effects, stable=True).tolist()
            return ranked, "effect (closed-form ΔMSE when inserted alone into the base, ascending)"
        raise ValueError(f"order must be 'effect', 'index' or a sequence; got {order!r}")
    perm = check_indices(order, positions, what="order").tolist()
    if sorted(perm) != list(range(positions)):
        raise ValueError(f"order must be a permutation of range({positions}); got {perm[:10]}")
    return perm, "explicit"


def insertion_curve(
    base: SAE[Any],
    donor: SAE[Any],
    activations: ActivationsLike,
    *,
    category: Literal["novel", "reconstruction"] | None = "novel",
    indices: Sequence[int] | torch.Tensor | None = None,
    order: Order | Sequence[int] = "effect",
    threshold: float = DEFAULT_THRESHOLD,
    inserted_activations: InsertedActivations = "alone",
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    targets: ActivationsLike | None = None,
) -> Curve:
    """Insert donor latents into ``base`` one at a time and record MSE, FVU and L0 after each.

    Latents: ``indices`` if given, else the donor's latents of ``category`` relative to
    ``base`` at ``threshold`` (dead latents, which never fire on ``activations``, left out).
    ``order``: ``"effect"`` (default) ranks them by their closed-form insert effect alone into
    the base, most helpful (most negative ΔMSE) first; ``"index"`` keeps index order; or a
    permutation of positions in the chosen list. Step 0 is the base SAE."""
    x_ND, y_ND = _prepare(base, donor, activations, targets)
    if indices is None:
        if category is None:
            raise ValueError("give indices or a category")
        classes = classify_features(
            base, donor, threshold=threshold, activations=x_ND, batch_size=batch_size
        )
        idx_P = classes.indices_of(FeatureCategory(category))
        kind: CurveKind = "insert_novel" if category == "novel" else "insert_reconstruction"
    else:
        idx_P = check_indices(indices, donor.cfg.d_sae, what="donor indices")
        kind = "insert"
    lat = sparse_activations(
        donor,
        x_ND,
        idx_P,
        inserted=inserted_activations,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    state = _Residual(base, x_ND, y_ND, batch_size=batch_size, show_progress=show_progress)
    perm, order_desc = _order(
        order, idx_P.numel(), state.effects(lat) if order == "effect" else None
    )
    points = [state.point(0, "base")]
    for step, p in enumerate(
        track(perm, total=len(perm), description="insertion curve", show=show_progress), 1
    ):
        state.apply(lat, p, +1)
        points.append(state.point(step, f"+L{int(idx_P[p])}"))
    rule = get_rule(donor)
    donor_k = getattr(donor.cfg, "k", None)
    exact = rule.exact or (
        inserted_activations == "alone" and donor_k is not None and len(perm) <= donor_k
    )
    return Curve(
        kind=kind,
        base=describe_sae(base),
        donor=describe_sae(donor),
        order=order_desc,
        exact=exact,
        n_tokens=state.acc.n,
        points=points,
    )


def _monotone(points: Sequence[CurvePoint]) -> tuple[bool, int]:
    tol = 1e-6 * max((p.mse for p in points), default=0.0) + 1e-12
    n_up = sum(b.mse > a.mse + tol for a, b in itertools.pairwise(points))
    return n_up == 0, n_up


def swap_curve(
    small: SAE[Any],
    large: SAE[Any],
    activations: ActivationsLike,
    *,
    families: Sequence[FeatureFamily] | None = None,
    order: Literal["index", "effect"] | Sequence[int] = "index",
    threshold: float = DEFAULT_THRESHOLD,
    include_novel: bool = False,
    novel_first: bool = False,
    inserted_activations: InsertedActivations = "alone",
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    targets: ActivationsLike | None = None,
) -> Curve:
    """Swap families (default: every family at ``threshold``) from ``small`` towards ``large``
    one at a time: each step removes the family's small members and inserts its large members,
    as :func:`sae_lens_stitch.swap` does. ``order``: ``"index"`` keeps family order (by first
    small latent), ``"effect"`` ranks families by their closed-form ΔMSE swapped alone into
    ``small`` (most helpful first), or a permutation of family positions. With
    ``include_novel``, the large SAE's novel latents (dead ones left out) are then inserted one
    at a time in index order; with ``novel_first`` they are inserted before the swaps (family
    effects for ``order="effect"`` are still measured against ``small``). Records whether MSE
    falls monotonically."""
    x_ND, y_ND = _prepare(small, large, activations, targets)
    fams = (
        list(families)
        if families is not None
        else feature_families(small, large, threshold=threshold)
    )
    small_idx = torch.tensor([i for f in fams for i in f.small_indices], dtype=torch.long)
    large_idx = torch.tensor([i for f in fams for i in f.large_indices], dtype=torch.long)
    check_indices(small_idx, small.cfg.d_sae, what="family small_indices")
    check_indices(large_idx, large.cfg.d_sae, what="family large_indices")
    novel_idx = torch.zeros(0, dtype=torch.long)
    if include_novel or novel_first:
        novel_idx = classify_features(
            small, large, threshold=threshold, activations=x_ND, batch_size=batch_size
        ).novel_indices
    removed = sparse_activations(
        small, x_ND, small_idx, batch_size=batch_size, show_progress=show_progress
    )
    inserted = sparse_activations(
        large,
        x_ND,
        torch.cat([large_idx, novel_idx]),
        inserted=inserted_activations,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    state = _Residual(small, x_ND, y_ND, batch_size=batch_size, show_progress=show_progress)
    # positions of each family's members in small_idx / large_idx
    s_pos, l_pos, s0, l0 = [], [], 0, 0
    for f in fams:
        s_pos.append(range(s0, s0 + len(f.small_indices)))
        l_pos.append(range(l0, l0 + len(f.large_indices)))
        s0 += len(f.small_indices)
        l0 += len(f.large_indices)

    family_effects = None
    if order == "effect":
        family_effects = torch.zeros(len(fams), dtype=torch.float64)
        for k in range(len(fams)):
            before = state.sse
            saved = {}
            touched = torch.cat(
                [removed.of(p)[0] for p in s_pos[k]] + [inserted.of(p)[0] for p in l_pos[k]]
            ).unique()
            saved = state.R_ND[touched].clone()
            active, d_sae = state.active, state.d_sae
            for p in s_pos[k]:
                state.apply(removed, p, -1)
            for p in l_pos[k]:
                state.apply(inserted, p, +1)
            family_effects[k] = state.sse - before
            state.R_ND[touched] = saved
            state.sse, state.active, state.d_sae = before, active, d_sae
    perm, order_desc = _order(order, len(fams), family_effects)
    if order_desc.startswith("effect"):
        order_desc = "effect (closed-form ΔMSE of swapping the family alone, ascending)"

    points = [state.point(0, "small")]

    def insert_novel() -> None:
        for j in range(novel_idx.numel()):
            state.apply(inserted, large_idx.numel() + j, +1)
            points.append(state.point(len(points), f"+L{int(novel_idx[j])} (novel)"))

    if novel_first:
        insert_novel()
    for k in track(perm, total=len(perm), description="swap curve", show=show_progress):
        for p in s_pos[k]:
            state.apply(removed, p, -1)
        for p in l_pos[k]:
            state.apply(inserted, p, +1)
        f = fams[k]
        points.append(
            state.point(len(points), f"swap {k}: -S{f.small_indices} +L{f.large_indices}")
        )
    if not novel_first:
        insert_novel()
    mono, n_up = _monotone(points)
    return Curve(
        kind="swap_families",
        base=describe_sae(small),
        donor=describe_sae(large),
        order=(
            "novel latents in index order, then families by " + order_desc
            if novel_first
            else order_desc + (" then novel latents in index order" if include_novel else "")
        ),
        exact=get_rule(small).exact,
        n_tokens=state.acc.n,
        points=points,
        monotone=mono,
        n_increases=n_up,
    )


class PlanePoint(BaseModel):
    """One SAE in the L0-FVU plane."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["trained", "frankenstein"]
    d_sae: int
    l0: float
    fvu: float
    mse: float


class FrankensteinPlane(BaseModel):
    """Trained SAEs of a width family and the Frankenstein SAEs built from them."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    n_tokens: int
    directions: dict[str, Literal["lower", "higher"]] = METRIC_DIRECTIONS
    points: list[PlanePoint]


def frankenstein_plane(
    saes: Sequence[SAE[Any]],
    activations: ActivationsLike,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    exclude_dead: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    targets: ActivationsLike | None = None,
) -> FrankensteinPlane:
    """Evaluate every trained SAE of a width family (``saes``, smallest first) and the
    Frankenstein SAE after each width: start from the smallest and insert the next width's
    novel latents relative to the SAE built so far (as :func:`sae_lens_stitch.frankenstein`;
    with ``exclude_dead``, latents that never fire on ``activations`` are not inserted).
    Each SAE is evaluated once (a point each, not a curve)."""
    from sae_lens_stitch.surgery import stitch

    if len(saes) < 2:
        raise ValueError(f"frankenstein_plane needs at least two SAEs, got {len(saes)}")
    widths = [s.cfg.d_sae for s in saes]
    if widths != sorted(widths):
        raise ValueError(f"SAEs must be smallest first; got widths {widths}")
    x_ND = materialize(activations, saes[0].cfg.d_in)
    y_ND = None if targets is None else materialize(targets, output_dim(saes[0]))
    points: list[PlanePoint] = []

    def add(sae: SAE[Any], kind: Literal["trained", "frankenstein"], name: str) -> None:
        m = evaluate(sae, x_ND, batch_size=batch_size, show_progress=show_progress, targets=y_ND)
        points.append(
            PlanePoint(
                name=name,
                kind=kind,
                d_sae=sae.cfg.d_sae,
                l0=m.l0.value,
                fvu=m.fvu.value,
                mse=m.mse.value,
            )
        )

    for s in saes:
        add(s, "trained", describe_sae(s))
    current = saes[0]
    for k, donor in enumerate(saes[1:], 1):
        current = stitch(
            current, donor, threshold=threshold, activations=x_ND if exclude_dead else None
        )
        add(current, "frankenstein", f"frankenstein[{'+'.join(str(w) for w in widths[: k + 1])}]")
    return FrankensteinPlane(threshold=threshold, n_tokens=x_ND.shape[0], points=points)
