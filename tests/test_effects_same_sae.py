"""insert_effects never modifies the donor, so the base may be the donor itself."""

from __future__ import annotations

import torch
from conftest import make_sae

from sae_lens_stitch import evaluate, insert_effects


def test_topk_base_is_donor() -> None:
    sae = make_sae("topk", 24, 16, seed=3, k=4)
    x = torch.randn(200, 16, generator=torch.Generator().manual_seed(0)) * 2
    before = sae.activation_fn
    effects = insert_effects(sae, sae, x)
    assert sae.activation_fn is before
    expected = evaluate(sae, x).mse.value
    assert abs(effects.summary.base_mse.value - expected) <= 1e-6 * max(1.0, expected)
