"""Shared pieces of the command line: constants, the CLI's own error, input checks that need
no heavy import, output folders and printing, loading SAEs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sae_lens_stitch._atomic import atomic_write_text
from sae_lens_stitch.errors import SourceNotFoundError, StitchError

PROG = "sae-stitch"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a Unix tool whose reader went away."""

SOURCE_HELP = (
    "RELEASE:SAE_ID[@REV] (SAE-Lens release), hf://OWNER/REPO[/FOLDER][@REV] "
    "(Hub repo), or a local folder holding cfg.json"
)


class CLIError(StitchError, ValueError):
    """Bad input found by the CLI itself (reported as one line, exit status 1)."""


# ---------------------------------------------------------------------------- helpers


def _json_key(data: Any, key: str, path: Path) -> Any:
    """``data[key]`` for a dotted ``key`` (``pairs.0.helps_by_effect``)."""
    for part in key.split("."):
        if (
            isinstance(data, list)
            and part.lstrip("-").isdigit()
            and -len(data) <= int(part) < len(data)
        ):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise CLIError(f"indices file {str(path)!r} has no {key!r} (stopped at {part!r})")
    return data


MAX_INDICES_FILE_BYTES = 64 * 2**20
"""Largest ``@FILE`` of indices read (bytes)."""


def _read_indices_file(text: str, name: str) -> str | list[int]:
    """The body of ``@FILE``: text to parse, or the list of a JSON file; ``@FILE.json:KEY``:
    the list at ``KEY`` (dotted for nesting) in a previous command's JSON output, e.g.
    ``@runs/classify/classification.json:novel_indices`` or, from a study,
    ``@OUT/steps/effects/result.json:pairs.0.helps_by_effect``."""
    spec = text[1:]
    file_part, _, key = spec.rpartition(":") if ".json:" in spec else ("", "", "")
    path = Path(file_part if key else spec).expanduser()
    where = f"{name} file {str(path)!r}"
    if path.is_dir():
        raise CLIError(f"{where} is a folder; expected a text or JSON file of indices")
    if not path.is_file():
        raise CLIError(f"{where} does not exist")
    if path.stat().st_size > MAX_INDICES_FILE_BYTES:
        raise CLIError(f"{where} is larger than {MAX_INDICES_FILE_BYTES // 2**20} MiB")
    try:
        body = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise CLIError(
            f"{where} is not a text file (not UTF-8); expected indices like 3,5,10-12 or a JSON list"
        ) from None
    except OSError as err:
        raise CLIError(f"cannot read {where}: {err.strerror}") from None
    if "\x00" in body:
        raise CLIError(f"{where} is not a text file (it holds NUL bytes)")
    if not body:
        raise CLIError(f"{where} is empty")
    if not key and not body.startswith("["):
        return ",".join(body.split())
    try:
        values = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as err:
        raise CLIError(f"{where} is not valid JSON: {err}") from None
    if key:
        values = _json_key(values, key, path)
        where = f"{key!r} in {str(path)!r}"
    if not isinstance(values, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in values
    ):
        raise CLIError(f"{where} is not a list of integers")
    if not values:
        raise CLIError(f"{where} is an empty list")
    return values


def parse_index_spec(text: str, *, name: str = "--indices") -> list[tuple[int, int]]:
    """``"3,5,10-12"`` or ``@FILE`` -> inclusive ranges ``[(3, 3), (5, 5), (10, 12)]``, checked
    for form only (nothing expanded: a range is compared with the SAE's width by
    :func:`parse_indices` before it is)."""
    from sae_lens_stitch.validation import parse_index_ranges

    if text.startswith("@"):
        body = _read_indices_file(text, name)
        if isinstance(body, list):
            bad = [v for v in body if v < 0]
            if bad:
                raise CLIError(f"{name} file {text[1:]!r}: negative indices {bad[:10]}")
            return [(v, v) for v in body]
        try:
            return parse_index_ranges(body, name=name)
        except ValueError as err:
            raise CLIError(f"{name} file {text[1:]!r}: {err}") from None
    return parse_index_ranges(text, name=name)


def parse_indices(text: str, size: int | None = None, *, name: str = "--indices") -> list[int]:
    """``"3,5,10-12"`` -> ``[3, 5, 10, 11, 12]`` (inclusive ranges). Also reads ``@FILE``
    (a JSON list or whitespace/comma separated integers). With ``size`` every index must be
    below it and appear once, checked before any range is expanded; without, at most
    ``MAX_UNSIZED_INDICES`` indices are expanded."""
    from sae_lens_stitch.validation import check_index_ranges

    ranges = parse_index_spec(text, name=name)
    if size is None:
        total = sum(stop - start + 1 for start, stop in ranges)
        if total > MAX_UNSIZED_INDICES:
            raise CLIError(f"{name} lists {total} indices (at most {MAX_UNSIZED_INDICES})")
        return [i for start, stop in ranges for i in range(start, stop + 1)]
    return check_index_ranges(ranges, size, what=name)


