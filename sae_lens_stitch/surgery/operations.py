"""Step 4: surgery. Build new SAE-Lens SAEs from latents of existing ones: stitch (insert),
remove, swap families, and Frankenstein's SAE over a family of widths.

Every operation goes through :func:`join`, which concatenates per-latent tensors as the
architecture's registry rule says, keeps the base SAE's shared tensors (b_dec, W_skip), corrects
encoder biases for a different b_dec, and records provenance. Inputs are never mutated.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_stitch.analysis.classify import FeatureCategory, classify_features
from sae_lens_stitch.analysis.families import FeatureFamily, feature_families
from sae_lens_stitch.analysis.match import DEFAULT_THRESHOLD
from sae_lens_stitch.checks import (
    IndexLike,
    check_compatible,
    check_finite,
    check_indices,
    check_joinable,
    checks_pair_once,
    marked_joinable,
)
from sae_lens_stitch.errors import InvalidArgumentError, InvalidIndicesError
from sae_lens_stitch.evaluation.metrics import ActivationsLike
from sae_lens_stitch.io.sparsity import concat_log_sparsity, set_log_sparsity
from sae_lens_stitch.provenance import (
    Operation,
    Provenance,
    describe_sae,
    get_provenance,
    set_provenance,
)
from sae_lens_stitch.registry import Part, check_same_family, get_rule
from sae_lens_stitch.validation import check_sae, check_threshold, show

_DROPPED_METADATA = ("neuronpedia_id",)
"""Metadata that names the base SAE itself and is wrong for a new one."""

_COPY_CHUNK = 4096
"""Latents copied per step when assembling (bounds the temporaries of index_select)."""


def _decoder_bias_seen_by_encoder(sae: SAE[Any]) -> torch.Tensor:
    return sae.b_dec.detach() * float(sae.cfg.apply_b_dec_to_input)


@torch.no_grad()
def join(base: SAE[Any], parts: Sequence[Part], operation: Operation) -> SAE[Any]:
    """A new SAE of ``base``'s class (or the family's joined class) whose latents are, in order,
    each part's chosen latents. Shared tensors come from ``base``; provenance chains through
    the parts' own provenance."""
    rule = get_rule(base)
    check_finite(base, name="base")
    for part in parts:
        if part.sae is not base:
            check_same_family(base, part.sae)
            check_compatible(base, part.sae)
            check_finite(part.sae, name="donor")
    dev, dtype = base.W_dec.device, base.W_dec.dtype
    a_b_dec_D = _decoder_bias_seen_by_encoder(base)

    d_sae = sum(int(p.indices_P.numel()) for p in parts)
    # Shared tensors are cloned from base; each per-latent tensor is allocated once at its final
    # size and filled part by part in chunks of latents, so the temporaries stay small (no
    # per-part pieces plus a torch.cat copy of them: peak memory ~ the output's size).
    state = {
        name: tensor.detach().clone()
        for name, tensor in base.state_dict().items()
        if name not in rule.per_latent
    }
    for name, dim in rule.per_latent.items():
        shape = list(getattr(parts[0].sae, name).shape)
        shape[dim] = d_sae
        state[name] = torch.empty(shape, dtype=dtype, device=dev)
    offset = 0
    for part in parts:
        idx_P = part.indices_P.to(part.sae.W_dec.device)
        n_p = int(idx_P.numel())
        for name, dim in rule.per_latent.items():
            source = getattr(part.sae, name).detach()
            for c0 in range(0, n_p, _COPY_CHUNK):
                idx_C = idx_P[c0 : c0 + _COPY_CHUNK]
                state[name].narrow(dim, offset + c0, int(idx_C.numel())).copy_(
                    source.index_select(dim, idx_C)
                )
        if rule.bias_shift is not None and part.sae is not base:
            delta_D = a_b_dec_D.to(part.sae.W_dec.device) - _decoder_bias_seen_by_encoder(part.sae)
            if bool((delta_D != 0).any()):
                for bias, shift_P in rule.bias_shift(part.sae, idx_P, delta_D).items():
                    state[bias].narrow(rule.per_latent[bias], offset, n_p).add_(
                        shift_P.to(dev, dtype)
                    )
        offset += n_p

    architecture, overrides = rule.config_builder(base, parts)
    cfg_dict = copy.deepcopy(base.cfg.to_dict())
    cfg_dict.update(overrides)
    cfg_dict["architecture"] = architecture
    cfg_dict["d_sae"] = d_sae
    cfg_dict["device"] = "meta"
    for key in _DROPPED_METADATA:
        cfg_dict["metadata"].pop(key, None)
    new = SAE.from_dict(cfg_dict)
    new.cfg.device = str(dev)
    new.load_state_dict(state, assign=True)
    new = new.to(device=dev, dtype=dtype)

    provenances = {id(p.sae): get_provenance(p.sae) for p in parts}
    sources = {}
    latents = []
    for part in parts:
        prov = provenances[id(part.sae)]
        sources.update(prov.sources)
        latents.extend(prov.latents[i] for i in part.indices_P.tolist())
    base_prov = provenances.get(id(base)) or get_provenance(base)
    sources.update(base_prov.sources)
    used = {origin.source for origin in latents}
    donor_history = {
        describe_sae(p.sae): [
            op.model_dump(mode="json") for op in provenances[id(p.sae)].operations
        ]
        for p in parts
        if p.sae is not base and provenances[id(p.sae)].operations
    }
    if donor_history:  # keep what was done to derived donors, not only to the base
        operation = operation.model_copy(
            update={"details": {**operation.details, "donor_operations": donor_history}}
        )
    set_provenance(
        new,
        Provenance(
            sources={k: v for k, v in sources.items() if k in used},
            latents=latents,
            operations=[*base_prov.operations, operation],
        ),
    )
    set_log_sparsity(new, concat_log_sparsity([(p.sae, p.indices_P) for p in parts]))
    return new


