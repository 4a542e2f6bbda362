"""Package version (kept free of heavy imports so the CLI can read it instantly)."""

__version__ = "0.1.0"
