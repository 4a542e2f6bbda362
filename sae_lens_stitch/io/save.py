"""Step 5a: save. Write an SAE in SAE-Lens's folder layout, atomically.

The folder holds ``cfg.json`` (SAE-Lens's config, with this package's provenance record in
``metadata``), ``sae_weights.safetensors`` and, when the SAE's log10 firing rates are known,
``sparsity.safetensors`` (key ``"sparsity"``). Plain SAE-Lens loads it with
``SAE.load_from_disk(folder)``. Files are written to a temporary folder next to the target and
renamed into place, so a reader never sees a half-written SAE; leftovers of a killed save are
removed by the next save to the same place or by :func:`clean` (``sae-stitch clean PATH``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sae_lens import SAE
from sae_lens.constants import SAE_CFG_FILENAME as CFG_FILENAME
from sae_lens.constants import SAE_WEIGHTS_FILENAME as WEIGHTS_FILENAME
from safetensors.torch import save_file

from sae_lens_stitch._atomic import (
    FILE_MODE,
    atomic_folder,
    find_all_leftovers,
    remove_leftovers,
)
from sae_lens_stitch.errors import InvalidArgumentError, PathExistsError, SaveError, StitchError
from sae_lens_stitch.io.sparsity import SPARSITY_FILENAME, SPARSITY_KEY, get_log_sparsity
from sae_lens_stitch.provenance import METADATA_KEY, get_provenance, has_provenance
from sae_lens_stitch.validation import check_sae, show


def write_sae_files(sae: SAE[Any], folder: Path) -> list[str]:
    """Write the SAE's files into an existing, empty ``folder``; return the file names. Every
    file gets the permissions of a new file (0o666 less the umask), like ``cfg.json``."""
    sae.save_model(folder)
    cfg_path = folder / CFG_FILENAME
    if not has_provenance(sae):
        cfg = json.loads(cfg_path.read_text())
        cfg.setdefault("metadata", {})[METADATA_KEY] = get_provenance(sae).to_metadata()
        cfg_path.write_text(json.dumps(cfg))
    names = [CFG_FILENAME, WEIGHTS_FILENAME]
    log_sparsity_L = get_log_sparsity(sae)
    if log_sparsity_L is not None:
        save_file({SPARSITY_KEY: log_sparsity_L.contiguous()}, str(folder / SPARSITY_FILENAME))
        names.append(SPARSITY_FILENAME)
    for name in names:
        (folder / name).chmod(FILE_MODE)
    return names


def _check_folder_arg(folder: Any) -> Path:
    if isinstance(folder, SAE):
        raise InvalidArgumentError(
            "save_sae(sae, folder): the folder argument is an SAE; the SAE comes first "
            "(were the arguments swapped?)"
        )
    if not isinstance(folder, (str, os.PathLike)) or not str(folder).strip():
        raise InvalidArgumentError(f"folder must be a path; got {show(folder)}")
    text = os.fspath(folder)
    if not isinstance(text, str) or "\x00" in text:
        raise InvalidArgumentError(f"folder {show(folder)} is not a valid path")
    return Path(text).expanduser().absolute()


def _missing_parents(parent: Path) -> list[Path]:
    """``parent`` and its ancestors that do not exist yet, deepest first; a file in the way is
    an error."""
    missing: list[Path] = []
    for folder in (parent, *parent.parents):
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():
            raise InvalidArgumentError(
                f"cannot save under {str(parent)!r}: {str(folder)!r} exists and is not a folder"
            )
        missing.append(folder)
    return missing


def save_sae(sae: SAE[Any], folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save ``sae`` to ``folder`` in SAE-Lens's layout and return the folder's path.

    The SAE gets a provenance record if it has none (a content hash of its weights). An
    existing ``folder`` raises :class:`PathExistsError` unless ``overwrite``; then it is
    replaced as a whole, in one step (see :func:`sae_lens_stitch._atomic.atomic_folder`): a
    process killed at any moment leaves the old SAE or the new one, never a mix. Missing parent
    folders are created (and removed again if the save fails). Temporary folders left next to
    ``folder`` by a killed earlier save are removed first (``sae-stitch clean`` does it on
    demand)."""
    check_sae(sae)
    target = _check_folder_arg(folder)
    if not isinstance(overwrite, bool):
        raise InvalidArgumentError(f"overwrite must be True or False; got {show(overwrite)}")
    try:
        return _save(sae, target, overwrite)
    except StitchError:
        raise
    except OSError as err:  # the file system refused: say where and why, in one line
        raise SaveError(
            f"cannot save to {str(target)!r}: {err.strerror or err}"
            + (f" ({err.filename!r})" if err.filename and str(err.filename) != str(target) else "")
        ) from err


def _save(sae: SAE[Any], target: Path, overwrite: bool) -> Path:
    remove_leftovers(target)  # first: it may put back an SAE a killed overwrite moved aside
    if target.exists() and not overwrite:
        raise PathExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise PathExistsError(f"{str(target)!r} exists and is not a folder; remove it first")
    created = _missing_parents(target.parent)
    try:
        for parent in reversed(created):
            parent.mkdir()
        with atomic_folder(target, overwrite=overwrite) as tmp:
            write_sae_files(sae, tmp)
    except BaseException:
        for parent in created:  # deepest first; only the (empty) folders made here
            try:
                parent.rmdir()
            except OSError:
                break
        raise
    return target


def clean_leftovers(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary (``.NAME.tmp-*``) and swapped-aside (``.NAME.old-*``) folders that
    killed saves left next to ``path`` and, when ``path`` is a folder, next to every entry in
    it. Only folders carrying this package's marker (or empty ones with its naming) whose
    writing process is gone are touched; returns the folders removed."""
    removed: list[Path] = []
    for leftover in find_all_leftovers(Path(path).expanduser().absolute()):
        target = leftover.parent / leftover.name[1 : leftover.name.rindex(".")]
        removed += remove_leftovers(target)
    return sorted(set(removed))
