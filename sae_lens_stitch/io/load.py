"""Step 0: load. Load an SAE-Lens SAE from a release, a Hub repo folder or a local folder, and
record in its provenance what was actually resolved (release, SAE id, repo, the commit sha
downloaded, folder, Neuronpedia id).

Loading goes through SAE-Lens (``SAE.from_pretrained_with_cfg_and_sparsity`` and
``SAE.load_from_disk``); files in SAE-Lens's own layout are fetched with ``hf_hub_download`` at
the requested revision so that the commit sha is known. HF_HUB_OFFLINE and the local Hub cache
are honoured: offline, a cached SAE loads at once and a missing one fails at once with
:class:`~sae_lens_stitch.errors.OfflineError`.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
import yaml
from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError
from sae_lens import SAE
from sae_lens.loading.pretrained_sae_loaders import sae_lens_disk_loader
from safetensors import SafetensorError, safe_open

from sae_lens_stitch import block_topk as _block_topk  # noqa: F401  (registers block_topk)
from sae_lens_stitch.errors import CorruptSAEError, OfflineError, SourceNotFoundError, StitchError
from sae_lens_stitch.io import _hub
from sae_lens_stitch.io.save import CFG_FILENAME, WEIGHTS_FILENAME
from sae_lens_stitch.io.sources import SAESource, parse_source
from sae_lens_stitch.io.sparsity import SPARSITY_FILENAME, SPARSITY_KEY, set_log_sparsity
from sae_lens_stitch.provenance import (
    Provenance,
    SourceSAE,
    check_display_name,
    content_hash,
    get_provenance,
    has_provenance,
    set_display_name,
    set_provenance,
)
from sae_lens_stitch.validation import check_device, check_dtype, check_revision, show

DTypeLike = str | torch.dtype


@dataclass
class _Resolved:
    """What a Hub download actually fetched."""

    commit: str | None = None
    files: list[str] = field(default_factory=list)


_POSITIVE_INT_FIELDS = ("d_sae", "d_in")


def check_cfg_file(cfg_path: Path, where: str) -> dict[str, Any]:
    """The SAE config in ``cfg_path``, checked before SAE-Lens reads it: a JSON object with
    positive integer ``d_sae`` and ``d_in``, an object (or nothing) as ``metadata`` and a string
    architecture. Anything else is a :class:`CorruptSAEError` naming the field and value (SAE-Lens
    itself would fail with a TypeError or AttributeError deep inside)."""
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptSAEError(
            f"{CFG_FILENAME} of {where} is not valid JSON ({type(err).__name__}: {err})"
        ) from None
    except OSError as err:
        raise CorruptSAEError(f"cannot read {CFG_FILENAME} of {where}: {err.strerror}") from None
    if not isinstance(cfg, dict):
        raise CorruptSAEError(
            f"{CFG_FILENAME} of {where} must hold a JSON object; it holds {show(cfg)}"
        )
    for name in _POSITIVE_INT_FIELDS:
        value = cfg.get(name)
        if name not in cfg:
            raise CorruptSAEError(f"{CFG_FILENAME} of {where} has no {name!r}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CorruptSAEError(
                f"{CFG_FILENAME} of {where}: {name} must be a positive integer; got {show(value)}"
            )
    if "metadata" in cfg and not isinstance(cfg["metadata"], dict):
        raise CorruptSAEError(
            f"{CFG_FILENAME} of {where}: metadata must be a JSON object; got {show(cfg['metadata'])}"
        )
    for name in ("architecture", "dtype", "device"):
        if name in cfg and not isinstance(cfg[name], str):
            raise CorruptSAEError(
                f"{CFG_FILENAME} of {where}: {name} must be a string; got {show(cfg[name])}"
            )
    return cfg


def _corrupt(where: str, err: BaseException) -> CorruptSAEError:
    text = " ".join(str(err).split())[:300]
    return CorruptSAEError(
        f"the SAE in {where} cannot be read: its files are corrupt, truncated or inconsistent "
        f"({type(err).__name__}: {text})"
    )


def _repo_file(folder: str, name: str) -> str:
    return name if folder in ("", ".") else f"{folder}/{name}"


def _read_sparsity(path: str | Path, device: str) -> torch.Tensor:
    with safe_open(str(path), framework="pt", device=device) as f:  # pyright: ignore[reportCallIssue]
        return f.get_tensor(SPARSITY_KEY)


def _hub_converter(revision: str | None, resolved: _Resolved, *, local_only: bool):
    """An SAE-Lens ``PretrainedSaeHuggingfaceLoader`` for SAE-Lens-format repos that downloads
    at ``revision`` and records the commit sha it got; parsing is SAE-Lens's disk loader."""

    def convert(
        repo_id: str,
        folder_name: str,
        device: str = "cpu",
        force_download: bool = False,
        cfg_overrides: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor], torch.Tensor | None]:
        def fetch(name: str) -> str:
            path = hf_hub_download(
                repo_id=repo_id,
                filename=_repo_file(folder_name, name),
                revision=revision,
                force_download=force_download,
                local_files_only=local_only,
            )
            resolved.files.append(_repo_file(folder_name, name))
            resolved.commit = resolved.commit or _hub.commit_from_cached_path(path)
            return path

        cfg_path = fetch(CFG_FILENAME)
        check_cfg_file(Path(cfg_path), f"repo {repo_id}, folder {folder_name}")
        fetch(WEIGHTS_FILENAME)
        try:
            sparsity_path: str | None = fetch(SPARSITY_FILENAME)
        except EntryNotFoundError:
            sparsity_path = None
        local = Path(cfg_path).parent
        cfg_dict, state_dict = sae_lens_disk_loader(
            local, device=device, cfg_overrides=cfg_overrides
        )
        log_sparsity = _read_sparsity(sparsity_path, device) if sparsity_path else None
        return cfg_dict, state_dict, log_sparsity

    return convert


