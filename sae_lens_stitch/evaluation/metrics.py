"""Step 5: evaluate an SAE on activations (MSE, FVU, L0, dead and dense latents) and, with a
language model, by splicing it into the model (cross-entropy, loss recovered, KL divergence).

Definitions (every metric records whether lower or higher is better):

- ``mse``: mean over tokens of the squared error summed over dimensions,
  ``sum_n ||x_n - x̂_n||² / N``. This is SAE-Lens's convention (``sae_lens.evals``: "sum over
  dimensions, mean over tokens"), not the mean over individual entries.
- ``fvu``: fraction of variance unexplained, ``sum_n ||x_n - x̂_n||² / sum_n ||x_n - μ||²`` with
  ``μ`` the per-dimension mean over all N tokens. This is exactly ``1 - explained_variance`` of
  SAE-Lens's ``ExplainedVarianceCalculator`` (the current one, not ``explained_variance_legacy``,
  which averages a per-batch ratio). Sums are accumulated in float64 on the CPU.
- ``explained_variance``: ``1 - fvu``.
- ``l0``: mean over tokens of the number of latents with a non-zero activation (``!= 0``, so the
  negative activations of AbsTopK SAEs count).
- ``n_dead``: latents that fire on no token of the evaluation data.
- ``n_dense``: latents that fire on more than ``dense_threshold`` (default 10%) of the tokens.

``x̂`` is always ``sae.decode(sae.encode(x))``: the forward pass is SAE-Lens's own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from sae_lens import SAE

from sae_lens_stitch.errors import InvalidActivationsError
from sae_lens_stitch.progress import track
from sae_lens_stitch.registry import encode_and_reconstruct, output_dim, reconstructs_input
from sae_lens_stitch.validation import check_activation_batch, check_count, check_number

ActivationsLike = torch.Tensor | Iterable[torch.Tensor]
"""A tensor [..., d_in] or an iterable of such batches (e.g. a generator reading from disk)."""

DEFAULT_BATCH_SIZE = 4096
DEFAULT_DENSE_THRESHOLD = 0.1
"""A latent firing on more than this fraction of tokens counts as dense."""

Better = Literal["lower", "higher"]


class Metric(BaseModel):
    """A value and the direction in which it is better."""

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="constants")

    value: int | float
    """NaN where undefined (e.g. loss recovered when ablation does not change the loss);
    an integer for counts (dead and dense latents)."""
    better: Better


def _lower(value: int | float) -> Metric:
    return Metric(value=value, better="lower")


def _higher(value: float) -> Metric:
    return Metric(value=value, better="higher")


class Metrics(BaseModel):
    """Reconstruction and sparsity metrics of one SAE on one set of activations."""

    model_config = ConfigDict(extra="forbid")

    mse: Metric
    """Mean over tokens of ||x - x̂||² (summed over dimensions). Lower is better."""
    fvu: Metric
    """Fraction of variance unexplained (1 - explained variance). Lower is better."""
    explained_variance: Metric
    """1 - FVU. Higher is better."""
    l0: Metric
    """Mean number of active latents per token. Lower is better (sparser)."""
    n_dead: Metric
    """Latents that never fire on these activations. Lower is better."""
    n_dense: Metric
    """Latents firing on more than ``dense_threshold`` of the tokens. Lower is better."""
    n_tokens: int
    """Tokens evaluated."""
    d_sae: int
    """Latents of the SAE."""
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD


class ModelMetrics(BaseModel):
    """Downstream metrics of an SAE spliced into a language model at its hook."""

    model_config = ConfigDict(extra="forbid")

    hook_name: str
    ce_loss_clean: Metric
    """Cross-entropy of the unmodified model (a reference; lower is better)."""
    ce_loss_with_sae: Metric
    """Cross-entropy with the hook's activation replaced by the SAE's reconstruction."""
    ce_loss_zero_ablation: Metric
    """Cross-entropy with the hook's activation set to zero (a reference)."""
    ce_loss_recovered: Metric
    """(CE_ablation - CE_sae) / (CE_ablation - CE_clean): 1 is perfect. Higher is better."""
    kl_div_with_sae: Metric
    """Mean over tokens of KL(clean || with SAE) of the next-token distributions."""
    kl_div_zero_ablation: Metric
    """Mean over tokens of KL(clean || zero-ablated) (a reference)."""
    n_tokens: int
    """Tokens whose next-token loss was measured."""


