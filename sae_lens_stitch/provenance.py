"""Where every latent came from: a pydantic record kept in ``cfg.metadata``.

The record is stored under ``cfg.metadata["sae_lens_stitch"]`` in a compact form (runs of
consecutive indices), so it survives ``save_model`` and plain SAE-Lens ``SAE.load_from_disk``
without this package. :func:`get_provenance` expands it into :class:`Provenance`, whose
``latents`` lists one :class:`LatentOrigin` per latent, in order.
"""

from __future__ import annotations

import hashlib
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from sae_lens_stitch._version import __version__

if TYPE_CHECKING:
    from sae_lens import SAE

METADATA_KEY = "sae_lens_stitch"
FORMAT_VERSION = 1


class SourceSAE(BaseModel):
    """Identity of one source SAE. Fields that do not apply are None."""

    model_config = ConfigDict(extra="forbid")

    release: str | None = None
    """SAE-Lens release name (pretrained_saes.yaml), when loaded through one."""
    sae_id: str | None = None
    """SAE id within the release."""
    repo_id: str | None = None
    """Hugging Face repo holding the weights."""
    revision: str | None = None
    """Commit sha actually downloaded (not a branch name), when known."""
    folder: str | None = None
    """Folder inside the repo ("." for the root)."""
    path: str | None = None
    """Local folder it was loaded from, for SAEs loaded from disk."""
    neuronpedia_id: str | None = None
    """Neuronpedia id, where SAE-Lens knows one."""
    content_hash: str | None = None
    """sha256 of the weights, for SAEs built in memory or as a fallback identity."""
    architecture: str
    """SAE-Lens architecture name."""
    d_sae: int
    """Number of latents of the source SAE."""

    def key(self) -> str:
        """A stable, human-readable key for the ``sources`` table."""
        if self.release is not None and self.sae_id is not None:
            return f"{self.release}:{self.sae_id}" + (f"@{self.revision}" if self.revision else "")
        if self.repo_id is not None:
            folder = self.folder or "."
            return f"hf:{self.repo_id}/{folder}" + (f"@{self.revision}" if self.revision else "")
        if self.content_hash is not None:
            return f"sha256:{self.content_hash[:16]}"
        if self.path is not None:
            return f"file:{self.path}"
        raise ValueError("a source needs a release, repo, content hash or path")

    def display_name(self) -> str:
        """A short name for tables and legends, never a hash nor a whole local path:
        ``RELEASE:SAE_ID``, ``OWNER/REPO[/FOLDER]``, a local folder's own name, else
        ``ARCHITECTURE D_SAE``."""
        if self.release is not None and self.sae_id is not None:
            return f"{self.release}:{self.sae_id}"
        if self.repo_id is not None:
            folder = (self.folder or ".").strip("/")
            return self.repo_id if folder in ("", ".") else f"{self.repo_id}/{folder}"
        if self.path is not None and Path(self.path).name:
            return Path(self.path).name
        return f"{self.architecture} {self.d_sae}"


class LatentOrigin(BaseModel):
    """Where one latent came from: a key into ``Provenance.sources`` and the index there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    index: int
    scale: float = 1.0
    """Factor applied to the source latent's decoder row (refit); 1.0 when unchanged."""


class Operation(BaseModel):
    """One operation applied to build the SAE."""

    model_config = ConfigDict(extra="forbid")

    operation: str
    """stitch, remove, swap or frankenstein (``select`` for internal sub-SAEs never returned)."""
    threshold: float | None = None
    """Cosine threshold used to choose latents, when one was used."""
    package_version: str = __version__
    """Version of sae-lens-stitch that applied it."""
    inputs: list[str] = Field(default_factory=list)
    """Source keys (or descriptions) of the SAEs it combined."""
    n_latents_in: int | None = None
    """Latents taken from the inputs, e.g. inserted or kept."""
    n_latents_removed: int | None = None
    """Latents removed from the base."""
    details: dict[str, Any] = Field(default_factory=dict)
    """Extra JSON-serialisable parameters."""


