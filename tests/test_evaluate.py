"""evaluate / firing_counts / dead_latents / evaluate_with_model against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import make_sae

from sae_lens_stitch.evaluation.metrics import (
    Metrics,
    dead_latents,
    evaluate,
    evaluate_with_model,
    firing_counts,
)


def acts(n: int = 200, d_in: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=gen) * 2 + 0.5


def by_hand(sae, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        f = sae.encode(x)
        x_hat = sae.decode(f)
    x64, xh64 = x.double(), x_hat.double()
    sse = float((x64 - xh64).pow(2).sum())
    var = float((x64 - x64.mean(0)).pow(2).sum())
    fires = (f != 0).sum(0)
    return {
        "mse": sse / x.shape[0],
        "fvu": sse / var,
        "l0": float((f != 0).sum()) / x.shape[0],
        "n_dead": float((fires == 0).sum()),
        "n_dense": float((fires > 0.1 * x.shape[0]).sum()),
    }


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "topk", "gated"])
def test_metrics_match_hand_computation(arch: str) -> None:
    sae = make_sae(arch, 32, 16, seed=3)
    x = acts()
    m = evaluate(sae, x, batch_size=37)
    ref = by_hand(sae, x)
    assert m.mse.value == pytest.approx(ref["mse"], rel=1e-5)
    assert m.fvu.value == pytest.approx(ref["fvu"], rel=1e-5)
    assert m.explained_variance.value == pytest.approx(1 - ref["fvu"], rel=1e-5, abs=1e-6)
    assert m.l0.value == pytest.approx(ref["l0"])
    assert m.n_dead.value == ref["n_dead"]
    assert m.n_dense.value == ref["n_dense"]
    assert (m.n_tokens, m.d_sae) == (200, 32)
    assert m.mse.better == "lower" and m.explained_variance.better == "higher"


def test_tiny_example_exact_values() -> None:
    # a 2-d identity SAE with ReLU: reconstructs positive parts only
    sae = make_sae("standard", 2, 2, seed=0, apply_b_dec_to_input=False)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.eye(2))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0], [-1.0, 3.0], [0.0, 0.0]])
    m = evaluate(sae, x)
    # errors: (0,-1), (0,0), (-1,0), (0,0) -> SSE 2, MSE 0.5
    assert m.mse.value == pytest.approx(0.5)
    # mean (0.5, 0.5); variance sum = (0.25+2.25+2.25+0.25) + (2.25+0.25+6.25+0.25) = 14
    assert m.fvu.value == pytest.approx(2 / 14)
    assert m.l0.value == pytest.approx(3 / 4)
    assert m.n_dead.value == 0
    assert m.n_dense.value == 2


def test_iterable_and_nd_inputs_agree() -> None:
    sae = make_sae("standard", 24, 16, seed=1)
    x = acts(120)
    whole = evaluate(sae, x)
    batched = evaluate(sae, (b for b in x.split(50)))
    shaped = evaluate(sae, x.reshape(4, 30, 16))
    for other in (batched, shaped):
        assert other.mse.value == pytest.approx(whole.mse.value, rel=1e-6)
        assert other.fvu.value == pytest.approx(whole.fvu.value, rel=1e-6)
        assert other.l0.value == whole.l0.value


def test_firing_counts_and_dead() -> None:
    sae = make_sae("standard", 16, 16, seed=2)
    with torch.no_grad():
        sae.b_enc[3] = -1e6  # never fires
    x = acts(100)
    counts = firing_counts(sae, x, batch_size=33)
    with torch.no_grad():
        ref = (sae.encode(x) != 0).sum(0)
    assert torch.equal(counts, ref)
    dead = dead_latents(sae, x)
    assert dead[3] and dead.dtype == torch.bool
    assert int(evaluate(sae, x).n_dead.value) == int(dead.sum())


def test_bad_inputs() -> None:
    sae = make_sae("standard", 8, 16)
    with pytest.raises(ValueError, match="d_in=16"):
        evaluate(sae, torch.zeros(5, 15))
    with pytest.raises(ValueError, match="empty"):
        evaluate(sae, [])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(sae, acts(), batch_size=0)


def test_metrics_json_round_trip() -> None:
    m = evaluate(make_sae("standard", 8, 16), acts(50))
    again = Metrics.model_validate_json(m.model_dump_json())
    assert again == m
    assert '"better":"lower"' in m.model_dump_json()


def tiny_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=1, d_model=16, n_ctx=12, d_head=4, n_heads=4, d_vocab=23, act_fn="relu", seed=0
    )
    return HookedTransformer(cfg)


def test_evaluate_with_model_on_tiny_transformer() -> None:
    torch.manual_seed(0)
    model = tiny_model()
    sae = make_sae("standard", 32, 16, hook_name="blocks.0.hook_resid_post")
    tokens = torch.randint(0, 23, (5, 12), generator=torch.Generator().manual_seed(1))
    mm = evaluate_with_model(sae, model, tokens, batch_size=2)
    with torch.no_grad():
        clean = float(model(tokens, return_type="loss"))

        def splice(act, hook):
            return sae.decode(sae.encode(act))

        def zero(act, hook):
            return torch.zeros_like(act)

        spliced = float(
            model.run_with_hooks(
                tokens, return_type="loss", fwd_hooks=[("blocks.0.hook_resid_post", splice)]
            )
        )
        ablated = float(
            model.run_with_hooks(
                tokens, return_type="loss", fwd_hooks=[("blocks.0.hook_resid_post", zero)]
            )
        )
    assert mm.ce_loss_clean.value == pytest.approx(clean, rel=1e-5)
    assert mm.ce_loss_with_sae.value == pytest.approx(spliced, rel=1e-5)
    assert mm.ce_loss_zero_ablation.value == pytest.approx(ablated, rel=1e-5)
    assert mm.ce_loss_recovered.value == pytest.approx(
        (ablated - spliced) / (ablated - clean), rel=1e-4
    )
    assert mm.kl_div_with_sae.value > 0 and math.isfinite(mm.kl_div_zero_ablation.value)
    assert mm.n_tokens == 5 * 11
    assert mm.ce_loss_recovered.better == "higher"
    with pytest.raises(ValueError, match="hook"):
        evaluate_with_model(
            make_sae("standard", 8, 16, hook_name="blocks.9.nothing"), model, tokens
        )


def test_dead_latents_classified_and_not_stitched() -> None:
    from conftest import related_pair

    from sae_lens_stitch import classify_features, get_provenance, stitch
    from sae_lens_stitch.analysis.classify import FeatureCategory
    from sae_lens_stitch.io.sparsity import set_log_sparsity

    small, large = related_pair("standard", n_small=8, n_novel=6, d_in=16)
    novel_before = classify_features(small, large).novel_indices.tolist()
    dead = [novel_before[0], 0]
    with torch.no_grad():
        large.b_enc[dead] = -1e6
    x = acts(100)
    c = classify_features(small, large, activations=x)
    assert all(c.categories[i] is FeatureCategory.DEAD for i in dead)
    assert c.summary.n_dead == len(dead)
    assert set(c.novel_indices.tolist()) == set(novel_before) - set(dead)
    stitched = stitch(small, large, activations=x)
    assert stitched.cfg.d_sae == small.cfg.d_sae + len(novel_before) - 1
    # only the dead latent that would otherwise have been inserted (novel_before[0]) counts;
    # latent 0 is dead too but is a reconstruction latent, never a candidate
    assert get_provenance(stitched).operations[-1].details["n_dead_excluded"] == 1
    # without data: the stored sparsity marks never-firing latents
    log_sparsity = torch.full((large.cfg.d_sae,), -2.0)
    log_sparsity[dead] = -10.0
    set_log_sparsity(large, log_sparsity)
    c2 = classify_features(small, large)
    assert c2.summary.n_dead == 2
    assert classify_features(small, large, use_stored_sparsity=False).summary.n_dead == 0


def test_package_level_evaluate_is_the_function_after_submodule_imports() -> None:
    import sae_lens_stitch
    import sae_lens_stitch.evaluation.curves  # imports the evaluation module
    from sae_lens_stitch import evaluate as ev

    sae = make_sae("standard", 8, 16)
    x = acts(20)
    assert ev(sae, x) == evaluate(sae, x)
    assert sae_lens_stitch.evaluate(sae, x).n_tokens == 20