def _flat(batch: Any, d_in: int) -> torch.Tensor:
    """A batch [..., d_in] as [n, d_in], checked: real, finite, the right d_in."""
    return check_activation_batch(batch, d_in)


def _check_source(activations: Any, d_in: int) -> None:
    if isinstance(activations, (torch.Tensor, np.ndarray)):
        return
    if isinstance(activations, (str, bytes)) or not isinstance(activations, Iterable):
        check_activation_batch(activations, d_in)  # raises, naming what was given


def iter_batches(
    activations: ActivationsLike,
    d_in: int,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    description: str = "evaluating",
) -> Iterator[torch.Tensor]:
    """Yield [n, d_in] batches of at most ``batch_size`` tokens from a tensor or an iterable of
    tensors, with a progress bar. A tensor is sliced (no copy); iterables are streamed."""
    check_count(batch_size, "batch_size")
    _check_source(activations, d_in)
    if isinstance(activations, (torch.Tensor, np.ndarray)):
        flat = _flat(activations, d_in)
        starts = range(0, flat.shape[0], batch_size)
        for s in track(starts, total=len(starts), description=description, show=show_progress):
            yield flat[s : s + batch_size]
        return
    total = len(activations) if hasattr(activations, "__len__") else None  # type: ignore[arg-type]
    for batch in track(activations, total=total, description=description, show=show_progress):
        flat = _flat(batch, d_in)
        for s in range(0, flat.shape[0], batch_size):
            yield flat[s : s + batch_size]


def materialize(activations: ActivationsLike, d_in: int) -> torch.Tensor:
    """All activations as one [N, d_in] tensor (for the computations that need them twice)."""
    _check_source(activations, d_in)
    if isinstance(activations, (torch.Tensor, np.ndarray)):
        return _flat(activations, d_in)
    parts = [_flat(b, d_in) for b in activations]
    if not parts:
        raise InvalidActivationsError("activations are empty: no batches")
    return torch.cat(parts)


