"""The argument parser, built from declarations: every option is declared once below (shared
ones such as ``--overwrite``, ``--threshold`` and the base/donor pair included), every command
is a :class:`Command` listing its options, its handler and its own checks (those that need no
heavy import)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sae_lens_stitch.cli.analysis import cmd_classify, cmd_compare, cmd_families
from sae_lens_stitch.cli.assembly import cmd_assemble, cmd_refit
from sae_lens_stitch.cli.clean import cmd_clean
from sae_lens_stitch.cli.common import (
    PROG,
    SOURCE_HELP,
    CLIError,
    check_device,
    check_source,
    parse_index_spec,
)
from sae_lens_stitch.cli.demo import cmd_demo
from sae_lens_stitch.cli.evaluate import cmd_evaluate
from sae_lens_stitch.cli.hub import cmd_push
from sae_lens_stitch.cli.surgery import cmd_frankenstein, cmd_stitch, cmd_swap
from sae_lens_stitch.validation import (
    check_count,
    check_fraction,
    check_number,
    check_path_in_repo,
    check_repo_id,
    check_revision,
    check_threshold,
)


@dataclass(frozen=True)
class Opt:
    """One option or positional argument: ``add_argument(*flags, **kwargs)``."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any]

    def but(self, **changes: Any) -> Opt:
        """The same option with some settings changed for one command (its help, say)."""
        return Opt(self.flags, {**self.kwargs, **changes})


@dataclass(frozen=True)
class OneOf:
    """Options of which at most one may be given."""

    options: tuple[Opt, ...]


def opt(*flags: str, **kwargs: Any) -> Opt:
    return Opt(flags, kwargs)


def out(default: str | None, what: str) -> Opt:
    """``--out``: required when ``default`` is None, else created under that default."""
    if default is None:
        return opt("--out", required=True, help=what)
    return opt(
        "--out", help=f"{what} (default: {default}, created; a given folder's parent must exist)"
    )


# --- the options, each declared once ---------------------------------------------------------
SMALL = opt("small", help=f"the smaller SAE: {SOURCE_HELP}")
LARGE = opt("large", help="the larger SAE (same forms)")
BASE = opt("base", help=f"the base SAE: {SOURCE_HELP}")
DONOR = opt("donor", help="the donor SAE (same forms)")
SAES = opt("saes", nargs="+", help=f"SAEs of one hook: {SOURCE_HELP}")
THRESHOLD = opt(
    "--threshold",
    type=float,
    default=0.7,
    help="cosine threshold: below it a large latent is novel (default: 0.7)",
)
WEIGHTS = opt(
    "--weights",
    choices=("decoder", "encoder"),
    default="decoder",
    help="which directions to compare (default: decoder)",
)
JSON = opt("--json", action="store_true", help="also print the result as JSON on stdout")
DEVICE = opt("--device", default="cpu", help="torch device to load SAEs on (default: cpu)")
OVERWRITE = opt("--overwrite", action="store_true", help="replace --out if it exists")
DEAD_ACTIVATIONS = opt(
    "--activations",
    help="optional .pt/.safetensors activations: latents that never fire on them are not inserted",
)
FIT_ACTIVATIONS = opt(
    "--activations",
    required=True,
    help=".pt/.pth/.safetensors/.npy activations [..., d_in] to fit on",
)
EVAL_ACTIVATIONS = opt(
    "--eval-activations",
    help="separate activations to report on (default: the last --eval-fraction of --activations)",
)
EVAL_FRACTION = opt(
    "--eval-fraction",
    type=float,
    default=0.25,
    help="share of --activations held out for evaluation without --eval-activations "
    "(default: 0.25)",
)
ENDPOINT = opt("--endpoint", help="Hub endpoint URL (default: HF_ENDPOINT or huggingface.co)")
PAIR = (SMALL, LARGE)
BASE_DONOR = (BASE, DONOR)
SPLIT = (FIT_ACTIVATIONS, EVAL_ACTIVATIONS, EVAL_FRACTION)
OUTPUT = (JSON, DEVICE)


