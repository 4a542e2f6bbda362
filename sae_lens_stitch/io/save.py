"""Step 5a: save. Write an SAE in SAE-Lens's folder layout, atomically.

The folder holds ``cfg.json`` (SAE-Lens's config, with this package's provenance record in
``metadata``), ``sae_weights.safetensors`` and, when the SAE's log10 firing rates are known,
``sparsity.safetensors`` (key ``"sparsity"``). Plain SAE-Lens loads it with
``SAE.load_from_disk(folder)``. Files are written to a temporary folder next to the target and
renamed into place, so a reader never sees a half-written SAE.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sae_lens import SAE
from sae_lens.constants import SAE_CFG_FILENAME as CFG_FILENAME
from sae_lens.constants import SAE_WEIGHTS_FILENAME as WEIGHTS_FILENAME
from safetensors.torch import save_file

from sae_lens_stitch.errors import PathExistsError, SourceNotFoundError
from sae_lens_stitch.io.sparsity import SPARSITY_FILENAME, SPARSITY_KEY, get_log_sparsity
from sae_lens_stitch.provenance import METADATA_KEY, get_provenance, has_provenance


def write_sae_files(sae: SAE[Any], folder: Path) -> list[str]:
    """Write the SAE's files into an existing, empty ``folder``; return the file names."""
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
    return names


def save_sae(sae: SAE[Any], folder: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save ``sae`` to ``folder`` in SAE-Lens's layout and return the folder's path.

    The SAE gets a provenance record if it has none (a content hash of its weights). An
    existing ``folder`` raises :class:`PathExistsError` unless ``overwrite``; then it is
    replaced as a whole. A missing parent folder raises :class:`SourceNotFoundError`."""
    target = Path(folder).expanduser().absolute()
    parent = target.parent
    if not parent.is_dir():
        raise SourceNotFoundError(
            f"cannot save to {str(target)!r}: the parent folder {str(parent)!r} does not exist; "
            "create it first"
        )
    if target.exists() and not overwrite:
        raise PathExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
    if target.exists() and not target.is_dir():
        raise PathExistsError(f"{str(target)!r} exists and is not a folder; remove it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; an SAE folder is an ordinary folder
    old: Path | None = None
    try:
        write_sae_files(sae, tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
    except BaseException:
        if old is not None and not target.exists():
            os.replace(old / target.name, target)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