class Provenance(BaseModel):
    """Where each latent of an SAE came from and which operations built it."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    sources: dict[str, SourceSAE]
    """Source SAEs by key."""
    latents: list[LatentOrigin]
    """One entry per latent, in the SAE's latent order."""
    operations: list[Operation] = Field(default_factory=list)
    """Operations applied, oldest first."""
    loaded_from: SourceSAE | None = None
    """Where this SAE itself was last loaded from (repo, commit, folder or path), for an SAE
    that already carried a record when :func:`sae_lens_stitch.load_sae` loaded it; None for an
    SAE built in this process or loaded as an original source (then it is its own source)."""

    def counts_by_source(self) -> dict[str, int]:
        """How many latents came from each source."""
        out: dict[str, int] = dict.fromkeys(self.sources, 0)
        for origin in self.latents:
            out[origin.source] += 1
        return out

    # --- compact storage -------------------------------------------------------------------
    def to_metadata(self) -> dict[str, Any]:
        """Compact JSON-serialisable form stored in ``cfg.metadata``."""
        runs: list[list[Any]] = []
        for origin in self.latents:
            if runs:
                last = runs[-1]
                if last[0] == origin.source and last[1] + last[2] == origin.index:
                    last[2] += 1
                    continue
            runs.append([origin.source, origin.index, 1])
        scales = [origin.scale for origin in self.latents]
        return (
            {
                "format_version": self.format_version,
                "sources": {k: v.model_dump(exclude_none=True) for k, v in self.sources.items()},
                "latent_runs": runs,
                "operations": [op.model_dump() for op in self.operations],
            }
            | ({"latent_scales": scales} if any(x != 1.0 for x in scales) else {})
            | (
                {"loaded_from": self.loaded_from.model_dump(exclude_none=True)}
                if self.loaded_from is not None
                else {}
            )
        )

    @classmethod
    def from_metadata(cls, data: dict[str, Any]) -> Provenance:
        """Inverse of :meth:`to_metadata`."""
        latents = [
            LatentOrigin(source=str(src), index=int(start) + j)
            for src, start, length in data["latent_runs"]
            for j in range(int(length))
        ]
        scales = data.get("latent_scales")
        if scales is not None:
            if len(scales) != len(latents):
                raise ValueError(
                    f"provenance lists {len(scales)} latent scales for {len(latents)} latents"
                )
            latents = [
                o.model_copy(update={"scale": float(x)})
                for o, x in zip(latents, scales, strict=True)
            ]
        return cls(
            format_version=int(data.get("format_version", FORMAT_VERSION)),
            sources={k: SourceSAE.model_validate(v) for k, v in data["sources"].items()},
            latents=latents,
            operations=[Operation.model_validate(op) for op in data.get("operations", [])],
            loaded_from=(
                SourceSAE.model_validate(data["loaded_from"]) if data.get("loaded_from") else None
            ),
        )

    @classmethod
    def identity(cls, source: SourceSAE) -> Provenance:
        """Provenance of an unmodified source SAE: latent i is the source's latent i."""
        key = source.key()
        return cls(
            sources={key: source},
            latents=[LatentOrigin(source=key, index=i) for i in range(source.d_sae)],
        )


_HashEntry = tuple[str, Any, int, int]
"""(name, weakref to the tensor, its data pointer, its version counter)."""

_HASH_CACHE: weakref.WeakKeyDictionary[Any, tuple[list[_HashEntry], str]] = (
    weakref.WeakKeyDictionary()
)
"""sae -> ([entry per state-dict tensor], hash). A cached hash is used only while every entry
is the very tensor object that was hashed (identity, not address: a freed tensor's storage may
be reused by a new one), on the same storage (``param.data = ...`` swaps it) and at the same
version (any in-place change bumps it)."""


def _entry(name: str, tensor: torch.Tensor) -> _HashEntry:
    return (name, weakref.ref(tensor), tensor.data_ptr(), tensor._version)


def _still_valid(entries: list[_HashEntry], state: list[tuple[str, torch.Tensor]]) -> bool:
    return len(entries) == len(state) and all(
        name == s_name and ref() is tensor and tensor.data_ptr() == ptr and tensor._version == ver
        for (name, ref, ptr, ver), (s_name, tensor) in zip(entries, state, strict=True)
    )


