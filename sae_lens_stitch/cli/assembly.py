"""Commands assemble and refit."""

from __future__ import annotations

import argparse
from typing import Any

from sae_lens_stitch.cli.common import (
    CLIError,
    _save,
    _surgery_payload,
    emit,
    load,
    load_all,
    parse_indices,
    prepare_out,
    prepare_sae_out,
    write_json,
)


def _read_files(args: argparse.Namespace) -> tuple[Any, Any]:
    """The --activations and --eval-activations files, read (and checked) before any SAE is
    loaded, so a bad file fails at once."""
    from sae_lens_stitch.evaluation.activations import read_activation_file

    raw = read_activation_file(args.activations)
    return raw, read_activation_file(args.eval_activations) if args.eval_activations else None


def _fit_and_eval(args: argparse.Namespace, raws: tuple[Any, Any], d_in: int) -> tuple[Any, Any]:
    """(fit, evaluation) activations: the two files, or the last --eval-fraction held out."""
    from sae_lens_stitch.assembly.assemble import split_tokens
    from sae_lens_stitch.evaluation.activations import fit_activations

    cap = args.max_tokens
    acts = fit_activations(raws[0], args.activations, d_in, max_tokens=cap)
    eval_acts = (
        None
        if raws[1] is None
        else fit_activations(raws[1], args.eval_activations, d_in, max_tokens=cap)
    )
    return split_tokens(acts, d_in, eval_acts, args.eval_fraction)


def cmd_assemble(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, create=False)
    if (out / "sae").exists() and not args.overwrite:
        raise CLIError(f"{str(out / 'sae')!r} already exists; pass --overwrite to replace it")
    raws = _read_files(args)
    saes = load_all(args, args.saes)
    pool = parse_indices(args.pool) if args.pool is not None else None
    from sae_lens_stitch.assembly.assemble import assemble
    from sae_lens_stitch.assembly.pareto import pareto
    from sae_lens_stitch.report.plots import plot_pareto

    fit_x, ev_x = _fit_and_eval(args, raws, saes[0].cfg.d_in)
    result = assemble(
        saes,
        fit_x,
        eval_activations=ev_x,
        width=args.width,
        l0=args.l0,
        start=args.start,
        keep_start=not args.no_keep_start,
        pool=pool,
        refit=not args.no_refit,
        eval_fraction=args.eval_fraction,
        max_moves=args.max_moves,
        significance=args.significance,
    )
    r = result.result
    plane = None
    if not args.no_baselines:  # measured before anything is written: a failure leaves nothing
        plane = pareto(saes, fit_x, ev_x, result, threshold=args.threshold)
    out.mkdir(exist_ok=True)
    saved = _save(result.sae, out / "sae", args.overwrite)
    write_json(out / "assembly.json", r.model_dump(mode="json"))
    lines = [
        f"assembled {result.sae.cfg.d_sae} latents ({', '.join(f'{n} from SAE {k} (d_sae {w})' for k, (n, w) in enumerate(zip(r.selected_per_sae, r.widths, strict=True)) if n)}) "
        f"in {len(r.path) - 1} moves; stopped: {r.stopped}; evaluation MSE rose after "
        f"{r.eval_rises} of them (fit MSE after none)",
        f"eval ({r.n_eval_tokens} tokens): FVU {r.eval.fvu.value:.4f}, MSE {r.eval.mse.value:.4g}, "
        f"L0 {r.eval.l0.value:.2f}; fit ({r.n_fit_tokens} tokens): FVU {r.fit.fvu.value:.4f}",
        f"saved to {saved}; wrote {out / 'assembly.json'}",
    ]
    payload: dict[str, Any] = {"folder": str(saved), "assembly": r.model_dump(mode="json")}
    if plane is not None:
        write_json(out / "pareto.json", plane.model_dump(mode="json"))
        files = plot_pareto(plane, out / "pareto")
        payload["pareto"] = plane.model_dump(mode="json")
        for p in plane.points:
            lines.append(f"  {p.label:<44} width {p.width:>6}  L0 {p.l0:6.2f}  FVU {p.fvu:.4f}")
        lines.append(f"wrote {out / 'pareto.json'} and {files.png}")
    emit(args, payload, lines)
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    folder = prepare_sae_out(args.out, args.overwrite)
    raws = _read_files(args)
    sae = load(args, args.sae)
    from sae_lens_stitch.assembly.refit import refit_with_result
    from sae_lens_stitch.evaluation.metrics import evaluate

    fit_x, ev_x = _fit_and_eval(args, raws, sae.cfg.d_in)
    new, info = refit_with_result(sae, fit_x)
    before, after = evaluate(sae, ev_x), evaluate(new, ev_x)
    saved = _save(new, folder, args.overwrite)
    payload = _surgery_payload(new, saved) | {
        "refit": info.model_dump(mode="json"),
        "eval_before": before.model_dump(mode="json"),
        "eval_after": after.model_dump(mode="json"),
    }
    emit(
        args,
        payload,
        [
            f"refit {sae.cfg.d_sae} latents on {fit_x.shape[0]} tokens: scales "
            f"{info.scale_min:.3g} .. {info.scale_max:.3g} (median {info.scale_median:.3g}), "
            f"{info.solve.n_zero} at 0",
            f"eval ({ev_x.shape[0]} tokens): FVU {before.fvu.value:.4f} -> {after.fvu.value:.4f}, "
            f"L0 {before.l0.value:.2f} -> {after.l0.value:.2f}",
            f"saved to {saved}",
        ],
    )
    return 0
