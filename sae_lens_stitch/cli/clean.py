"""Command clean."""

from __future__ import annotations

import argparse
from pathlib import Path

from sae_lens_stitch.cli.common import CLIError, emit


def cmd_clean(args: argparse.Namespace) -> int:
    """Remove what killed saves left next to PATH (and next to every entry in it): the
    package's marked ``.NAME.tmp-*`` and ``.NAME.old-*`` folders; nothing else is touched."""
    from sae_lens_stitch._atomic import find_all_leftovers
    from sae_lens_stitch.io.save import clean_leftovers

    path = Path(args.path).expanduser()
    if not path.exists() and not path.parent.is_dir():
        raise CLIError(f"clean: {args.path!r} does not exist and neither does its parent folder")
    if args.dry_run:
        found = find_all_leftovers(path.absolute())
        lines = [f"would remove {p}" for p in found] or [f"nothing to clean at {args.path}"]
        emit(args, {"dry_run": True, "leftovers": [str(p) for p in found]}, lines)
        return 0
    removed = clean_leftovers(path)
    lines = [f"removed {p}" for p in removed] or [f"nothing to clean at {args.path}"]
    emit(args, {"dry_run": False, "removed": [str(p) for p in removed]}, lines)
    return 0