@functools.cache
def _releases_text() -> str:
    return (files("sae_lens") / "pretrained_saes.yaml").read_text(encoding="utf-8")


def _release_entry(release: str) -> dict[str, Any] | None:
    """The release's entry in SAE-Lens's pretrained_saes.yaml, parsing only its own block
    (the whole file takes seconds to parse, too slow for a fast failure)."""
    text = _releases_text()
    match = re.search(rf"^{re.escape(release)}:[ \t]*$", text, re.MULTILINE)
    if match is None:
        return None
    following = re.search(r"^[^\s#-]", text[match.end() :], re.MULTILINE)
    block = text[match.start() : match.end() + (following.start() if following else len(text))]
    parsed = yaml.safe_load(block)
    return parsed.get(release) if isinstance(parsed, dict) else None


def _lookup_release(release: str, sae_id: str) -> tuple[str, str, str, str | None]:
    """``(repo_id, folder, converter name, neuronpedia id)`` of a release's SAE id."""
    entry = _release_entry(release)
    if entry is None:
        names = re.findall(r"^([^\s#:-][^:]*):[ \t]*$", _releases_text(), re.MULTILINE)
        near = sorted(
            n for n in names if release.lower() in n.lower() or n.lower() in release.lower()
        )
        hint = f"; similar releases: {', '.join(near[:5])}" if near else ""
        raise SourceNotFoundError(
            f"release {release!r} is not in SAE-Lens's pretrained_saes.yaml{hint}. For a Hub repo "
            "that is not a release use hf://OWNER/REPO/FOLDER"
        )
    saes = {str(s["id"]): s for s in entry.get("saes", [])}
    if sae_id not in saes:
        ids = list(saes)
        near = [i for i in ids if sae_id in i or i in sae_id][:5] or ids[:5]
        raise SourceNotFoundError(
            f"SAE id {sae_id!r} is not in release {release!r}; e.g. {', '.join(near)}"
        )
    info = saes[sae_id]
    return (
        str(entry["repo_id"]),
        str(info["path"]),
        str(entry.get("conversion_func") or "sae_lens"),
        info.get("neuronpedia"),
    )


def _load_remote(
    source: SAESource, device: str, dtype: str | None
) -> tuple[SAE[Any], torch.Tensor | None, SourceSAE]:
    if source.kind == "release":
        release, sae_id = source.release or "", source.sae_id or ""
        repo_id, folder, loader_name, neuronpedia_id = _lookup_release(release, sae_id)
        target = f"SAE {release}:{sae_id} (repo {repo_id}, folder {folder})"
    else:
        repo_id, folder = source.repo_id or "", source.folder or "."
        release, sae_id, loader_name, neuronpedia_id = repo_id, folder, "sae_lens", None
        target = f"SAE in repo {repo_id}, folder {folder}"
    if source.revision is not None and loader_name != "sae_lens":
        raise SourceNotFoundError(
            f"revision {source.revision!r} cannot be pinned for release {release!r}: it uses "
            f"SAE-Lens's {loader_name!r} converter, which always loads main. Leave revision unset."
        )
    local_only = _hub.is_offline() or not _hub.endpoint_reachable()
    if loader_name == "sae_lens":
        try:  # fail fast, before SAE-Lens parses its release list
            hf_hub_download(
                repo_id,
                _repo_file(folder, CFG_FILENAME),
                revision=source.revision,
                local_files_only=local_only,
            )
        except _hub.HUB_ERRORS as err:
            raise _hub.translate(err, doing="load", target=target) from err
    elif local_only and not _hub.is_offline():
        raise OfflineError(
            f"cannot load {target}: the Hub ({hf_constants.ENDPOINT}) is unreachable; check the "
            "network, or set HF_HUB_OFFLINE=1 to load it from the local cache"
        )
    resolved = _Resolved()
    converter = (
        _hub_converter(source.revision, resolved, local_only=local_only)
        if loader_name == "sae_lens"
        else None
    )
    try:
        sae, _, log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(
            release, sae_id, device=device, dtype=dtype or "float32", converter=converter
        )
    except (SafetensorError, json.JSONDecodeError) as err:
        raise CorruptSAEError(f"the files of {target} are corrupt or truncated: {err}") from err
    except _hub.HUB_ERRORS as err:
        raise _hub.translate(err, doing="load", target=target) from err
    except StitchError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise _corrupt(target, err) from err
    commit = resolved.commit or (_hub.cached_ref(repo_id) if source.revision is None else None)
    if neuronpedia_id is None:
        neuronpedia_id = getattr(sae.cfg.metadata, "neuronpedia_id", None)
    ident = SourceSAE(
        release=source.release if source.kind == "release" else None,
        sae_id=source.sae_id if source.kind == "release" else None,
        repo_id=repo_id,
        revision=commit,
        folder=folder,
        neuronpedia_id=neuronpedia_id,
        architecture=sae.cfg.architecture(),
        d_sae=sae.cfg.d_sae,
    )
    return sae, log_sparsity, ident


