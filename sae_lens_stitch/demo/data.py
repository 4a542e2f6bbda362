"""Load the demo family shipped inside the package (or a retrained one)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sae_lens_stitch.demo.synthetic import GROUND_TRUTH_FILE, HierarchicalFeatures

FAMILY_DIR = Path(__file__).parent / "family"
"""Where the shipped family lives inside the package."""
FAMILY_FILE = "family.json"


def family_dir(folder: str | Path | None = None) -> Path:
    """``folder`` or the shipped family; raises FileNotFoundError when it is incomplete."""
    path = Path(folder) if folder is not None else FAMILY_DIR
    for name in (FAMILY_FILE, GROUND_TRUTH_FILE):
        if not (path / name).is_file():
            raise FileNotFoundError(
                f"demo family folder {str(path)!r} has no {name}; run 'sae-stitch demo --retrain'"
            )
    return path


def load_ground_truth(folder: str | Path | None = None) -> HierarchicalFeatures:
    """The synthetic model the demo family was trained on."""
    return HierarchicalFeatures.load(family_dir(folder))


def read_manifest(folder: str | Path | None = None) -> dict[str, Any]:
    """family.json as a dict (recipe, widths, training metrics)."""
    return json.loads((family_dir(folder) / FAMILY_FILE).read_text())


@dataclass(frozen=True)
class DemoFamily:
    """The demo SAEs (smallest first), their folders and the ground truth."""

    saes: list[Any]
    folders: list[Path]
    truth: HierarchicalFeatures
    manifest: dict[str, Any]

    @property
    def widths(self) -> list[int]:
        return [int(s.cfg.d_sae) for s in self.saes]


DEMO_RELEASE = "sae_lens_stitch.demo"
"""Release name in the demo SAEs' provenance (not an SAE-Lens release): their sources read
``sae_lens_stitch.demo:width_16`` etc., with the folder and a content hash."""


def load_family(folder: str | Path | None = None, *, device: str = "cpu") -> DemoFamily:
    """Every SAE of the family via :func:`sae_lens_stitch.io.load.load_sae` (local folders), each
    with a provenance identity named ``sae_lens_stitch.demo:<folder>``."""
    from sae_lens_stitch.io.load import load_sae
    from sae_lens_stitch.provenance import Provenance, SourceSAE, content_hash, set_provenance

    path = family_dir(folder)
    manifest = read_manifest(path)
    folders = [path / entry["folder"] for entry in manifest["saes"]]
    saes = [load_sae(str(f.absolute()), device=device) for f in folders]
    for sae, sae_folder in zip(saes, folders, strict=True):
        ident = SourceSAE(
            release=DEMO_RELEASE,
            sae_id=sae_folder.name,
            path=str(sae_folder.resolve()),
            content_hash=content_hash(sae),
            architecture=sae.cfg.architecture(),
            d_sae=sae.cfg.d_sae,
        )
        set_provenance(sae, Provenance.identity(ident))
    order = sorted(range(len(saes)), key=lambda i: saes[i].cfg.d_sae)
    return DemoFamily(
        saes=[saes[i] for i in order],
        folders=[folders[i] for i in order],
        truth=HierarchicalFeatures.load(path),
        manifest=manifest,
    )
