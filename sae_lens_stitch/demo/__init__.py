"""The embedded default demo: a family of standard SAEs of four widths trained on a synthetic
activation model with parent/child feature hierarchies, shipped in ``family/``, and
:func:`run_demo`, which runs the whole method on it (``sae-stitch demo``).

Names are imported lazily so that importing a light submodule (e.g. ``demo.synthetic``) does
not pull in the whole pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_lens_stitch.demo.data import DemoFamily, load_family, load_ground_truth
    from sae_lens_stitch.demo.pipeline import DemoResult, run_demo
    from sae_lens_stitch.demo.scoring import NoveltyScore, score_novelty
    from sae_lens_stitch.demo.synthetic import HierarchicalFeatures, make_hierarchical_features
    from sae_lens_stitch.demo.train import TrainingRecipe, train_family

_EXPORTS = {
    "DemoFamily": "data",
    "load_family": "data",
    "load_ground_truth": "data",
    "DemoResult": "pipeline",
    "run_demo": "pipeline",
    "NoveltyScore": "scoring",
    "score_novelty": "scoring",
    "HierarchicalFeatures": "synthetic",
    "make_hierarchical_features": "synthetic",
    "TrainingRecipe": "train",
    "train_family": "train",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sae_lens_stitch.demo' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sae_lens_stitch.demo.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DemoFamily",
    "DemoResult",
    "HierarchicalFeatures",
    "NoveltyScore",
    "TrainingRecipe",
    "load_family",
    "load_ground_truth",
    "make_hierarchical_features",
    "run_demo",
    "score_novelty",
    "train_family",
]
