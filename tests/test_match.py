"""match_features / similar_pairs against a dense reference."""

from __future__ import annotations

import pytest
import torch
from conftest import make_sae

from sae_lens_stitch import InvalidWeightsError, match_features
from sae_lens_stitch.analysis.match import similar_pairs


def dense_cos(a_SD: torch.Tensor, b_TD: torch.Tensor) -> torch.Tensor:
    a = a_SD / a_SD.norm(dim=-1, keepdim=True)
    b = b_TD / b_TD.norm(dim=-1, keepdim=True)
    return a @ b.T


@pytest.mark.parametrize(
    ("n_source", "n_target", "k", "chunk_size"),
    [(37, 53, 1, 8), (64, 29, 3, 10), (100, 7, 7, 3), (50, 50, 5, None), (1, 13, 2, 4)],
)
@pytest.mark.parametrize("weights", ["decoder", "encoder"])
def test_matches_dense_reference(
    n_source: int, n_target: int, k: int, chunk_size: int | None, weights: str
) -> None:
    source = make_sae("standard", n_source, 12, seed=n_source)
    target = make_sae("standard", n_target, 12, seed=1000 + n_target)
    got = match_features(source, target, k=k, weights=weights, chunk_size=chunk_size)  # type: ignore[arg-type]
    if weights == "decoder":
        sims = dense_cos(source.W_dec.detach(), target.W_dec.detach())
    else:
        sims = dense_cos(source.W_enc.detach().T, target.W_enc.detach().T)
    ref = sims.topk(k, dim=1)
    assert got.values.shape == (n_source, k) and got.indices.shape == (n_source, k)
    torch.testing.assert_close(got.values, ref.values, atol=1e-5, rtol=0)
    # indices may differ only at ties: the similarity they point to must equal the reference value
    torch.testing.assert_close(sims.gather(1, got.indices), ref.values, atol=1e-5, rtol=0)


def test_identical_saes_match_themselves() -> None:
    sae = make_sae("standard", 40, 16, seed=3)
    got = match_features(sae, sae, chunk_size=7)
    torch.testing.assert_close(got.best_values, torch.ones(40), atol=1e-5, rtol=0)
    assert torch.equal(got.best_indices, torch.arange(40))


def test_block_size_does_not_change_result() -> None:
    a, b = make_sae("standard", 91, 16, seed=1), make_sae("standard", 67, 16, seed=2)
    ref = match_features(a, b, k=4)
    for chunk in (1, 5, 64, 1000):
        got = match_features(a, b, k=4, chunk_size=chunk)
        torch.testing.assert_close(got.values, ref.values, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", ["nan", "zero"])
@pytest.mark.parametrize("side", ["source", "target"])
def test_bad_rows_are_named(bad: str, side: str) -> None:
    a, b = make_sae("standard", 20, 8, seed=1), make_sae("standard", 30, 8, seed=2)
    victim = a if side == "source" else b
    with torch.no_grad():
        victim.W_dec[13] = float("nan") if bad == "nan" else 0.0
    before = victim.W_dec.detach().clone()
    with pytest.raises(InvalidWeightsError, match=r"\b13\b") as info:
        match_features(a, b, chunk_size=4)
    assert side in str(info.value)
    assert torch.equal(before.isnan(), victim.W_dec.detach().isnan())


def test_k_out_of_range() -> None:
    a, b = make_sae("standard", 5, 8), make_sae("standard", 6, 8, seed=1)
    with pytest.raises(ValueError, match="k must be"):
        match_features(a, b, k=7)


def test_similar_pairs_matches_dense_threshold() -> None:
    a, b = make_sae("standard", 45, 6, seed=5), make_sae("standard", 38, 6, seed=6)
    src, tgt, cos = similar_pairs(a, b, threshold=0.5, chunk_size=9)
    sims = dense_cos(a.W_dec.detach(), b.W_dec.detach())
    ref = (sims >= 0.5).nonzero()
    got = sorted(zip(src.tolist(), tgt.tolist(), strict=True))
    assert got == sorted(map(tuple, ref.tolist()))
    torch.testing.assert_close(cos, sims[src, tgt], atol=1e-6, rtol=0)
