"""Benchmark 5: peak memory of stitch at ~98k latents: base 49,152 + donor 98,304 latents at
d_in 768, inserting a realistic 35% of the donor's latents (34,406), against the size of the
output SAE. Goal: peak memory above the inputs at most 2x the output SAE's size."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE

from benchmarks._measure import MIB, Row, measure_once, print_rows

NAME = "stitch"
GOAL_RATIO = 2.0
INSERT_FRACTION = 0.35

FULL = (49152, 98304, 768)
QUICK = (2048, 4096, 128)


def random_standard_sae(d_sae: int, d_in: int, seed: int) -> SAE[Any]:
    """A StandardSAE built on the meta device whose weights are assigned random tensors (no
    random init by SAE-Lens, no copy)."""
    from sae_lens.saes import StandardSAE, StandardSAEConfig

    gen = torch.Generator().manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae, device="meta"))
    state = {
        "W_enc": torch.randn(d_in, d_sae, generator=gen) * 0.05,
        "W_dec": torch.randn(d_sae, d_in, generator=gen) * 0.05,
        "b_enc": torch.randn(d_sae, generator=gen) * 0.1,
        "b_dec": torch.randn(d_in, generator=gen) * 0.1,
    }
    sae.load_state_dict(state, assign=True)
    sae.cfg.device = "cpu"
    return sae


def sae_bytes(sae: SAE[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in sae.state_dict().values())


def run(*, quick: bool, repeat: int) -> list[Row]:
    """Peak RSS rise of ``stitch(base, donor, indices)`` over the inputs, against the output's
    size; one row per repeat is not kept: the largest rise and the fastest time are."""
    from sae_lens_stitch import stitch

    n_base, n_donor, d_in = QUICK if quick else FULL
    base = random_standard_sae(n_base, d_in, 0)
    donor = random_standard_sae(n_donor, d_in, 1)
    gen = torch.Generator().manual_seed(2)
    n_insert = round(INSERT_FRACTION * n_donor)
    indices = torch.randperm(n_donor, generator=gen)[:n_insert].sort().values
    best_s, best_cpu, worst_rise, out_bytes = float("inf"), float("inf"), 0, 0
    for _ in range(repeat):
        seconds, rise, cpu, out = measure_once(lambda: stitch(base, donor, indices))
        out_bytes = sae_bytes(out)
        del out
        best_s, best_cpu = min(best_s, seconds), min(best_cpu, cpu)
        worst_rise = max(worst_rise, rise or 0)
    ratio = worst_rise / out_bytes
    label = f"{n_base}+{n_insert}/{n_donor} @{d_in}"
    rows = [
        Row(
            NAME,
            label,
            "output SAE size",
            None,
            peak_mib=out_bytes / MIB,
            note=f"inputs {(sae_bytes(base) + sae_bytes(donor)) / MIB:.0f} MiB",
        ),
        Row(
            NAME,
            label,
            "stitch (explicit indices)",
            best_s,
            best_cpu,
            worst_rise / MIB,
            baseline="output size",
            ratio=ratio,
            goal=f"peak <= {GOAL_RATIO}x output",
            met=ratio <= GOAL_RATIO,
            note="peak RSS rise above the inputs, ratio of memory not time",
        ),
    ]
    print_rows(rows)
    return rows
