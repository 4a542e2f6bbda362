"""Benchmarks of sae-lens-stitch (``make bench`` / ``python -m benchmarks.run``).

Each benchmark prints its figure beside a baseline measured in the same run, as a ratio:
absolute times drift on a shared machine, ratios measured side by side drift much less.
"""
