"""Command push."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sae_lens_stitch.cli.common import (
    CLIError,
    emit,
)


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
    if path.is_dir():
        raise CLIError(f"metrics file {path_text!r} is a folder; expected a JSON file")
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
