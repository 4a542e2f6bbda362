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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from sae_lens import SAE

from sae_lens_stitch.analysis.classify import FeatureCategory, classify_features
from sae_lens_stitch.analysis.effects import (
    InsertedActivations,
    check_linear_decode,
    decoder_directions,
)
from sae_lens_stitch.analysis.families import FeatureFamily, feature_families
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD
from sae_lens_stitch.checks import check_compatible, check_indices, checks_pair_once
from sae_lens_stitch.errors import InvalidActivationsError
from sae_lens_stitch.evaluation.metrics import (
    DEFAULT_BATCH_SIZE,
    ActivationsLike,
    VarianceAccumulator,
    evaluate,
    iter_pairs,
    materialize,
)
from sae_lens_stitch.evaluation.sparse_cache import (
    SparseCollector,
    SparseLatents,
    sparse_activations,
)
from sae_lens_stitch.progress import track
from sae_lens_stitch.provenance import display_name
from sae_lens_stitch.registry import (
    check_same_family,
    encode_and_reconstruct,
    get_rule,
    output_dim,
)
from sae_lens_stitch.validation import check_threshold

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
    """What the step did, for people (e.g. ``+L12`` inserted large latent 12;
    ``swap 3: -S[4] +L[9,10]``); the same in fields below."""
    added: list[int] = Field(default_factory=list)
    """Donor (large) latents inserted at this step (their indices in the donor)."""
    removed: list[int] = Field(default_factory=list)
    """Base (small) latents removed at this step (their indices in the base)."""
    family: int | None = None
    """The family swapped at this step (its number in the families list), if any."""


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
    base_d_sae: int | None = None
    """Width of the base (small) SAE (None in curves saved before it was recorded)."""
    donor_d_sae: int | None = None
    """Width of the donor (large) SAE."""


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one intra-op thread while open (restored on exit). The per-step ops of
    a curve touch a few hundred rows each: too small for threads to help, while each op pays a
    fork/join of the thread pool (on a busy 2-core machine, 20-100x the op's own CPU time)."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class PairEncodings:
    """One encode of a (small, large) pair over the curve's tokens, made elsewhere (e.g. by a
    study's shared encodings), so a swap curve need not encode again. Exact architectures
    only (an inserted latent fires as in its own SAE)."""

    residual_ND: torch.Tensor
    """x - small(x), float32 [N, d_in]."""
    active: int
    """Non-zero activations of the small SAE over the N tokens."""
    small: SparseLatents
    """Every latent of the small SAE (position = latent index)."""
    large: SparseLatents
    """Every latent of the large SAE (position = latent index)."""


class _Residual:
    """The residual of every token under the current SAE, updated one latent at a time.

    ``collect``: base latents whose non-zero activations to keep (as ``removed``, a
    :class:`SparseLatents`) from the same encode that gives the residual, for curves that
    remove them later."""

    def __init__(
        self,
        base: SAE[Any],
        x_ND: torch.Tensor,
        y_ND: torch.Tensor | None,
        *,
        batch_size: int,
        show_progress: bool | None,
        collect: torch.Tensor | None = None,
    ):
        self.acc = VarianceAccumulator(output_dim(base))
        parts = []
        active = 0
        offset = 0
        dev = base.W_dec.device
        collector = None if collect is None else SparseCollector(collect, base.cfg.d_sae, dev)
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
                if collector is None:
                    active += int((f != 0).sum())
                else:
                    nz = f.nonzero()
                    active += nz.shape[0]
                    collector.add(f, offset, nz)
                y = y.to(dev)
                self.acc.add(y)  # sums for the variance; the error sum comes from R below
                parts.append((y - x_hat).float().cpu())
                offset += x.shape[0]
        if self.acc.n == 0:
            raise InvalidActivationsError("activations are empty: no tokens to evaluate")
        self.R_ND = torch.cat(parts)
        self.sse = float(self.R_ND.double().pow(2).sum())
        self.active = active
        self.d_sae = base.cfg.d_sae
        self.removed = (
            None
            if collector is None or collect is None
            else collector.build(decoder_directions(base, collect))
        )

    @classmethod
    def given(
        cls, base: SAE[Any], x_ND: torch.Tensor, encoded: PairEncodings, collect: torch.Tensor
    ) -> _Residual:
        """The state from an encode made elsewhere (``encoded``), removed latents ``collect``."""
        if encoded.residual_ND.shape != x_ND.shape:
            raise ValueError(
                f"encodings over {tuple(encoded.residual_ND.shape)} do not match the "
                f"activations {tuple(x_ND.shape)}"
            )
        state = cls.__new__(cls)
        state.acc = VarianceAccumulator(output_dim(base))
        state.acc.add(x_ND)
        state.R_ND = encoded.residual_ND.float().clone()
        state.sse = float(state.R_ND.double().pow(2).sum())
        state.active = encoded.active
        state.d_sae = base.cfg.d_sae
        state.removed = encoded.small.take(collect)
        return state

    def apply(self, lat: SparseLatents, p: int, sign: int) -> None:
        """sign +1: add latent p's contribution to x̂ (insert); -1: take it away (remove).

        Only the rows of the tokens where p fires are touched: with c_t = sign * a_t w,
        R_t -> R_t - c_t and the error changes by Σ_t (|c_t|² - 2 R_t·c_t)."""
        s, e = lat.bounds[p], lat.bounds[p + 1]
        if e > s:
            t, v = lat.tokens[s:e], lat.values[s:e]
            w_D = lat.rows_PD[p]
            rows_TD = self.R_ND.index_select(0, t)
            v64 = v.double()
            dots_T = (rows_TD @ w_D).double()
            self.sse += float((v64.pow(2) * lat.sq_norms[p] - 2 * sign * v64 * dots_T).sum())
            # each token appears once per latent: update the gathered rows, write them back
            rows_TD.addr_(v, w_D, alpha=-sign)
            self.R_ND.index_copy_(0, t, rows_TD)
        self.active += sign * (e - s)
        self.d_sae += sign

    def effects(self, lat: SparseLatents, *, batch_size: int = DEFAULT_BATCH_SIZE) -> torch.Tensor:
        """[P] closed-form ΔSSE of inserting each latent alone into the current SAE
        (Σ_t a_t²|w|² - 2 a_t R_t·w), by token batches: R_batch @ W.T, then the entries."""
        n_p = lat.ptr.numel() - 1
        out = torch.zeros(n_p, dtype=torch.float64)
        lat_of_entry = torch.repeat_interleave(torch.arange(n_p), lat.counts)
        sq_norm_P = torch.tensor(lat.sq_norms, dtype=torch.float64)
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

    def point(
        self,
        step: int,
        label: str,
        *,
        added: Sequence[int] = (),
        removed: Sequence[int] = (),
        family: int | None = None,
    ) -> CurvePoint:
        n = self.acc.n
        return CurvePoint(
            step=step,
            n_latents=self.d_sae,
            mse=self.sse / n,
            fvu=self.acc.fvu(self.sse),
            l0=self.active / n,
            label=label,
            added=list(added),
            removed=list(removed),
            family=family,
        )


def _live_latents_of(
    base: SAE[Any],
    donor: SAE[Any],
    x_ND: torch.Tensor,
    category: FeatureCategory,
    *,
    fixed_P: torch.Tensor,
    threshold: float,
    inserted_activations: InsertedActivations,
    batch_size: int,
    show_progress: bool | None,
) -> tuple[torch.Tensor, SparseLatents]:
    """The donor's ``category`` latents relative to ``base`` that fire on ``x_ND`` (as
    ``classify_features(..., activations=x_ND)`` finds them), and the sparse activations of
    ``fixed_P`` followed by those latents, from one donor encode where possible.

    The dead test needs the donor's own encode. Where the inserted activations come from it
    (exact architectures, or ``"in_donor"``), classify by cosine alone, collect every candidate
    and drop those that never fire; else classify with ``activations`` (a donor encode of its
    own) and collect the live ones."""
    own_encode = get_rule(donor).exact or inserted_activations == "in_donor"
    classes = classify_features(
        base,
        donor,
        threshold=threshold,
        activations=None if own_encode else x_ND,
        use_stored_sparsity=False,
        batch_size=batch_size,
    )
    cand_C = classes.indices_of(category)
    lat = sparse_activations(
        donor,
        x_ND,
        torch.cat([fixed_P, cand_C]),
        inserted=inserted_activations,
        batch_size=batch_size,
        show_progress=show_progress,
    )
    if not own_encode:
        return cand_C, lat
    n_fixed = fixed_P.numel()
    live = (lat.counts[n_fixed:] > 0).nonzero().squeeze(1)
    if live.numel() == cand_C.numel():
        return cand_C, lat
    keep = torch.cat([torch.arange(n_fixed), n_fixed + live])
    return cand_C[live], lat.take(keep)


def _prepare(
    base: SAE[Any],
    donor: SAE[Any],
    activations: ActivationsLike,
    targets: ActivationsLike | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    check_compatible(base, donor)  # no-op inside the operations (checked on entry)
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


@checks_pair_once
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
    threshold = check_threshold(threshold)
    x_ND, y_ND = _prepare(base, donor, activations, targets)
    if indices is None:
        if category is None:
            raise ValueError("give indices or a category")
        idx_P, lat = _live_latents_of(
            base,
            donor,
            x_ND,
            FeatureCategory(category),
            fixed_P=torch.zeros(0, dtype=torch.long),
            threshold=threshold,
            inserted_activations=inserted_activations,
            batch_size=batch_size,
            show_progress=show_progress,
        )
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
    labels = [f"+L{i}" for i in idx_P.tolist()]
    with _one_thread():
        for step, p in enumerate(
            track(perm, total=len(perm), description="insertion curve", show=show_progress), 1
        ):
            state.apply(lat, p, +1)
            points.append(state.point(step, labels[p], added=[int(idx_P[p])]))
    rule = get_rule(donor)
    donor_k = getattr(donor.cfg, "k", None)
    exact = rule.exact or (
        inserted_activations == "alone" and donor_k is not None and len(perm) <= donor_k
    )
    return Curve(
        kind=kind,
        base=display_name(base),
        donor=display_name(donor),
        order=order_desc,
        exact=exact,
        n_tokens=state.acc.n,
        points=points,
        base_d_sae=base.cfg.d_sae,
        donor_d_sae=donor.cfg.d_sae,
    )


def _family_positions(fams: Sequence[FeatureFamily]) -> tuple[list[range], list[range]]:
    """Positions of each family's small and large members in the concatenated index lists."""
    s_pos, l_pos, s0, l0 = [], [], 0, 0
    for f in fams:
        s_pos.append(range(s0, s0 + len(f.small_indices)))
        l_pos.append(range(l0, l0 + len(f.large_indices)))
        s0 += len(f.small_indices)
        l0 += len(f.large_indices)
    return s_pos, l_pos


def _swap_family(
    state: _Residual,
    removed: SparseLatents,
    inserted: SparseLatents,
    s_pos: range,
    l_pos: range,
) -> None:
    """Apply one family swap: its small members out, its large members in."""
    for p in s_pos:
        state.apply(removed, p, -1)
    for p in l_pos:
        state.apply(inserted, p, +1)


def _family_effects(
    state: _Residual,
    removed: SparseLatents,
    inserted: SparseLatents,
    s_pos: list[range],
    l_pos: list[range],
) -> torch.Tensor:
    """ΔSSE of swapping each family alone into the current state (which is restored)."""
    effects = torch.zeros(len(s_pos), dtype=torch.float64)
    with _one_thread():
        for k in range(len(s_pos)):
            before = state.sse
            touched = torch.cat(
                [removed.of(p)[0] for p in s_pos[k]] + [inserted.of(p)[0] for p in l_pos[k]]
            ).unique()
            saved = state.R_ND[touched].clone()
            active, d_sae = state.active, state.d_sae
            _swap_family(state, removed, inserted, s_pos[k], l_pos[k])
            effects[k] = state.sse - before
            state.R_ND[touched] = saved
            state.sse, state.active, state.d_sae = before, active, d_sae
    return effects


def _monotone(points: Sequence[CurvePoint]) -> tuple[bool, int]:
    tol = 1e-6 * max((p.mse for p in points), default=0.0) + 1e-12
    n_up = sum(b.mse > a.mse + tol for a, b in itertools.pairwise(points))
    return n_up == 0, n_up


@checks_pair_once
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
    encoded: PairEncodings | None = None,
) -> Curve:
    """Swap families (default: every family at ``threshold``) from ``small`` towards ``large``
    one at a time: each step removes the family's small members and inserts its large members,
    as :func:`sae_lens_stitch.swap` does. ``order``: ``"index"`` keeps family order (by first
    small latent), ``"effect"`` ranks families by their closed-form ΔMSE swapped alone into
    ``small`` (most helpful first), or a permutation of family positions. With
    ``include_novel``, the large SAE's novel latents (dead ones left out) are then inserted one
    at a time in index order; with ``novel_first`` they are inserted before the swaps (family
    effects for ``order="effect"`` are still measured against ``small``). Records whether MSE
    falls monotonically.

    ``encoded``: the pair's encodes over ``activations``, made elsewhere (exact architectures,
    no ``targets``): the curve then runs no SAE at all."""
    threshold = check_threshold(threshold)
    x_ND, y_ND = _prepare(small, large, activations, targets)
    if encoded is not None and (
        targets is not None or not get_rule(large).exact or inserted_activations != "alone"
    ):
        raise ValueError(
            "encoded= needs an exact architecture, no targets and inserted_activations='alone'"
        )
    fams = (
        list(families)
        if families is not None
        else feature_families(small, large, threshold=threshold)
    )
    from sae_lens_stitch.surgery.operations import family_indices

    small_idx, large_idx = family_indices(fams, small.cfg.d_sae, large.cfg.d_sae)
    novel_idx = torch.zeros(0, dtype=torch.long)
    if encoded is not None:
        if include_novel or novel_first:
            cand = classify_features(
                small, large, threshold=threshold, use_stored_sparsity=False
            ).indices_of(FeatureCategory.NOVEL)
            novel_idx = cand[encoded.large.counts[cand] > 0]
        inserted = encoded.large.take(torch.cat([large_idx, novel_idx]))
    elif include_novel or novel_first:
        novel_idx, inserted = _live_latents_of(
            small,
            large,
            x_ND,
            FeatureCategory.NOVEL,
            fixed_P=large_idx,
            threshold=threshold,
            inserted_activations=inserted_activations,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    else:
        inserted = sparse_activations(
            large,
            x_ND,
            large_idx,
            inserted=inserted_activations,
            batch_size=batch_size,
            show_progress=show_progress,
        )
    # the removed latents' activations come from the same small encode as the residual
    state = (
        _Residual.given(small, x_ND, encoded, small_idx)
        if encoded is not None
        else _Residual(
            small, x_ND, y_ND, batch_size=batch_size, show_progress=show_progress, collect=small_idx
        )
    )
    removed = state.removed
    assert removed is not None
    s_pos, l_pos = _family_positions(fams)
    family_effects = (
        _family_effects(state, removed, inserted, s_pos, l_pos) if order == "effect" else None
    )
    perm, order_desc = _order(order, len(fams), family_effects)
    if order_desc.startswith("effect"):
        order_desc = "effect (closed-form ΔMSE of swapping the family alone, ascending)"

    points = [state.point(0, "small")]

    def insert_novel() -> None:
        for j, i in enumerate(novel_idx.tolist()):
            state.apply(inserted, large_idx.numel() + j, +1)
            points.append(state.point(len(points), f"+L{i} (novel)", added=[i]))

    with _one_thread():
        if novel_first:
            insert_novel()
        for k in track(perm, total=len(perm), description="swap curve", show=show_progress):
            _swap_family(state, removed, inserted, s_pos[k], l_pos[k])
            f = fams[k]
            points.append(
                state.point(
                    len(points),
                    f"swap {k}: -S{f.small_indices} +L{f.large_indices}",
                    added=f.large_indices,
                    removed=f.small_indices,
                    family=k,
                )
            )
        if not novel_first:
            insert_novel()
    mono, n_up = _monotone(points)
    return Curve(
        kind="swap_families",
        base=display_name(small),
        donor=display_name(large),
        order=(
            "novel latents in index order, then families by " + order_desc
            if novel_first
            else order_desc + (" then novel latents in index order" if include_novel else "")
        ),
        exact=get_rule(small).exact,
        n_tokens=state.acc.n,
        points=points,
        base_d_sae=small.cfg.d_sae,
        donor_d_sae=large.cfg.d_sae,
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
    threshold = check_threshold(threshold)
    from sae_lens_stitch.surgery.operations import frankenstein_steps

    widths = [s.cfg.d_sae for s in saes]
    steps = frankenstein_steps(  # checks the family before anything is evaluated
        saes, threshold=threshold, activations=activations if exclude_dead else None
    )
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
        add(s, "trained", display_name(s))
    for k, current in enumerate(steps, 1):
        add(current, "frankenstein", f"frankenstein[{'+'.join(str(w) for w in widths[: k + 1])}]")
    return FrankensteinPlane(threshold=threshold, n_tokens=x_ND.shape[0], points=points)