# --- checks per command (no heavy import) ----------------------------------------------------
def _check_frankenstein(args: argparse.Namespace) -> None:
    if len(args.saes) < 2:
        raise CLIError(f"frankenstein needs at least two SAEs, got {len(args.saes)}")


def _check_stitch(args: argparse.Namespace) -> None:
    if args.indices is not None:
        parse_index_spec(args.indices)  # form only; the width is known once the donor is loaded


def _check_swap(args: argparse.Namespace) -> None:
    if args.families is not None:
        parse_index_spec(args.families, name="--families")


def _check_split(args: argparse.Namespace) -> None:
    check_fraction(args.eval_fraction, "--eval-fraction")


def _check_assemble(args: argparse.Namespace) -> None:
    _check_split(args)
    if args.width is None and args.l0 is None:
        raise CLIError("assemble needs a budget: --width N, --l0 X, or both")
    if args.width is not None:
        check_count(args.width, "--width")
    if args.l0 is not None:
        check_number(args.l0, "--l0", low=0.0, low_open=True, expected="a positive finite number")
    if args.max_moves is not None:
        check_count(args.max_moves, "--max-moves", minimum=0)
    check_number(args.significance, "--significance", low=0.0)
    if args.start is not None and not 0 <= args.start < len(args.saes):
        raise CLIError(
            f"--start {args.start} is not a position among the {len(args.saes)} SAEs given"
        )
    if args.pool is not None:
        parse_index_spec(args.pool, name="--pool")


def _check_evaluate(args: argparse.Namespace) -> None:
    check_count(args.n_tokens, "--n-tokens", maximum=2**31 - 1)


def _check_push(args: argparse.Namespace) -> None:
    if args.path_in_repo is not None and not args.path_in_repo.strip("/ "):
        raise CLIError(
            f"--path-in-repo {args.path_in_repo!r} is empty; leave it out for the default folder"
        )
    check_repo_id(args.repo, "repo")
    if args.path_in_repo is not None:
        check_path_in_repo(args.path_in_repo, "--path-in-repo")
    check_revision(args.revision, "--revision")


def _check_demo(args: argparse.Namespace) -> None:
    if args.overwrite and not args.push:
        raise CLIError("--overwrite only applies with --push REPO")
    if args.push is not None:
        check_repo_id(args.push, "--push")


@dataclass(frozen=True)
class Command:
    """A subcommand: its options (in order), its handler and its own checks."""

    name: str
    help: str
    handler: Callable[[argparse.Namespace], int]
    options: Sequence[Opt | OneOf]
    check: Callable[[argparse.Namespace], None] | None = None
    hidden: Sequence[Opt] = field(default_factory=tuple)
    """Accepted but not shown in --help."""


