"""The ``sae-stitch`` command line.

Parsing, ``--help`` and argument errors import neither torch nor SAE-Lens (they answer at
once); each command handler imports what it needs. Every command writes its results into an
output folder (``--out``); ``--json`` also prints the result on standard output. Bad input
exits with status 1 and a one-line message on standard error (``--debug`` adds the traceback);
usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sae_lens_stitch._atomic import atomic_write_text

PROG = "sae-stitch"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a Unix tool whose reader went away."""

SOURCE_HELP = (
    "RELEASE:SAE_ID[@REV] (SAE-Lens release), hf://OWNER/REPO[/FOLDER][@REV] "
    "(Hub repo), or a local folder holding cfg.json"
)


class CLIError(Exception):
    """Bad input found by the CLI itself (reported as one line, exit status 1)."""


# ---------------------------------------------------------------------------- helpers


def parse_indices(text: str) -> list[int]:
    """``"3,5,10-12"`` -> ``[3, 5, 10, 11, 12]`` (inclusive ranges). Also reads ``@FILE``
    (a JSON list or whitespace/comma separated integers)."""
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise CLIError(f"indices file {str(path)!r} does not exist")
        body = path.read_text().strip()
        if not body:
            raise CLIError(f"indices file {str(path)!r} is empty")
        if body.startswith("["):
            try:
                values = json.loads(body)
            except json.JSONDecodeError as err:
                raise CLIError(f"indices file {str(path)!r} is not valid JSON: {err}") from None
            if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise CLIError(f"indices file {str(path)!r} must hold a list of integers")
            if not values:
                raise CLIError(f"indices file {str(path)!r} holds an empty list")
            return list(values)
        try:
            return parse_indices(",".join(body.split()))
        except CLIError as err:
            raise CLIError(f"indices file {str(path)!r}: {err}") from None
    out: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = (
                    part.split("-", 1)
                    if not part.startswith("-")
                    else ("-" + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1])
                )
                start, stop = int(lo), int(hi)
                if stop < start:
                    raise CLIError(f"bad index range {part!r}: end before start")
                out.extend(range(start, stop + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise CLIError(
                f"bad index {part!r}: expected integers and ranges like 3,5,10-12"
            ) from None
    if not out:
        raise CLIError(f"no indices in {text!r} (an explicitly empty list is not allowed)")
    return out


def check_source(text: str) -> None:
    """Validate a source string's form without loading anything (light import)."""
    from sae_lens_stitch.io.sources import parse_source

    src = parse_source(text)
    if src.kind == "local" and not Path(str(src.path)).is_dir():
        raise CLIError(f"SAE source {text!r}: no such folder {src.path!r}")


def prepare_out(out: str | None, *, default: str = "runs/out", create: bool = True) -> Path:
    """The output folder. A given ``--out`` must have an existing parent; the default one
    (under ``runs/``) is created with its parents. It is created when ``create``."""
    if out is None:
        path = Path(default)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(out).expanduser()
    parent = path.absolute().parent
    if not parent.is_dir():
        raise CLIError(
            f"output folder {out!r}: parent folder {str(parent)!r} does not exist; create it first"
        )
    if path.exists() and not path.is_dir():
        raise CLIError(f"output folder {out!r} exists and is not a folder")
    if create:
        path.mkdir(exist_ok=True)
    return path


def prepare_sae_out(out: str, overwrite: bool) -> Path:
    """The folder a new SAE is saved to: parent must exist; must not exist unless overwrite."""
    path = prepare_out(out, create=False)
    if path.exists() and not overwrite:
        raise CLIError(f"output folder {out!r} already exists; pass --overwrite to replace it")
    return path


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def emit(args: argparse.Namespace, payload: Any, lines: Sequence[str]) -> None:
    """``--json``: the payload on stdout; otherwise the human summary lines."""
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        for line in lines:
            print(line)


def check_device(text: str) -> None:
    """Refuse a ``--device`` torch cannot parse or this machine does not have (before any SAE
    is loaded, so the error names the device, not the SAE)."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, ValueError, TypeError):
        raise CLIError(
            f"invalid --device {text!r}: expected a torch device such as cpu, cuda, cuda:1 or mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError(f"--device {text!r} is not available: torch sees no CUDA GPU here")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise CLIError(
                f"--device {text!r} is not available: torch sees {count} CUDA GPU(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise CLIError(f"--device {text!r} is not available: MPS is not available here")
    if device.type != "cpu":
        try:
            torch.empty(0, device=device)
        except Exception as err:
            raise CLIError(f"--device {text!r} is not available: {_one_line(err)}") from None


def load(args: argparse.Namespace, source: str) -> Any:
    from sae_lens_stitch.io.load import load_sae

    return load_sae(source, revision=None, device=args.device)


def load_all(args: argparse.Namespace, sources: Sequence[str]) -> list[Any]:
    return [load(args, s) for s in sources]


def _activations(args: argparse.Namespace, sae: Any) -> Any:
    from sae_lens_stitch.evaluation.activations import read_activations

    """The --activations file for ``sae``'s d_in, or None when not given."""
    if not getattr(args, "activations", None):
        return None
    return read_activations(args.activations, sae.cfg.d_in)


# ---------------------------------------------------------------------------- commands


def cmd_compare(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/compare")
    small, large = load_all(args, [args.small, args.large])
    from sae_lens_stitch.analysis.match import (
        match_features,
        similarity_histogram,
        similarity_stats,
    )
    from sae_lens_stitch.checks import check_compatible
    from sae_lens_stitch.provenance import describe_sae
    from sae_lens_stitch.report.plots import plot_match_histogram

    check_compatible(small, large, names=("small", "large"))
    fwd = match_features(large, small, weights=args.weights)
    bwd = match_features(small, large, weights=args.weights)
    payload = {
        "small": describe_sae(small),
        "large": describe_sae(large),
        "d_sae_small": small.cfg.d_sae,
        "d_sae_large": large.cfg.d_sae,
        "weights": args.weights,
        "threshold": args.threshold,
        "large_to_small": similarity_stats(fwd.best_values, args.threshold),
        "small_to_large": similarity_stats(bwd.best_values, args.threshold),
        "histogram_large_to_small": similarity_histogram(fwd.best_values),
        "histogram_small_to_large": similarity_histogram(bwd.best_values),
    }
    write_json(out / "compare.json", payload)
    plot_match_histogram(
        out / "compare_histogram.png",
        fwd.best_values.cpu(),
        bwd.best_values.cpu(),
        args.threshold,
        ("large -> small (classifies)", "small -> large (children)"),
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
            f"wrote {out / 'compare.json'} and {out / 'compare_histogram.png'}",
        ],
    )
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    out = prepare_out(args.out, default="runs/classify")
    small, large = load_all(args, [args.small, args.large])
    from sae_lens_stitch.analysis.classify import classify_features

    cls = classify_features(
        small,
        large,
        threshold=args.threshold,
        weights=args.weights,
        activations=_activations(args, large),
    )
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
    }
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


def _save(sae: Any, folder: Path, overwrite: bool) -> Path:
    from sae_lens_stitch.io.model_card import loadable_by_plain_sae_lens
    from sae_lens_stitch.io.save import save_sae

    saved = save_sae(sae, folder, overwrite=overwrite)
    if not loadable_by_plain_sae_lens(sae):
        print(
            f"{PROG}: note: this SAE uses the {sae.cfg.architecture()} architecture; "
            "run `import sae_lens_stitch.block_topk` before loading it with plain SAE-Lens",
            file=sys.stderr,
        )
    return saved


def _surgery_payload(sae: Any, folder: Path) -> dict[str, Any]:
    from sae_lens_stitch.provenance import get_provenance

    prov = get_provenance(sae)
    return {
        "folder": str(folder),
        "architecture": sae.cfg.architecture(),
        "d_sae": sae.cfg.d_sae,
        "d_in": sae.cfg.d_in,
        "operations": [op.model_dump(mode="json") for op in prov.operations],
    }


def cmd_stitch(args: argparse.Namespace) -> int:
    folder = prepare_sae_out(args.out, args.overwrite)
    indices = parse_indices(args.indices) if args.indices is not None else None
    base, donor = load_all(args, [args.base, args.donor])
    from sae_lens_stitch.surgery.operations import stitch

    new = stitch(
        base, donor, indices, threshold=args.threshold, activations=_activations(args, donor)
    )
    saved = _save(new, folder, args.overwrite)
    payload = _surgery_payload(new, saved) | {
        "n_inserted": new.cfg.d_sae - base.cfg.d_sae,
        "d_sae_base": base.cfg.d_sae,
    }
    emit(
        args,
        payload,
        [
            f"stitched {payload['n_inserted']} donor latents into the base "
            f"({base.cfg.d_sae} -> {new.cfg.d_sae} latents)",
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
    payload = _surgery_payload(new, saved)
    op = payload["operations"][-1]
    emit(
        args,
        payload,
        [
            f"swapped {op.get('details', {}).get('n_families')} families: removed "
            f"{op.get('n_latents_removed')} base latents, inserted {op.get('n_latents_in')} "
            f"({base.cfg.d_sae} -> {new.cfg.d_sae} latents)",
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
    payload = _surgery_payload(new, saved)
    details = payload["operations"][-1].get("details", {})
    emit(
        args,
        payload,
        [
            f"Frankenstein SAE of widths {details.get('widths')}: inserted "
            f"{details.get('inserted_per_width')} novel latents -> {new.cfg.d_sae} latents",
            f"saved to {saved}",
        ],
    )
    return 0


def cmd_assemble(args: argparse.Namespace) -> int:
    from sae_lens_stitch.evaluation.activations import fit_activations, read_activation_file

    out = prepare_out(args.out, create=False)
    if (out / "sae").exists() and not args.overwrite:
        raise CLIError(f"{str(out / 'sae')!r} already exists; pass --overwrite to replace it")
    raw = read_activation_file(args.activations)
    raw_eval = read_activation_file(args.eval_activations) if args.eval_activations else None
    saes = load_all(args, args.saes)
    pool = parse_indices(args.pool) if args.pool is not None else None
    from sae_lens_stitch.assembly.assemble import assemble, split_tokens
    from sae_lens_stitch.assembly.pareto import pareto
    from sae_lens_stitch.report.plots import plot_pareto

    d_in = saes[0].cfg.d_in
    acts = fit_activations(raw, args.activations, d_in)
    eval_acts = (
        fit_activations(raw_eval, args.eval_activations, d_in) if raw_eval is not None else None
    )
    result = assemble(
        saes,
        acts,
        eval_activations=eval_acts,
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
        fit_x, ev_x = split_tokens(acts, d_in, eval_acts, args.eval_fraction)
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
    from sae_lens_stitch.evaluation.activations import fit_activations, read_activation_file

    folder = prepare_sae_out(args.out, args.overwrite)
    raw = read_activation_file(args.activations)
    raw_eval = read_activation_file(args.eval_activations) if args.eval_activations else None
    sae = load(args, args.sae)
    from sae_lens_stitch.assembly.assemble import split_tokens
    from sae_lens_stitch.assembly.refit import refit_with_result
    from sae_lens_stitch.evaluation.metrics import evaluate

    d_in = sae.cfg.d_in
    acts = fit_activations(raw, args.activations, d_in)
    eval_acts = (
        fit_activations(raw_eval, args.eval_activations, d_in) if raw_eval is not None else None
    )
    fit_x, ev_x = split_tokens(acts, d_in, eval_acts, args.eval_fraction)
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
    from sae_lens_stitch.provenance import content_hash, describe_sae

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
                "sae": describe_sae(sae),
                "content_hash": content_hash(sae),
                "metrics": m.model_dump(mode="json"),
            }
        )
        lines.append(
            f"{source}: d_sae {m.d_sae}, MSE {m.mse.value:.4g}, FVU {m.fvu.value:.4f}, "
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


def cmd_push(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if not (folder / "cfg.json").is_file():
        raise CLIError(f"{args.folder!r} is not an SAE folder (no cfg.json)")
    from sae_lens_stitch.io.load import load_sae
    from sae_lens_stitch.io.publish import push_to_hub

    sae = load_sae(str(folder.absolute()), device=args.device)
    metrics = read_metrics(args.metrics, sae, folder) if args.metrics else None
    result = push_to_hub(
        sae,
        args.repo,
        path_in_repo=args.path_in_repo,
        revision=args.revision,
        private=args.private,
        commit_message=args.message,
        overwrite=args.overwrite,
        create_pr=args.create_pr,
        metrics=metrics,
        endpoint=args.endpoint,
    )
    payload = result.model_dump(mode="json")
    emit(args, payload, [f"pushed to {result.repo_id}/{result.path_in_repo}: {result.commit_url}"])
    return 0


def read_metrics(path_text: str, sae: Any, folder: Path) -> dict[str, Any]:
    """The metrics for ``sae`` (saved in ``folder``) from a JSON file: either one SAE's metrics
    (an object) or the output of ``sae-stitch evaluate``, whose entry for this SAE is picked by
    content hash (or, for files without hashes, by source folder)."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise CLIError(f"metrics file {path_text!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CLIError(f"metrics file {path_text!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CLIError(f"metrics file {path_text!r} must hold a JSON object")
    results = data.get("results")
    if not isinstance(results, list):
        return data
    from sae_lens_stitch.provenance import content_hash

    entries = [r for r in results if isinstance(r, dict) and isinstance(r.get("metrics"), dict)]
    digest = content_hash(sae)
    found = [r for r in entries if r.get("content_hash") == digest]
    if not found and not any("content_hash" in r for r in entries):
        here = folder.expanduser().resolve()
        found = [
            r
            for r in entries
            if isinstance(r.get("source"), str) and Path(r["source"]).expanduser().resolve() == here
        ]
    if not found:
        listed = ", ".join(repr(r.get("source")) for r in entries) or "none"
        raise CLIError(
            f"metrics file {path_text!r} is an 'evaluate' output with no entry for the SAE in "
            f"{str(folder)!r} (its SAEs: {listed}); evaluate this SAE, or pass one SAE's metrics"
        )
    return found[0]["metrics"]


def cmd_demo(args: argparse.Namespace) -> int:
    if args.out is None:
        args.out = "runs/demo"
    else:
        prepare_out(args.out, create=False)
    from sae_lens_stitch.demo.pipeline import run_demo

    result = run_demo(
        args.out,
        retrain=args.retrain,
        push=args.push,
        quick=args.quick,
        endpoint=args.endpoint,
        overwrite=args.overwrite,
    )
    payload = result.model_dump(mode="json")
    emit(args, payload, result.lines())
    return 0


# ---------------------------------------------------------------------------- parser


def _common(p: argparse.ArgumentParser, *, out_default: str | None, out_help: str) -> None:
    if out_default is None:
        p.add_argument("--out", required=True, help=out_help)
    else:
        p.add_argument(
            "--out",
            help=f"{out_help} (default: {out_default}, created; a given folder's parent must exist)",
        )
    p.add_argument("--json", action="store_true", help="also print the result as JSON on stdout")
    p.add_argument("--device", default="cpu", help="torch device to load SAEs on (default: cpu)")


def _dead_activations(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--activations",
        help="optional .pt/.safetensors activations: latents that never fire on them are not inserted",
    )


def _threshold(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threshold",
        type=float,
        default=0.7,
        help="cosine threshold: below it a large latent is novel (default: 0.7)",
    )


def _weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        choices=("decoder", "encoder"),
        default="decoder",
        help="which directions to compare (default: decoder)",
    )


def _split_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--activations",
        required=True,
        help=".pt/.pth/.safetensors/.npy activations [..., d_in] to fit on",
    )
    p.add_argument(
        "--eval-activations",
        help="separate activations to report on (default: the last --eval-fraction of --activations)",
    )
    p.add_argument(
        "--eval-fraction",
        type=float,
        default=0.25,
        help="share of --activations held out for evaluation without --eval-activations "
        "(default: 0.25)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Compare, classify, stitch and swap the latents of SAE-Lens SAEs of different widths. "
            f"SAE sources: {SOURCE_HELP}."
        ),
        epilog="Run 'sae-stitch demo' to see the whole method on the embedded synthetic family.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="hide progress bars (also SAE_STITCH_NO_PROGRESS=1)",
    )
    from sae_lens_stitch._version import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, helptext: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(handler=handler)
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        p.add_argument(
            "--no-progress",
            action="store_true",
            default=argparse.SUPPRESS,
            help="hide progress bars (also SAE_STITCH_NO_PROGRESS=1)",
        )
        return p

    p = add(
        "compare", "match statistics and histogram of max cosines, both directions", cmd_compare
    )
    p.add_argument("small", help=f"the smaller SAE: {SOURCE_HELP}")
    p.add_argument("large", help="the larger SAE (same forms)")
    _threshold(p)
    _weights(p)
    _common(
        p, out_default="runs/compare", out_help="folder for compare.json and compare_histogram.png"
    )

    p = add(
        "classify", "classify the larger SAE's latents as novel or reconstruction", cmd_classify
    )
    p.add_argument("small", help=f"the smaller SAE: {SOURCE_HELP}")
    p.add_argument("large", help="the larger SAE (same forms)")
    _threshold(p)
    _weights(p)
    p.add_argument(
        "--activations", help="optional .pt/.safetensors activations: never-firing latents are DEAD"
    )
    _common(p, out_default="runs/classify", out_help="folder for classification.json")

    p = add(
        "families",
        "families of related latents (connected components at the threshold)",
        cmd_families,
    )
    p.add_argument("small", help=f"the smaller SAE: {SOURCE_HELP}")
    p.add_argument("large", help="the larger SAE (same forms)")
    _threshold(p)
    _weights(p)
    _common(p, out_default="runs/families", out_help="folder for families.json")

    p = add("stitch", "insert donor latents into a base SAE (exact)", cmd_stitch)
    p.add_argument("base", help=f"the base SAE: {SOURCE_HELP}")
    p.add_argument("donor", help="the donor SAE (same forms)")
    p.add_argument(
        "--indices",
        help="donor latents to insert, e.g. 3,5,10-12 or @file (default: the donor's novel latents)",
    )
    _dead_activations(p)
    _threshold(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p, out_default=None, out_help="folder to save the stitched SAE to (SAE-Lens layout)")

    p = add("swap", "replace families of base latents by their donor members", cmd_swap)
    p.add_argument("base", help=f"the smaller SAE: {SOURCE_HELP}")
    p.add_argument("donor", help="the larger SAE (same forms)")
    p.add_argument(
        "--families",
        help="family numbers to swap, as listed by 'families' (e.g. 0,2,5-9; default: all)",
    )
    _threshold(p)
    _weights(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p, out_default=None, out_help="folder to save the swapped SAE to (SAE-Lens layout)")

    p = add("frankenstein", "Frankenstein's SAE from a family of widths", cmd_frankenstein)
    p.add_argument(
        "saes", nargs="+", help=f"two or more SAEs of one hook (any order): {SOURCE_HELP}"
    )
    _dead_activations(p)
    _threshold(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(
        p, out_default=None, out_help="folder to save the Frankenstein SAE to (SAE-Lens layout)"
    )

    p = add("evaluate", "MSE, FVU, L0 and dead latents on activations", cmd_evaluate)
    p.add_argument("saes", nargs="+", help=f"one or more SAEs: {SOURCE_HELP}")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--activations", help=".pt/.pth/.safetensors file of activations [..., d_in]")
    src.add_argument(
        "--synthetic",
        action="store_true",
        help="use the demo family's synthetic generator (for the demo SAEs, d_in 48)",
    )
    p.add_argument(
        "--n-tokens", type=int, default=65536, help="tokens for --synthetic (default: 65536)"
    )
    p.add_argument("--seed", type=int, default=1234, help="seed for --synthetic (default: 1234)")
    _common(p, out_default="runs/evaluate", out_help="folder for evaluation.json")

    p = add(
        "assemble",
        "build the best SAE a family's latents can make under a width and/or L0 budget",
        cmd_assemble,
    )
    p.add_argument("saes", nargs="+", help=f"the family, SAEs of one hook: {SOURCE_HELP}")
    _split_options(p)
    p.add_argument("--width", type=int, help="most latents the SAE may have")
    p.add_argument("--l0", type=float, help="highest mean L0 (on the fit tokens) it may have")
    p.add_argument(
        "--start",
        type=int,
        help="position (0-based, in the order given) of the SAE to start from (default: empty)",
    )
    p.add_argument(
        "--no-keep-start", action="store_true", help="let the start SAE's latents be removed"
    )
    p.add_argument(
        "--pool",
        help="positions of the SAEs whose latents may enter, e.g. 1,2 (default: all but --start)",
    )
    p.add_argument(
        "--no-refit", action="store_true", help="keep decoder scales 1 (bias still fitted)"
    )
    p.add_argument("--max-moves", type=int, help="stop after this many greedy moves")
    p.add_argument(
        "--significance",
        type=float,
        default=2.0,
        help="take a move only if its fit gain is this many standard errors below 0 "
        "(default: 2; 0: any gain)",
    )
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the Pareto comparison (trained widths and refits, stitch-all-novel, "
        "Frankenstein, swap curve)",
    )
    _threshold(p)
    p.add_argument("--overwrite", action="store_true", help="replace OUT/sae if it exists")
    _common(
        p,
        out_default=None,
        out_help="folder for assembly.json, pareto.json, pareto.png/svg and the SAE (OUT/sae)",
    )

    p = add("refit", "best decoder scales and output bias for a trained SAE (exact)", cmd_refit)
    p.add_argument("sae", help=f"the SAE: {SOURCE_HELP}")
    _split_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p, out_default=None, out_help="folder to save the refit SAE to (SAE-Lens layout)")

    p = add("push", "publish a saved SAE folder to the Hugging Face Hub", cmd_push)
    p.add_argument("folder", help="a local SAE folder (cfg.json + sae_weights.safetensors)")
    p.add_argument("repo", help="Hub repo id OWNER/NAME (created if missing)")
    p.add_argument("--path-in-repo", help="folder in the repo (default: derived from the SAE)")
    p.add_argument("--revision", default="main", help="branch to commit to (default: main)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", help="commit message")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing folder in the repo"
    )
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    p.add_argument("--metrics", help="JSON file of metrics for the model card")
    p.add_argument("--endpoint", help="Hub endpoint URL (default: HF_ENDPOINT or huggingface.co)")
    p.add_argument("--json", action="store_true", help="also print the result as JSON on stdout")
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)

    p = add("demo", "run the whole method on the embedded synthetic SAE family", cmd_demo)
    p.add_argument(
        "--out",
        help="folder for the report (default: runs/demo, created; a given folder's parent must exist)",
    )
    p.add_argument("--retrain", action="store_true", help="train the family again first (minutes)")
    p.add_argument("--push", metavar="REPO", help="publish the Frankenstein SAE to this Hub repo")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --push: replace the SAE's existing folder in the repo",
    )
    p.add_argument("--quick", action="store_true", help="reduced setting (fewer tokens; for tests)")
    p.add_argument("--endpoint", help="Hub endpoint URL for --push (default: HF_ENDPOINT)")
    p.add_argument("--json", action="store_true", help="also print the result as JSON on stdout")
    return parser


def _validate(args: argparse.Namespace) -> None:
    """Checks that need no heavy import: sources, thresholds, counts."""
    threshold = getattr(args, "threshold", None)
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise CLIError(f"--threshold must be between -1 and 1, got {threshold}")
    for name in ("small", "large", "base", "donor"):
        if getattr(args, name, None) is not None:
            check_source(getattr(args, name))
    for source in getattr(args, "saes", None) or []:
        check_source(source)
    if args.command == "frankenstein" and len(args.saes) < 2:
        raise CLIError(f"frankenstein needs at least two SAEs, got {len(args.saes)}")
    if args.command in ("assemble", "refit") and not 0 < args.eval_fraction < 1:
        raise CLIError(f"--eval-fraction must be between 0 and 1, got {args.eval_fraction}")
    if args.command == "assemble":
        if args.width is None and args.l0 is None:
            raise CLIError("assemble needs a budget: --width N, --l0 X, or both")
        if args.width is not None and args.width < 1:
            raise CLIError(f"--width must be positive, got {args.width}")
        if args.l0 is not None and not 0 < args.l0 < float("inf"):
            raise CLIError(f"--l0 must be a positive number, got {args.l0}")
        if args.max_moves is not None and args.max_moves < 0:
            raise CLIError(f"--max-moves must be 0 or more, got {args.max_moves}")
        if not 0 <= args.significance < float("inf"):
            raise CLIError(f"--significance must be 0 or more, got {args.significance}")
        if args.start is not None and not 0 <= args.start < len(args.saes):
            raise CLIError(
                f"--start {args.start} is not a position among the {len(args.saes)} SAEs given"
            )
    if args.command == "evaluate" and args.n_tokens < 1:
        raise CLIError(f"--n-tokens must be positive, got {args.n_tokens}")
    path_in_repo = getattr(args, "path_in_repo", None)
    if path_in_repo is not None and not path_in_repo.strip("/ "):
        raise CLIError(
            f"--path-in-repo {path_in_repo!r} is empty; leave it out for the default folder"
        )
    if args.command == "demo" and args.overwrite and not args.push:
        raise CLIError("--overwrite only applies with --push REPO")
    if getattr(args, "device", "cpu") != "cpu":
        check_device(args.device)


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    return " ".join(text.split())


_CLI_WORDING = (
    ("pass overwrite=True", "pass --overwrite"),
    ("another path_in_repo", "another --path-in-repo"),
    ("pass token=..., set HF_TOKEN, or run", "set HF_TOKEN or run"),
    ("(token=... or HF_TOKEN / `hf auth login`)", "(set HF_TOKEN or run `hf auth login`)"),
    ("(token=... or HF_TOKEN)", "(set HF_TOKEN or run `hf auth login`)"),
)
"""Library wording (argument names) -> the command line's (options; never a token on it)."""


def cli_wording(message: str) -> str:
    """``message`` with the library's argument names replaced by the CLI's options."""
    for api, cli in _CLI_WORDING:
        message = message.replace(api, cli)
    return message


def _silence_progress() -> None:
    os.environ["SAE_STITCH_NO_PROGRESS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read when huggingface_hub is imported
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()


def _quiet_broken_pipe() -> int:
    """Standard output was closed by the reader (``| head``): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_progress:
        _silence_progress()
    try:
        _validate(args)
        code = int(args.handler(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except (CLIError, ValueError, FileExistsError, FileNotFoundError, OSError, RuntimeError) as err:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {cli_wording(_one_line(err))}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
