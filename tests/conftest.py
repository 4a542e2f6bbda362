"""Shared fixtures: small SAE-Lens SAEs built in the test, never the network."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes import (
    AbsTopKSAE,
    AbsTopKSAEConfig,
    GatedSAE,
    GatedSAEConfig,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    JumpReLUTranscoder,
    JumpReLUTranscoderConfig,
    SkipTranscoder,
    SkipTranscoderConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    Transcoder,
    TranscoderConfig,
)

os.environ.setdefault("SAE_STITCH_NO_PROGRESS", "1")

ARCHS: dict[str, tuple[type[SAE[Any]], type[Any]]] = {
    "standard": (StandardSAE, StandardSAEConfig),
    "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig),
    "gated": (GatedSAE, GatedSAEConfig),
    "topk": (TopKSAE, TopKSAEConfig),
    "abstopk": (AbsTopKSAE, AbsTopKSAEConfig),
}
EXACT_ARCHS = ("standard", "jumprelu", "gated")
TRANSCODER_ARCHS: dict[str, tuple[type[SAE[Any]], type[Any]]] = {
    "transcoder": (Transcoder, TranscoderConfig),
    "skip_transcoder": (SkipTranscoder, SkipTranscoderConfig),
    "jumprelu_transcoder": (JumpReLUTranscoder, JumpReLUTranscoderConfig),
}


def make_sae(
    architecture: str = "standard",
    d_sae: int = 32,
    d_in: int = 16,
    *,
    seed: int = 0,
    apply_b_dec_to_input: bool = True,
    hook_name: str = "blocks.0.hook_resid_pre",
    model_name: str = "tiny-model",
    noise: float = 0.2,
    dtype: str = "float32",
    **cfg_kwargs: Any,
) -> SAE[Any]:
    """A random SAE of an SAE-Lens architecture, with every parameter perturbed so that
    biases, thresholds and b_dec are non-trivial and differ between seeds."""
    cls, cfg_cls = ARCHS[architecture]
    if architecture in ("topk", "abstopk"):
        cfg_kwargs.setdefault("k", 4)
    cfg = cfg_cls(
        d_in=d_in,
        d_sae=d_sae,
        apply_b_dec_to_input=apply_b_dec_to_input,
        dtype=dtype,
        **cfg_kwargs,
    )
    cfg.metadata.hook_name = hook_name
    cfg.metadata.model_name = model_name
    gen = torch.Generator().manual_seed(seed)
    sae = cls(cfg)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen, dtype=p.dtype)
                * (0.3 if name.startswith("W") else noise)
            )
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(sae.threshold.abs() * 0.1)
    return sae


@pytest.fixture
def sae_factory():
    """The :func:`make_sae` builder."""
    return make_sae


def related_pair(
    architecture: str = "standard",
    n_small: int = 24,
    n_novel: int = 10,
    children: int = 2,
    d_in: int = 32,
    seed: int = 0,
    **kwargs: Any,
) -> tuple[SAE[Any], SAE[Any]]:
    """A small SAE and a larger one whose decoder rows are, for each small latent, ``children``
    noisy copies (reconstruction latents) plus ``n_novel`` random directions (novel latents)."""
    small = make_sae(architecture, n_small, d_in, seed=seed, **kwargs)
    large = make_sae(architecture, n_small * children + n_novel, d_in, seed=seed + 1, **kwargs)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        rows = small.W_dec.repeat_interleave(children, dim=0)
        rows = (
            rows
            + 0.05
            * rows.norm(dim=-1, keepdim=True)
            * torch.randn(rows.shape, generator=gen)
            / d_in**0.5
        )
        large.W_dec[: n_small * children] = rows
    return small, large


def make_transcoder(architecture: str, d_sae: int, seed: int) -> SAE[Any]:
    """A random SAE-Lens transcoder (d_in 12, d_out 10), every parameter drawn from ``seed``
    and thresholds (JumpReLU) made non-negative."""
    cls, cfg_cls = TRANSCODER_ARCHS[architecture]
    sae = cls(cfg_cls(d_in=12, d_sae=d_sae, d_out=10, apply_b_dec_to_input=False))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if hasattr(sae, "threshold"):
            sae.threshold.abs_()
    return sae


def data_for(large: SAE[Any], n: int = 300, seed: int = 0) -> torch.Tensor:
    """Activations built from the large SAE's decoder rows (sparse mixtures) plus noise."""
    gen = torch.Generator().manual_seed(seed)
    coef = torch.rand(n, large.cfg.d_sae, generator=gen) * (
        torch.rand(n, large.cfg.d_sae, generator=gen) < 0.08
    )
    with torch.no_grad():
        return coef @ large.W_dec + 0.05 * torch.randn(n, large.cfg.d_in, generator=gen)
