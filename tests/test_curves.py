"""Incremental curves equal a full recomputation (build the SAE with stitch / swap, evaluate)."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import data_for, related_pair

from sae_lens_stitch import classify_features, feature_families, frankenstein, stitch, swap
from sae_lens_stitch.evaluation.curves import Curve, frankenstein_plane, insertion_curve, swap_curve
from sae_lens_stitch.evaluation.metrics import evaluate


def close(point, metrics) -> None:
    assert point.mse == pytest.approx(metrics.mse.value, rel=1e-4, abs=1e-6)
    assert point.fvu == pytest.approx(metrics.fvu.value, rel=1e-4, abs=1e-6)
    assert point.l0 == pytest.approx(metrics.l0.value, abs=1e-9)
    assert point.n_latents == metrics.d_sae


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "gated"])
@pytest.mark.parametrize("category", ["novel", "reconstruction"])
def test_insertion_curve_matches_recomputation(arch: str, category: str) -> None:
    small, large = related_pair(arch, n_small=10, n_novel=6, d_in=16)
    x = data_for(large)
    curve = insertion_curve(small, large, x, category=category, batch_size=64)  # type: ignore[arg-type]
    assert curve.exact and curve.kind == f"insert_{category}"
    inserted = [int(p.label[2:]) for p in curve.points[1:]]
    close(curve.points[0], evaluate(small, x))
    for step in sorted({1, len(inserted) // 2, len(inserted)}):
        close(curve.points[step], evaluate(stitch(small, large, inserted[:step]), x))
    if category == "novel":
        # ordered by effect: the first step is the best single insertion
        assert curve.points[1].mse <= curve.points[0].mse


def test_index_and_explicit_order() -> None:
    small, large = related_pair("standard", n_small=8, n_novel=4, d_in=16)
    x = data_for(large)
    curve = insertion_curve(small, large, x, indices=[3, 19, 7], order="index")
    assert [p.label for p in curve.points] == ["base", "+L3", "+L19", "+L7"]
    curve2 = insertion_curve(small, large, x, indices=[3, 19, 7], order=[2, 0, 1])
    assert [p.label for p in curve2.points[1:]] == ["+L7", "+L3", "+L19"]
    assert curve2.points[-1].mse == pytest.approx(curve.points[-1].mse, rel=1e-5)
    with pytest.raises(ValueError, match="order"):
        insertion_curve(small, large, x, indices=[3, 19], order=[0, 0])


def test_topk_curve_exact_up_to_k() -> None:
    small, large = related_pair("topk", n_small=8, n_novel=6, d_in=16, k=3)
    x = data_for(large)
    curve = insertion_curve(small, large, x, indices=[20, 17, 21], order="index")
    assert curve.exact
    for step in (1, 3):
        close(curve.points[step], evaluate(stitch(small, large, [20, 17, 21][:step]), x))
    longer = insertion_curve(small, large, x, indices=[16, 17, 18, 19, 20], order="index")
    assert not longer.exact


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "gated"])
def test_swap_curve_matches_recomputation(arch: str) -> None:
    small, large = related_pair(arch, n_small=10, n_novel=5, d_in=16)
    x = data_for(large)
    fams = feature_families(small, large)
    curve = swap_curve(small, large, x, batch_size=50)
    assert curve.kind == "swap_families" and curve.exact
    assert len(curve.points) == len(fams) + 1
    assert curve.monotone is not None and curve.n_increases is not None
    for step in sorted({1, len(fams) // 2, len(fams)}):
        close(curve.points[step], evaluate(swap(small, large, fams[:step]), x))
    by_effect = swap_curve(small, large, x, order="effect", include_novel=True)
    assert by_effect.points[1].mse <= by_effect.points[0].mse
    assert len(by_effect.points) > len(curve.points)
    # the end point is the same SAE whatever the order
    assert by_effect.points[len(fams)].mse == pytest.approx(curve.points[-1].mse, rel=1e-4)


def test_monotone_flag() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=2, d_in=16)
    x = data_for(large)
    curve = swap_curve(small, large, x)
    mses = [p.mse for p in curve.points]
    tol = 1e-6 * max(mses) + 1e-12
    rises = sum(b > a + tol for a, b in itertools.pairwise(mses))
    assert curve.n_increases == rises
    assert curve.monotone == (rises == 0)


def test_curve_json_round_trip() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=3, d_in=16)
    curve = swap_curve(small, large, data_for(large, n=80))
    assert Curve.model_validate_json(curve.model_dump_json()) == curve


def test_frankenstein_plane() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=4, d_in=16)
    _, larger = related_pair("standard", n_small=16, n_novel=6, d_in=16, seed=3)
    x = data_for(large, n=120)
    plane = frankenstein_plane([small, large, larger], x)
    kinds = [p.kind for p in plane.points]
    assert kinds == ["trained"] * 3 + ["frankenstein"] * 2
    assert plane.points[0].fvu == pytest.approx(evaluate(small, x).fvu.value, rel=1e-6)
    assert plane.points[3].d_sae >= small.cfg.d_sae
    # the last Frankenstein point is frankenstein() over the same data, evaluated
    final = frankenstein([small, large, larger], activations=x)
    assert plane.points[-1].d_sae == final.cfg.d_sae
    assert plane.points[-1].fvu == pytest.approx(evaluate(final, x).fvu.value, rel=1e-6)
    assert plane.points[-1].l0 == pytest.approx(evaluate(final, x).l0.value, rel=1e-6)


def test_novel_first_swap_curve_matches_recomputation() -> None:
    small, large = related_pair("standard", n_small=8, n_novel=4, d_in=16)
    x = data_for(large)
    fams = feature_families(small, large)
    novel = classify_features(small, large, activations=x).novel_indices.tolist()
    curve = swap_curve(small, large, x, novel_first=True)
    assert len(curve.points) == 1 + len(novel) + len(fams)
    assert curve.points[len(novel)].label.endswith("(novel)")
    assert curve.order.startswith("novel latents")
    close(curve.points[len(novel)], evaluate(stitch(small, large, novel), x))
    end = swap(stitch(small, large, novel), large, fams)
    close(curve.points[-1], evaluate(end, x))


def _kill(large, latents: list[int]) -> None:
    """Make ``latents`` of ``large`` never fire (very negative encoder bias)."""
    with torch.no_grad():
        large.b_enc[latents] = -1e6


def test_dead_novel_latents_left_out_of_curves() -> None:
    small, large = related_pair("standard", n_small=8, n_novel=5, d_in=16)
    x = data_for(large)
    novel_all = classify_features(small, large).novel_indices.tolist()
    dead = novel_all[1:3]
    _kill(large, dead)
    live = classify_features(small, large, activations=x).novel_indices.tolist()
    assert not set(dead) & set(live) and live
    curve = insertion_curve(small, large, x, category="novel", order="index")
    assert [int(p.label[2:]) for p in curve.points[1:]] == live
    close(curve.points[-1], evaluate(stitch(small, large, live), x))
    fams = feature_families(small, large)
    swapped = swap_curve(small, large, x, include_novel=True)
    assert [p.label for p in swapped.points[len(fams) + 1 :]] == [f"+L{i} (novel)" for i in live]
    close(swapped.points[-1], evaluate(stitch(swap(small, large, fams), large, live), x))


def test_removed_activations_collected_with_the_residual() -> None:
    from sae_lens_stitch.evaluation.curves import _Residual
    from sae_lens_stitch.evaluation.sparse_cache import sparse_activations

    small, large = related_pair("jumprelu", n_small=10, n_novel=4, d_in=16)
    x = data_for(large)
    for idx in (torch.tensor([7, 2, 5]), torch.arange(10).flip(0)):
        got = _Residual(small, x, None, batch_size=64, show_progress=False, collect=idx).removed
        want = sparse_activations(small, x, idx, batch_size=50)
        assert got is not None
        assert torch.equal(got.ptr, want.ptr)
        assert torch.equal(got.tokens, want.tokens)
        torch.testing.assert_close(got.values, want.values)
        torch.testing.assert_close(got.rows_PD, want.rows_PD)
        sub = got.take(torch.tensor([2, 0]))
        for q, p in enumerate((2, 0)):
            assert torch.equal(sub.of(q)[0], got.of(p)[0])
            assert torch.equal(sub.of(q)[1], got.of(p)[1])


def test_curve_restores_thread_count() -> None:
    small, large = related_pair("standard", n_small=6, n_novel=2, d_in=16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        swap_curve(small, large, data_for(large, n=60), order="effect")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