COMMANDS: tuple[Command, ...] = (
    Command(
        "compare",
        "match statistics and histogram of max cosines, both directions",
        cmd_compare,
        (
            *PAIR,
            THRESHOLD,
            WEIGHTS,
            out("runs/compare", "folder for compare.json and compare_histogram.png"),
            *OUTPUT,
        ),
    ),
    Command(
        "classify",
        "classify the larger SAE's latents as novel or reconstruction",
        cmd_classify,
        (
            *PAIR,
            THRESHOLD,
            WEIGHTS,
            DEAD_ACTIVATIONS.but(
                help="optional .pt/.safetensors activations: never-firing latents are DEAD"
            ),
            out("runs/classify", "folder for classification.json"),
            *OUTPUT,
        ),
    ),
    Command(
        "families",
        "families of related latents (connected components at the threshold)",
        cmd_families,
        (*PAIR, THRESHOLD, WEIGHTS, out("runs/families", "folder for families.json"), *OUTPUT),
    ),
    Command(
        "stitch",
        "insert donor latents into a base SAE (exact)",
        cmd_stitch,
        (
            *BASE_DONOR,
            opt(
                "--indices",
                help="donor latents to insert, e.g. 3,5,10-12 or @file "
                "(default: the donor's novel latents)",
            ),
            DEAD_ACTIVATIONS,
            THRESHOLD,
            OVERWRITE,
            out(None, "folder to save the stitched SAE to (SAE-Lens layout)"),
            *OUTPUT,
        ),
        check=_check_stitch,
    ),
    Command(
        "swap",
        "replace families of base latents by their donor members",
        cmd_swap,
        (
            BASE.but(help=f"the smaller SAE: {SOURCE_HELP}"),
            DONOR.but(help="the larger SAE (same forms)"),
            opt(
                "--families",
                help="family numbers to swap, as listed by 'families' (e.g. 0,2,5-9; default: all)",
            ),
            THRESHOLD,
            WEIGHTS,
            OVERWRITE,
            out(None, "folder to save the swapped SAE to (SAE-Lens layout)"),
            *OUTPUT,
        ),
        check=_check_swap,
    ),
    Command(
        "frankenstein",
        "Frankenstein's SAE from a family of widths",
        cmd_frankenstein,
        (
            SAES.but(help=f"two or more SAEs of one hook (any order): {SOURCE_HELP}"),
            DEAD_ACTIVATIONS,
            THRESHOLD,
            OVERWRITE,
            out(None, "folder to save the Frankenstein SAE to (SAE-Lens layout)"),
            *OUTPUT,
        ),
        check=_check_frankenstein,
    ),
    Command(
        "evaluate",
        "MSE, FVU, L0 and dead latents on activations",
        cmd_evaluate,
        (
            SAES.but(help=f"one or more SAEs: {SOURCE_HELP}"),
            OneOf(
                (
                    opt(
                        "--activations",
                        help=".pt/.pth/.safetensors file of activations [..., d_in]",
                    ),
                    opt(
                        "--synthetic",
                        action="store_true",
                        help="use the demo family's synthetic generator (for the demo SAEs, d_in 48)",
                    ),
                )
            ),
            opt(
                "--n-tokens",
                type=int,
                default=65536,
                help="tokens for --synthetic (default: 65536)",
            ),
            opt("--seed", type=int, default=1234, help="seed for --synthetic (default: 1234)"),
            out("runs/evaluate", "folder for evaluation.json"),
            *OUTPUT,
        ),
        check=_check_evaluate,
    ),
    Command(
        "assemble",
        "build the best SAE a family's latents can make under a width and/or L0 budget",
        cmd_assemble,
        (
            SAES.but(help=f"the family, SAEs of one hook: {SOURCE_HELP}"),
            *SPLIT,
            opt("--width", type=int, help="most latents the SAE may have"),
            opt("--l0", type=float, help="highest mean L0 (on the fit tokens) it may have"),
            opt(
                "--start",
                type=int,
                help="position (0-based, in the order given) of the SAE to start from "
                "(default: empty)",
            ),
            opt(
                "--no-keep-start",
                action="store_true",
                help="let the start SAE's latents be removed",
            ),
            opt(
                "--pool",
                help="positions of the SAEs whose latents may enter, e.g. 1,2 "
                "(default: all but --start)",
            ),
            opt(
                "--no-refit", action="store_true", help="keep decoder scales 1 (bias still fitted)"
            ),
            opt("--max-moves", type=int, help="stop after this many greedy moves"),
            opt(
                "--significance",
                type=float,
                default=2.0,
                help="take a move only if its fit gain is this many standard errors below 0 "
                "(default: 2; 0: any gain)",
            ),
            opt(
                "--no-baselines",
                action="store_true",
                help="skip the Pareto comparison (trained widths and refits, stitch-all-novel, "
                "Frankenstein, swap curve)",
            ),
            THRESHOLD,
            OVERWRITE.but(help="replace OUT/sae if it exists"),
            out(
                None, "folder for assembly.json, pareto.json, pareto.png/svg and the SAE (OUT/sae)"
            ),
            *OUTPUT,
        ),
        check=_check_assemble,
    ),
    Command(
        "refit",
        "best decoder scales and output bias for a trained SAE (exact)",
        cmd_refit,
        (
            opt("sae", help=f"the SAE: {SOURCE_HELP}"),
            *SPLIT,
            OVERWRITE,
            out(None, "folder to save the refit SAE to (SAE-Lens layout)"),
            *OUTPUT,
        ),
        check=_check_split,
    ),
    Command(
        "push",
        "publish a saved SAE folder to the Hugging Face Hub",
        cmd_push,
        (
            opt("folder", help="a local SAE folder (cfg.json + sae_weights.safetensors)"),
            opt("repo", help="Hub repo id OWNER/NAME (created if missing)"),
            opt("--path-in-repo", help="folder in the repo (default: derived from the SAE)"),
            opt("--revision", default="main", help="branch to commit to (default: main)"),
            opt("--private", action="store_true", help="create the repo private"),
            opt("--message", help="commit message"),
            OVERWRITE.but(help="replace an existing folder in the repo"),
            opt("--create-pr", action="store_true", help="open a pull request instead"),
            opt("--metrics", help="JSON file of metrics for the model card"),
            ENDPOINT,
            JSON,
        ),
        check=_check_push,
        hidden=(DEVICE,),
    ),
    Command(
        "demo",
        "run the whole method on the embedded synthetic SAE family",
        cmd_demo,
        (
            opt(
                "--out",
                help="folder for the report (default: runs/demo, created; a given folder's "
                "parent must exist)",
            ),
            opt("--retrain", action="store_true", help="train the family again first (minutes)"),
            opt("--push", metavar="REPO", help="publish the Frankenstein SAE to this Hub repo"),
            OVERWRITE.but(help="with --push: replace the SAE's existing folder in the repo"),
            opt("--quick", action="store_true", help="reduced setting (fewer tokens; for tests)"),
            ENDPOINT.but(help="Hub endpoint URL for --push (default: HF_ENDPOINT)"),
            JSON,
        ),
        check=_check_demo,
    ),
    Command(
        "clean",
        "remove the temporary folders killed saves left next to PATH (never anything else)",
        cmd_clean,
        (
            opt("path", help="an SAE folder, or a folder holding SAE folders"),
            opt("--dry-run", action="store_true", help="list what would be removed"),
            JSON,
        ),
    ),
)
"""Every subcommand, in the order --help lists them."""

