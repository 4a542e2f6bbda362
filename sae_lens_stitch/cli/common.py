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


def parse_indices(text: str) -> list[int]:
    """``"3,5,10-12"`` -> ``[3, 5, 10, 11, 12]`` (inclusive ranges). Also reads ``@FILE``
    (a JSON list or whitespace/comma separated integers) and ``@FILE.json:KEY``: the list of
    integers at ``KEY`` (dotted for nesting) in a previous command's JSON output, e.g.
    ``@runs/classify/classification.json:novel_indices`` or, from a study,
    ``@OUT/steps/effects/result.json:pairs.0.helps_by_effect``."""
    if text.startswith("@"):
        name, _, key = text[1:].rpartition(":") if ".json:" in text else ("", "", "")
        if key:
            path = Path(name).expanduser()
            if not path.is_file():
                raise CLIError(f"indices file {str(path)!r} does not exist")
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise CLIError(f"indices file {str(path)!r} is not valid JSON: {err}") from None
            values = _json_key(data, key, path)
            if not isinstance(values, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise CLIError(f"{key!r} in {str(path)!r} is not a list of integers")
            if not values:
                raise CLIError(f"{key!r} in {str(path)!r} is an empty list")
            return list(values)
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


def load(args: argparse.Namespace, source: str, name: str | None = None) -> Any:
    from sae_lens_stitch.io.load import load_sae

    return load_sae(source, revision=None, device=args.device, name=name)


def load_all(args: argparse.Namespace, sources: Sequence[str]) -> list[Any]:
    """The SAEs, named by ``--name`` (in the order given) where given."""
    names: list[str] = list(getattr(args, "name", None) or [])
    if len(names) > len(sources):
        raise CLIError(f"{len(names)} --name given for {len(sources)} SAE(s)")
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
