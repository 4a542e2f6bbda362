"""The ``sae-stitch`` command line.

Parsing, ``--help`` and argument errors import neither torch nor SAE-Lens (they answer at
once); each command handler imports what it needs. Every command writes its results into an
output folder (``--out``); ``--json`` also prints the result on standard output. Bad input
exits with status 1 and a one-line message on standard error (``--debug`` adds the traceback);
usage errors exit with status 2.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from sae_lens_stitch.cli.common import (
    EXIT_BROKEN_PIPE,
    EXIT_ERROR,
    PROG,
    CLIError,
    _one_line,
    parse_indices,
)
from sae_lens_stitch.cli.parser import _validate, build_parser

__all__ = ["CLIError", "build_parser", "cli_wording", "main", "parse_indices"]


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
        return report_error(err, debug=args.debug)
    except Exception as err:  # a bug, not bad input: still one line unless --debug
        return report_error(err, debug=args.debug, unexpected=True)


def report_error(err: BaseException, *, debug: bool, unexpected: bool = False) -> int:
    """Print ``err`` as one line on standard error (with the traceback first under ``--debug``)
    and return the exit status."""
    if debug:
        traceback.print_exc()
    if unexpected:
        print(
            f"{PROG}: error: unexpected {type(err).__name__}: {_one_line(err)} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
    else:
        print(f"{PROG}: error: {cli_wording(_one_line(err))}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
