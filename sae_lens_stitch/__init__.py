"""sae-lens-stitch: compare, classify, stitch and swap the latents of SAE-Lens SAEs.

The flow is load -> match -> classify / families -> surgery -> evaluate -> publish; each step
is a module of its own.

The public names are imported lazily (PEP 562): ``import sae_lens_stitch`` does not import
torch or SAE-Lens, so the ``sae-stitch`` command line answers ``--help`` at once. The first use
of a public name imports its module and registers the ``block_topk`` architecture with
SAE-Lens (so does importing any module that builds or loads SAEs). When SAE-Lens is already
imported, ``import sae_lens_stitch`` registers ``block_topk`` at once, since that costs nothing;
``import sae_lens_stitch.block_topk`` always does.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from sae_lens_stitch._version import __version__

if TYPE_CHECKING:
    from sae_lens_stitch.assembly.assemble import (
        Assembly,
        AssemblyResult,
        PathStep,
        assemble,
    )
    from sae_lens_stitch.assembly.refit import refit
    from sae_lens_stitch.checks import check_compatible, check_indices
    from sae_lens_stitch.classify import (
        ClassificationSummary,
        FeatureCategory,
        FeatureClassification,
        classify_features,
    )
    from sae_lens_stitch.curves import (
        Curve,
        CurvePoint,
        FrankensteinPlane,
        PlanePoint,
        frankenstein_plane,
        insertion_curve,
        swap_curve,
    )
    from sae_lens_stitch.effects import (
        InsertEffects,
        InsertEffectsSummary,
        ProxyAgreement,
        insert_effects,
    )
    from sae_lens_stitch.errors import (
        BudgetError,
        CorruptSAEError,
        HubError,
        IncompatibleSAEsError,
        InvalidActivationsError,
        InvalidDestinationError,
        InvalidIndicesError,
        InvalidWeightsError,
        MissingTokenError,
        OfflineError,
        PathExistsError,
        RoundTripMismatchError,
        SourceNotFoundError,
        StitchError,
        UnsupportedArchitectureError,
        UnsupportedSAEError,
    )
    from sae_lens_stitch.evaluation import (
        Metric,
        Metrics,
        ModelMetrics,
        dead_latents,
        evaluate,
        evaluate_with_model,
        firing_counts,
    )
    from sae_lens_stitch.families import FeatureFamily, feature_families
    from sae_lens_stitch.load import load_sae
    from sae_lens_stitch.match import FeatureMatches, match_features
    from sae_lens_stitch.provenance import (
        LatentOrigin,
        Operation,
        Provenance,
        SourceSAE,
        get_provenance,
    )
    from sae_lens_stitch.publish import PushResult, push_to_hub
    from sae_lens_stitch.registry import (
        ArchitectureRule,
        register_architecture,
        registered_architectures,
    )
    from sae_lens_stitch.report import (
        PlotFiles,
        StitchReport,
        write_report,
    )
    from sae_lens_stitch.save import save_sae
    from sae_lens_stitch.sources import SAESource, parse_source
    from sae_lens_stitch.surgery import frankenstein, remove_features, stitch, swap

_EXPORTS: dict[str, str] = {
    "Assembly": "sae_lens_stitch.assembly.assemble",
    "AssemblyResult": "sae_lens_stitch.assembly.assemble",
    "PathStep": "sae_lens_stitch.assembly.assemble",
    "assemble": "sae_lens_stitch.assembly.assemble",
    "refit": "sae_lens_stitch.assembly.refit",
    "BudgetError": "sae_lens_stitch.errors",
    "InvalidActivationsError": "sae_lens_stitch.errors",
    "ArchitectureRule": "sae_lens_stitch.registry",
    "ClassificationSummary": "sae_lens_stitch.classify",
    "CorruptSAEError": "sae_lens_stitch.errors",
    "FeatureCategory": "sae_lens_stitch.classify",
    "FeatureClassification": "sae_lens_stitch.classify",
    "FeatureFamily": "sae_lens_stitch.families",
    "FeatureMatches": "sae_lens_stitch.match",
    "HubError": "sae_lens_stitch.errors",
    "IncompatibleSAEsError": "sae_lens_stitch.errors",
    "InvalidDestinationError": "sae_lens_stitch.errors",
    "InvalidIndicesError": "sae_lens_stitch.errors",
    "InvalidWeightsError": "sae_lens_stitch.errors",
    "LatentOrigin": "sae_lens_stitch.provenance",
    "MissingTokenError": "sae_lens_stitch.errors",
    "OfflineError": "sae_lens_stitch.errors",
    "Operation": "sae_lens_stitch.provenance",
    "PathExistsError": "sae_lens_stitch.errors",
    "Provenance": "sae_lens_stitch.provenance",
    "PushResult": "sae_lens_stitch.publish",
    "RoundTripMismatchError": "sae_lens_stitch.errors",
    "SAESource": "sae_lens_stitch.sources",
    "SourceNotFoundError": "sae_lens_stitch.errors",
    "SourceSAE": "sae_lens_stitch.provenance",
    "StitchError": "sae_lens_stitch.errors",
    "UnsupportedArchitectureError": "sae_lens_stitch.errors",
    "check_compatible": "sae_lens_stitch.checks",
    "check_indices": "sae_lens_stitch.checks",
    "classify_features": "sae_lens_stitch.classify",
    "feature_families": "sae_lens_stitch.families",
    "frankenstein": "sae_lens_stitch.surgery",
    "get_provenance": "sae_lens_stitch.provenance",
    "load_sae": "sae_lens_stitch.load",
    "match_features": "sae_lens_stitch.match",
    "parse_source": "sae_lens_stitch.sources",
    "push_to_hub": "sae_lens_stitch.publish",
    "register_architecture": "sae_lens_stitch.registry",
    "registered_architectures": "sae_lens_stitch.registry",
    "remove_features": "sae_lens_stitch.surgery",
    "save_sae": "sae_lens_stitch.save",
    "stitch": "sae_lens_stitch.surgery",
    "swap": "sae_lens_stitch.surgery",
    "Metric": "sae_lens_stitch.evaluation",
    "Metrics": "sae_lens_stitch.evaluation",
    "ModelMetrics": "sae_lens_stitch.evaluation",
    "dead_latents": "sae_lens_stitch.evaluation",
    "evaluate": "sae_lens_stitch.evaluation",
    "evaluate_with_model": "sae_lens_stitch.evaluation",
    "firing_counts": "sae_lens_stitch.evaluation",
    "InsertEffects": "sae_lens_stitch.effects",
    "InsertEffectsSummary": "sae_lens_stitch.effects",
    "ProxyAgreement": "sae_lens_stitch.effects",
    "insert_effects": "sae_lens_stitch.effects",
    "Curve": "sae_lens_stitch.curves",
    "CurvePoint": "sae_lens_stitch.curves",
    "FrankensteinPlane": "sae_lens_stitch.curves",
    "PlanePoint": "sae_lens_stitch.curves",
    "frankenstein_plane": "sae_lens_stitch.curves",
    "insertion_curve": "sae_lens_stitch.curves",
    "swap_curve": "sae_lens_stitch.curves",
    "PlotFiles": "sae_lens_stitch.report",
    "StitchReport": "sae_lens_stitch.report",
    "write_report": "sae_lens_stitch.report",
    "UnsupportedSAEError": "sae_lens_stitch.errors",
}
"""Public name -> the module that defines it."""


if "sae_lens" in sys.modules:
    importlib.import_module("sae_lens_stitch.block_topk")


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sae_lens_stitch' has no attribute {name!r}")
    importlib.import_module("sae_lens_stitch.block_topk")  # registers block_topk with SAE-Lens
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ArchitectureRule",
    "Assembly",
    "AssemblyResult",
    "BudgetError",
    "ClassificationSummary",
    "CorruptSAEError",
    "Curve",
    "CurvePoint",
    "FeatureCategory",
    "FeatureClassification",
    "FeatureFamily",
    "FeatureMatches",
    "FrankensteinPlane",
    "HubError",
    "IncompatibleSAEsError",
    "InsertEffects",
    "InsertEffectsSummary",
    "InvalidActivationsError",
    "InvalidDestinationError",
    "InvalidIndicesError",
    "InvalidWeightsError",
    "LatentOrigin",
    "Metric",
    "Metrics",
    "MissingTokenError",
    "ModelMetrics",
    "OfflineError",
    "Operation",
    "PathExistsError",
    "PathStep",
    "PlanePoint",
    "PlotFiles",
    "Provenance",
    "ProxyAgreement",
    "PushResult",
    "RoundTripMismatchError",
    "SAESource",
    "SourceNotFoundError",
    "SourceSAE",
    "StitchError",
    "StitchReport",
    "UnsupportedArchitectureError",
    "UnsupportedSAEError",
    "__version__",
    "assemble",
    "check_compatible",
    "check_indices",
    "classify_features",
    "dead_latents",
    "evaluate",
    "evaluate_with_model",
    "feature_families",
    "firing_counts",
    "frankenstein",
    "frankenstein_plane",
    "get_provenance",
    "insert_effects",
    "insertion_curve",
    "load_sae",
    "match_features",
    "parse_source",
    "push_to_hub",
    "refit",
    "register_architecture",
    "registered_architectures",
    "remove_features",
    "save_sae",
    "stitch",
    "swap",
    "swap_curve",
    "write_report",
]
