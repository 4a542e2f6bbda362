"""Command demo."""

from __future__ import annotations

import argparse

from sae_lens_stitch.cli.common import (
    emit,
    prepare_out,
)


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
