"""Step 8 (orchestration): the whole method on a family of SAEs in one resumable run.

:func:`run_study` runs every step (evaluate, compare, classify, insert effects, stitch, swap
curves, Frankenstein, assembly, report) on two or more SAEs of one hook, encoding each SAE once
per token set; ``sae-stitch study`` is its command line. Names load lazily, so reading the
options (:mod:`.config`) imports neither torch nor SAE-Lens.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_lens_stitch.study.config import STEPS as STEPS
    from sae_lens_stitch.study.config import StudyConfig as StudyConfig
    from sae_lens_stitch.study.config import load_config as load_config
    from sae_lens_stitch.study.config import make_config as make_config
    from sae_lens_stitch.study.run import StudyResult as StudyResult
    from sae_lens_stitch.study.run import run_study as run_study
    from sae_lens_stitch.study.shared import SharedEncodings as SharedEncodings

_WHERE = {
    "STEPS": "config",
    "StudyConfig": "config",
    "load_config": "config",
    "make_config": "config",
    "StudyResult": "run",
    "run_study": "run",
    "SharedEncodings": "shared",
}
__all__ = [
    "STEPS",
    "SharedEncodings",
    "StudyConfig",
    "StudyResult",
    "load_config",
    "make_config",
    "run_study",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"sae_lens_stitch.study.{_WHERE[name]}"), name)
