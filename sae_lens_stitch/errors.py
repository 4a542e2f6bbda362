"""Typed errors. Every error names the offending value; all bad-input errors are ValueErrors."""

from __future__ import annotations

from typing import Any


class StitchError(Exception):
    """Base class of every error this package raises on purpose."""


class IncompatibleSAEsError(StitchError, ValueError):
    """Two SAEs that must share activations disagree on a config field."""

    def __init__(self, field: str, first: Any, second: Any, *, names: tuple[str, str] = ("a", "b")):
        self.field = field
        self.first = first
        self.second = second
        super().__init__(
            f"SAEs are incompatible: {field} differs ({names[0]}: {first!r}, {names[1]}: {second!r})"
        )


class InvalidIndicesError(StitchError, ValueError):
    """Latent indices that are out of range, duplicated or not integers."""


class InvalidWeightsError(StitchError, ValueError):
    """Weights with NaN/inf entries or zero-norm rows where a direction is needed."""


class UnsupportedArchitectureError(StitchError, ValueError):
    """An SAE-Lens architecture with no rule in this package's registry."""

    def __init__(self, architecture: str, known: list[str], *, reason: str | None = None):
        self.architecture = architecture
        if reason is not None:
            super().__init__(f"architecture {architecture!r} is not supported here: {reason}")
            return
        super().__init__(
            f"architecture {architecture!r} is not supported; registered: {', '.join(sorted(known))}. "
            "Add it with sae_lens_stitch.register_architecture(...)."
        )


class SourceNotFoundError(StitchError, ValueError):
    """An SAE source (release, repo, folder or file) that does not exist or cannot be resolved."""


class CorruptSAEError(StitchError, ValueError):
    """A saved SAE whose files are truncated, unreadable or inconsistent."""


class HubError(StitchError, RuntimeError):
    """The Hugging Face Hub could not be reached or refused the operation."""


class MissingTokenError(HubError):
    """No Hugging Face token was given or found for an operation that needs one."""


class OfflineError(HubError):
    """The operation needs the network but offline mode (HF_HUB_OFFLINE) is on or the Hub is unreachable."""


class PathExistsError(StitchError, FileExistsError):
    """The destination (folder or path in a repo) already exists and overwrite was not asked for."""


class RoundTripMismatchError(StitchError, RuntimeError):
    """A saved SAE reloaded by plain SAE-Lens does not reproduce the original's outputs."""


class UnsupportedSAEError(StitchError, ValueError):
    """An SAE setting an operation cannot handle, e.g. run-time activation normalisation
    (constant_norm_rescale, layer_norm) for the closed-form insert effects and curves."""


class InvalidDestinationError(StitchError, ValueError):
    """A repo id or path in a repo that is malformed (e.g. not owner/name, or containing '..')."""


class InvalidActivationsError(StitchError, ValueError):
    """Activations that are empty, non-finite, complex or too few for what was asked."""


class BudgetError(StitchError, ValueError):
    """A width or L0 budget that cannot be met (e.g. below the latents that must be kept)."""


class InvalidNameError(StitchError, ValueError):
    """A display name that is empty or spans several lines."""


class StudyError(StitchError, ValueError):
    """A study that cannot run as asked: SAEs of different hooks, an unknown step, a folder
    holding another study."""


class InvalidModelError(StitchError, ValueError):
    """A language model that cannot be loaded, or lacks the hook or head an operation needs."""


class InvalidDatasetError(StitchError, ValueError):
    """A dataset (file, folder or name) that cannot be read or holds no usable text or ids."""


class ModelMismatchWarning(UserWarning):
    """The model given is not the one named in the SAE's metadata (``model_name``)."""


class InvalidSettingError(StitchError, ValueError):
    """A numeric setting out of its range: k larger than the target's width, a meta-SAE width
    or k outside what the decomposed SAE allows, a non-positive learning rate."""


class InvalidArgumentError(StitchError, ValueError, TypeError):
    """An argument of the wrong type or outside its range: a threshold of 1.5, NaN or "0.7",
    a fraction outside (0, 1), a folder that is not a path, an SAE that is not an SAE. Both a
    ValueError and a TypeError, so either ``except`` catches it."""


class DeviceError(StitchError, ValueError):
    """A torch device that is malformed ("banana") or not available here ("cuda" without GPU)."""


class SaveError(StitchError, OSError):
    """A destination that cannot be written: no permission, no space, a name too long."""
