"""Per-architecture rules for cutting latents out of SAEs and joining them, keyed by the
SAE-Lens architecture name (``sae.cfg.architecture()``).

A new architecture is one :func:`register_architecture` call; nothing else in the package
branches on architecture names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from sae_lens import SAE

from sae_lens_stitch import block_topk
from sae_lens_stitch._joined import already_checked
from sae_lens_stitch.errors import IncompatibleSAEsError, UnsupportedArchitectureError


@dataclass(frozen=True)
class Part:
    """Latents ``indices_P`` of ``sae``, in that order, as one piece of a joined SAE."""

    sae: SAE[Any]
    indices_P: torch.Tensor


BiasShift = Callable[[SAE[Any], torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
"""(source SAE, indices_P, delta_D) -> {per-latent bias name: shift_P} to add to each bias so the
latents fire as in the source when the input is centred on another SAE's b_dec
(delta_D = b_dec_base - b_dec_source)."""

ConfigBuilder = Callable[[SAE[Any], Sequence[Part]], tuple[str, dict[str, Any]]]
"""(base SAE, parts) -> (architecture of the joined SAE, config fields to override)."""


def _standard_shift(
    sae: SAE[Any], indices_P: torch.Tensor, delta_D: torch.Tensor
) -> dict[str, torch.Tensor]:
    return {"b_enc": delta_D @ sae.W_enc[:, indices_P]}


def _gated_shift(
    sae: SAE[Any], indices_P: torch.Tensor, delta_D: torch.Tensor
) -> dict[str, torch.Tensor]:
    gate_P = delta_D @ sae.W_enc[:, indices_P]
    r_mag: torch.Tensor = getattr(sae, "r_mag")  # noqa: B009 (gated-only parameter)
    # the magnitude path uses W_enc * exp(r_mag)
    return {"b_gate": gate_P, "b_mag": gate_P * r_mag[indices_P].exp()}


def _same_architecture(base: SAE[Any], parts: Sequence[Part]) -> tuple[str, dict[str, Any]]:
    del parts
    return base.cfg.architecture(), {}


def _block_topk_config(base: SAE[Any], parts: Sequence[Part]) -> tuple[str, dict[str, Any]]:
    """Each source keeps its own top-k selection: one group per (source SAE, source group)."""
    group_ids: dict[tuple[int, int], int] = {}
    group_k: list[int] = []
    group_size: list[int] = []
    runs: list[list[int]] = []
    for part in parts:
        cfg = part.sae.cfg
        if isinstance(cfg, block_topk.BlockTopKSAEConfig):
            src_groups, src_k = cfg.latent_groups(), cfg.group_k
        else:
            src_groups, src_k = [0] * cfg.d_sae, [cfg.k]
        for latent in part.indices_P.tolist():
            key = (id(part.sae), src_groups[latent])
            if key not in group_ids:
                group_ids[key] = len(group_k)
                group_k.append(src_k[src_groups[latent]])
                group_size.append(0)
            g = group_ids[key]
            group_size[g] += 1
            if runs and runs[-1][1] == g:
                runs[-1][0] += 1
            else:
                runs.append([1, g])
    group_k = [min(k, n) for k, n in zip(group_k, group_size, strict=True)]
    return block_topk.ARCHITECTURE, {
        "group_runs": runs,
        "group_k": group_k,
        "abs_selection": _topk_selection(base)["selection"] == "abstopk",
        "k": sum(group_k),
    }


@dataclass(frozen=True)
class ArchitectureRule:
    """How the latents of one SAE-Lens architecture are cut out and joined."""

    per_latent: Mapping[str, int]
    """State-dict tensors indexed by latent, and the dimension that indexes latents.
    Every other tensor (b_dec, W_skip, ...) is shared and taken from the base SAE."""
    bias_shift: BiasShift | None = _standard_shift
    """Correction of the per-latent encoder biases for a different b_dec (None: the
    architecture never subtracts b_dec from its input)."""
    family: str = ""
    """Architectures of one family can be joined; default: the architecture name itself."""
    config_builder: ConfigBuilder = _same_architecture
    """Architecture and config of the joined SAE."""
    exact: bool = True
    """Whether joined latents fire exactly as in their source SAE (False for TopK: see
    :mod:`sae_lens_stitch.block_topk`)."""
    compat: Callable[[SAE[Any]], dict[str, Any]] = lambda sae: {}
    """Values that must agree between joined SAEs (e.g. d_out, the TopK selection rule)."""
    reconstructs_input: bool = True
    """Whether the SAE reconstructs the activations it reads (False for transcoders), which
    the assembly objective and refit need."""
    decoder_scaling: Callable[[SAE[Any]], str | None] = lambda sae: None
    """Why scaling W_dec rows would change which latents fire or how much (None: it does
    not, so refit is exact)."""
    single_latent_activation: Callable[[SAE[Any]], torch.nn.Module] | None = None
    """For inexact architectures: the element-wise activation a latent has alone in a group
    of one (TopK: ReLU; AbsTopK: identity). None: latents fire independently already."""


_RULES: dict[str, ArchitectureRule] = {}


def output_dim(sae: SAE[Any]) -> int:
    """Size of the SAE's output: d_out for architectures that reconstruct another hook
    (transcoders), else d_in. Architectures with no rule are treated as plain SAEs."""
    rule = _RULES.get(sae.cfg.architecture())
    if rule is not None and not rule.reconstructs_input:
        return int(getattr(sae.cfg, "d_out", sae.cfg.d_in))
    return sae.cfg.d_in


def reconstructs_input(sae: SAE[Any]) -> bool:
    """Whether the SAE's output is a reconstruction of its own input (False: transcoders)."""
    rule = _RULES.get(sae.cfg.architecture())
    return rule is None or rule.reconstructs_input