_DEBUG = opt("--debug", action="store_true", help="show tracebacks on errors")
_NO_PROGRESS = opt(
    "--no-progress", action="store_true", help="hide progress bars (also SAE_STITCH_NO_PROGRESS=1)"
)


def _add(parser: argparse.ArgumentParser | Any, option: Opt) -> None:
    parser.add_argument(*option.flags, **option.kwargs)


def build_parser() -> argparse.ArgumentParser:
    from sae_lens_stitch._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Compare, classify, stitch and swap the latents of SAE-Lens SAEs of different widths. "
            f"SAE sources: {SOURCE_HELP}."
        ),
        epilog="Run 'sae-stitch demo' to see the whole method on the embedded synthetic family.",
    )
    _add(parser, _DEBUG)
    _add(parser, _NO_PROGRESS)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        p.set_defaults(handler=command.handler, check=command.check)
        # accepted after the subcommand too, without overriding a value given before it
        _add(p, _DEBUG.but(default=argparse.SUPPRESS, help=argparse.SUPPRESS))
        _add(p, _NO_PROGRESS.but(default=argparse.SUPPRESS))
        for option in command.options:
            if isinstance(option, OneOf):
                group = p.add_mutually_exclusive_group()
                for member in option.options:
                    _add(group, member)
            else:
                _add(p, option)
        for option in command.hidden:
            _add(p, option.but(help=argparse.SUPPRESS))
    return parser


def _validate(args: argparse.Namespace) -> None:
    """Checks that need no heavy import: shared ones (sources, threshold, device), then the
    command's own."""
    threshold = getattr(args, "threshold", None)
    if threshold is not None:
        check_threshold(threshold, "--threshold")
    for name in ("small", "large", "base", "donor"):
        if getattr(args, name, None) is not None:
            check_source(getattr(args, name))
    for source in getattr(args, "saes", None) or []:
        check_source(source)
    if args.check is not None:
        args.check(args)
    if getattr(args, "device", "cpu") != "cpu":
        check_device(args.device)
