"""Command study."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sae_lens_stitch.cli.common import CLIError, emit, load_all, warn

_FLAG_FIELDS = ("threshold", "eval_fraction", "max_tokens", "width", "l0", "significance")


def _steps(text: str | None, flag: str) -> list[str] | None:
    from sae_lens_stitch.study.config import STEPS

    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown or not names:
        raise CLIError(
            f"{flag} {text!r}: unknown step(s) {unknown}; the steps are {', '.join(STEPS)}"
        )
    return names


def study_config(args: argparse.Namespace) -> Any:
    """The study's options: the --config file (if any) with the flags given on top."""
    from sae_lens_stitch.study.config import load_config, make_config

    overrides: dict[str, Any] = {
        f: getattr(args, f) for f in _FLAG_FIELDS if getattr(args, f) is not None
    }
    if args.no_refit:
        overrides["refit"] = False
    if args.agreement:
        overrides["agreement"] = True
    only, skip = _steps(args.only, "--only"), _steps(args.skip, "--skip")
    if only is not None:
        overrides["only"] = only
    if skip is not None:
        overrides["skip"] = skip
    if args.config:
        return load_config(args.config, **overrides)
    return make_config(overrides, source="options")


def cmd_study(args: argparse.Namespace) -> int:
    config = study_config(args)  # bad options fail before anything is loaded
    if args.activations and (args.model or args.dataset):
        raise CLIError("give --activations FILE or --model/--dataset, not both")
    if not (args.activations or args.model or args.dataset):
        raise CLIError(
            "study needs activations: --activations FILE, or --dataset D (and --model M) to "
            "collect them from the model (sae-stitch activations --help; the SAEs' metadata "
            "names the model and dataset they were trained on)"
        )
    out = Path(args.out).expanduser()  # created with its parents by the study, once checked
    if out.exists() and not out.is_dir():
        raise CLIError(f"output folder {args.out!r} exists and is not a folder")
    from sae_lens_stitch.evaluation.activations import read_activation_file

    raw = read_activation_file(args.activations) if args.activations else None
    saes = load_all(args, args.saes)
    from sae_lens_stitch.evaluation.activations import fit_activations
    from sae_lens_stitch.study.run import run_study

    if raw is not None:
        acts = fit_activations(raw, args.activations, saes[0].cfg.d_in)
    else:  # from the model and dataset (defaults: the SAE's metadata), cached on disk
        from sae_lens_stitch.cli.activations import activations_from_args, describe_source

        made = activations_from_args(args, saes[0])
        print(f"activations: {describe_source(made)}", file=sys.stderr)
        acts = made.activations
    result = run_study(saes, acts, out, config=config, overwrite=args.overwrite, on_warning=warn)
    emit(args, result.model_dump(mode="json"), result.lines())
    return 0
