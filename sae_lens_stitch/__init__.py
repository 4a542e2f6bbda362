"""sae-lens-stitch: compare, classify, stitch and swap the latents of SAE-Lens SAEs.

The flow is load -> match -> classify / families -> surgery -> evaluate -> publish; each step
is a module of its own.
"""

from sae_lens_stitch import block_topk as _block_topk
from sae_lens_stitch._version import __version__
from sae_lens_stitch.checks import check_compatible, check_indices
from sae_lens_stitch.classify import (
    ClassificationSummary,
    FeatureCategory,
    FeatureClassification,
    classify_features,
)
from sae_lens_stitch.errors import (
    CorruptSAEError,
    HubError,
    IncompatibleSAEsError,
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
from sae_lens_stitch.save import save_sae
from sae_lens_stitch.sources import SAESource, parse_source
from sae_lens_stitch.surgery import frankenstein, remove_features, stitch, swap

_block_topk.register()

__all__ = [
    "ArchitectureRule",
    "ClassificationSummary",
    "CorruptSAEError",
    "FeatureCategory",
    "FeatureClassification",
    "FeatureFamily",
    "FeatureMatches",
    "HubError",
    "IncompatibleSAEsError",
    "InvalidDestinationError",
    "InvalidIndicesError",
    "InvalidWeightsError",
    "LatentOrigin",
    "MissingTokenError",
    "OfflineError",
    "Operation",
    "PathExistsError",
    "Provenance",
    "PushResult",
    "RoundTripMismatchError",
    "SAESource",
    "SourceNotFoundError",
    "SourceSAE",
    "StitchError",
    "UnsupportedArchitectureError",
    "__version__",
    "check_compatible",
    "check_indices",
    "classify_features",
    "feature_families",
    "frankenstein",
    "get_provenance",
    "load_sae",
    "match_features",
    "parse_source",
    "push_to_hub",
    "register_architecture",
    "registered_architectures",
    "remove_features",
    "save_sae",
    "stitch",
    "swap",
]
