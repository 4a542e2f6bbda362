"""``python -m sae_lens_stitch.cli``."""

import sys

from sae_lens_stitch.cli import main

sys.exit(main())
