"""Commands stitch, swap and frankenstein."""

from __future__ import annotations

import argparse
from typing import Any

from sae_lens_stitch.cli.common import (
    CLIError,
    _activations,
    _save,
    _surgery_payload,
    emit,
    judge_result,
    load_all,
    parse_index_spec,
    parse_indices,
    prepare_sae_out,
)
from sae_lens_stitch.validation import check_index_ranges


def _top_by_effect(args: argparse.Namespace, base: Any, donor: Any) -> list[int]:
    """The ``--top-k-by-effect`` donor latents: the most helpful alone (lowest ΔMSE when
    inserted into the base, on --activations), firing ones only, best first."""
    from sae_lens_stitch.analysis.effects import insert_effects

    eff = insert_effects(base, donor, _activations(args, donor), threshold=args.threshold)
    ranked = eff.helps_ranked()
    if ranked.numel() == 0:
        raise CLIError("no donor latent lowers the base's MSE alone on --activations")
    return ranked[: args.top_k_by_effect].tolist()


def cmd_stitch(args: argparse.Namespace) -> int:
    folder = prepare_sae_out(args.out, args.overwrite)
    spec = parse_index_spec(args.indices) if args.indices is not None else None
    base, donor = load_all(args, [args.base, args.donor])
    indices = None if spec is None else check_index_ranges(spec, donor.cfg.d_sae, what="--indices")
    from sae_lens_stitch.surgery.operations import stitch

    if args.top_k_by_effect is not None:
        indices = _top_by_effect(args, base, donor)

    new = stitch(
        base, donor, indices, threshold=args.threshold, activations=_activations(args, donor)
    )
    saved = _save(new, folder, args.overwrite)
    judged, judged_lines = judge_result(args, new, base, "stitched")
    payload = (
        _surgery_payload(new, saved)
        | {
            "n_inserted": new.cfg.d_sae - base.cfg.d_sae,
            "d_sae_base": base.cfg.d_sae,
        }
        | judged
    )
    emit(
        args,
        payload,
        [
            f"stitched {payload['n_inserted']} donor latents into the base "
            f"({base.cfg.d_sae} -> {new.cfg.d_sae} latents)",
            *judged_lines,
            f"saved to {saved}",
        ],
    )
    return 0


def cmd_swap(args: argparse.Namespace) -> int:
    folder = prepare_sae_out(args.out, args.overwrite)
    chosen = parse_indices(args.families) if args.families is not None else None
    if chosen is not None:
        dups = sorted({i for i in chosen if chosen.count(i) > 1})
        if dups:
            raise CLIError(f"--families lists family number(s) {dups} more than once")
    base, donor = load_all(args, [args.base, args.donor])
    from sae_lens_stitch.analysis.families import feature_families
    from sae_lens_stitch.surgery.operations import swap

    families = None
    if chosen is not None or args.weights != "decoder":
        all_fams = feature_families(base, donor, threshold=args.threshold, weights=args.weights)
        if chosen is None:
            chosen = list(range(len(all_fams)))
        bad = [i for i in chosen if not 0 <= i < len(all_fams)]
        if bad:
            raise CLIError(
                f"family indices {bad} out of range: there are {len(all_fams)} families "
                f"(0..{len(all_fams) - 1}) at threshold {args.threshold}"
            )
        families = [all_fams[i] for i in chosen]
    new = swap(base, donor, families, threshold=args.threshold)
    saved = _save(new, folder, args.overwrite)
    judged, judged_lines = judge_result(args, new, base, "swapped")
    payload = _surgery_payload(new, saved) | judged
    op = payload["operations"][-1]
    emit(
        args,
        payload,
        [
            f"swapped {op.get('details', {}).get('n_families')} families: removed "
            f"{op.get('n_latents_removed')} base latents, inserted {op.get('n_latents_in')} "
            f"({base.cfg.d_sae} -> {new.cfg.d_sae} latents)",
            *judged_lines,
            f"saved to {saved}",
        ],
    )
    return 0


def cmd_frankenstein(args: argparse.Namespace) -> int:
    folder = prepare_sae_out(args.out, args.overwrite)
    saes = load_all(args, args.saes)
    saes.sort(key=lambda s: s.cfg.d_sae)
    from sae_lens_stitch.surgery.operations import frankenstein

    new = frankenstein(saes, threshold=args.threshold, activations=_activations(args, saes[0]))
    saved = _save(new, folder, args.overwrite)
    judged, judged_lines = judge_result(args, new, saes[0], "Frankenstein")
    payload = _surgery_payload(new, saved) | judged
    details = payload["operations"][-1].get("details", {})
    emit(
        args,
        payload,
        [
            f"Frankenstein SAE of widths {details.get('widths')}: inserted "
            f"{details.get('inserted_per_width')} novel latents -> {new.cfg.d_sae} latents",
            *judged_lines,
            f"saved to {saved}",
        ],
    )
    return 0
