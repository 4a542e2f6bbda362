"""Command activations (activations from the model), and the pieces other commands share to
take their activations from a model: the options of ``MODEL_OPTIONS`` (declared in parser.py)
mapped onto :func:`~sae_lens_stitch.evaluation.model_activations.model_activations`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sae_lens_stitch.cli.common import PROG, CLIError, emit, load


def load_model_from_args(args: argparse.Namespace, sae: Any) -> Any:
    """The ``--model`` (default: the SAE's metadata model_name), loaded once on ``--device``."""
    from sae_lens_stitch.evaluation.model_activations import load_language_model

    return load_language_model(args.model, sae=sae, device=args.device)


def activations_from_args(args: argparse.Namespace, sae: Any, model: Any = None) -> Any:
    """:class:`~sae_lens_stitch.evaluation.model_activations.ModelActivations` for ``sae`` from
    the model options (``--model``, ``--dataset``, ``--n-tokens``, ``--hook``,
    ``--context-size``, ``--[no-]prepend-bos``, ``--cache-dir``, ``--no-cache``,
    ``--model-batch-size``); ``model`` is an already loaded model (else ``--model``)."""
    from sae_lens_stitch.evaluation.model_activations import model_activations

    return model_activations(
        sae,
        model=model if model is not None else args.model,
        dataset=args.dataset,
        n_tokens=args.n_tokens,
        hook_name=args.hook,
        context_size=args.context_size,
        prepend_bos=args.prepend_bos,
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        batch_size=args.model_batch_size,
        device=args.device,
    )


def describe_source(result: Any) -> str:
    """One line: how many tokens, from where, and whether the cache answered."""
    src = result.source
    how = "read from the cache" if result.from_cache else "computed and cached"
    return (
        f"{src.n_tokens} tokens x {src.d_in} from {src.model} at {src.hook_name} over "
        f"{src.dataset} ({how}: {result.path})"
    )


def _prepare_file(out: str, overwrite: bool) -> Path:
    path = Path(out).expanduser()
    if path.suffix != ".npy":
        raise CLIError(f"--out {out!r}: expected a .npy file name")
    if path.is_dir():
        raise CLIError(f"--out {out!r} is a folder; give a .npy file name")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise CLIError(
            f"output file {out!r}: parent folder {str(parent)!r} does not exist; create it first"
        )
    if path.exists() and not overwrite:
        raise CLIError(f"output file {out!r} already exists; pass --overwrite to replace it")
    return path


def cmd_activations(args: argparse.Namespace) -> int:
    import numpy as np

    from sae_lens_stitch._atomic import atomic_path

    path = _prepare_file(args.out, args.overwrite)
    sae = load(args, args.sae)
    result = activations_from_args(args, sae)
    with atomic_path(path) as tmp:
        np.save(str(tmp), result.activations.numpy())
    if result.source.n_tokens < result.source.n_tokens_requested:
        print(
            f"{PROG}: warning: only {result.source.n_tokens} of the "
            f"{result.source.n_tokens_requested} tokens asked for",
            file=sys.stderr,
        )
    payload = {
        "out": str(path),
        "cache_file": str(result.path),
        "from_cache": result.from_cache,
        "source": result.source.model_dump(mode="json"),
    }
    emit(args, payload, [f"wrote {path}: {describe_source(result)}"])
    return 0
