"""Benchmark 1: match_features against the matrix-multiply floor, the dense computation and a
loop over column chunks of 100 (the SAEBench style), at d_in 768 and 2304, and at
98,304 x 49,152 latents (d_in 768) where the dense matrix cannot fit."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE

from benchmarks._measure import MIB, Row, measure_interleaved, measure_once, print_rows

NAME = "match"
GOAL_RATIO = 1.15
CHUNK = 100

# (label, n_source, n_target, d_in). Widths are scaled so that the four variants, repeated,
# finish in about a minute on 2 cores (one matmul is ~2*S*T*D flops: ~200 GFLOP here).
SCALED: list[tuple[str, int, int, int]] = [
    ("768: 16384 x 8192", 16384, 8192, 768),
    ("2304: 8192 x 4096", 8192, 4096, 2304),
]
QUICK: list[tuple[str, int, int, int]] = [
    ("768: 2048 x 1024", 2048, 1024, 768),
    ("2304: 1024 x 512", 1024, 512, 2304),
]
LARGE = ("768: 98304 x 49152", 98304, 49152, 768)


def sae_from_decoder(W_dec_LD: torch.Tensor) -> SAE[Any]:
    """A StandardSAE built on the meta device (no random init) whose decoder is ``W_dec_LD``.
    Only W_dec is real; match_features reads nothing else."""
    from sae_lens.saes import StandardSAE, StandardSAEConfig

    n, d = W_dec_LD.shape
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=n, device="meta"))
    sae.W_dec = torch.nn.Parameter(W_dec_LD, requires_grad=False)
    return sae


def random_rows(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def _normalise(rows_RD: torch.Tensor) -> torch.Tensor:
    return rows_RD / rows_RD.norm(dim=-1, keepdim=True)


def dense_max(src_SD: torch.Tensor, tgt_TD: torch.Tensor) -> torch.Tensor:
    """The dense approach: normalise, full [S, T] product, max over targets."""
    return (_normalise(src_SD) @ _normalise(tgt_TD).T).max(dim=1).values


def chunked_max(src_SD: torch.Tensor, tgt_TD: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """SAEBench style: normalise, then a running max over column chunks of ``chunk`` targets."""
    s_SD, t_TD = _normalise(src_SD), _normalise(tgt_TD)
    best_S = torch.full((s_SD.shape[0],), -torch.inf)
    for t0 in range(0, t_TD.shape[0], chunk):
        best_S = torch.maximum(best_S, (s_SD @ t_TD[t0 : t0 + chunk].T).max(dim=1).values)
    return best_S


def run_case(label: str, n_s: int, n_t: int, d: int, repeat: int) -> tuple[list[Row], float, float]:
    """Rows for one shape, and the floor's flop rates (per CPU second and per wall second)
    for extrapolation."""
    from sae_lens_stitch.analysis.match import match_features

    src_SD, tgt_TD = random_rows(n_s, d, 0), random_rows(n_t, d, 1)
    source, target = sae_from_decoder(src_SD), sae_from_decoder(tgt_TD)
    s_n, t_n = _normalise(src_SD), _normalise(tgt_TD)
    fns = {
        "floor (one matmul)": lambda: s_n @ t_n.T,
        "match_features": lambda: match_features(source, target, show_progress=False),
        "dense (norm, product, max)": lambda: dense_max(src_SD, tgt_TD),
        f"chunks of {CHUNK}": lambda: chunked_max(src_SD, tgt_TD),
    }
    got = measure_interleaved(fns, repeat)
    # correctness: same maxima as the dense computation
    ours = match_features(source, target, show_progress=False).best_values
    torch.testing.assert_close(ours, dense_max(src_SD, tgt_TD), atol=1e-5, rtol=1e-5)
    floor = got["floor (one matmul)"]
    rows: list[Row] = []
    for name, m in got.items():
        is_floor, is_ours = name.startswith("floor"), name == "match_features"
        ratio = m.cpu_seconds / floor.cpu_seconds
        rows.append(
            Row(
                NAME,
                label,
                name,
                m.seconds,
                m.cpu_seconds,
                m.peak_mib,
                baseline=None if is_floor else "floor",
                ratio=None if is_floor else ratio,
                wall_ratio=None if is_floor else m.seconds / floor.seconds,
                goal=f"<= {GOAL_RATIO}x floor" if is_ours else None,
                met=(ratio <= GOAL_RATIO) if is_ours else None,
                note=f"dense matrix {n_s * n_t * 4 / MIB:.0f} MiB" if is_floor else "",
            )
        )
    return rows, 2.0 * n_s * n_t * d / floor.cpu_seconds, 2.0 * n_s * n_t * d / floor.seconds


def run_large(
    label: str, n_s: int, n_t: int, d: int, cpu_rate: float, wall_rate: float
) -> list[Row]:
    """match_features once at full size; the floor is extrapolated from the flop rate of the
    matmul measured at the smaller shape of the same d_in."""
    from sae_lens_stitch.analysis.match import match_features

    source = sae_from_decoder(random_rows(n_s, d, 0))
    target = sae_from_decoder(random_rows(n_t, d, 1))
    seconds, rise, cpu, _ = measure_once(
        lambda: match_features(source, target, show_progress=False)
    )
    flops = 2.0 * n_s * n_t * d
    floor_cpu, floor_wall = flops / cpu_rate, flops / wall_rate
    ratio = cpu / floor_cpu
    return [
        Row(
            NAME,
            label,
            "floor (extrapolated)",
            floor_wall,
            floor_cpu,
            note=f"{flops / 1e12:.1f} TFLOP at the rate measured above "
            f"({wall_rate / 1e9:.0f} GFLOP/s wall); the dense matrix would be "
            f"{n_s * n_t * 4 / 2**30:.1f} GiB",
        ),
        Row(
            NAME,
            label,
            "match_features",
            seconds,
            cpu,
            None if rise is None else rise / MIB,
            baseline="floor (extrapolated)",
            ratio=ratio,
            wall_ratio=seconds / floor_wall,
            goal=f"<= {GOAL_RATIO}x floor",
            met=ratio <= GOAL_RATIO,
        ),
    ]


def run(*, quick: bool, repeat: int, large: bool = True) -> list[Row]:
    """All match_features rows; ``large`` adds the 98,304 x 49,152 run (not with ``quick``)."""
    rows: list[Row] = []
    rates = (0.0, 0.0)
    for label, n_s, n_t, d in QUICK if quick else SCALED:
        case_rows, cpu_rate, wall_rate = run_case(label, n_s, n_t, d, repeat)
        print_rows(case_rows)
        rows += case_rows
        if d == LARGE[3]:
            rates = (cpu_rate, wall_rate)
    if large and not quick:
        large_rows = run_large(*LARGE, cpu_rate=rates[0], wall_rate=rates[1])
        print_rows(large_rows)
        rows += large_rows
    return rows
