"""Per-latent log10 firing rates ("sparsity") that travel with an SAE.

SAE-Lens returns a sparsity tensor next to a pretrained SAE (``sparsity.safetensors``, key
``"sparsity"``) but does not keep it on the SAE object. This module keeps it in a weak-keyed
registry so that :func:`sae_lens_stitch.surgery.operations.join` can carry it into stitched SAEs and
:func:`sae_lens_stitch.io.save.save_sae` can write it back.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from sae_lens.constants import SPARSITY_FILENAME as SPARSITY_FILENAME  # re-exported

if TYPE_CHECKING:
    from sae_lens import SAE

SPARSITY_KEY = "sparsity"

_LOG_SPARSITY: weakref.WeakKeyDictionary[Any, torch.Tensor] = weakref.WeakKeyDictionary()


def get_log_sparsity(sae: SAE[Any]) -> torch.Tensor | None:
    """The SAE's log10 firing rate per latent (shape ``[d_sae]``, on CPU), or None if unknown
    or stale (a tensor whose length no longer matches ``d_sae``)."""
    log_sparsity_L = _LOG_SPARSITY.get(sae)
    if log_sparsity_L is None or log_sparsity_L.shape != (sae.cfg.d_sae,):
        return None
    return log_sparsity_L


def set_log_sparsity(sae: SAE[Any], log_sparsity: torch.Tensor | None) -> None:
    """Attach (or with None, forget) the SAE's log10 firing rates, one per latent."""
    if log_sparsity is None:
        _LOG_SPARSITY.pop(sae, None)
        return
    log_sparsity_L = log_sparsity.detach().to("cpu", torch.float32).flatten()
    if log_sparsity_L.shape != (sae.cfg.d_sae,):
        raise ValueError(
            f"log sparsity has {log_sparsity_L.numel()} entries but the SAE has d_sae={sae.cfg.d_sae}"
        )
    _LOG_SPARSITY[sae] = log_sparsity_L.clone()


def concat_log_sparsity(parts: Sequence[tuple[SAE[Any], torch.Tensor]]) -> torch.Tensor | None:
    """The log sparsity of the chosen latents of each ``(sae, indices)`` part, concatenated in
    order; None unless every part's SAE has one. For latents moved into a stitched SAE this is
    the rate at which they fired in their parent (exact for SAEs stitched exactly)."""
    pieces: list[torch.Tensor] = []
    for sae, idx in parts:
        log_sparsity_L = get_log_sparsity(sae)
        if log_sparsity_L is None:
            return None
        pieces.append(log_sparsity_L.index_select(0, idx.detach().to("cpu", torch.long)))
    return torch.cat(pieces) if pieces else None
