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

import ast
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sae_lens_stitch._version import __version__ as __version__

if TYPE_CHECKING:  # the public names, listed once: re-exported (X as X) and read by _read_exports
    from sae_lens_stitch.analysis.agreement import (
        ViewAgreement as ViewAgreement,
    )
    from sae_lens_stitch.analysis.agreement import (
        view_agreement as view_agreement,
    )
    from sae_lens_stitch.analysis.classify import (
        ClassificationSummary as ClassificationSummary,
    )
    from sae_lens_stitch.analysis.classify import (
        FeatureCategory as FeatureCategory,
    )
    from sae_lens_stitch.analysis.classify import (
        FeatureClassification as FeatureClassification,
    )
    from sae_lens_stitch.analysis.classify import (
        classify_features as classify_features,
    )
    from sae_lens_stitch.analysis.correlate import (
        correlate_features as correlate_features,
    )
    from sae_lens_stitch.analysis.decompose import (
        Decomposition as Decomposition,
    )
    from sae_lens_stitch.analysis.decompose import (
        DecompositionSummary as DecompositionSummary,
    )
    from sae_lens_stitch.analysis.decompose import (
        decompose as decompose,
    )
    from sae_lens_stitch.analysis.effects import (
        InsertEffects as InsertEffects,
    )
    from sae_lens_stitch.analysis.effects import (
        InsertEffectsSummary as InsertEffectsSummary,
    )
    from sae_lens_stitch.analysis.effects import (
        ProxyAgreement as ProxyAgreement,
    )
    from sae_lens_stitch.analysis.effects import (
        insert_effects as insert_effects,
    )
    from sae_lens_stitch.analysis.families import (
        FeatureFamily as FeatureFamily,
    )
    from sae_lens_stitch.analysis.families import (
        feature_families as feature_families,
    )
    from sae_lens_stitch.analysis.families import (
        pair_families as pair_families,
    )
    from sae_lens_stitch.analysis.match import (
        FeatureMatches as FeatureMatches,
    )
    from sae_lens_stitch.analysis.match import (
        OneToOneSummary as OneToOneSummary,
    )
    from sae_lens_stitch.analysis.match import (
        match_features as match_features,
    )
    from sae_lens_stitch.analysis.match import (
        one_to_one_summary as one_to_one_summary,
    )
    from sae_lens_stitch.assembly.assemble import (
        Assembly as Assembly,
    )
    from sae_lens_stitch.assembly.assemble import (
        AssemblyResult as AssemblyResult,
    )
    from sae_lens_stitch.assembly.assemble import (
        PathStep as PathStep,
    )
    from sae_lens_stitch.assembly.assemble import (
        assemble as assemble,
    )
    from sae_lens_stitch.assembly.refit import refit as refit
    from sae_lens_stitch.checks import (
        check_compatible as check_compatible,
    )
    from sae_lens_stitch.checks import (
        check_indices as check_indices,
    )
    from sae_lens_stitch.errors import (
        BudgetError as BudgetError,
    )
    from sae_lens_stitch.errors import (
        CorruptSAEError as CorruptSAEError,
    )
    from sae_lens_stitch.errors import (
        DeviceError as DeviceError,
    )
    from sae_lens_stitch.errors import (
        HubError as HubError,
    )
    from sae_lens_stitch.errors import (
        IncompatibleSAEsError as IncompatibleSAEsError,
    )
    from sae_lens_stitch.errors import (
        InvalidActivationsError as InvalidActivationsError,
    )
    from sae_lens_stitch.errors import (
        InvalidArgumentError as InvalidArgumentError,
    )
    from sae_lens_stitch.errors import (
        InvalidDatasetError as InvalidDatasetError,
    )
    from sae_lens_stitch.errors import (
        InvalidDestinationError as InvalidDestinationError,
    )
    from sae_lens_stitch.errors import (
        InvalidIndicesError as InvalidIndicesError,
    )
    from sae_lens_stitch.errors import (
        InvalidModelError as InvalidModelError,
    )
    from sae_lens_stitch.errors import (
        InvalidSettingError as InvalidSettingError,
    )
    from sae_lens_stitch.errors import (
        InvalidWeightsError as InvalidWeightsError,
    )
    from sae_lens_stitch.errors import (
        MissingTokenError as MissingTokenError,
    )
    from sae_lens_stitch.errors import (
        ModelMismatchWarning as ModelMismatchWarning,
    )
    from sae_lens_stitch.errors import (
        OfflineError as OfflineError,
    )
    from sae_lens_stitch.errors import (
        PathExistsError as PathExistsError,
    )
    from sae_lens_stitch.errors import (
        RoundTripMismatchError as RoundTripMismatchError,
    )
    from sae_lens_stitch.errors import (
        SaveError as SaveError,
    )
    from sae_lens_stitch.errors import (
        SourceNotFoundError as SourceNotFoundError,
    )
    from sae_lens_stitch.errors import (
        StitchError as StitchError,
    )
    from sae_lens_stitch.errors import (
        UnsupportedArchitectureError as UnsupportedArchitectureError,
    )
    from sae_lens_stitch.errors import (
        UnsupportedSAEError as UnsupportedSAEError,
    )
    from sae_lens_stitch.evaluation.curves import (
        Curve as Curve,
    )
    from sae_lens_stitch.evaluation.curves import (
        CurvePoint as CurvePoint,
    )
    from sae_lens_stitch.evaluation.curves import (
        FrankensteinPlane as FrankensteinPlane,
    )
    from sae_lens_stitch.evaluation.curves import (
        PlanePoint as PlanePoint,
    )
    from sae_lens_stitch.evaluation.curves import (
        frankenstein_plane as frankenstein_plane,
    )
    from sae_lens_stitch.evaluation.curves import (
        insertion_curve as insertion_curve,
    )
    from sae_lens_stitch.evaluation.curves import (
        swap_curve as swap_curve,
    )
    from sae_lens_stitch.evaluation.metrics import (
        Metric as Metric,
    )
    from sae_lens_stitch.evaluation.metrics import (
        Metrics as Metrics,
    )
    from sae_lens_stitch.evaluation.metrics import (
        ModelMetrics as ModelMetrics,
    )
    from sae_lens_stitch.evaluation.metrics import (
        dead_latents as dead_latents,
    )
    from sae_lens_stitch.evaluation.metrics import (
        evaluate as evaluate,
    )
    from sae_lens_stitch.evaluation.metrics import (
        evaluate_with_model as evaluate_with_model,
    )
    from sae_lens_stitch.evaluation.metrics import (
        firing_counts as firing_counts,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        ActivationsSource as ActivationsSource,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        LanguageModel as LanguageModel,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        ModelActivations as ModelActivations,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        language_model_metrics as language_model_metrics,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        load_language_model as load_language_model,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        model_activations as model_activations,
    )
    from sae_lens_stitch.evaluation.model_activations import (
        model_tokens as model_tokens,
    )
    from sae_lens_stitch.io.load import load_sae as load_sae
    from sae_lens_stitch.io.publish import PushResult as PushResult
    from sae_lens_stitch.io.publish import push_to_hub as push_to_hub
    from sae_lens_stitch.io.save import clean_leftovers as clean_leftovers
    from sae_lens_stitch.io.save import save_sae as save_sae
    from sae_lens_stitch.io.sources import SAESource as SAESource
    from sae_lens_stitch.io.sources import parse_source as parse_source
    from sae_lens_stitch.provenance import (
        LatentOrigin as LatentOrigin,
    )
    from sae_lens_stitch.provenance import (
        Operation as Operation,
    )
    from sae_lens_stitch.provenance import (
        Provenance as Provenance,
    )
    from sae_lens_stitch.provenance import (
        SourceSAE as SourceSAE,
    )
    from sae_lens_stitch.provenance import (
        display_name as display_name,
    )
    from sae_lens_stitch.provenance import (
        get_provenance as get_provenance,
    )
    from sae_lens_stitch.provenance import (
        set_display_name as set_display_name,
    )
    from sae_lens_stitch.registry import (
        ArchitectureRule as ArchitectureRule,
    )
    from sae_lens_stitch.registry import (
        register_architecture as register_architecture,
    )
    from sae_lens_stitch.registry import (
        registered_architectures as registered_architectures,
    )
    from sae_lens_stitch.report.document import (
        PlotFiles as PlotFiles,
    )
    from sae_lens_stitch.report.document import (
        StitchReport as StitchReport,
    )
    from sae_lens_stitch.report.document import (
        write_report as write_report,
    )
    from sae_lens_stitch.study.config import (
        StudyConfig as StudyConfig,
    )
    from sae_lens_stitch.study.config import (
        load_config as load_config,
    )
    from sae_lens_stitch.study.run import (
        StudyResult as StudyResult,
    )
    from sae_lens_stitch.study.run import (
        run_study as run_study,
    )
    from sae_lens_stitch.study.shared import (
        SharedEncodings as SharedEncodings,
    )
    from sae_lens_stitch.surgery.operations import (
        frankenstein as frankenstein,
    )
    from sae_lens_stitch.surgery.operations import (
        remove_features as remove_features,
    )
    from sae_lens_stitch.surgery.operations import (
        stitch as stitch,
    )
    from sae_lens_stitch.surgery.operations import (
        swap as swap,
    )


def _read_exports() -> dict[str, str]:
    """Public name -> defining module, read from the ``TYPE_CHECKING`` imports above: the
    public names are listed there once, for type checkers and for the lazy loader alike."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(node, ast.If) and isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            return {
                alias.asname or alias.name: str(imp.module)
                for imp in node.body
                if isinstance(imp, ast.ImportFrom)
                for alias in imp.names
            }
    raise ImportError("sae_lens_stitch/__init__.py lost its TYPE_CHECKING import block")


_EXPORTS: dict[str, str] = _read_exports()
"""Public name -> the module that defines it."""

__all__ = sorted([*_EXPORTS, "__version__"])  # pyright: ignore[reportUnsupportedDunderAll]

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
