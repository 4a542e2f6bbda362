"""Operation history of derived donors, dead latents with data, and argument checks."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sae, related_pair

from sae_lens_stitch import classify_features, frankenstein, get_provenance, remove_features, stitch


def test_derived_donor_keeps_its_operation_history() -> None:
    base = make_sae("standard", 8, 16, seed=1)
    donor = remove_features(make_sae("standard", 20, 16, seed=2), [0, 1])
    out = stitch(base, donor, [3, 4])
    ops = get_provenance(out).operations
    assert [op.operation for op in ops] == ["stitch"]
    (history,) = ops[0].details["donor_operations"].values()
    assert [op["operation"] for op in history] == ["remove"]
    assert history[0]["n_latents_removed"] == 2


def test_dead_mask_of_the_wrong_length_is_named() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=3)
    with pytest.raises(ValueError, match=r"dead_mask must have shape \(15,\).*\(3,\)"):
        classify_features(small, large, dead_mask=torch.zeros(3, dtype=torch.bool))


def _kill(sae: object, latents: list[int]) -> None:
    with torch.no_grad():
        sae.b_enc[latents] = -1e6  # type: ignore[attr-defined]


def test_stitch_and_frankenstein_skip_dead_latents_with_data() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=4, children=2, d_in=32)
    x = torch.randn(500, 32, generator=torch.Generator().manual_seed(0))
    novel = classify_features(small, large).novel_indices.tolist()
    dead = novel[:2]
    _kill(large, dead)
    out = stitch(small, large, activations=x)
    inserted = [o.index for o in get_provenance(out).latents[6:]]
    assert inserted == [i for i in novel if i not in dead]
    assert get_provenance(out).operations[-1].details["n_dead_excluded"] == 2
    fr = frankenstein([small, large], activations=x)
    assert [o.index for o in get_provenance(fr).latents[6:]] == inserted


def test_evaluate_with_model_needs_a_sequence() -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from sae_lens_stitch import evaluate_with_model

    model = HookedTransformer(
        HookedTransformerConfig(
            n_layers=1, d_model=16, d_head=4, n_ctx=8, d_vocab=20, act_fn="relu"
        )
    )
    sae = make_sae("standard", 8, 16, hook_name="blocks.0.hook_resid_pre")
    with pytest.raises(ValueError, match=r"batch >= 1"):
        evaluate_with_model(sae, model, torch.zeros((0, 5), dtype=torch.long))