def content_hash(sae: SAE[Any]) -> str:
    """sha256 over the SAE's architecture, shapes and weights (in state-dict order); cached per
    SAE until a tensor is modified or replaced."""
    state = sorted(sae.state_dict(keep_vars=True).items())
    cached = _HASH_CACHE.get(sae)
    if cached is not None and _still_valid(cached[0], state):
        return cached[1]
    h = hashlib.sha256(sae.cfg.architecture().encode())
    for name, tensor in state:
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()
    _HASH_CACHE[sae] = ([_entry(name, t) for name, t in state], digest)
    return digest


def has_provenance(sae: SAE[Any]) -> bool:
    """Whether the SAE carries a provenance record that matches its width."""
    raw = sae.cfg.metadata.get(METADATA_KEY)
    if not isinstance(raw, dict):
        return False
    try:
        n = sum(int(run[2]) for run in raw["latent_runs"])
    except (KeyError, TypeError, ValueError, IndexError):
        return False
    return n == sae.cfg.d_sae


def get_provenance(sae: SAE[Any]) -> Provenance:
    """The SAE's provenance. An SAE without a record (or with a stale one) is its own source,
    identified by a content hash of its weights."""
    if has_provenance(sae):
        return Provenance.from_metadata(sae.cfg.metadata[METADATA_KEY])
    return Provenance.identity(
        SourceSAE(
            content_hash=content_hash(sae),
            architecture=sae.cfg.architecture(),
            d_sae=sae.cfg.d_sae,
        )
    )


def set_provenance(sae: SAE[Any], provenance: Provenance) -> None:
    """Store ``provenance`` in ``sae.cfg.metadata`` (replacing any previous record)."""
    if len(provenance.latents) != sae.cfg.d_sae:
        raise ValueError(
            f"provenance lists {len(provenance.latents)} latents but the SAE has d_sae={sae.cfg.d_sae}"
        )
    sae.cfg.metadata[METADATA_KEY] = provenance.to_metadata()


def describe_sae(sae: SAE[Any]) -> str:
    """A short identity: the single source's key for an unmodified SAE, else a summary."""
    prov = get_provenance(sae)
    if len(prov.sources) == 1 and not prov.operations:
        return next(iter(prov.sources))
    return f"{sae.cfg.architecture()}[{sae.cfg.d_sae}] built by " + "+".join(
        op.operation for op in prov.operations
    )


NAME_ATTRIBUTE = "_sae_stitch_display_name"
"""Attribute of an SAE object holding the name given by :func:`set_display_name` (kept in
memory only: a name never enters a saved config)."""


def check_display_name(name: object) -> str:
    """``name`` stripped, if it is one non-empty line; else :class:`InvalidNameError`."""
    from sae_lens_stitch.errors import InvalidNameError

    if not isinstance(name, str) or not name.strip() or any(c in name for c in "\n\r\t"):
        raise InvalidNameError(f"an SAE's display name must be one non-empty line, got {name!r}")
    return name.strip()


def set_display_name(sae: SAE[Any], name: str) -> None:
    """Name ``sae`` for tables, legends and summary lines (see :func:`display_name`)."""
    object.__setattr__(sae, NAME_ATTRIBUTE, check_display_name(name))


def display_name(sae: SAE[Any]) -> str:
    """The SAE's name for people: the one given by :func:`set_display_name` (or ``load_sae(...,
    name=)``); else where it was loaded from (``RELEASE:SAE_ID``, ``OWNER/REPO/FOLDER`` or the
    local folder's name); else, for an SAE built in this process, its architecture and width
    and the operations that built it. Never a content hash nor an absolute path: those stay in
    the provenance record."""
    given = getattr(sae, NAME_ATTRIBUTE, None)
    if isinstance(given, str) and given:
        return given
    prov = get_provenance(sae)
    if prov.loaded_from is not None:
        return prov.loaded_from.display_name()
    if len(prov.sources) == 1 and not prov.operations:
        return next(iter(prov.sources.values())).display_name()
    built = "+".join(dict.fromkeys(op.operation for op in prov.operations))
    return f"{sae.cfg.architecture()} {sae.cfg.d_sae}" + (f" ({built})" if built else "")


def sae_identity(sae: SAE[Any]) -> SourceSAE | str:
    """The SourceSAE of an unmodified SAE, else a description string."""
    prov = get_provenance(sae)
    if len(prov.sources) == 1 and not prov.operations:
        return next(iter(prov.sources.values()))
    return describe_sae(sae)