MAX_UNSIZED_INDICES = 2**24
"""Most indices :func:`parse_indices` expands when no width bounds them."""


def check_source(text: str) -> None:
    """Validate a source string's form without loading anything (light import)."""
    from sae_lens_stitch.io.sources import parse_source

    src = parse_source(text)
    if src.kind == "local" and not Path(str(src.path)).is_dir():
        raise SourceNotFoundError(f"SAE source {text!r}: no such folder {src.path!r}")


def prepare_out(out: str | None, *, default: str = "runs/out", create: bool = False) -> Path:
    """The output folder, checked but not created (:func:`write_json` creates it when the
    first result is written, so a failed command leaves nothing). A given ``--out`` must have
    an existing parent; the default one (under ``runs/``) gets its parents too."""
    if out is None:
        path = Path(default)
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
    if not out.strip() or "\x00" in out:
        raise CLIError(f"output folder {out!r} is not a valid path")
    path = Path(out).expanduser()
    parent = path.absolute().parent
    try:
        path.exists()
    except OSError as err:  # e.g. a name too long
        raise CLIError(f"output folder {out!r} is not a valid path: {err.strerror}") from None
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
    """Write JSON atomically (temporary file, then rename), creating its folder if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


def emit(args: argparse.Namespace, payload: Any, lines: Sequence[str]) -> None:
    """The human summary lines on stdout; with ``--json`` they go to stderr and the payload,
    as JSON, to stdout (so ``| jq`` reads it and the summary still shows)."""
    summary = sys.stderr if args.json else sys.stdout
    for line in lines:
        print(line, file=summary)
    if args.json:
        print(json.dumps(payload, indent=2, default=str))


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def check_device(text: str) -> None:
    """Refuse a ``--device`` torch cannot parse or this machine does not have (before any SAE
    is loaded, so the error names the device, not the SAE)."""
    from sae_lens_stitch.validation import check_device as check

    check(text, "--device")


def load(args: argparse.Namespace, source: str, name: str | None = None) -> Any:
    from sae_lens_stitch.io.load import load_sae

    return load_sae(source, revision=None, device=args.device, name=name)


def load_all(args: argparse.Namespace, sources: Sequence[str]) -> list[Any]:
    """The SAEs, named by ``--name`` (in the order given) where given."""
    names: list[str] = list(getattr(args, "name", None) or [])
    if names and len(names) != len(sources):
        raise CLIError(
            f"{len(names)} --name given for {len(sources)} SAE(s): give one per SAE, in order"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CLIError(f"--name {repeated[0]!r} is given to more than one SAE")
    padded: list[str | None] = [*names, *[None] * (len(sources) - len(names))]
    return [load(args, s, n) for s, n in zip(sources, padded, strict=True)]


def _activations(args: argparse.Namespace, sae: Any) -> Any:
    from sae_lens_stitch.evaluation.activations import read_activations

    """The --activations file for ``sae``'s d_in, or None when not given."""
    if not getattr(args, "activations", None):
        return None
    return read_activations(
        args.activations, sae.cfg.d_in, max_tokens=getattr(args, "max_tokens", None)
    )


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


def judge_result(
    args: argparse.Namespace, produced: Any, start: Any, what: str
) -> tuple[dict[str, Any], list[str]]:
    """With ``--activations``: evaluate the produced SAE and the SAE it started from on them,
    a summary line, and a warning line when the produced SAE reconstructs worse (higher FVU).
    Without: nothing."""
    acts = _activations(args, start)
    if acts is None:
        return {}, []
    from sae_lens_stitch.evaluation.metrics import evaluate
    from sae_lens_stitch.provenance import display_name

    m_new, m_start = evaluate(produced, acts), evaluate(start, acts)
    line = (
        f"on --activations: FVU {m_start.fvu.value:.4f} -> {m_new.fvu.value:.4f}, "
        f"L0 {m_start.l0.value:.2f} -> {m_new.l0.value:.2f} (lower FVU is better)"
    )
    worse = m_new.fvu.value > m_start.fvu.value
    if worse:
        warn(
            f"the {what} SAE reconstructs worse than {display_name(start)} it started from "
            f"(FVU {m_new.fvu.value:.4f} > {m_start.fvu.value:.4f}); `sae-stitch assemble` "
            "builds the best SAE these latents can make"
        )
    payload = {
        "metrics": m_new.model_dump(mode="json"),
        "start_metrics": m_start.model_dump(mode="json"),
        "worse_than_start": worse,
    }
    return payload, [line]


def _one_line(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    if isinstance(err, KeyError) and err.args:
        text = str(err.args[0])
    return " ".join(text.split())
