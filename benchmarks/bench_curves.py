"""Benchmark 3: the full swap-interpolation curve (every family swapped one at a time, a point
after each) against one forward pass of the fully swapped SAE over the same activations, and
against recomputing every point (swap that many families, then encode+decode), timed on a few
points and extrapolated to all. Goal: the curve in at most 3x one forward pass."""

from __future__ import annotations

import torch

from benchmarks._measure import Row, measure_interleaved, print_rows, ratio_row
from benchmarks._saes import related_pair
from benchmarks.bench_effects import forward_sse

NAME = "curves"
GOAL_RATIO = 3.0
BATCH = 4096

# (n_small, children, n_novel, d_in, n_tokens, recomputed points timed)
FULL = (2048, 2, 2048, 768, 8192, 3)
QUICK = (128, 2, 128, 64, 1024, 2)


def run(*, quick: bool, repeat: int) -> list[Row]:
    from sae_lens_stitch import FeatureFamily, swap
    from sae_lens_stitch.evaluation.curves import swap_curve

    n_small, children, n_novel, d_in, n_tok, n_points = QUICK if quick else FULL
    small, large, planted = related_pair(n_small, d_in, children=children, n_novel=n_novel, seed=5)
    families = [
        FeatureFamily(small_indices=s, large_indices=lg, max_cosine=1.0) for s, lg in planted
    ]
    x_ND = torch.randn(n_tok, d_in, generator=torch.Generator().manual_seed(6))
    swapped = swap(small, large, families)
    steps = torch.linspace(1, len(families), n_points).round().long().tolist()

    def recompute() -> list[float]:
        return [forward_sse(swap(small, large, families[:k]), x_ND) for k in steps]

    got = measure_interleaved(
        {
            "swapped SAE forward": lambda: forward_sse(swapped, x_ND),
            "swap_curve (all points)": lambda: swap_curve(
                small, large, x_ND, families=families, batch_size=BATCH, show_progress=False
            ),
            f"recompute ({n_points} points)": recompute,
        },
        repeat,
    )
    # correctness: the incremental points equal the recomputed ones
    curve = swap_curve(small, large, x_ND, families=families, show_progress=False)
    for k, sse in zip(steps, recompute(), strict=True):
        torch.testing.assert_close(curve.points[k].mse, sse / n_tok, rtol=1e-4, atol=1e-6)

    ref = got["swapped SAE forward"]
    ours = got["swap_curve (all points)"]
    rec = got[f"recompute ({n_points} points)"]
    scale = (len(families) + 1) / n_points
    label = f"{n_small}->{swapped.cfg.d_sae} @{d_in}, {n_tok} tok"
    rows = [
        Row(NAME, label, "swapped SAE forward", ref.seconds, ref.cpu_seconds, ref.peak_mib),
        ratio_row(
            NAME,
            label,
            "swap_curve (all points)",
            ours,
            ref,
            baseline="one forward",
            goal_ratio=GOAL_RATIO,
            note=f"{len(families)} families, {len(families) + 1} points, families given",
        ),
        ratio_row(
            NAME,
            label,
            "recompute every point (extr.)",
            rec,
            ref,
            baseline="one forward",
            scale=scale,
            note=f"{n_points} points timed, x {scale:.0f}; "
            f"swap_curve is {rec.cpu_seconds * scale / ours.cpu_seconds:.0f}x faster",
        ),
    ]
    print_rows(rows)
    return rows
