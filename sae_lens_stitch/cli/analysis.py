"""Commands compare, classify and families."""

from __future__ import annotations

import argparse

from sae_lens_stitch.cli.common import (
    _activations,
    emit,
    load_all,
    prepare_out,
    write_json,
)
from sae_lens_stitch.cli.relations import classify_extras, compare_extras


def cmd_compare(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/compare")
    small, large = load_all(args, [args.small, args.large])
    from sae_lens_stitch.analysis.match import (
        match_features,
        similarity_histogram,
        similarity_stats,
    )
    from sae_lens_stitch.checks import check_compatible
    from sae_lens_stitch.provenance import describe_sae, display_name
    from sae_lens_stitch.report.plots import plot_match_histogram

    check_compatible(small, large, names=("small", "large"))
    fwd = match_features(large, small, weights=args.weights)
    bwd = match_features(small, large, weights=args.weights)
    payload = {
        "small": display_name(small),
        "large": display_name(large),
        "small_source": describe_sae(small),
        "large_source": describe_sae(large),
        "d_sae_small": small.cfg.d_sae,
        "d_sae_large": large.cfg.d_sae,
        "weights": args.weights,
        "threshold": args.threshold,
        "large_to_small": similarity_stats(fwd.best_values, args.threshold),
        "small_to_large": similarity_stats(bwd.best_values, args.threshold),
        "histogram_large_to_small": similarity_histogram(fwd.best_values),
        "histogram_small_to_large": similarity_histogram(bwd.best_values),
    }
    extra, extra_lines = compare_extras(args, small, large, fwd, bwd, out)
    payload |= extra
    write_json(out / "compare.json", payload)
    plot_match_histogram(
        out / "compare_histogram.png",
        fwd.best_values.cpu(),
        bwd.best_values.cpu(),
        args.threshold,
        ("large -> small (classifies)", "small -> large (children)"),
        title=f"max decoder cosine: {display_name(small)} vs {display_name(large)}",
    )
    f = payload["large_to_small"]
    b = payload["small_to_large"]
    emit(
        args,
        payload,
        [
            f"large -> small: mean max cosine {f['mean']:.3f}, median {f['median']:.3f}, "
            f"{f['fraction_at_or_above_threshold']:.1%} >= {args.threshold}",
            f"small -> large: mean max cosine {b['mean']:.3f}, median {b['median']:.3f}, "
            f"{b['fraction_at_or_above_threshold']:.1%} >= {args.threshold}",
            *extra_lines,
            f"wrote {out / 'compare.json'} and {out / 'compare_histogram.png'}",
        ],
    )
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/classify")
    small, large = load_all(args, [args.small, args.large])
    from sae_lens_stitch.analysis.classify import classify_features

    acts = _activations(args, large)
    cls = classify_features(
        small, large, threshold=args.threshold, weights=args.weights, activations=acts
    )
    extra, extra_lines = classify_extras(args, small, large, cls, acts, out)
    summary = cls.summary.model_dump(mode="json")
    payload = {
        "summary": summary,
        "latents": [
            {
                "index": i,
                "category": cat.value,
                "max_cosine": round(float(cls.max_cosine[i]), 6),
                "best_partner": int(cls.best_partner[i]),
            }
            for i, cat in enumerate(cls.categories)
        ],
        "novel_indices": cls.novel_indices.tolist(),
        "reconstruction_indices": cls.reconstruction_indices.tolist(),
    } | extra
    write_json(out / "classification.json", payload)
    s = cls.summary
    emit(
        args,
        payload,
        [
            f"{s.n_novel} novel ({s.novel_fraction:.1%}), {s.n_reconstruction} reconstruction"
            + (f", {s.n_dead} dead" if s.n_dead else "")
            + f" of {s.d_sae_large} latents at threshold {s.threshold}",
            f"{s.n_small_with_children} of {s.d_sae_small} small latents have children; "
            f"{s.n_small_without_partner} have no partner",
            *extra_lines,
            f"wrote {out / 'classification.json'}",
        ],
    )
    return 0


def cmd_families(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/families")
    small, large = load_all(args, [args.small, args.large])
    from collections import Counter

    from sae_lens_stitch.analysis.families import feature_families

    fams = feature_families(small, large, threshold=args.threshold, weights=args.weights)
    kinds = Counter(f.kind for f in fams)
    payload = {
        "threshold": args.threshold,
        "n_families": len(fams),
        "kinds": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
        "families": [
            {"family": number} | f.model_dump(mode="json") | {"kind": f.kind}
            for number, f in enumerate(fams)
        ],
    }
    write_json(out / "families.json", payload)
    top = ", ".join(f"{k}: {n}" for k, n in list(payload["kinds"].items())[:6])
    emit(
        args,
        payload,
        [
            f"{len(fams)} families at threshold {args.threshold} ({top})",
            f"wrote {out / 'families.json'}",
        ],
    )
    return 0