def iter_pairs(
    sae: SAE[Any],
    activations: ActivationsLike,
    targets: ActivationsLike | None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
    description: str = "evaluating",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(input, target) batches: the target is the input itself for SAEs; transcoders need
    ``targets`` (the output hook's activations, batched like ``activations``)."""
    if targets is None:
        if not reconstructs_input(sae):
            raise InvalidActivationsError(
                "a transcoder reconstructs another hook's activations: pass targets= "
                "(the activations at its output hook, aligned with the inputs)"
            )
        for x in iter_batches(
            activations,
            sae.cfg.d_in,
            batch_size=batch_size,
            show_progress=show_progress,
            description=description,
        ):
            yield x, x
        return
    xs = iter_batches(
        activations,
        sae.cfg.d_in,
        batch_size=batch_size,
        show_progress=show_progress,
        description=description,
    )
    ys = iter_batches(targets, output_dim(sae), batch_size=batch_size, show_progress=False)
    for x, y in zip(xs, ys, strict=True):
        if x.shape[0] != y.shape[0]:
            raise InvalidActivationsError(
                f"activations and targets batches differ: {x.shape[0]} vs {y.shape[0]} tokens"
            )
        yield x, y


class VarianceAccumulator:
    """Streaming sums for MSE and FVU, kept in float64 on the device of the batches (so a GPU
    evaluation does not copy every batch to the host); see the module docstring."""

    def __init__(self, d_in: int):
        self.d_in = d_in
        self._sum_x_D: torch.Tensor | None = None
        self._sum_sq: torch.Tensor | None = None
        self._sse: torch.Tensor | None = None
        self.n = 0

    def add(self, x_ND: torch.Tensor, x_hat_ND: torch.Tensor | None = None) -> None:
        """Add a batch of targets ``x_ND`` and (optionally) their reconstructions."""
        dtype = torch.float32 if x_ND.device.type == "mps" else torch.float64  # no float64 on MPS
        x64 = x_ND.detach().to(dtype)
        if self._sum_x_D is None or self._sum_sq is None or self._sse is None:
            self._sum_x_D = torch.zeros(self.d_in, dtype=dtype, device=x64.device)
            self._sum_sq = torch.zeros((), dtype=dtype, device=x64.device)
            self._sse = torch.zeros((), dtype=dtype, device=x64.device)
        self._sum_x_D += x64.sum(dim=0)
        self._sum_sq += x64.pow(2).sum()
        if x_hat_ND is not None:
            self._sse += (x64 - x_hat_ND.detach().to(x64.device, dtype)).pow(2).sum()
        self.n += x64.shape[0]

    @property
    def sum_x_D(self) -> torch.Tensor:
        """Per-dimension sum of the targets (float64, on the CPU)."""
        if self._sum_x_D is None:
            return torch.zeros(self.d_in, dtype=torch.float64)
        return self._sum_x_D.to("cpu", torch.float64)

    @property
    def sum_sq(self) -> float:
        """Sum of squared target entries."""
        return 0.0 if self._sum_sq is None else float(self._sum_sq)

    @property
    def sse(self) -> float:
        """Sum of squared reconstruction errors."""
        return 0.0 if self._sse is None else float(self._sse)

    @property
    def total_variance(self) -> float:
        """sum_n ||x_n - μ||²."""
        if self.n == 0:
            return 0.0
        return self.sum_sq - float(self.sum_x_D.pow(2).sum()) / self.n

    def mse(self, sse: float | None = None) -> float:
        return (self.sse if sse is None else sse) / max(self.n, 1)

    def fvu(self, sse: float | None = None) -> float:
        return fraction_unexplained(self.sse if sse is None else sse, self.total_variance, self.n)


def fraction_unexplained(sse: float, total_variance: float, n_tokens: int) -> float:
    """FVU = SSE / Σ‖x − μ‖²; for (numerically) constant data, 0 if the error is 0 too, else 1."""
    if total_variance <= 1e-10 * max(n_tokens, 1):
        return 0.0 if sse <= 1e-10 * max(n_tokens, 1) else 1.0
    return sse / total_variance


def metrics_from_sums(
    *,
    sse: float,
    total_variance: float,
    n_tokens: int,
    counts_L: torch.Tensor,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
) -> Metrics:
    """:class:`Metrics` from the summed squared error, the total variance of the targets and
    each latent's firing count over ``n_tokens`` tokens."""
    fvu = fraction_unexplained(sse, total_variance, n_tokens)
    return Metrics(
        mse=_lower(sse / max(n_tokens, 1)),
        fvu=_lower(fvu),
        explained_variance=_higher(1.0 - fvu),
        l0=_lower(float(counts_L.sum()) / n_tokens),
        n_dead=_lower(int((counts_L == 0).sum())),
        n_dense=_lower(int((counts_L > dense_threshold * n_tokens).sum())),
        n_tokens=n_tokens,
        d_sae=int(counts_L.numel()),
        dense_threshold=dense_threshold,
    )


def _count_active(acts_NL: torch.Tensor) -> torch.Tensor:
    return (acts_NL != 0).sum(dim=0)


@torch.no_grad()
def _run(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int,
    show_progress: bool | None,
    reconstruct: bool,
    targets: ActivationsLike | None = None,
) -> tuple[VarianceAccumulator, torch.Tensor]:
    dev = sae.W_dec.device
    acc = VarianceAccumulator(output_dim(sae) if reconstruct else sae.cfg.d_in)
    counts_L = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=dev)
    if reconstruct:
        for x_ND, y_ND in iter_pairs(
            sae, activations, targets, batch_size=batch_size, show_progress=show_progress
        ):
            acts_NL, out_ND = encode_and_reconstruct(sae, x_ND.to(dev))
            counts_L += _count_active(acts_NL)
            acc.add(y_ND.to(dev), out_ND)
    else:
        for x_ND in iter_batches(
            activations, sae.cfg.d_in, batch_size=batch_size, show_progress=show_progress
        ):
            x_ND = x_ND.to(dev)
            counts_L += _count_active(sae.encode(x_ND))
            acc.add(x_ND)
    if acc.n == 0:
        raise InvalidActivationsError("activations are empty: no tokens to evaluate")
    return acc, counts_L.cpu()


def evaluate(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dense_threshold: float = DEFAULT_DENSE_THRESHOLD,
    show_progress: bool | None = None,
    targets: ActivationsLike | None = None,
) -> Metrics:
    """MSE, FVU, explained variance, L0, dead and dense latents of ``sae`` on ``activations``
    (a tensor [..., d_in] or an iterable of batches), streamed ``batch_size`` tokens at a time.
    Memory: one batch plus O(d_in + d_sae). For transcoders, ``targets`` are the output
    hook's activations (aligned with ``activations``); MSE and FVU are measured against them."""
    check_number(dense_threshold, "dense_threshold", low=0.0, high=1.0)
    acc, counts_L = _run(
        sae,
        activations,
        batch_size=batch_size,
        show_progress=show_progress,
        reconstruct=True,
        targets=targets,
    )
    return metrics_from_sums(
        sse=acc.sse,
        total_variance=acc.total_variance,
        n_tokens=acc.n,
        counts_L=counts_L,
        dense_threshold=dense_threshold,
    )


def firing_counts(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
) -> torch.Tensor:
    """[d_sae] number of tokens on which each latent fires (activation != 0), on the CPU."""
    _, counts_L = _run(
        sae, activations, batch_size=batch_size, show_progress=show_progress, reconstruct=False
    )
    return counts_L


def dead_latents(
    sae: SAE[Any],
    activations: ActivationsLike,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    show_progress: bool | None = None,
) -> torch.Tensor:
    """[d_sae] bool mask of the latents that fire on no token of ``activations``."""
    return firing_counts(sae, activations, batch_size=batch_size, show_progress=show_progress) == 0


@torch.no_grad()
def evaluate_with_model(
    sae: SAE[Any],
    model: Any,
    tokens: torch.Tensor,
    *,
    batch_size: int = 8,
    hook_name: str | None = None,
    show_progress: bool | None = None,
) -> ModelMetrics:
    """Splice ``sae`` into ``model`` (a transformer-lens HookedTransformer or
    HookedSAETransformer) at ``hook_name`` (default: the SAE's ``cfg.metadata.hook_name``) and
    measure next-token cross-entropy clean, with the SAE's reconstruction, and with the
    activation zero-ablated, the fraction of loss recovered and the KL divergence from the clean
    model, over ``tokens`` [batch, seq] in batches of ``batch_size`` sequences.

    Uses SAE-Lens's ``sae_lens.evals.get_recons_loss`` for every batch (no activation
    scaling) and averages per-token values over all tokens."""
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    hook = hook_name or sae.cfg.metadata.hook_name
    if not hook:
        raise ValueError("the SAE has no cfg.metadata.hook_name; pass hook_name=")
    if hook not in model.hook_dict:
        raise ValueError(f"hook {hook!r} is not a hook point of the model")
    if tokens.ndim != 2 or tokens.shape[0] < 1 or tokens.shape[1] < 2:
        raise ValueError(
            f"tokens must be [batch, seq] with batch >= 1 and seq >= 2; got {tuple(tokens.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    sums = {"clean": 0.0, "sae": 0.0, "abl": 0.0, "kl_sae": 0.0, "kl_abl": 0.0}
    n_ce = n_kl = 0
    starts = range(0, tokens.shape[0], batch_size)
    for s in track(starts, total=len(starts), description="model evals", show=show_progress):
        batch = tokens[s : s + batch_size].to(model.cfg.device)
        out = get_recons_loss(
            sae,
            model,
            ActivationScaler(),
            batch,
            compute_kl=True,
            compute_ce_loss=True,
            hook_name=hook,
        )
        sums["clean"] += float(out["ce_loss_without_sae"].double().sum())
        sums["sae"] += float(out["ce_loss_with_sae"].double().sum())
        sums["abl"] += float(out["ce_loss_with_ablation"].double().sum())
        sums["kl_sae"] += float(out["kl_div_with_sae"].double().sum())
        sums["kl_abl"] += float(out["kl_div_with_ablation"].double().sum())
        n_ce += out["ce_loss_without_sae"].numel()
        n_kl += out["kl_div_with_sae"].numel()
    clean, with_sae, abl = sums["clean"] / n_ce, sums["sae"] / n_ce, sums["abl"] / n_ce
    denom = abl - clean
    recovered = (abl - with_sae) / denom if abs(denom) > 1e-12 else math.nan
    return ModelMetrics(
        hook_name=hook,
        ce_loss_clean=_lower(clean),
        ce_loss_with_sae=_lower(with_sae),
        ce_loss_zero_ablation=_lower(abl),
        ce_loss_recovered=_higher(recovered),
        kl_div_with_sae=_lower(sums["kl_sae"] / n_kl),
        kl_div_zero_ablation=_lower(sums["kl_abl"] / n_kl),
        n_tokens=n_ce,
    )
