"""Random SAE-Lens SAEs for the benchmarks: built on the meta device and assigned their weights
(no random init by SAE-Lens), with a realistic sparsity (about ``l0`` latents fire per token on
standard-normal activations) so that sparse work is as sparse as with trained SAEs."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE


def _bias_for_l0(d_sae: int, l0: float) -> float:
    """Encoder bias that makes a N(0, 1) pre-activation fire with probability l0 / d_sae."""
    p = min(max(l0 / d_sae, 1e-6), 0.5)
    return -float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1.0 - p)))


def standard_sae(
    W_enc_DL: torch.Tensor,
    W_dec_LD: torch.Tensor,
    b_enc_L: torch.Tensor,
    b_dec_D: torch.Tensor | None = None,
) -> SAE[Any]:
    """A StandardSAE (apply_b_dec_to_input on) holding exactly these tensors (no copies)."""
    from sae_lens.saes import StandardSAE, StandardSAEConfig

    d_in, d_sae = W_enc_DL.shape
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, device="meta"))
    state = {
        "W_enc": W_enc_DL,
        "W_dec": W_dec_LD,
        "b_enc": b_enc_L,
        "b_dec": torch.zeros(d_in) if b_dec_D is None else b_dec_D,
    }
    sae.load_state_dict(state, assign=True)
    sae.cfg.device = "cpu"
    return sae


def sparse_sae(d_sae: int, d_in: int, *, seed: int, l0: float = 64.0) -> SAE[Any]:
    """A random StandardSAE whose encoder columns have unit expected norm and whose bias makes
    about ``l0`` latents fire per standard-normal token."""
    gen = torch.Generator().manual_seed(seed)
    W_enc_DL = torch.randn(d_in, d_sae, generator=gen) / d_in**0.5
    W_dec_LD = torch.randn(d_sae, d_in, generator=gen) / d_in**0.5
    b_enc_L = torch.full((d_sae,), _bias_for_l0(d_sae, l0))
    return standard_sae(W_enc_DL, W_dec_LD, b_enc_L, 0.01 * torch.randn(d_in, generator=gen))


def related_pair(
    n_small: int, d_in: int, *, children: int = 2, n_novel: int = 0, seed: int = 0, l0: float = 64.0
) -> tuple[SAE[Any], SAE[Any], list[tuple[list[int], list[int]]]]:
    """A small SAE and a large one in which small latent i has ``children`` noisy copies
    (large latents ``children*i ...``), plus ``n_novel`` random large latents. Returns the two
    SAEs and the planted families as (small_indices, large_indices)."""
    small = sparse_sae(n_small, d_in, seed=seed, l0=l0)
    gen = torch.Generator().manual_seed(seed + 1)
    n_large = n_small * children + n_novel
    W_enc_DL = torch.randn(d_in, n_large, generator=gen) / d_in**0.5
    W_dec_LD = torch.randn(n_large, d_in, generator=gen) / d_in**0.5
    n_copy = n_small * children
    W_enc_DL[:, :n_copy] = (
        small.W_enc.detach().repeat_interleave(children, dim=1) + 0.3 * W_enc_DL[:, :n_copy]
    )
    W_dec_LD[:n_copy] = (
        small.W_dec.detach().repeat_interleave(children, dim=0) + 0.3 * W_dec_LD[:n_copy]
    )
    b_enc_L = torch.full((n_large,), _bias_for_l0(n_large, l0))
    large = standard_sae(W_enc_DL, W_dec_LD, b_enc_L, small.b_dec.detach().clone())
    families = [([i], list(range(children * i, children * (i + 1)))) for i in range(n_small)]
    return small, large, families