@checks_pair_once
def stitch(
    base: SAE[Any],
    donor: SAE[Any],
    indices: IndexLike | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    activations: ActivationsLike | None = None,
) -> SAE[Any]:
    """``base``'s latents followed by ``donor``'s latents ``indices`` (in that order).

    Default indices: the donor's novel latents relative to ``base`` at ``threshold``, leaving
    out dead latents (never firing on ``activations`` when given, else marked dead by the
    donor's stored sparsity, see :func:`classify_features`). For
    standard, JumpReLU and gated SAEs (and transcoders) the result is exact: base latents fire
    as in ``base``, inserted latents as in ``donor``, and the decode is base's plus the inserted
    contributions. TopK SAEs join as ``block_topk`` (see :mod:`sae_lens_stitch.block_topk`).
    """
    threshold = check_threshold(threshold)
    if indices is None:
        classification = classify_features(
            base, donor, threshold=threshold, activations=activations
        )
        idx_P = classification.novel_indices
        chosen_by = "novel"
        dead_L = classification.indices_of(FeatureCategory.DEAD)
        n_dead = int((classification.max_cosine[dead_L] < threshold).sum())
    else:
        idx_P = check_indices(indices, donor.cfg.d_sae, what="donor indices")
        chosen_by = "explicit"
        n_dead = 0
    keep_B = torch.arange(base.cfg.d_sae)
    op = Operation(
        operation="stitch",
        threshold=threshold if indices is None else None,
        inputs=[describe_sae(base), describe_sae(donor)],
        n_latents_in=int(idx_P.numel()),
        details={"chosen_by": chosen_by, "exact": get_rule(base).exact}
        | ({"n_dead_excluded": n_dead} if n_dead else {}),
    )
    return join(base, [Part(base, keep_B), Part(donor, idx_P)], op)


def remove_features(sae: SAE[Any], indices: IndexLike) -> SAE[Any]:
    """A copy of ``sae`` without latents ``indices``; the others keep their order."""
    check_sae(sae)
    idx_R = check_indices(indices, sae.cfg.d_sae, what="indices to remove")
    if idx_R.numel() == sae.cfg.d_sae:
        raise InvalidIndicesError(
            f"removing all {sae.cfg.d_sae} latents would leave an SAE with no latents"
        )
    keep_mask = torch.ones(sae.cfg.d_sae, dtype=torch.bool)
    keep_mask[idx_R] = False
    op = Operation(
        operation="remove",
        inputs=[describe_sae(sae)],
        n_latents_removed=int(idx_R.numel()),
        details={"exact": get_rule(sae).exact},
    )
    return join(sae, [Part(sae, keep_mask.nonzero().flatten())], op)