def encode_and_reconstruct(sae: SAE[Any], x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent activations, output) through the SAE's own methods: ``decode(encode(x))``, or
    for architectures that reconstruct another hook ``forward`` (a skip transcoder adds
    ``x @ W_skip.T``)."""
    acts_NL = sae.encode(x_ND)
    if not reconstructs_input(sae):
        return acts_NL, sae(x_ND)
    return acts_NL, sae.decode(acts_NL)


def register_architecture(
    architecture: str, rule: ArchitectureRule, *, replace: bool = False
) -> None:
    """Register how to stitch SAEs of the SAE-Lens architecture ``architecture``."""
    if architecture in _RULES and not replace:
        raise ValueError(f"architecture {architecture!r} is already registered")
    if not rule.family:
        rule = ArchitectureRule(**{**rule.__dict__, "family": architecture})
    _RULES[architecture] = rule


def registered_architectures() -> list[str]:
    """Names of the architectures this package can stitch."""
    return sorted(_RULES)


def get_rule(sae_or_architecture: SAE[Any] | str) -> ArchitectureRule:
    """The rule for an SAE (or architecture name); a clear error if there is none."""
    name = (
        sae_or_architecture
        if isinstance(sae_or_architecture, str)
        else sae_or_architecture.cfg.architecture()
    )
    try:
        return _RULES[name]
    except KeyError:
        raise UnsupportedArchitectureError(name, list(_RULES)) from None


def check_same_family(first: SAE[Any], second: SAE[Any]) -> ArchitectureRule:
    """The shared rule of two SAEs that can be joined, or an IncompatibleSAEsError."""
    rule_a = get_rule(first)
    if already_checked(first, second):
        return rule_a
    rule_b = get_rule(second)
    if rule_a.family != rule_b.family:
        raise IncompatibleSAEsError(
            "architecture",
            first.cfg.architecture(),
            second.cfg.architecture(),
            names=("base", "donor"),
        )
    values_a, values_b = rule_a.compat(first), rule_b.compat(second)
    for name, a in values_a.items():
        if a != values_b.get(name):
            raise IncompatibleSAEsError(name, a, values_b.get(name), names=("base", "donor"))
    return rule_a


def _d_out(sae: SAE[Any]) -> dict[str, Any]:
    return {"d_out": getattr(sae.cfg, "d_out", None)}


def _topk_selection(sae: SAE[Any]) -> dict[str, Any]:
    is_abs = sae.cfg.architecture() == "abstopk" or bool(getattr(sae.cfg, "abs_selection", False))
    return {
        "selection": "abstopk" if is_abs else "topk",
        "rescale_acts_by_decoder_norm": getattr(sae.cfg, "rescale_acts_by_decoder_norm", False),
    }


def _topk_single_latent(sae: SAE[Any]) -> torch.nn.Module:
    return (
        torch.nn.Identity() if _topk_selection(sae)["selection"] == "abstopk" else torch.nn.ReLU()
    )


def _topk_decoder_scaling(sae: SAE[Any]) -> str | None:
    if getattr(sae.cfg, "rescale_acts_by_decoder_norm", False):
        return "rescale_acts_by_decoder_norm multiplies each activation by its decoder norm"
    return None


_STANDARD = {"W_enc": 1, "b_enc": 0, "W_dec": 0}
_TRANSCODER = ArchitectureRule(
    per_latent=_STANDARD,
    bias_shift=None,
    family="transcoder",
    compat=_d_out,
    reconstructs_input=False,
)
_JUMPRELU_TRANSCODER = ArchitectureRule(
    per_latent={**_STANDARD, "threshold": 0},
    bias_shift=None,
    family="jumprelu_transcoder",
    compat=_d_out,
    reconstructs_input=False,
)
# topk, abstopk and block_topk join into block_topk (one top-k per source: see block_topk.py)
_TOPK = ArchitectureRule(
    per_latent=_STANDARD,
    family="topk",
    config_builder=_block_topk_config,
    exact=False,
    compat=_topk_selection,
    decoder_scaling=_topk_decoder_scaling,
    single_latent_activation=_topk_single_latent,
)

register_architecture("standard", ArchitectureRule(per_latent=_STANDARD))
register_architecture("jumprelu", ArchitectureRule(per_latent={**_STANDARD, "threshold": 0}))
register_architecture(
    "gated",
    ArchitectureRule(
        per_latent={"W_enc": 1, "W_dec": 0, "b_gate": 0, "b_mag": 0, "r_mag": 0},
        bias_shift=_gated_shift,
    ),
)
register_architecture("topk", _TOPK)
register_architecture("abstopk", _TOPK)
register_architecture(block_topk.ARCHITECTURE, _TOPK)
register_architecture("transcoder", _TRANSCODER)
register_architecture("skip_transcoder", _TRANSCODER)
register_architecture("jumprelu_transcoder", _JUMPRELU_TRANSCODER)
register_architecture("jumprelu_skip_transcoder", _JUMPRELU_TRANSCODER)
