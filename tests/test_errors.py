"""Bad input raises a typed error naming the value, and leaves the inputs untouched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_sae
from sae_lens import SAE
from sae_lens.saes import StandardSAE, StandardSAEConfig

from sae_lens_stitch import (
    FeatureFamily,
    IncompatibleSAEsError,
    InvalidIndicesError,
    InvalidWeightsError,
    UnsupportedArchitectureError,
    check_indices,
    classify_features,
    feature_families,
    frankenstein,
    remove_features,
    stitch,
    swap,
)


def snapshot(*saes: SAE[Any]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in s.state_dict().items()} for s in saes]


def assert_same(saes: tuple[SAE[Any], ...], snaps: list[dict[str, torch.Tensor]]) -> None:
    for sae, snap in zip(saes, snaps, strict=True):
        for k, v in sae.state_dict().items():
            assert torch.equal(v.nan_to_num(123.0), snap[k].nan_to_num(123.0)), k


MISMATCHES: list[tuple[str, dict[str, Any], str, str]] = [
    ("d_in", {"d_in": 12}, "16", "12"),
    (
        "hook_name",
        {"hook_name": "blocks.3.hook_resid_pre"},
        "blocks.0.hook_resid_pre",
        "blocks.3.hook_resid_pre",
    ),
    ("model_name", {"model_name": "other-model"}, "tiny-model", "other-model"),
    ("normalize_activations", {"normalize_activations": "layer_norm"}, "none", "layer_norm"),
    ("dtype", {"dtype": "float64"}, "float32", "float64"),
]


@pytest.mark.parametrize(("field", "kwargs", "a", "b"), MISMATCHES)
@pytest.mark.parametrize("op", ["stitch", "swap", "classify", "families", "frankenstein"])
def test_incompatible_saes(field: str, kwargs: dict[str, Any], a: str, b: str, op: str) -> None:
    base = make_sae("standard", 8, 16, seed=1)
    donor = make_sae("standard", 16, **{"d_in": 16, **kwargs}, seed=2)
    snaps = snapshot(base, donor)
    calls: dict[str, Callable[[], object]] = {
        "stitch": lambda: stitch(base, donor, [0]),
        "swap": lambda: swap(base, donor),
        "classify": lambda: classify_features(base, donor),
        "families": lambda: feature_families(base, donor),
        "frankenstein": lambda: frankenstein([base, donor]),
    }
    with pytest.raises(IncompatibleSAEsError) as info:
        calls[op]()
    assert isinstance(info.value, ValueError)
    assert info.value.field == field
    assert a in str(info.value) and b in str(info.value)
    assert_same((base, donor), snaps)


def test_reshape_mismatch() -> None:
    base = make_sae(
        "standard", 8, 16, hook_name="blocks.0.attn.hook_z", reshape_activations="hook_z"
    )
    donor = make_sae("standard", 16, 16, hook_name="blocks.0.attn.hook_z", seed=3)
    with pytest.raises(IncompatibleSAEsError, match="reshape_activations"):
        stitch(base, donor, [1])


def test_architecture_mismatch() -> None:
    base, donor = make_sae("standard", 8, 16), make_sae("jumprelu", 16, 16, seed=1)
    with pytest.raises(IncompatibleSAEsError, match=r"architecture.*standard.*jumprelu"):
        stitch(base, donor, [1])


class _UnknownConfig(StandardSAEConfig):
    @classmethod
    def architecture(cls) -> str:
        return "my_new_arch"


def test_unsupported_architecture_is_named() -> None:
    sae = StandardSAE(_UnknownConfig(d_in=16, d_sae=8))
    with pytest.raises(UnsupportedArchitectureError, match="my_new_arch"):
        remove_features(sae, [0])


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        ([0, 16], r"out of range.*\[16\]"),
        ([-1], r"out of range.*\[-1\]"),
        ([3, 5, 3], r"duplicate.*\[3\]"),
        ([1.5], r"integers.*1\.5"),
        ([1.0], r"integers"),
        ([True], r"integers.*True"),
        (["2"], r"integers.*'2'"),
        (torch.tensor([0.0, 1.0]), r"integers.*float"),
        (torch.tensor([True, False]), r"integers.*bool"),
    ],
)
def test_bad_indices(indices: Any, message: str) -> None:
    base, donor = make_sae("standard", 8, 16), make_sae("standard", 16, 16, seed=1)
    snaps = snapshot(base, donor)
    with pytest.raises(InvalidIndicesError, match=message):
        stitch(base, donor, indices)
    with pytest.raises(InvalidIndicesError):
        remove_features(donor, indices)
    assert_same((base, donor), snaps)


def test_numpy_and_tensor_indices_accepted() -> None:
    assert check_indices(np.array([3, 1]), 5).tolist() == [3, 1]
    assert check_indices(torch.tensor([4, 0]), 5).tolist() == [4, 0]
    assert check_indices(range(3), 5).tolist() == [0, 1, 2]


def test_nan_weights_are_named() -> None:
    base, donor = make_sae("standard", 8, 16), make_sae("standard", 16, 16, seed=1)
    with torch.no_grad():
        donor.b_enc[3] = float("nan")
    snaps = snapshot(base, donor)
    with pytest.raises(InvalidWeightsError, match=r"donor.*b_enc"):
        stitch(base, donor, [0, 1])
    assert_same((base, donor), snaps)


def test_overlapping_families_rejected() -> None:
    base, donor = make_sae("standard", 8, 16), make_sae("standard", 16, 16, seed=1)
    fams = [
        FeatureFamily(small_indices=[0], large_indices=[1, 2], max_cosine=0.9),
        FeatureFamily(small_indices=[1], large_indices=[2], max_cosine=0.9),
    ]
    with pytest.raises(InvalidIndicesError, match=r"duplicate.*\[2\].*overlap"):
        swap(base, donor, fams)


def test_frankenstein_needs_smallest_first() -> None:
    a, b = make_sae("standard", 8, 16), make_sae("standard", 16, 16, seed=1)
    with pytest.raises(ValueError, match=r"smallest first.*\[16, 8\]"):
        frankenstein([b, a])
    with pytest.raises(ValueError, match="at least two"):
        frankenstein([a])


def test_removing_every_latent_is_refused() -> None:
    sae = make_sae("standard", 6, 8)
    with pytest.raises(InvalidIndicesError, match="all 6 latents"):
        remove_features(sae, range(6))


def test_classify_names_the_sae_with_bad_rows() -> None:
    small, large = make_sae("standard", 8, 16), make_sae("standard", 16, 16, seed=1)
    with torch.no_grad():
        large.W_dec[5] = float("nan")
    with pytest.raises(InvalidWeightsError, match=r"large SAE W_dec rows.*\[5\]"):
        classify_features(small, large)
    with pytest.raises(InvalidWeightsError, match=r"large SAE W_dec rows.*\[5\]"):
        feature_families(small, large)
