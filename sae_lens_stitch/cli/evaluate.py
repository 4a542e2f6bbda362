"""Command evaluate."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sae_lens_stitch.cli.activations import (
    activations_from_args,
    describe_source,
    load_model_from_args,
)
from sae_lens_stitch.cli.common import (
    PROG,
    CLIError,
    emit,
    load_all,
    prepare_out,
    write_json,
)


def _synthetic_activations(n_tokens: int, seed: int) -> Any:
    from sae_lens_stitch.demo.data import load_ground_truth

    return load_ground_truth().sample(n_tokens, seed=seed)


def _model_lines(m: Any) -> str:
    return (
        f"  in the model: CE clean {m.ce_loss_clean.value:.4f}, with SAE "
        f"{m.ce_loss_with_sae.value:.4f}, zero-ablated {m.ce_loss_zero_ablation.value:.4f}, "
        f"loss recovered {m.ce_loss_recovered.value:.4f}, KL {m.kl_div_with_sae.value:.4g}"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sae_lens_stitch.evaluation.activations import fit_activations, read_activation_file

    if not args.activations and not args.synthetic and not args.model:
        raise CLIError(
            "evaluate needs activations: --activations FILE (.pt/.safetensors/.npy), --model M "
            "(activations and language-model metrics from a model), or --synthetic "
            "(the demo family's synthetic generator)"
        )
    if args.synthetic and args.model:
        raise CLIError("--synthetic and --model cannot be combined")
    prepare_out(args.out, default="runs/evaluate", create=False)
    raw = read_activation_file(args.activations) if args.activations else None
    out = prepare_out(args.out, default="runs/evaluate")
    saes = load_all(args, args.saes)
    from sae_lens_stitch.checks import check_compatible
    from sae_lens_stitch.evaluation.metrics import evaluate
    from sae_lens_stitch.provenance import content_hash, describe_sae, display_name

    for other in saes[1:]:
        check_compatible(saes[0], other)
    d_in = saes[0].cfg.d_in
    model = load_model_from_args(args, saes[0]) if args.model else None
    source: Any = None
    lines: list[str] = []
    if raw is not None:
        acts = fit_activations(raw, args.activations, d_in, max_tokens=args.max_tokens)
        described = args.activations
    elif model is not None:
        made = activations_from_args(args, saes[0], model)
        acts, source, described = made.activations, made.source, str(made.path)
        lines.append(f"activations: {describe_source(made)}")
    else:
        acts = _synthetic_activations(args.n_tokens, args.seed)
        described = f"synthetic demo generator ({args.n_tokens} tokens, seed {args.seed})"
        if acts.shape[-1] != d_in:
            raise CLIError(
                f"--synthetic generates the demo family's activations (d_in {acts.shape[-1]}); "
                f"the SAE has d_in {d_in}"
            )
    model_metrics: list[Any] = [None] * len(saes)
    if model is not None:
        model_metrics = _model_metrics(args, saes, model)
    results = []
    for source_text, sae, mm in zip(args.saes, saes, model_metrics, strict=True):
        m = evaluate(sae, acts)
        entry = {
            "source": source_text,
            "name": display_name(sae),
            "sae": describe_sae(sae),
            "content_hash": content_hash(sae),
            "metrics": m.model_dump(mode="json"),
        }
        if mm is not None:
            entry["model_metrics"] = mm.model_dump(mode="json")
        results.append(entry)
        lines.append(
            f"{display_name(sae)}: d_sae {m.d_sae}, MSE {m.mse.value:.4g}, FVU {m.fvu.value:.4f}, "
            f"L0 {m.l0.value:.2f}, dead {int(m.n_dead.value)}"
        )
        if mm is not None:
            lines.append(_model_lines(mm))
    payload: dict[str, Any] = {"activations": described, "results": results}
    if source is not None:
        payload["activations_source"] = source.model_dump(mode="json")
    write_json(out / "evaluation.json", payload)
    emit(args, payload, [*lines, f"wrote {out / 'evaluation.json'}"])
    return 0


def _model_metrics(args: argparse.Namespace, saes: list[Any], model: Any) -> list[Any]:
    """Language-model metrics of every SAE, or Nones and a note when the model has no
    language-model head (the transformers backend)."""
    from sae_lens_stitch.evaluation.model_activations import language_model_metrics

    if model.backend != "transformer_lens":
        print(
            f"{PROG}: note: {model.name!r} was loaded with transformers (no language-model head): "
            "CE loss, loss recovered and KL need a transformer-lens language model; "
            "reconstruction metrics only",
            file=sys.stderr,
        )
        return [None] * len(saes)
    return language_model_metrics(
        saes,
        model=model,
        dataset=args.dataset,
        n_tokens=args.n_tokens,
        context_size=args.context_size,
        prepend_bos=args.prepend_bos,
        hook_name=args.hook,
        device=args.device,
    )
