"""The sparse activation cache: the non-zero activations of chosen latents over a set of tokens,
stored per latent (CSR by latent), gathered from one encode pass. The incremental curves use it
to update their residual per step without re-running any SAE."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_stitch.analysis.effects import (
    InsertedActivations,
    decoder_directions,
    inserted_encoder,
)
from sae_lens_stitch.evaluation.metrics import DEFAULT_BATCH_SIZE, iter_batches
from sae_lens_stitch.provenance import Operation, describe_sae
from sae_lens_stitch.registry import Part, get_rule


@dataclass(frozen=True)
class SparseLatents:
    """Activations of chosen latents over N tokens, stored per latent (CSR by latent)."""

    ptr: torch.Tensor
    """[P + 1] offsets into tokens/values."""
    tokens: torch.Tensor
    """[nnz] token index of each non-zero activation, grouped by latent."""
    values: torch.Tensor
    """[nnz] the activation."""
    rows_PD: torch.Tensor
    """[P, d_out] output direction of each latent."""

    def of(self, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, e = self.bounds[p], self.bounds[p + 1]
        return self.tokens[s:e], self.values[s:e]

    @functools.cached_property
    def bounds(self) -> list[int]:
        """``ptr`` as Python ints (the per-step loops index it thousands of times)."""
        return [int(v) for v in self.ptr.tolist()]

    @functools.cached_property
    def sq_norms(self) -> list[float]:
        """|w|² of each latent's output direction, in float64."""
        return self.rows_PD.double().pow(2).sum(-1).tolist()

    @property
    def counts(self) -> torch.Tensor:
        return self.ptr[1:] - self.ptr[:-1]

    def take(self, positions: torch.Tensor) -> SparseLatents:
        """The latents at ``positions`` (in that order)."""
        counts = self.counts[positions]
        ptr = torch.zeros(positions.numel() + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        # entry e of new latent q is old entry ptr_old[p_q] + (e - ptr_new[q])
        entries = torch.repeat_interleave(self.ptr[positions] - ptr[:-1], counts) + torch.arange(
            int(ptr[-1])
        )
        return SparseLatents(
            ptr=ptr,
            tokens=self.tokens[entries],
            values=self.values[entries],
            rows_PD=self.rows_PD[positions],
        )


class SparseCollector:
    """Gathers the non-zero activations of latents ``indices_P`` (of ``d_sae``) from batches of
    full activations ``[n, d_sae]``, then builds a :class:`SparseLatents`."""

    def __init__(self, indices_P: torch.Tensor, d_sae: int, device: torch.device):
        self.n_p = indices_P.numel()
        self.idx_P = indices_P.to(device)
        self.all = self.n_p == d_sae and bool(
            (indices_P.cpu() == torch.arange(d_sae)).all()
        )  # every latent, in order: the non-zeros of the batch as they are
        # few latents (or repeated ones): gather their columns first; many: take the non-zeros
        # of the whole batch and keep those of chosen latents (their position, or -1)
        self.select = 2 * self.n_p < d_sae or indices_P.unique().numel() != self.n_p
        self.pos_L = torch.full((d_sae,), -1, dtype=torch.long, device=device)
        self.pos_L[self.idx_P] = torch.arange(self.n_p, device=device)
        self.toks: list[torch.Tensor] = []
        self.lats: list[torch.Tensor] = []
        self.vals: list[torch.Tensor] = []

    def add(self, acts_NL: torch.Tensor, offset: int, nz: torch.Tensor | None = None) -> None:
        """Collect one batch (its first token is token ``offset``); ``nz``: ``acts_NL.nonzero()``
        if the caller already has it."""
        if self.all:
            nz = acts_NL.nonzero() if nz is None else nz
            tok, lat = nz[:, 0], nz[:, 1]
            val = acts_NL[tok, lat]
        elif self.select and nz is None:
            a_NP = acts_NL.index_select(-1, self.idx_P)
            nz = a_NP.nonzero()
            tok, lat = nz[:, 0], nz[:, 1]
            val = a_NP[tok, lat]
        else:
            if nz is None:
                nz = acts_NL.nonzero()
            pos = self.pos_L[nz[:, 1]]
            keep = (pos >= 0).nonzero().squeeze(1)
            tok, lat = nz[keep, 0], pos[keep]
            val = acts_NL[tok, nz[keep, 1]]
        self.toks.append((tok + offset).cpu())
        self.lats.append(lat.cpu())
        self.vals.append(val.float().cpu())

    def build(self, rows_PD: torch.Tensor) -> SparseLatents:
        tok = torch.cat(self.toks) if self.toks else torch.zeros(0, dtype=torch.long)
        lat = torch.cat(self.lats) if self.lats else torch.zeros(0, dtype=torch.long)
        val = torch.cat(self.vals) if self.vals else torch.zeros(0)
        order = torch.argsort(lat, stable=True)
        ptr = torch.zeros(self.n_p + 1, dtype=torch.long)
        ptr[1:] = torch.bincount(lat, minlength=self.n_p).cumsum(0)
        return SparseLatents(
            ptr=ptr, tokens=tok[order], values=val[order], rows_PD=rows_PD.float().cpu()
        )


_SUBSET_FRACTION = 0.9
"""sparse_activations encodes with an SAE of the chosen latents alone when they are at most this
fraction of the SAE (copying their weights costs far less than encoding the others)."""


@torch.no_grad()
def sparse_activations(
    sae: SAE[Any],
    x_ND: torch.Tensor,
    indices_P: torch.Tensor,
    *,
    inserted: InsertedActivations | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
) -> SparseLatents:
    """Non-zero activations of ``sae``'s latents ``indices_P`` on every token, from one pass.
    ``inserted`` None: as the SAE itself computes them; else as once inserted elsewhere
    (:func:`sae_lens_stitch.analysis.effects.inserted_encoder`).

    Where latents fire independently of each other (architectures whose registry rule is
    exact) and only part of the SAE is asked for, the pass runs an SAE of those latents alone
    (built by :func:`sae_lens_stitch.surgery.operations.join`), so the encode costs P / d_sae of the
    full one."""
    dev = sae.W_dec.device
    n_p = indices_P.numel()
    if n_p == 0:  # nothing to collect: no pass over the activations
        return SparseCollector(indices_P, sae.cfg.d_sae, dev).build(
            decoder_directions(sae, indices_P)
        )
    if n_p <= _SUBSET_FRACTION * sae.cfg.d_sae and get_rule(sae).exact:
        from sae_lens_stitch.surgery.operations import join

        sae = join(
            sae,
            [Part(sae, indices_P.cpu())],
            Operation(operation="select", inputs=[describe_sae(sae)], n_latents_in=n_p),
        )
        indices_P = torch.arange(n_p)
    collector = SparseCollector(indices_P, sae.cfg.d_sae, dev)
    offset = 0
    with inserted_encoder(sae, inserted or "in_donor") as encode:
        for x in iter_batches(
            x_ND,
            sae.cfg.d_in,
            batch_size=batch_size,
            show_progress=show_progress,
            description="latent activations",
        ):
            collector.add(encode(x.to(dev)), offset)
            offset += x.shape[0]
    return collector.build(decoder_directions(sae, indices_P))
