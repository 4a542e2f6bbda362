"""How latents relate beyond decoder cosine: the extra parts of ``compare`` (activation
correlation and its agreement with cosine, one-to-one matching) and the ``decompose`` command
(meta-SAEs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sae_lens_stitch.cli.common import (
    CLIError,
    _save,
    emit,
    load,
    prepare_out,
    write_json,
)


def int_list(text: str) -> list[int]:
    """``"192,384"`` -> ``[192, 384]`` (an argparse type)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {text!r}")
    return values


def check_compare(args: argparse.Namespace) -> None:
    if args.by == "activation" and not args.activations:
        raise CLIError("--by activation needs --activations FILE")
    if args.by != "activation" and args.activations:
        raise CLIError("--activations is only used with --by activation")


def check_classify(args: argparse.Namespace) -> None:
    if args.agreement and not args.activations:
        raise CLIError("--agreement needs --activations FILE")


def classify_extras(
    args: argparse.Namespace, small: Any, large: Any, cls: Any, acts: Any, out: Path
) -> tuple[dict[str, Any], list[str]]:
    """What ``classify --agreement`` adds to classification.json, and the summary lines."""
    if not args.agreement:
        return {}, []
    from sae_lens_stitch.analysis.match import FeatureMatches

    fwd = FeatureMatches(
        values=cls.max_cosine[:, None], indices=cls.best_partner[:, None], weights=args.weights
    )
    return agreement_extras(args, small, large, fwd, acts, out / "classify_agreement")


def check_decompose(args: argparse.Namespace) -> None:
    for w in args.width:
        if w < 1:
            raise CLIError(f"--width must be positive, got {w}")
    for k in args.k:
        if k < 1:
            raise CLIError(f"--k must be positive, got {k}")
    if args.steps < 0:
        raise CLIError(f"--steps must be 0 or more, got {args.steps}")
    if not 0 < args.lr < float("inf"):
        raise CLIError(f"--lr must be a positive number, got {args.lr}")
    if args.other is not None:
        from sae_lens_stitch.cli.common import check_source

        check_source(args.other)


def compare_extras(
    args: argparse.Namespace, small: Any, large: Any, fwd: Any, bwd: Any, out: Path
) -> tuple[dict[str, Any], list[str]]:
    """What ``compare --by activation`` and ``--one-to-one`` add to compare.json, and the
    summary lines."""
    payload: dict[str, Any] = {"by": args.by}
    lines: list[str] = []
    if args.one_to_one:
        from sae_lens_stitch.analysis.match import match_features, one_to_one_summary

        one = match_features(large, small, weights=args.weights, one_to_one=True)
        summary = one_to_one_summary(fwd, one)
        payload["one_to_one"] = summary.model_dump(mode="json")
        lines.append(
            f"one-to-one: {summary.n_matched} pairs, mean cosine "
            f"{summary.mean_matched_cosine.value:.3f} (many-to-one max of the same latents "
            f"{summary.mean_max_cosine_matched.value:.3f}); {summary.n_changed_partner} "
            "latents change partner"
        )
    if args.by != "activation":
        return payload, lines
    from sae_lens_stitch.evaluation.activations import read_activations

    acts = read_activations(args.activations, large.cfg.d_in)
    extra, extra_lines = agreement_extras(args, small, large, fwd, acts, out / "compare_agreement")
    return payload | extra, lines + extra_lines


def agreement_extras(
    args: argparse.Namespace, small: Any, large: Any, fwd: Any, acts: Any, stem: Path
) -> tuple[dict[str, Any], list[str]]:
    """Activation correlation both ways and its agreement with the cosine matches ``fwd``
    (large -> small), plotted at ``stem``: the payload entries and summary lines."""
    from sae_lens_stitch.analysis.agreement import view_agreement
    from sae_lens_stitch.analysis.correlate import coactivation_stats, top_correlations
    from sae_lens_stitch.analysis.match import similarity_stats
    from sae_lens_stitch.report.relation_plots import plot_view_agreement

    stats = coactivation_stats(large, small, acts)
    corr_fwd = top_correlations(stats)
    corr_bwd = top_correlations(stats.transposed())
    agreement = view_agreement(fwd, corr_fwd, threshold=args.threshold, names=("small", "large"))
    plot = plot_view_agreement(stem, fwd.best_values, corr_fwd.best_values, agreement)

    def corr_stats(m: Any) -> dict[str, Any]:
        assert m.dead_source is not None
        live = ~m.dead_source
        return {"n_dead": int((~live).sum())} | (
            similarity_stats(m.best_values[live], args.threshold) if bool(live.any()) else {}
        )

    payload = {
        "n_tokens": stats.n_tokens,
        "correlation_large_to_small": corr_stats(corr_fwd),
        "correlation_small_to_large": corr_stats(corr_bwd),
        "agreement": agreement.model_dump(mode="json"),
    }
    a = agreement
    aurocs = ", ".join(
        f"{x.correlation_threshold:g}: {x.auroc.value:.3f}"
        if x.auroc
        else f"{x.correlation_threshold:g}: n/a"
        for x in a.aurocs
    )
    lines = [
        f"activation correlation over {stats.n_tokens} tokens: {a.n_dead} large latents dead; "
        f"best partner agrees for {a.best_partner_agreement.value:.1%}, "
        f"Spearman {a.rank_correlation.value:.3f}, AUROC of max cosine for max corr >= t: {aurocs}",
        f"wrote {plot.png}",
    ]
    return payload, lines


def cmd_decompose(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/decompose")
    sae = load(args, args.sae)
    other = load(args, args.other) if args.other is not None else None
    from sae_lens_stitch.analysis.decompose import decompose
    from sae_lens_stitch.report.relation_plots import plot_decomposition_curve

    runs: list[dict[str, Any]] = []
    summaries = []
    lines: list[str] = []
    for width in args.width:
        for k in args.k:
            dec = decompose(
                sae,
                width=width,
                k=k,
                steps=args.steps,
                lr=args.lr,
                seed=args.seed,
                other=other,
                threshold=args.threshold,
            )
            folder = _save(dec.sae, out / f"meta_w{width}_k{k}", args.overwrite)
            s = dec.summary
            runs.append(s.model_dump(mode="json") | {"folder": str(folder)})
            fam = s.family_agreement
            lines.append(
                f"width {width}, k {k}: explained variance {s.explained_variance.value:.3f}, "
                f"{int(s.n_dead_meta_latents.value)} unused meta-latents"
                + (
                    f"; same-family pairs share a meta-latent {fam.shared_in_family.value:.1%} "
                    f"vs {fam.shared_at_random.value:.1%} at random"
                    if fam is not None
                    else ""
                )
            )
            summaries.append(s)
    plot = plot_decomposition_curve(out / "decompose_curve", summaries)
    payload = {"d_sae": sae.cfg.d_sae, "runs": runs, "plot": plot.model_dump(mode="json")}
    write_json(out / "decompose.json", payload)
    emit(args, payload, [*lines, f"wrote {out / 'decompose.json'} and {plot.png}"])
    return 0