def family_indices(
    families: Sequence[FeatureFamily], n_small: int, n_large: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """All families' small and large indices, in family order, checked to be in range and not
    to overlap (:class:`InvalidIndicesError` otherwise)."""
    small = [i for f in families for i in f.small_indices]
    large = [i for f in families for i in f.large_indices]
    try:
        return (
            check_indices(small, n_small, what="family small_indices"),
            check_indices(large, n_large, what="family large_indices"),
        )
    except InvalidIndicesError as err:
        raise InvalidIndicesError(f"{err} (families must not overlap)") from None


def _check_families(families: Any) -> None:
    if isinstance(families, (str, bytes, FeatureFamily)) or not isinstance(families, Sequence):
        raise InvalidArgumentError(
            f"families must be a list of FeatureFamily (from feature_families); got {show(families)}"
        )
    for f in families:
        if not isinstance(f, FeatureFamily):
            raise InvalidArgumentError(
                f"families must be a list of FeatureFamily (from feature_families); got an entry {show(f)}"
            )


@checks_pair_once
def swap(
    base: SAE[Any],
    donor: SAE[Any],
    families: Sequence[FeatureFamily] | None = None,
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> SAE[Any]:
    """Replace each family's ``base`` members by its ``donor`` members.

    The result holds the base latents outside the families (in order), then the donor members
    of each family in family order. Default: every family at ``threshold``."""
    threshold = check_threshold(threshold)
    if families is not None:
        _check_families(families)
    chosen = (
        list(families)
        if families is not None
        else feature_families(base, donor, threshold=threshold)
    )
    remove_R, insert_P = family_indices(chosen, base.cfg.d_sae, donor.cfg.d_sae)
    keep_mask = torch.ones(base.cfg.d_sae, dtype=torch.bool)
    keep_mask[remove_R] = False
    op = Operation(
        operation="swap",
        threshold=threshold if families is None else None,
        inputs=[describe_sae(base), describe_sae(donor)],
        n_latents_in=int(insert_P.numel()),
        n_latents_removed=int(remove_R.numel()),
        details={"n_families": len(chosen), "exact": get_rule(base).exact},
    )
    return join(base, [Part(base, keep_mask.nonzero().flatten()), Part(donor, insert_P)], op)


def frankenstein_steps(
    saes: Sequence[SAE[Any]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    activations: ActivationsLike | None = None,
) -> Iterator[SAE[Any]]:
    """The SAEs Frankenstein's construction builds, one per width after the first: the smallest
    SAE with the next width's novel latents (relative to the SAE built so far) inserted, and so
    on. ``saes`` is smallest first; with ``activations``, never-firing latents are skipped.
    The family is checked when this is called, before any SAE is built."""
    if isinstance(saes, (str, bytes)) or not isinstance(saes, Sequence):
        raise InvalidArgumentError(
            f"frankenstein takes a list of SAEs (smallest first); got {show(saes)}"
        )
    if len(saes) < 2:
        raise InvalidArgumentError(f"frankenstein needs at least two SAEs, got {len(saes)}")
    for k, sae in enumerate(saes):
        check_sae(sae, f"saes[{k}]")
    threshold = check_threshold(threshold)
    widths = [s.cfg.d_sae for s in saes]
    if widths != sorted(widths):
        raise InvalidArgumentError(f"frankenstein takes SAEs smallest first; got widths {widths}")
    check_joinable(saes[0], *saes[1:])
    return _frankenstein_iter(saes, threshold, activations)


def _frankenstein_iter(
    saes: Sequence[SAE[Any]], threshold: float, activations: ActivationsLike | None
) -> Iterator[SAE[Any]]:
    current = saes[0]
    for donor in saes[1:]:
        # (smallest, donor) was checked by frankenstein_steps; a built SAE is a new pair
        with marked_joinable(saes[0], donor):
            current = stitch(current, donor, threshold=threshold, activations=activations)
        yield current


def frankenstein(
    saes: Sequence[SAE[Any]],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    activations: ActivationsLike | None = None,
) -> SAE[Any]:
    """Frankenstein's SAE: start from the smallest SAE and insert, width by width, the next
    SAE's latents that are novel relative to the SAE built so far. ``saes`` is smallest first.
    With ``activations``, latents that never fire on them are not inserted (as in :func:`stitch`)."""
    steps = frankenstein_steps(saes, threshold=threshold, activations=activations)
    sizes = [saes[0].cfg.d_sae]
    current = saes[0]
    for current in steps:
        sizes.append(current.cfg.d_sae)
    inserted = [b - a for a, b in itertools.pairwise(sizes)]
    prov = get_provenance(current)
    prov.operations.append(
        Operation(
            operation="frankenstein",
            threshold=threshold,
            inputs=[describe_sae(s) for s in saes],
            n_latents_in=sum(inserted),
            details={"widths": [s.cfg.d_sae for s in saes], "inserted_per_width": inserted},
        )
    )
    set_provenance(current, prov)
    return current
