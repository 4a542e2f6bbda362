"""Command evaluate."""

from __future__ import annotations

import argparse
from typing import Any

from sae_lens_stitch.cli.common import (
    CLIError,
    emit,
    load_all,
    prepare_out,
    write_json,
)


def _synthetic_activations(n_tokens: int, seed: int) -> Any:
    from sae_lens_stitch.demo.data import load_ground_truth

    return load_ground_truth().sample(n_tokens, seed=seed)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sae_lens_stitch.evaluation.activations import fit_activations, read_activation_file

    if not args.activations and not args.synthetic:
        raise CLIError(
            "evaluate needs activations: --activations FILE (.pt/.safetensors) or --synthetic "
            "(the demo family's synthetic generator)"
        )
    prepare_out(args.out, create=False)
    raw = read_activation_file(args.activations) if args.activations else None
    out = prepare_out(args.out)
    saes = load_all(args, args.saes)
    from sae_lens_stitch.checks import check_compatible
    from sae_lens_stitch.evaluation.metrics import evaluate
    from sae_lens_stitch.provenance import content_hash, describe_sae, display_name

    for other in saes[1:]:
        check_compatible(saes[0], other)
    d_in = saes[0].cfg.d_in
    if raw is not None:
        acts = fit_activations(raw, args.activations, d_in)
    else:
        acts = _synthetic_activations(args.n_tokens, args.seed)
        if acts.shape[-1] != d_in:
            raise CLIError(
                f"--synthetic generates the demo family's activations (d_in {acts.shape[-1]}); "
                f"the SAE has d_in {d_in}"
            )
    results = []
    lines = []
    for source, sae in zip(args.saes, saes, strict=True):
        m = evaluate(sae, acts)
        results.append(
            {
                "source": source,
                "name": display_name(sae),
                "sae": describe_sae(sae),
                "content_hash": content_hash(sae),
                "metrics": m.model_dump(mode="json"),
            }
        )
        lines.append(
            f"{display_name(sae)}: d_sae {m.d_sae}, MSE {m.mse.value:.4g}, FVU {m.fvu.value:.4f}, "
            f"L0 {m.l0.value:.2f}, dead {int(m.n_dead.value)}"
        )
    payload = {
        "activations": args.activations
        or f"synthetic demo generator ({args.n_tokens} tokens, seed {args.seed})",
        "results": results,
    }
    write_json(out / "evaluation.json", payload)
    emit(args, payload, [*lines, f"wrote {out / 'evaluation.json'}"])
    return 0
