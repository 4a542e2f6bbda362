"""Benchmark 7: the study's core for one width pair, against a plain-torch single pass.

The core figures of a pair (small, large) on the evaluation tokens: both SAEs' metrics, the
large SAE's dead latents (classification with activations), every large latent's insert effect
into the small SAE, and the metrics of the small SAE with the novel-by-cosine latents stitched
in. The baseline computes exactly those with plain torch in one pass (encode both, decode,
project the residual onto the large decoder, decode the stitched SAE); the study gets them from
:class:`~sae_lens_stitch.study.SharedEncodings` (one encode of each SAE) plus closed forms.
Goal: core <= 1.2x the plain pass (CPU time, same run). Real MiniLM family (50k evaluation
tokens) when ../shared/realdata is there, else a synthetic pair."""

from __future__ import annotations

from typing import Any

import torch
from sae_lens import SAE

from benchmarks._measure import Row, measure_interleaved, print_rows, ratio_row
from benchmarks.bench_assemble import REALDATA, _real_activations

NAME = "study"


@torch.no_grad()
def plain_pass(
    small: SAE[Any], large: SAE[Any], x_ND: torch.Tensor, novel: torch.Tensor, batch: int
) -> dict[str, Any]:
    """The core figures in plain torch, one pass over the tokens."""
    W_s, W_l = small.W_dec.detach(), large.W_dec.detach()
    sq_norm_L = W_l.double().pow(2).sum(-1)
    sse_s = sse_l = sse_st = 0.0
    cross_L = torch.zeros(W_l.shape[0], dtype=torch.float64)
    a2_L = torch.zeros(W_l.shape[0], dtype=torch.float64)
    fires_L = torch.zeros(W_l.shape[0], dtype=torch.long)
    for s in range(0, x_ND.shape[0], batch):
        x = x_ND[s : s + batch]
        f_s, f_l = small.encode(x), large.encode(x)
        xh_s = f_s @ W_s + small.b_dec
        xh_l = f_l @ W_l + large.b_dec
        r = x - xh_s
        sse_s += float(r.double().pow(2).sum())
        sse_l += float((x - xh_l).double().pow(2).sum())
        cross_L += (f_l * (r @ W_l.T)).double().sum(0)
        a2_L += f_l.double().pow(2).sum(0)
        fires_L += (f_l != 0).sum(0)
        xh_st = xh_s + f_l[:, novel] @ W_l[novel]
        sse_st += float((x - xh_st).double().pow(2).sum())
    delta = a2_L * sq_norm_L - 2 * cross_L
    return {"sse": (sse_s, sse_l, sse_st), "delta": delta, "dead": fires_L == 0}


def study_core(
    small: SAE[Any], large: SAE[Any], x_ND: torch.Tensor, novel: torch.Tensor, batch: int
) -> dict[str, Any]:
    from sae_lens_stitch.study import SharedEncodings

    shared = SharedEncodings.build([small, large], x_ND[:2], x_ND, batch_size=batch)
    m_s, m_l = shared.trained_metrics(0), shared.trained_metrics(1)
    dead = shared.firing_counts(1) == 0
    delta, _ = shared.insert_delta_sse(0, 1)
    union = torch.cat([shared.union(0), shared.union(1, novel)])
    m_st = shared.metrics(union, shared.bias(0))
    n = x_ND.shape[0]
    return {
        "sse": (m_s.mse.value * n, m_l.mse.value * n, m_st.mse.value * n),
        "delta": delta,
        "dead": dead,
    }


def _synthetic() -> tuple[list[SAE[Any]], torch.Tensor]:
    from sae_lens.saes import StandardSAE, StandardSAEConfig

    gen = torch.Generator().manual_seed(0)
    saes = []
    for width in (1024, 2048):
        sae = StandardSAE(StandardSAEConfig(d_in=256, d_sae=width))
        with torch.no_grad():
            sae.W_dec.copy_(torch.randn(width, 256, generator=gen) / 16)
            sae.W_enc.copy_(sae.W_dec.T.clone() * 4)
            sae.b_enc.fill_(-0.35)
        saes.append(sae)
    return saes, torch.randn(20_000, 256, generator=gen)


def run(*, quick: bool = False, repeat: int = 3) -> list[Row]:
    from sae_lens_stitch.analysis.classify import classify_features

    x = None if quick else _real_activations(100_035)
    if x is not None:
        saes = [SAE.load_from_disk(str(REALDATA / f"sae_w{w}")) for w in (1536, 3072, 6144)]
        x = x[x.shape[0] // 2 :]  # the study's evaluation half
        pairs = [(saes[0], saes[1]), (saes[1], saes[2])]
        label = "MiniLM {}->{}, " + f"{x.shape[0]} eval tok"
    else:
        syn, x = _synthetic()
        pairs = [(syn[0], syn[1])]
        label = "synthetic {}->{}, " + f"{x.shape[0]} tok"
    rows: list[Row] = []
    for small, large in pairs:
        novel = classify_features(small, large).novel_indices
        got = measure_interleaved(
            {
                "plain": lambda s=small, lg=large, nv=novel: plain_pass(s, lg, x, nv, 4096),
                "study": lambda s=small, lg=large, nv=novel: study_core(s, lg, x, nv, 4096),
            },
            repeat,
        )
        a, b = plain_pass(small, large, x, novel, 4096), study_core(small, large, x, novel, 4096)
        err = max(abs(p - q) / p for p, q in zip(a["sse"], b["sse"], strict=True))
        case = label.format(small.cfg.d_sae, large.cfg.d_sae)
        ref = got["plain"]
        rows += [
            Row(
                NAME,
                case,
                "plain-torch pass (baseline)",
                ref.seconds,
                ref.cpu_seconds,
                ref.peak_mib,
            ),
            ratio_row(
                NAME,
                case,
                "study core (SharedEncodings)",
                got["study"],
                ref,
                baseline="plain-torch pass",
                goal_ratio=1.2,
                note=f"max rel. SSE difference {err:.1e}; same dead latents: "
                f"{bool(torch.equal(a['dead'], b['dead']))}",
            ),
        ]
    print_rows(rows)
    return rows
