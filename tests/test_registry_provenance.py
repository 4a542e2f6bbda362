"""The architecture registry is open to third parties; provenance is stable JSON."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import make_sae
from sae_lens import SAE
from sae_lens.registry import register_sae_class
from sae_lens.saes import StandardSAE, StandardSAEConfig

from sae_lens_stitch import (
    ArchitectureRule,
    Provenance,
    get_provenance,
    register_architecture,
    registered_architectures,
    stitch,
)
from sae_lens_stitch.provenance import has_provenance


class ScaledConfig(StandardSAEConfig):
    @classmethod
    def architecture(cls) -> str:
        return "test_scaled"


class ScaledSAE(StandardSAE):
    """A third-party architecture with an extra per-latent scale on its activations."""

    def initialize_weights(self) -> None:
        super().initialize_weights()
        self.scale = torch.nn.Parameter(torch.ones(self.cfg.d_sae))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return super().encode(x) * self.scale


def test_third_party_architecture_is_one_registration() -> None:
    register_sae_class("test_scaled", ScaledSAE, ScaledConfig)
    register_architecture(
        "test_scaled", ArchitectureRule(per_latent={"W_enc": 1, "b_enc": 0, "W_dec": 0, "scale": 0})
    )
    assert "test_scaled" in registered_architectures()
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("test_scaled", ArchitectureRule(per_latent={}))

    def build(seed: int, d_sae: int) -> SAE[Any]:
        sae = ScaledSAE(ScaledConfig(d_in=8, d_sae=d_sae))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in sae.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))
        return sae

    base, donor = build(1, 6), build(2, 10)
    out = stitch(base, donor, [9, 2])
    assert isinstance(out, ScaledSAE)
    x = torch.randn(50, 8)
    torch.testing.assert_close(
        out.encode(x)[:, 6:], donor.encode(x)[:, [9, 2]], atol=1e-5, rtol=1e-5
    )


def test_provenance_round_trip_and_compact_storage() -> None:
    base, donor = make_sae("standard", 10, 8), make_sae("standard", 20, 8, seed=1)
    out = stitch(base, donor, [4, 5, 6, 19])
    prov = get_provenance(out)
    assert len(prov.latents) == 14
    stored = out.cfg.metadata["sae_lens_stitch"]
    # consecutive indices from one source collapse into runs
    assert [run[1:] for run in stored["latent_runs"]] == [[0, 10], [4, 3], [19, 1]]
    assert Provenance.model_validate_json(prov.model_dump_json()) == prov
    assert prov.model_dump_json() == get_provenance(out).model_dump_json()
    assert prov.counts_by_source() == {
        next(iter(get_provenance(base).sources)): 10,
        next(iter(get_provenance(donor).sources)): 4,
    }
    assert prov.operations[0].operation == "stitch" and prov.operations[0].package_version


def test_unmodified_sae_is_its_own_source() -> None:
    sae = make_sae("standard", 5, 8)
    assert not has_provenance(sae)
    prov = get_provenance(sae)
    ((key, src),) = prov.sources.items()
    assert key.startswith("sha256:") and src.d_sae == 5 and src.architecture == "standard"
    assert [o.index for o in prov.latents] == list(range(5))
    # the hash identifies the weights
    other = make_sae("standard", 5, 8, seed=9)
    assert next(iter(get_provenance(other).sources)) != key


def test_content_hash_cache_follows_in_place_changes() -> None:
    from sae_lens_stitch.provenance import content_hash

    sae = make_sae("standard", 5, 8)
    first = content_hash(sae)
    assert content_hash(sae) == first
    original = float(sae.W_dec[0, 0])
    with torch.no_grad():
        sae.W_dec[0, 0] += 1.0
    assert content_hash(sae) != first
    with torch.no_grad():
        sae.W_dec[0, 0] = original
    assert content_hash(sae) == first


def test_content_hash_cache_follows_replaced_tensors() -> None:
    from sae_lens_stitch.provenance import content_hash

    sae = make_sae("standard", 5, 8)
    first = content_hash(sae)
    replacement = sae.W_dec.detach().clone()
    replacement[0, 0] += 1.0
    sae.load_state_dict({**sae.state_dict(), "W_dec": replacement}, assign=True)
    second = content_hash(sae)
    assert second != first
    with torch.no_grad():
        sae.W_enc.data = sae.W_enc.data.clone() * 2
    assert content_hash(sae) != second
