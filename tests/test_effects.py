"""Closed-form insert effects equal brute-force stitching and re-evaluation."""

from __future__ import annotations

import pytest
import torch
from conftest import data_for, make_sae, make_transcoder, related_pair

from sae_lens_stitch import stitch
from sae_lens_stitch.analysis.classify import FeatureCategory
from sae_lens_stitch.analysis.effects import (
    InsertEffectsSummary,
    auroc,
    insert_effects,
    proxy_agreement,
)
from sae_lens_stitch.errors import UnsupportedSAEError
from sae_lens_stitch.evaluation.metrics import evaluate


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "gated", "topk", "abstopk"])
def test_closed_form_equals_brute_force(arch: str) -> None:
    small, large = related_pair(arch, n_small=12, n_novel=6, d_in=16)
    x = data_for(large)
    eff = insert_effects(small, large, x, batch_size=64)
    base = evaluate(small, x)
    gen = torch.Generator().manual_seed(5)
    for i in torch.randperm(large.cfg.d_sae, generator=gen)[:6].tolist():
        brute = evaluate(stitch(small, large, [i]), x)
        scale = max(abs(base.mse.value), 1e-3)
        assert float(eff.delta_mse[i]) == pytest.approx(
            brute.mse.value - base.mse.value, abs=2e-5 * scale
        ), (arch, i)
        assert float(eff.delta_fvu[i]) == pytest.approx(
            brute.fvu.value - base.fvu.value, abs=2e-5 * scale
        )
        assert int(eff.firing_counts[i]) == round((brute.l0.value - base.l0.value) * brute.n_tokens)
    assert eff.summary.base_mse.value == pytest.approx(base.mse.value, rel=1e-6)


def test_subset_labels_and_summary() -> None:
    small, large = related_pair("standard", n_small=12, n_novel=6, d_in=16)
    with torch.no_grad():
        large.b_enc[0] = -1e6  # never fires
    x = data_for(large)
    eff = insert_effects(small, large, x, indices=[0, 5, 29, 25])
    assert eff.indices.tolist() == [0, 5, 29, 25]
    assert eff.labels[0] is FeatureCategory.DEAD and eff.delta_sse[0] == 0
    for lab, d in zip(eff.labels[1:], eff.delta_sse[1:].tolist(), strict=True):
        assert lab is (FeatureCategory.NOVEL if d < 0 else FeatureCategory.RECONSTRUCTION)
    s = eff.summary
    assert s.n_latents == 4 and s.n_dead == 1 and s.proxy.n_excluded_dead == 1
    assert InsertEffectsSummary.model_validate_json(s.model_dump_json()) == s
    full = insert_effects(small, large, x)
    assert torch.allclose(full.delta_sse[eff.indices], eff.delta_sse, rtol=1e-6, atol=1e-6)


def test_novel_latents_help_reconstruction_latents_hurt() -> None:
    small, large = related_pair("standard", n_small=12, n_novel=8, d_in=16)
    x = data_for(large, n=600)
    eff = insert_effects(small, large, x)
    cos_novel = eff.max_cosine < 0.7
    live = eff.firing_counts > 0
    # the proxy mostly agrees on this constructed pair
    assert eff.summary.proxy.accuracy.value > 0.6
    assert float(eff.delta_mse[cos_novel & live].mean()) < float(
        eff.delta_mse[~cos_novel & live].mean()
    )


def test_auroc_and_confusion_by_hand() -> None:
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    pos = torch.tensor([False, False, True, True])
    assert auroc(scores, pos) == pytest.approx(0.75)
    assert auroc(scores, torch.zeros(4, dtype=torch.bool)) is None
    agreement = proxy_agreement(
        max_cosine=torch.tensor([0.1, 0.9, 0.5, 0.95, 0.2]),
        delta_sse=torch.tensor([-1.0, 2.0, 3.0, -0.5, 0.0]),
        firing_counts=torch.tensor([3, 4, 5, 6, 0]),
        threshold=0.7,
    )
    assert agreement.n_latents == 4 and agreement.n_excluded_dead == 1
    assert agreement.both_novel == 1 and agreement.both_reconstruction == 1
    assert agreement.proxy_novel_behaviour_reconstruction == 1
    assert agreement.proxy_reconstruction_behaviour_novel == 1
    assert agreement.accuracy.value == pytest.approx(0.5)
    # reconstruction (positive) scores 0.9, 0.5 vs novel 0.1, 0.95 -> 2 of 4 pairs
    assert agreement.auroc is not None and agreement.auroc.value == pytest.approx(0.5)


def test_runtime_normalisation_refused() -> None:
    small = make_sae("standard", 8, 16, normalize_activations="layer_norm")
    large = make_sae("standard", 12, 16, seed=1, normalize_activations="layer_norm")
    with pytest.raises(UnsupportedSAEError, match="layer_norm"):
        insert_effects(small, large, torch.randn(10, 16))


def test_topk_donor_activation_fn_restored() -> None:
    small, large = related_pair("topk", n_small=8, n_novel=4, d_in=16)
    before = large.activation_fn
    insert_effects(small, large, data_for(large, n=50))
    assert large.activation_fn is before


@pytest.mark.parametrize("arch", ["transcoder", "skip_transcoder", "jumprelu_transcoder"])
def test_transcoders_with_targets(arch: str) -> None:
    from sae_lens_stitch.evaluation.curves import insertion_curve

    base, donor = make_transcoder(arch, 16, 1), make_transcoder(arch, 24, 2)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 12, generator=gen)
    y = torch.randn(200, 10, generator=gen)
    with pytest.raises(ValueError, match="targets"):
        evaluate(base, x)
    m = evaluate(base, x, targets=y, batch_size=64)
    with torch.no_grad():
        out = base(x)  # includes the skip connection for skip transcoders
    sse = float((y.double() - out.double()).pow(2).sum())
    assert m.mse.value == pytest.approx(sse / 200, rel=1e-5)
    assert m.fvu.value == pytest.approx(
        sse / float((y - y.mean(0)).double().pow(2).sum()), rel=1e-5
    )
    eff = insert_effects(base, donor, x, targets=y, batch_size=64)
    for i in (0, 7, 23):
        brute = evaluate(stitch(base, donor, [i]), x, targets=y)
        assert float(eff.delta_mse[i]) == pytest.approx(
            brute.mse.value - m.mse.value, abs=2e-5 * m.mse.value
        )
    curve = insertion_curve(base, donor, x, targets=y, indices=[0, 7, 23], order="index")
    whole = evaluate(stitch(base, donor, [0, 7, 23]), x, targets=y)
    assert curve.points[-1].mse == pytest.approx(whole.mse.value, rel=1e-5)
    assert curve.points[-1].l0 == pytest.approx(whole.l0.value)
