"""Benchmark 2: insert effects of all donor latents (one pass, closed form) against one donor
encode+decode over the same activations, and against brute force (stitch each latent alone
into the base and re-evaluate), timed on a few latents and extrapolated to all.
Goal: all latents in at most 3x one donor encode+decode."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE

from benchmarks._measure import Row, measure_interleaved, print_rows, ratio_row
from benchmarks._saes import related_pair

NAME = "effects"
GOAL_RATIO = 3.0
BATCH = 4096

# (n_base, n_donor, d_in, n_tokens, brute-force latents timed)
FULL = (4096, 8192, 768, 8192, 3)
QUICK = (256, 512, 64, 1024, 2)


@torch.no_grad()
def forward_sse(sae: SAE[Any], x_ND: torch.Tensor) -> float:
    """Summed squared error of ``sae`` on ``x_ND``: encode and decode, by batches."""
    sse = 0.0
    for s in range(0, x_ND.shape[0], BATCH):
        x = x_ND[s : s + BATCH]
        sse += float((x - sae.decode(sae.encode(x))).double().pow(2).sum())
    return sse


def run(*, quick: bool, repeat: int) -> list[Row]:
    from sae_lens_stitch import stitch
    from sae_lens_stitch.analysis.effects import insert_effects

    n_base, n_donor, d_in, n_tok, n_brute = QUICK if quick else FULL
    base, donor, _ = related_pair(n_base, d_in, children=1, n_novel=n_donor - n_base, seed=3)
    x_ND = torch.randn(n_tok, d_in, generator=torch.Generator().manual_seed(4))
    brute_idx = torch.linspace(0, n_donor - 1, n_brute).round().long().tolist()

    def brute_force() -> list[float]:
        return [forward_sse(stitch(base, donor, [i]), x_ND) for i in brute_idx]

    got = measure_interleaved(
        {
            "donor encode+decode": lambda: forward_sse(donor, x_ND),
            "insert_effects (all)": lambda: insert_effects(
                base, donor, x_ND, batch_size=BATCH, show_progress=False
            ),
            f"brute force ({n_brute} latents)": brute_force,
        },
        repeat,
    )
    # correctness: the closed form equals brute force on the timed latents
    effects = insert_effects(base, donor, x_ND, indices=brute_idx, show_progress=False)
    base_sse = forward_sse(base, x_ND)
    brute = torch.tensor(brute_force(), dtype=torch.float64) - base_sse
    torch.testing.assert_close(
        effects.delta_sse, brute, rtol=1e-3, atol=1e-2 * abs(base_sse) / n_tok
    )

    ref = got["donor encode+decode"]
    ours = got["insert_effects (all)"]
    brute_m = got[f"brute force ({n_brute} latents)"]
    scale = n_donor / n_brute
    label = f"{n_base}<-{n_donor} @{d_in}, {n_tok} tok"
    rows = [
        Row(NAME, label, "donor encode+decode", ref.seconds, ref.cpu_seconds, ref.peak_mib),
        ratio_row(
            NAME,
            label,
            "insert_effects (all)",
            ours,
            ref,
            baseline="encode+decode",
            goal_ratio=GOAL_RATIO,
            note="includes match_features(donor, base) for the cosine proxy",
        ),
        ratio_row(
            NAME,
            label,
            "brute force (extrapolated)",
            brute_m,
            ref,
            baseline="encode+decode",
            scale=scale,
            note=f"{n_brute} latents timed, x {scale:.0f}; "
            f"insert_effects is {brute_m.cpu_seconds * scale / ours.cpu_seconds:.0f}x faster",
        ),
    ]
    print_rows(rows)
    return rows
