"""Reading activations from files: ``.pt``/``.pth`` (a tensor, or a dict with one tensor or a
tensor named ``activations``; loaded with ``weights_only``), ``.safetensors`` (key
``activations`` or its only tensor) and ``.npy`` (real numbers, no pickles). Every failure is an
:class:`~sae_lens_stitch.errors.InvalidActivationsError` that names the file and says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae_lens_stitch.errors import InvalidActivationsError
from sae_lens_stitch.validation import check_activation_batch, check_count, show


def read_activations(path_text: str, d_in: int, *, max_tokens: int | None = None) -> torch.Tensor:
    """Activations [..., d_in] from a .pt / .pth / .safetensors / .npy file (a tensor, or a dict
    with one tensor or with key "activations"), flattened to [N, d_in] float32; with
    ``max_tokens``, only the first ``max_tokens`` of them."""
    check_count(d_in, "d_in")
    return fit_activations(read_activation_file(path_text), path_text, d_in, max_tokens=max_tokens)


def fit_activations(
    data: Any, path_text: str, d_in: int, *, max_tokens: int | None = None
) -> torch.Tensor:
    """``data`` [..., d_in] as [N, d_in] float32 (the first ``max_tokens`` rows when given);
    a wrong last dimension, complex or non-finite values are errors."""
    if isinstance(data, torch.Tensor) and (data.ndim < 1 or data.shape[-1] != d_in):
        raise InvalidActivationsError(
            f"activations in {path_text!r} have shape {tuple(data.shape)}; the SAE needs [..., {d_in}]"
        )
    if max_tokens is not None:
        check_count(max_tokens, "max_tokens")
        if isinstance(data, torch.Tensor):
            data = data.reshape(-1, d_in)[:max_tokens]
    return check_activation_batch(data, d_in, what=f"activations in {path_text!r}").float()


def _torch_load_tensors(path: Path, path_text: str) -> Any:
    """``torch.load`` with weights only, its failures said in words."""
    import zipfile

    with path.open("rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (legacy files: a pickle, protocol 2+)
    looks_like_torch = head == b"PK\x03\x04" or head[:1] == b"\x80" or zipfile.is_zipfile(path)
    if not looks_like_torch:
        raise InvalidActivationsError(
            f"cannot read activations file {path_text!r}: not a PyTorch file "
            "(torch.save writes a zip archive; this is neither that nor a pickle)"
        )
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err).lower():
            raise InvalidActivationsError(
                f"cannot read activations file {path_text!r}: it holds objects other than "
                "tensors (save a tensor, or a dict of tensors, with torch.save)"
            ) from None
        raise InvalidActivationsError(
            f"cannot read activations file {path_text!r}: a corrupt or truncated PyTorch file"
        ) from None


def read_activation_file(path_text: str | Path) -> torch.Tensor:
    """The activations tensor in a .pt / .pth / .safetensors / .npy file, checked to be finite
    (read before any SAE is loaded, so a bad file fails at once)."""
    if not isinstance(path_text, (str, Path)) or not str(path_text).strip():
        raise InvalidActivationsError(f"activations file must be a path; got {show(path_text)}")
    path_text = str(path_text)
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise InvalidActivationsError(
            f"activations file {path_text!r} is a folder; expected a .pt, .pth, .safetensors or "
            ".npy file"
        )
    if not path.is_file():
        raise InvalidActivationsError(f"activations file {path_text!r} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            data: Any = load_file(str(path))
        except Exception:
            raise InvalidActivationsError(
                f"cannot read activations file {path_text!r}: not a valid safetensors file "
                "(corrupt, truncated or another format)"
            ) from None
    elif path.suffix in (".pt", ".pth"):
        data = _torch_load_tensors(path, path_text)
    elif path.suffix == ".npy":
        import numpy as np

        try:
            array = np.load(str(path), allow_pickle=False)
        except Exception:
            raise InvalidActivationsError(
                f"cannot read activations file {path_text!r}: not a valid .npy array of numbers "
                "(corrupt, truncated, or holding Python objects)"
            ) from None
        if array.dtype.kind not in "fiu":
            raise InvalidActivationsError(
                f"activations file {path_text!r} holds {array.dtype} values; expected real numbers"
            )
        data = torch.from_numpy(np.ascontiguousarray(array))
    else:
        raise InvalidActivationsError(
            f"activations file {path_text!r}: expected a .pt, .pth, .safetensors or .npy file"
        )
    if isinstance(data, dict):
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if "activations" in tensors:
            data = tensors["activations"]
        elif len(tensors) == 1:
            data = next(iter(tensors.values()))
        else:
            raise InvalidActivationsError(
                f"activations file {path_text!r} holds {sorted(tensors)}; "
                "name the tensor 'activations'"
            )
    if not isinstance(data, torch.Tensor):
        raise InvalidActivationsError(
            f"activations file {path_text!r} does not hold a tensor (found {type(data).__name__})"
        )
    if data.is_complex() or data.dtype == torch.bool:
        raise InvalidActivationsError(
            f"activations in {path_text!r} hold {data.dtype} values; expected real numbers"
            + (" (the imaginary part would be lost)" if data.is_complex() else "")
        )
    if data.is_floating_point() and data.numel() and not bool(torch.isfinite(data.sum())):
        n_bad = int((~torch.isfinite(data)).sum())
        if n_bad:
            raise InvalidActivationsError(
                f"activations in {path_text!r} hold {n_bad} non-finite value(s) (NaN or inf) "
                f"of {data.numel()}"
            )
    if data.numel() == 0:
        raise InvalidActivationsError(
            f"activations in {path_text!r} are empty (shape {tuple(data.shape)})"
        )
    return data
