"""The argument parser, built from declarations: every option is declared once below (shared
ones such as ``--overwrite``, ``--threshold`` and the base/donor pair included), every command
is a :class:`Command` listing its options, its handler and its own checks (those that need no
heavy import)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sae_lens_stitch.cli.activations import cmd_activations
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
from sae_lens_stitch.cli.relations import (
    check_classify,
    check_compare,
    check_decompose,
    cmd_decompose,
    int_list,
)
from sae_lens_stitch.cli.study import cmd_study
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
NAME = opt(
    "--name",
    action="append",
    metavar="NAME",
    help="display name of an SAE in tables, legends and summaries, once per SAE in the order "
    "given (default: the folder's name, RELEASE:SAE_ID or REPO/FOLDER)",
)
OVERWRITE = opt("--overwrite", action="store_true", help="replace --out if it exists")
DEAD_ACTIVATIONS = opt(
    "--activations",
    help="optional .pt/.safetensors/.npy activations: latents that never fire on them are not "
    "inserted, and the result is evaluated on them against the SAE it started from (a warning "
    "if it reconstructs worse)",
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
MAX_TOKENS = opt(
    "--max-tokens",
    type=int,
    help="use only the first N tokens of the activation file(s) (default: all)",
)
# activations from a language model (``MODEL_OPTIONS`` plus ``N_TOKENS``)
MODEL = opt(
    "--model",
    help="language model: a transformer-lens name, a Hugging Face transformers name or local "
    "folder, or MODULE:CALLABLE / FILE.py:CALLABLE returning a model "
    "(default: the SAE's metadata model_name)",
)
DATASET = opt(
    "--dataset",
    help="text (.txt one document per line, .jsonl/.json with 'text'), token ids (.npy/.pt), "
    "a saved datasets folder or a datasets name (default: the SAE's metadata dataset_path)",
)
N_TOKENS = opt(
    "--n-tokens",
    type=int,
    default=65536,
    help="tokens of activations to take from --model (default: 65536)",
)
HOOK = opt("--hook", help="hook point (default: the SAE's metadata hook_name)")
CONTEXT_SIZE = opt(
    "--context-size",
    type=int,
    help="tokens per sequence for text (default: the SAE's metadata context_size, else 128)",
)
PREPEND_BOS = opt(
    "--prepend-bos",
    action=argparse.BooleanOptionalAction,
    default=None,
    help="start each text sequence with BOS (default: the SAE's metadata prepend_bos, else yes)",
)
CACHE_DIR = opt(
    "--cache-dir",
    help="folder of cached activations (default: $SAE_STITCH_CACHE or "
    "~/.cache/sae_lens_stitch/activations)",
)
NO_CACHE = opt(
    "--no-cache", action="store_true", help="run the model even if cached activations exist"
)
MODEL_BATCH_SIZE = opt(
    "--model-batch-size",
    type=int,
    default=32,
    help="sequences per forward pass of the model (default: 32)",
)
MODEL_OPTIONS = (
    MODEL,
    DATASET,
    HOOK,
    CONTEXT_SIZE,
    PREPEND_BOS,
    CACHE_DIR,
    NO_CACHE,
    MODEL_BATCH_SIZE,
)
"""How to get activations from a model (with ``N_TOKENS``, declared apart because evaluate's
--n-tokens also sizes --synthetic)."""
PAIR = (SMALL, LARGE)
BASE_DONOR = (BASE, DONOR)
SPLIT = (FIT_ACTIVATIONS, EVAL_ACTIVATIONS, EVAL_FRACTION, MAX_TOKENS)
OUTPUT = (JSON, DEVICE, NAME)


# --- checks per command (no heavy import) ----------------------------------------------------
def _check_frankenstein(args: argparse.Namespace) -> None:
    if len(args.saes) < 2:
        raise CLIError(f"frankenstein needs at least two SAEs, got {len(args.saes)}")


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


def _check_stitch(args: argparse.Namespace) -> None:
    if args.indices is not None:
        parse_index_spec(args.indices)  # form only; the width is known once the donor is loaded
    k = args.top_k_by_effect
    if k is None:
        return
    if args.indices is not None:
        raise CLIError("give --indices or --top-k-by-effect, not both")
    check_count(k, "--top-k-by-effect")
    if not args.activations:
        raise CLIError("--top-k-by-effect needs --activations (the effects are measured on them)")


def _check_study(args: argparse.Namespace) -> None:
    if len(args.saes) < 2:
        raise CLIError(f"study needs two or more SAEs of one hook, got {len(args.saes)}")


def _check_counts(args: argparse.Namespace) -> None:
    """Shared: --n-tokens, --max-tokens, --context-size and --model-batch-size where given."""
    for name, least in (
        ("n_tokens", 1),
        ("max_tokens", 1),
        ("context_size", 2),
        ("model_batch_size", 1),
    ):
        value = getattr(args, name, None)
        if value is not None:
            check_count(value, "--" + name.replace("_", "-"), minimum=least, maximum=2**31 - 1)


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
            opt(
                "--by",
                choices=("cosine", "activation"),
                default="cosine",
                help="cosine: decoder/encoder cosine only (default); activation: also the "
                "Pearson correlation of every pair of latents' activations over --activations, "
                "and its agreement with cosine (compare_agreement.png)",
            ),
            opt(
                "--activations",
                help="with --by activation: .pt/.pth/.safetensors/.npy activations [..., d_in]",
            ),
            opt(
                "--one-to-one",
                action="store_true",
                help="also the optimal one-to-one matching (large -> small), next to the max",
            ),
            out("runs/compare", "folder for compare.json and compare_histogram.png"),
            *OUTPUT,
        ),
        check=check_compare,
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
            MAX_TOKENS,
            opt(
                "--agreement",
                action="store_true",
                help="with --activations: also the agreement of the cosine categories with "
                "activation correlation (classify_agreement.png)",
            ),
            out("runs/classify", "folder for classification.json"),
            *OUTPUT,
        ),
        check=check_classify,
    ),
    Command(
        "families",
        "families of related latents (connected components at the threshold)",
        cmd_families,
        (*PAIR, THRESHOLD, WEIGHTS, out("runs/families", "folder for families.json"), *OUTPUT),
    ),
    Command(
        "decompose",
        "meta-SAEs: train TopK SAEs on an SAE's unit decoder rows (explained variance vs width, k)",
        cmd_decompose,
        (
            opt("sae", help=f"the SAE to decompose: {SOURCE_HELP}"),
            opt(
                "--width",
                type=int_list,
                required=True,
                help="meta-latents, one or more separated by commas (e.g. 192,384,768)",
            ),
            opt(
                "--k",
                type=int_list,
                default=[4],
                help="meta-latents active per latent, one or more (default: 4)",
            ),
            opt("--steps", type=int, default=300, help="full-batch Adam steps (default: 300)"),
            opt("--lr", type=float, default=5e-3, help="Adam learning rate (default: 0.005)"),
            opt("--seed", type=int, default=0, help="seed (default: 0)"),
            opt(
                "--other",
                help="another SAE of the hook: compare meta-latents with the families at "
                "--threshold",
            ),
            THRESHOLD,
            OVERWRITE.but(help="replace OUT/meta_w*_k* folders that exist"),
            out(
                "runs/decompose",
                "folder for decompose.json, decompose_curve.png/svg and the meta-SAEs",
            ),
            *OUTPUT,
        ),
        check=check_decompose,
    ),
    Command(
        "stitch",
        "insert donor latents into a base SAE (exact)",
        cmd_stitch,
        (
            *BASE_DONOR,
            opt(
                "--indices",
                help="donor latents to insert, e.g. 3,5,10-12, @file, or @out.json:KEY (a list "
                "in a previous command's JSON, e.g. @classification.json:novel_indices; "
                "default: the donor's novel-by-cosine latents)",
            ),
            opt(
                "--top-k-by-effect",
                type=int,
                metavar="K",
                help="insert the K donor latents that lower the base's MSE most when inserted "
                "alone (helps-by-effect, measured on --activations)",
            ),
            DEAD_ACTIVATIONS,
            MAX_TOKENS,
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
            DEAD_ACTIVATIONS.but(
                help="optional .pt/.safetensors/.npy activations to evaluate the result on, "
                "against the base (a warning if it reconstructs worse)"
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
            MAX_TOKENS,
            THRESHOLD,
            OVERWRITE,
            out(None, "folder to save the Frankenstein SAE to (SAE-Lens layout)"),
            *OUTPUT,
        ),
        check=_check_frankenstein,
    ),
    Command(
        "evaluate",
        "MSE, FVU, L0 and dead latents on activations; with --model also CE loss, loss "
        "recovered and KL in the language model",
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
            MAX_TOKENS,
            *MODEL_OPTIONS,
            N_TOKENS.but(help="tokens for --model or --synthetic (default: 65536)"),
            opt("--seed", type=int, default=1234, help="seed for --synthetic (default: 1234)"),
            out("runs/evaluate", "folder for evaluation.json"),
            *OUTPUT,
        ),
        check=_check_evaluate,
    ),
    Command(
        "activations",
        "activations at an SAE's hook from a language model over a dataset (cached)",
        cmd_activations,
        (
            opt("sae", help=f"the SAE whose hook and metadata say what to run: {SOURCE_HELP}"),
            *MODEL_OPTIONS,
            N_TOKENS,
            OVERWRITE.but(help="replace --out if it exists"),
            opt("--out", required=True, help="the .npy file to write [n_tokens, d_in] float32 to"),
            *OUTPUT,
        ),
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
        "study",
        "the whole method on your own family: compare, classify, effects, stitch, curves, "
        "Frankenstein, assembly, evaluation and a report, in one resumable run",
        cmd_study,
        (
            SAES.but(help=f"two or more SAEs of one hook (any order): {SOURCE_HELP}"),
            opt(
                "--activations",
                help=".pt/.pth/.safetensors/.npy activations [..., d_in] of the SAEs' hook "
                "(or give --model / --dataset: activations from the model, cached)",
            ),
            *MODEL_OPTIONS,
            N_TOKENS.but(
                default=100_000,
                help="tokens of activations to collect with --model (default: 100000)",
            ),
            opt("--config", help="a .toml/.yaml/.json file of study options (flags win)"),
            THRESHOLD.but(default=None, help="cosine threshold for novel (default: 0.7)"),
            opt(
                "--eval-fraction",
                type=float,
                help="share of the tokens (the last ones) every figure is reported on; the rest "
                "fit assembly and refits (default: 0.5)",
            ),
            opt("--max-tokens", type=int, help="use at most this many tokens (the first ones)"),
            opt(
                "--width",
                type=int,
                help="width budget of the assembled SAE (default: the second-smallest SAE's width)",
            ),
            opt("--l0", type=float, help="L0 budget of the assembled SAE"),
            opt("--significance", type=float, help="assembly's significance test (default: 2)"),
            opt("--no-refit", action="store_true", help="do not refit the assembled SAE"),
            opt(
                "--agreement",
                action="store_true",
                help="in classify, also the agreement of the cosine categories with activation "
                "correlation (one more pass per pair)",
            ),
            opt("--only", help="comma-separated steps to run (others are reused if finished)"),
            opt("--skip", help="comma-separated steps not to run"),
            OVERWRITE.but(help="replace a folder that holds a study of other inputs"),
            out(None, "study folder: report.html/md/json, study.json, steps/ (resumable)"),
            *OUTPUT,
        ),
        check=_check_study,
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
    if getattr(args, "sae", None) is not None:
        check_source(args.sae)
    _check_counts(args)
    if args.check is not None:
        args.check(args)
    if getattr(args, "device", "cpu") != "cpu":
        check_device(args.device)