def _load_local(
    source: SAESource, device: str, dtype: str | None
) -> tuple[SAE[Any], torch.Tensor | None, SourceSAE]:
    folder = Path(source.path or "").expanduser()
    if not folder.is_dir():
        raise SourceNotFoundError(f"local SAE folder {str(folder)!r} does not exist")
    for name in (CFG_FILENAME, WEIGHTS_FILENAME):
        if not (folder / name).is_file():
            raise SourceNotFoundError(
                f"{str(folder)!r} is not an SAE-Lens folder: it has no {name}"
            )
    check_cfg_file(folder / CFG_FILENAME, repr(str(folder)))
    try:
        sae = SAE.load_from_disk(folder, device=device, dtype=dtype)
        sparsity_file = folder / SPARSITY_FILENAME
        log_sparsity = _read_sparsity(sparsity_file, device) if sparsity_file.is_file() else None
    except StitchError:
        raise
    except MemoryError:
        raise
    except Exception as err:  # whatever SAE-Lens, safetensors or torch fail with on bad files
        raise _corrupt(repr(str(folder)), err) from err
    ident = SourceSAE(
        path=str(folder.resolve()),
        content_hash=content_hash(sae),
        architecture=sae.cfg.architecture(),
        d_sae=sae.cfg.d_sae,
    )
    return sae, log_sparsity, ident


def load_sae(
    source: str | os.PathLike[str] | tuple[str, str],
    *,
    revision: str | None = None,
    device: str = "cpu",
    dtype: DTypeLike | None = None,
    name: str | None = None,
) -> SAE[Any]:
    """Load an SAE-Lens SAE from ``source`` and record where it came from.

    ``source`` is ``"RELEASE:SAE_ID[@REVISION]"``, a ``(release, sae_id)`` pair,
    ``"hf://OWNER/REPO[/FOLDER][@REVISION]"`` or a local folder (see
    :func:`sae_lens_stitch.io.sources.parse_source`). ``revision`` pins a branch, tag or commit for
    Hub sources. ``dtype`` defaults to float32 for Hub sources and to the saved dtype for folders.

    An SAE whose config already carries a provenance record (a stitched SAE saved by this
    package) keeps it, with ``loaded_from`` set to what was resolved (repo, commit sha, folder or
    path); any other SAE gets an identity record naming the release, SAE id, repo,
    the commit sha actually downloaded, the folder and the Neuronpedia id (Hub sources), or
    the folder and a content hash (local sources). Its log10 firing rates, when the source has
    them, are kept (:func:`sae_lens_stitch.io.sparsity.get_log_sparsity`).

    ``name`` is its display name in tables, legends and summaries (default: the release and
    SAE id, the repo and folder, or the local folder's name; see
    :func:`sae_lens_stitch.provenance.display_name`).

    Raises :class:`SourceNotFoundError` (no such release, SAE id, repo, revision or folder),
    :class:`OfflineError` (offline and not cached, or the Hub unreachable),
    :class:`MissingTokenError` (gated or private) and :class:`CorruptSAEError` (unreadable files).
    """
    if name is not None:
        check_display_name(name)
    if revision is not None:
        check_revision(revision)
    device_name = str(check_device(device))
    dtype_name = check_dtype(dtype)
    parsed = parse_source(source, revision=revision)
    if parsed.kind == "local" and revision is not None:
        raise SourceNotFoundError(
            f"revision {revision!r} does not apply to local folder {parsed.path!r}"
        )
    load = _load_local if parsed.kind == "local" else _load_remote
    sae, log_sparsity, ident = load(parsed, device_name, dtype_name)
    if not has_provenance(sae):
        set_provenance(sae, Provenance.identity(ident))
    else:  # a derived SAE: keep its record and say where this copy was resolved from
        set_provenance(sae, get_provenance(sae).model_copy(update={"loaded_from": ident}))
    if log_sparsity is not None:
        try:
            set_log_sparsity(sae, log_sparsity)
        except ValueError as err:
            raise CorruptSAEError(f"sparsity of {parsed} does not match the SAE: {err}") from err
    if name is not None:
        set_display_name(sae, name)
    return sae
