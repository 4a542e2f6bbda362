"""Step 8 (orchestration): the whole method on a family of SAEs in one resumable run.

:func:`run_study` runs every step (evaluate, compare, classify, insert effects, stitch, swap
curves, Frankenstein, assembly, report) on two or more SAEs of one hook, encoding each SAE once
per token set; ``sae-stitch study`` is its command line.
"""

from sae_lens_stitch.study.config import STEPS, StudyConfig, load_config, make_config
from sae_lens_stitch.study.run import StudyResult, run_study
from sae_lens_stitch.study.shared import SharedEncodings

__all__ = [
    "STEPS",
    "SharedEncodings",
    "StudyConfig",
    "StudyResult",
    "load_config",
    "make_config",
    "run_study",
]
