"""Activations from the model: run the language model named in an SAE's metadata (or another)
over a dataset, keep the activations at the SAE's hook, and cache them on disk.

Two backends:

- **transformer-lens** (``HookedTransformer``): any hook point of ``model.hook_dict``; the
  forward pass stops after the hook's block (``run_with_cache`` with ``names_filter`` and
  ``stop_at_layer``). Used for a ``HookedTransformer`` instance and for the names
  transformer-lens knows (loaded as SAE-Lens does, ``from_pretrained_no_processing`` with the
  metadata's ``model_from_pretrained_kwargs``).
- **transformers** (``AutoModel.from_pretrained``, a local folder or a Hub name): for models
  transformer-lens does not support, at the hooks ``blocks.L.hook_resid_pre`` (the input of
  layer L, ``hidden_states[L]``) and ``blocks.L.hook_resid_post`` (its output,
  ``hidden_states[L + 1]``); padding is masked and the forward pass stops at that layer.

A model is given as an instance, a name, a local folder, or ``MODULE:CALLABLE`` (also
``path/to/file.py:CALLABLE``): a factory called with no argument that returns a model (or a
``(model, tokenizer)`` pair).

Datasets: a text file (``.txt``: one document per line), ``.jsonl`` / ``.json`` records with a
``text`` field, pre-tokenized ids in ``.npy`` / ``.pt`` (``[n_seq, seq]`` rows used as they are,
or a 1-D stream cut into ``context_size`` sequences), a tensor of ids, a folder written by
``datasets``' ``save_to_disk`` (column ``text``, ``input_ids`` or ``tokens``), or a dataset name
for ``datasets.load_dataset`` (streamed; needs the Hub). Text is tokenized with the model's
tokenizer, documents joined by a separator token (BERT-like: ``[SEP]``; otherwise BOS as
SAE-Lens does, or EOS) and cut into sequences of ``context_size`` tokens, each starting with BOS
(``[CLS]`` for BERT-like tokenizers, which also end each sequence with ``[SEP]``) when
``prepend_bos``. Tokens listed in the metadata's ``exclude_special_tokens`` (and padding) are
dropped from the activations.

The activations are written to ``cache_dir`` (default ``~/.cache/sae_lens_stitch/activations``,
or ``SAE_STITCH_CACHE``) as one ``.npy`` file per (model, hook, dataset, context size, BOS,
excluded tokens, number of tokens), with a JSON sidecar saying what it holds; a later call with
the same key (or a smaller number of tokens) reads the file instead of running the model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import itertools
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from sae_lens_stitch._atomic import atomic_path, atomic_write_text
from sae_lens_stitch.errors import (
    InvalidActivationsError,
    InvalidDatasetError,
    InvalidModelError,
    ModelMismatchWarning,
)
from sae_lens_stitch.progress import track

if TYPE_CHECKING:
    from sae_lens import SAE

    from sae_lens_stitch.evaluation.metrics import ModelMetrics

__all__ = [
    "ActivationsSource",
    "LanguageModel",
    "ModelActivations",
    "default_cache_dir",
    "language_model_metrics",
    "load_language_model",
    "model_activations",
    "model_tokens",
]

Backend = Literal["transformer_lens", "transformers"]
DatasetLike = str | os.PathLike[str] | torch.Tensor
"""A dataset path or name, or a tensor of token ids [n_seq, seq] or [n_tokens]."""
DEFAULT_N_TOKENS = 100_000
DEFAULT_CONTEXT_SIZE = 128
DEFAULT_BATCH_SIZE = 32
"""Sequences per forward pass."""
CACHE_ENV = "SAE_STITCH_CACHE"

_FACTORY = re.compile(r"^(?P<module>[\w./\\-]+?):(?P<attr>[A-Za-z_]\w*)$")
_LAYER_HOOK = re.compile(r"^blocks\.(?P<layer>\d+)\.hook_resid_(?P<site>pre|post)$")
_TL_BLOCK = re.compile(r"^blocks\.(?P<layer>\d+)\.")


class ActivationsSource(BaseModel):
    """Where a set of activations came from (stored next to the cached file)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    """The model as given (name, folder, ``MODULE:CALLABLE``, or the class and name of an
    instance)."""
    backend: Backend
    hook_name: str
    dataset: str
    """The dataset as given (path, name, or ``tensor [n_seq, seq]``)."""
    n_tokens_requested: int
    n_tokens: int
    """Tokens actually kept (fewer than requested when the dataset ran out)."""
    d_in: int
    context_size: int
    prepend_bos: bool
    excluded_token_ids: list[int]
    """Token ids whose activations are dropped (besides padding)."""
    key: str
    """Hash of everything above that determines the activations (not ``n_tokens``)."""


@dataclass(frozen=True)
class ModelActivations:
    """Activations from a model: the tensor, the cache file holding it, and their source."""

    activations: torch.Tensor
    """[n_tokens, d_in] float32 on the CPU."""
    path: Path
    """The cached ``.npy`` file (its JSON sidecar has the same name with ``.json``)."""
    source: ActivationsSource
    from_cache: bool
    """True when read from the cache (the model was not run)."""


@dataclass
class LanguageModel:
    """A loaded model with its tokenizer (from :func:`load_language_model`), reusable by
    :func:`model_activations` and :func:`language_model_metrics` without loading it again."""

    module: Any
    tokenizer: Any
    backend: Backend
    name: str
    """The model as given (for records and messages)."""
    key: str
    """Identifies the model's weights in cache keys (its name, folder, or a fingerprint)."""


ModelLike = str | os.PathLike[str] | torch.nn.Module | LanguageModel
"""A model name, local folder or ``MODULE:CALLABLE`` factory, a model instance, or a loaded
:class:`LanguageModel`."""


def default_cache_dir() -> Path:
    """``$SAE_STITCH_CACHE`` or ``~/.cache/sae_lens_stitch/activations``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/sae_lens_stitch/activations").expanduser()


# ------------------------------------------------------------------------------ the model


def _is_hooked_transformer(obj: Any) -> bool:
    if "transformer_lens" not in sys.modules:
        return False
    from transformer_lens import HookedTransformer

    return isinstance(obj, HookedTransformer)


def _fingerprint(module: torch.nn.Module) -> str:
    """A cheap fingerprint of a model's weights: names, shapes, sums and a few values."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in module.state_dict().items():
            if not isinstance(p, torch.Tensor) or not p.is_floating_point():
                continue
            flat = p.detach().reshape(-1)
            h.update(f"{name}{tuple(p.shape)}{float(flat.sum(dtype=torch.float64))!r}".encode())
            h.update(flat[:64].to("cpu", torch.float64).numpy().tobytes())
    return h.hexdigest()[:16]


def _call_factory(text: str) -> Any:
    match = _FACTORY.match(text)
    assert match is not None
    module_text, attr = match["module"], match["attr"]
    try:
        if module_text.endswith(".py"):
            path = Path(module_text).expanduser()
            if not path.is_file():
                raise InvalidModelError(f"model factory {text!r}: no such file {module_text!r}")
            spec = importlib.util.spec_from_file_location(f"_sae_stitch_factory_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise InvalidModelError(f"model factory {text!r}: cannot import {module_text!r}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_text)
    except InvalidModelError:
        raise
    except Exception as err:
        raise InvalidModelError(
            f"model factory {text!r}: cannot import {module_text!r} ({type(err).__name__}: {err})"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise InvalidModelError(f"model factory {text!r}: {module_text!r} has no callable {attr!r}")
    return factory()


def _tl_knows(name: str) -> bool:
    try:
        from transformer_lens.loading_from_pretrained import get_official_model_name

        get_official_model_name(name)
    except Exception:
        return False
    return True


def _hf_tokenizer_for(module: Any, name: str) -> Any:
    from transformers import AutoTokenizer

    source = getattr(module, "name_or_path", None) or name
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception:
        return None


def _wrap(obj: Any, name: str, key: str, tokenizer: Any = None) -> LanguageModel:
    if isinstance(obj, tuple):
        pair: tuple[Any, ...] = obj  # pyright: ignore[reportUnknownVariableType]
        if len(pair) == 2:
            return _wrap(pair[0], name, key, pair[1])
    if _is_hooked_transformer(obj):
        module: Any = obj
        return LanguageModel(module, tokenizer or module.tokenizer, "transformer_lens", name, key)
    if isinstance(obj, torch.nn.Module) and hasattr(obj, "config"):
        tok = tokenizer if tokenizer is not None else _hf_tokenizer_for(obj, name)
        return LanguageModel(obj.eval(), tok, "transformers", name, key)
    raise InvalidModelError(
        f"model {name!r} is a {type(obj).__name__}; expected a transformer-lens HookedTransformer "
        "or a Hugging Face transformers model"
    )


def load_language_model(
    model: ModelLike | None = None,
    *,
    sae: SAE[Any] | None = None,
    backend: Backend | None = None,
    device: str | torch.device = "cpu",
    tokenizer: Any = None,
) -> LanguageModel:
    """The model to run: ``model`` as an instance (``HookedTransformer`` or a transformers
    model), a ``MODULE:CALLABLE`` factory, a local folder (transformers), a name transformer-lens
    knows (transformer-lens, as SAE-Lens loads it), or another name (transformers). None: the
    SAE's ``cfg.metadata.model_name``. A loaded :class:`LanguageModel` is returned as it is.
    A name that differs from the SAE's metadata ``model_name`` gives a
    :class:`~sae_lens_stitch.errors.ModelMismatchWarning` naming both (a folder, a factory or an
    instance is taken as the user's choice)."""
    if isinstance(model, LanguageModel):
        return model
    meta = getattr(getattr(sae, "cfg", None), "metadata", None)
    meta_name = getattr(meta, "model_name", None)
    if model is None:
        if not meta_name:
            raise InvalidModelError(
                "no model given and the SAE's cfg.metadata has no model_name; pass a model"
            )
        model = meta_name
    if not isinstance(model, (str, os.PathLike)):
        name = f"{type(model).__name__}:{getattr(getattr(model, 'cfg', None), 'model_name', '')}"
        if isinstance(model, tuple):
            first: Any = model[0]  # pyright: ignore[reportUnknownVariableType]
            name = type(first).__name__
        loaded = _wrap(model, name, "", tokenizer)
        loaded.key = f"{name}#{_fingerprint(loaded.module)}"
        return _moved(loaded, device)
    text = str(model)
    local = Path(text).expanduser()
    is_factory = bool(_FACTORY.match(text)) and not local.exists()
    # a folder or a factory is the user's own choice: only a differing *name* is suspicious
    if meta_name and text != meta_name and not is_factory and not local.is_dir():
        warnings.warn(
            f"model {text!r} is not the SAE's metadata model_name {meta_name!r}: the activations "
            "may not be the ones the SAE was trained on",
            ModelMismatchWarning,
            stacklevel=2,
        )
    if is_factory:
        loaded = _wrap(_call_factory(text), text, "", tokenizer)
        loaded.key = f"{text}#{_fingerprint(loaded.module)}"
        return _moved(loaded, device)
    kind: Backend = backend or (
        "transformers" if local.is_dir() or not _tl_knows(text) else "transformer_lens"
    )
    try:
        if kind == "transformer_lens":
            from transformer_lens import HookedTransformer

            kwargs = dict(getattr(meta, "model_from_pretrained_kwargs", None) or {})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = HookedTransformer.from_pretrained_no_processing(
                    text, device=str(device), **kwargs
                )
            return LanguageModel(module, module.tokenizer, kind, text, text)
        from transformers import AutoModel, AutoTokenizer

        source = str(local) if local.is_dir() else text
        module = AutoModel.from_pretrained(source).eval()
        tok = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(source)
    except InvalidModelError:
        raise
    except Exception as err:
        where = "local folder" if local.is_dir() else "name"
        raise InvalidModelError(
            f"cannot load model {text!r} ({where}, {kind}): {type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}"
        ) from None
    key = str(local.resolve()) if local.is_dir() else text
    return _moved(LanguageModel(module, tok, kind, text, key), device)


def _device_of(module: Any) -> torch.device:
    first = next(iter(module.parameters()), None)
    return first.device if first is not None else torch.device("cpu")


def _moved(lm: LanguageModel, device: str | torch.device) -> LanguageModel:
    """``lm`` with its module on ``device`` (left alone when it is there already)."""
    target = torch.device(device)
    here = _device_of(lm.module)
    if here.type != target.type or (target.index is not None and here.index != target.index):
        lm.module.to(target)
    return lm


def _layer_list(module: Any) -> Any:
    """The model's list of transformer layers (a ModuleList as long as its layer count)."""
    config = getattr(module, "config", None)
    n = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    for _, sub in module.named_modules():
        if isinstance(sub, torch.nn.ModuleList) and len(sub) == n:
            return sub
    return None


def _check_hook(lm: LanguageModel, hook: str) -> tuple[int | None, str | None]:
    """(layer, "pre"/"post") for the transformers backend, (stop_at_layer, None) for
    transformer-lens; a hook the model does not have is an error naming it."""
    if lm.backend == "transformer_lens":
        if hook not in lm.module.hook_dict:
            near = [h for h in lm.module.hook_dict if h.endswith(hook.split(".")[-1])][:4]
            raise InvalidModelError(
                f"hook {hook!r} is not a hook point of model {lm.name!r}"
                + (f" (e.g. {', '.join(near)})" if near else "")
            )
        m = _TL_BLOCK.match(hook)
        return (int(m["layer"]) + 1 if m else None), None
    m = _LAYER_HOOK.match(hook)
    layers = _layer_list(lm.module)
    n = len(layers) if layers is not None else lm.module.config.num_hidden_layers
    if m is None or int(m["layer"]) >= n:
        raise InvalidModelError(
            f"hook {hook!r} is not available for model {lm.name!r} (transformers backend: "
            f"blocks.L.hook_resid_pre or blocks.L.hook_resid_post with L in 0..{n - 1})"
        )
    return int(m["layer"]), m["site"]


def _max_context(lm: LanguageModel) -> int | None:
    if lm.backend == "transformer_lens":
        return int(lm.module.cfg.n_ctx)
    value = getattr(lm.module.config, "max_position_embeddings", None)
    return int(value) if isinstance(value, int) else None


class _Stop(Exception):
    pass


def _hf_forward(
    lm: LanguageModel, ids_BS: torch.Tensor, mask_BS: torch.Tensor, layer: int, site: str
) -> torch.Tensor:
    """[B, S, d] at the input (pre) or output (post) of layer ``layer``, stopping there."""
    layers = _layer_list(lm.module)
    if layers is None:  # no layer list found: the whole forward pass, then hidden_states
        out = lm.module(input_ids=ids_BS, attention_mask=mask_BS, output_hidden_states=True)
        return out.hidden_states[layer + (site == "post")]
    got: list[torch.Tensor] = []

    def pre(_mod: Any, args: Any, kwargs: Any) -> None:
        got.append(args[0] if args else kwargs["hidden_states"])
        raise _Stop

    def post(_mod: Any, _args: Any, output: Any) -> None:
        got.append(output[0] if isinstance(output, tuple) else output)
        raise _Stop

    handle = (
        layers[layer].register_forward_pre_hook(pre, with_kwargs=True)
        if site == "pre"
        else layers[layer].register_forward_hook(post)
    )
    try:
        lm.module(input_ids=ids_BS, attention_mask=mask_BS)
    except _Stop:
        pass
    finally:
        handle.remove()
    return got[0]


# ------------------------------------------------------------------------------ the dataset


@dataclass(frozen=True)
class _Tokens:
    """How text becomes sequences for one tokenizer."""

    begin: list[int]
    end: list[int]
    separator: list[int]
    pad_id: int | None


def _token_plan(lm: LanguageModel, prepend_bos: bool) -> _Tokens:
    tok = lm.tokenizer
    cls_id = getattr(tok, "cls_token_id", None)
    sep_id = getattr(tok, "sep_token_id", None)
    bos_id = getattr(tok, "bos_token_id", None)
    eos_id = getattr(tok, "eos_token_id", None)
    pad_id = getattr(tok, "pad_token_id", None)
    if cls_id is not None and sep_id is not None:  # BERT-like: [CLS] ... [SEP]
        begin, end, sep = [cls_id], [sep_id], [sep_id]
    else:
        begin, end = ([bos_id] if bos_id is not None else []), []
        sep = [bos_id] if bos_id is not None else ([eos_id] if eos_id is not None else [])
    if not prepend_bos:
        begin, end = [], []
    return _Tokens(begin, end, sep, pad_id)


def _read_text_documents(path: Path, shown: str) -> Iterator[str]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with path.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        yield _text_field(json.loads(line), shown, f"line {n}")
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and isinstance(data.get("text"), list):
                data = data["text"]
            if not isinstance(data, list):
                raise InvalidDatasetError(
                    f"dataset {shown!r}: expected a JSON list of records with a 'text' field"
                )
            for n, record in enumerate(data):
                yield _text_field(record, shown, f"record {n}")
        else:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield line.rstrip("\n")
    except InvalidDatasetError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError, OSError) as err:
        raise InvalidDatasetError(
            f"cannot read dataset {shown!r}: {type(err).__name__}: {err}"
        ) from None


def _text_field(record: Any, shown: str, where: str) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict) and isinstance(record.get("text"), str):
        return record["text"]
    raise InvalidDatasetError(f"dataset {shown!r}, {where}: no 'text' field holding a string")


def _read_ids_file(path: Path, shown: str) -> torch.Tensor:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(str(path), allow_pickle=False)
            data = torch.from_numpy(np.ascontiguousarray(array))
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        raise InvalidDatasetError(
            f"cannot read dataset {shown!r}: not a valid {path.suffix} file of token ids "
            f"({type(err).__name__})"
        ) from None
    if isinstance(data, dict):
        tensors = [v for k, v in data.items() if k in ("input_ids", "tokens")]  # type: ignore[union-attr]
        data = tensors[0] if tensors else data
    return _check_ids(data, shown)


def _check_ids(data: Any, shown: str) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or data.ndim not in (1, 2) or data.numel() == 0:
        what = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise InvalidDatasetError(
            f"dataset {shown!r}: expected token ids [n_seq, seq] or [n_tokens], got {what}"
        )
    if data.is_floating_point() or data.is_complex() or bool((data < 0).any()):
        raise InvalidDatasetError(
            f"dataset {shown!r}: token ids must be non-negative integers (got {data.dtype})"
        )
    return data.long()


def _chunks(stream: Iterator[int], body: int, plan: _Tokens) -> Iterator[list[int]]:
    buffer: list[int] = []
    for token in stream:
        buffer.append(token)
        if len(buffer) == body:
            yield plan.begin + buffer + plan.end
            buffer = []
    if buffer:
        yield plan.begin + buffer + plan.end


def _text_stream(docs: Iterator[str], lm: LanguageModel, plan: _Tokens) -> Iterator[int]:
    for doc in docs:
        yield from lm.tokenizer(doc, add_special_tokens=False)["input_ids"]
        yield from plan.separator


def _hf_dataset_rows(data: Any, shown: str) -> tuple[str, Iterator[Any]]:
    """("text" | "ids", rows) of a datasets Dataset / IterableDataset (or a dict of splits)."""
    if hasattr(data, "keys") and not hasattr(data, "column_names"):
        splits = list(data.keys())
        data = data["train"] if "train" in splits else data[splits[0]]
    columns = list(getattr(data, "column_names", None) or [])
    rows: Iterator[Any] = iter(data)
    if not columns:  # a streamed dataset may not know its columns: look at the first row
        first = next(rows, None)
        columns = list(first) if isinstance(first, dict) else []
        rows = itertools.chain([first] if first is not None else [], rows)
    for column, kind in (("input_ids", "ids"), ("tokens", "ids"), ("text", "text")):
        if column in columns:
            return kind, (row[column] for row in rows)
    raise InvalidDatasetError(
        f"dataset {shown!r} has columns {columns}; expected 'text', 'input_ids' or 'tokens'"
    )


def _sequences(
    dataset: Any, lm: LanguageModel, context_size: int, prepend_bos: bool
) -> Iterator[torch.Tensor]:
    """Token sequences (1-D, at most ``context_size`` long) from the dataset, lazily."""
    plan = _token_plan(lm, prepend_bos)
    body = context_size - len(plan.begin) - len(plan.end)
    if body < 1:
        raise InvalidDatasetError(f"context_size {context_size} leaves no room for tokens")
    shown = _dataset_name(dataset)
    if isinstance(dataset, torch.Tensor):
        yield from _id_sequences(_check_ids(dataset, shown), body, plan)
        return
    path = Path(str(dataset)).expanduser()
    if path.is_file():
        if path.suffix.lower() in (".npy", ".pt", ".pth"):
            yield from _id_sequences(_read_ids_file(path, shown), body, plan)
            return
        if lm.tokenizer is None:
            raise InvalidModelError(f"model {lm.name!r} has no tokenizer to tokenize {shown!r}")
        docs = _read_text_documents(path, shown)
        for chunk in _chunks(_text_stream(docs, lm, plan), body, plan):
            yield torch.tensor(chunk, dtype=torch.long)
        return
    kind, rows = _hf_rows(path, shown)
    if kind == "ids":
        for row in rows:
            yield from _id_sequences(torch.as_tensor(row, dtype=torch.long), body, plan)
        return
    for chunk in _chunks(_text_stream(iter(rows), lm, plan), body, plan):
        yield torch.tensor(chunk, dtype=torch.long)


def _hf_rows(path: Path, shown: str) -> tuple[str, Iterator[Any]]:
    try:
        import datasets

        if path.is_dir():
            data = datasets.load_from_disk(str(path))
        elif path.exists() or (os.sep in shown and not re.match(r"^[\w.-]+/[\w.-]+$", shown)):
            raise InvalidDatasetError(f"dataset {shown!r}: no such file or dataset folder")
        else:
            data = datasets.load_dataset(shown, split="train", streaming=True)
    except InvalidDatasetError:
        raise
    except Exception as err:
        raise InvalidDatasetError(
            f"cannot read dataset {shown!r} (not a local file, a saved datasets folder, or a "
            f"dataset the Hub serves): {type(err).__name__}: {' '.join(str(err).split())[:300]}"
        ) from None
    return _hf_dataset_rows(data, shown)


def _id_sequences(ids: torch.Tensor, body: int, plan: _Tokens) -> Iterator[torch.Tensor]:
    """Rows of a 2-D tensor as they are (cut when longer than the context); a 1-D stream cut
    into sequences with BOS prepended."""
    if ids.ndim == 2:
        width = body + len(plan.begin) + len(plan.end)
        for row in ids:
            for s in range(0, row.shape[0], width):
                yield row[s : s + width]
        return
    for s in range(0, ids.shape[0], body):
        piece = ids[s : s + body].tolist()
        yield torch.tensor(plan.begin + piece + plan.end, dtype=torch.long)


def _dataset_name(dataset: Any) -> str:
    if isinstance(dataset, torch.Tensor):
        return f"tensor {list(dataset.shape)}"
    return str(dataset)


def _dataset_key(dataset: Any) -> str:
    """Identifies the dataset's content in cache keys."""
    h = hashlib.sha256()
    if isinstance(dataset, torch.Tensor):
        h.update(str(tuple(dataset.shape)).encode())
        h.update(dataset.detach().to("cpu", torch.long).contiguous().numpy().tobytes())
        return "tensor:" + h.hexdigest()[:16]
    path = Path(str(dataset)).expanduser()
    if path.is_file():
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return "file:" + h.hexdigest()[:16]
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}:{st.st_mtime_ns};".encode())
        return "folder:" + h.hexdigest()[:16]
    return "name:" + str(dataset)


# ------------------------------------------------------------------------------ running


def _excluded_ids(lm: LanguageModel, exclude: Any, meta: Any) -> list[int]:
    if exclude is None:
        exclude = getattr(meta, "exclude_special_tokens", None)
    tok = lm.tokenizer
    if exclude is None or exclude is False:
        return []
    if exclude is True:
        return sorted(set(getattr(tok, "all_special_ids", []) or []))
    ids: set[int] = set()
    vocab = tok.get_vocab() if tok is not None and hasattr(tok, "get_vocab") else {}
    for item in exclude:
        if isinstance(item, int) and not isinstance(item, bool):
            ids.add(item)
        elif isinstance(item, str) and item in vocab:
            ids.add(int(vocab[item]))
    return sorted(ids)


def _batches(
    seqs: Iterator[torch.Tensor], batch_size: int, pad_id: int | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(ids [B, S], mask [B, S]) batches; sequences of one length together (no padding) unless
    ``pad_id`` is given, in which case shorter ones are padded and masked."""
    group: list[torch.Tensor] = []

    def flush() -> tuple[torch.Tensor, torch.Tensor]:
        width = max(s.shape[0] for s in group)
        fill = pad_id if pad_id is not None else 0
        ids = torch.full((len(group), width), fill, dtype=torch.long)
        mask = torch.zeros((len(group), width), dtype=torch.long)
        for i, s in enumerate(group):
            ids[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = 1
        if pad_id is not None:
            mask &= (ids != pad_id).long()
        return ids, mask

    for seq in seqs:
        if group and pad_id is None and seq.shape[0] != group[0].shape[0]:
            yield flush()
            group = []
        group.append(seq)
        if len(group) == batch_size:
            yield flush()
            group = []
    if group:
        yield flush()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[-40:] or "x"


def _cache_lookup(folder: Path, stem: str, n_tokens: int) -> tuple[Path, ActivationsSource] | None:
    """A cached file for this key with at least ``n_tokens`` tokens (or one made for exactly
    ``n_tokens`` that found fewer)."""
    best: tuple[int, Path, ActivationsSource] | None = None
    for sidecar in folder.glob(f"{stem}_*.json"):
        npy = sidecar.with_suffix(".npy")
        try:
            source = ActivationsSource.model_validate_json(sidecar.read_text())
        except Exception:
            continue
        if not npy.is_file():
            continue
        usable = source.n_tokens >= n_tokens or source.n_tokens_requested == n_tokens
        if usable and (best is None or source.n_tokens < best[0]):
            best = (source.n_tokens, npy, source)
    return None if best is None else (best[1], best[2])


def _run_model(
    lm: LanguageModel,
    hook: str,
    seqs: Iterator[torch.Tensor],
    *,
    n_tokens: int,
    excluded: list[int],
    batch_size: int,
    context_size: int,
    show_progress: bool | None,
) -> torch.Tensor:
    stop, site = _check_hook(lm, hook)
    hf = lm.backend == "transformers"
    pad_id = getattr(lm.tokenizer, "pad_token_id", None) if hf else None
    excluded_T = torch.tensor(excluded, dtype=torch.long)
    device = _device_of(lm.module)
    parts: list[torch.Tensor] = []
    kept = 0
    batches = _batches(seqs, batch_size, pad_id if hf else None)
    estimate = math.ceil(n_tokens / (batch_size * context_size))
    limit = _max_context(lm)
    for ids, mask in track(
        batches, total=estimate, description="model activations", show=show_progress
    ):
        if limit is not None and ids.shape[1] > limit:
            raise InvalidDatasetError(
                f"sequences of {ids.shape[1]} tokens are longer than model {lm.name!r} accepts "
                f"({limit}); pass a smaller context_size"
            )
        keep = mask.bool() & ~torch.isin(ids, excluded_T)
        with torch.no_grad():
            if hf:
                assert stop is not None and site is not None
                acts = _hf_forward(lm, ids.to(device), mask.to(device), stop, site)
            else:
                _, cache = lm.module.run_with_cache(
                    ids.to(device), names_filter=hook, stop_at_layer=stop
                )
                acts = cache[hook]
        if acts.ndim > 3:  # e.g. hook_z [B, S, heads, d_head]
            acts = acts.flatten(2)
        part = acts[keep.to(acts.device)].to("cpu", torch.float32)
        parts.append(part[: n_tokens - kept])
        kept += parts[-1].shape[0]
        if kept >= n_tokens:
            break
    if kept == 0:
        return torch.empty(0, 0)
    return torch.cat(parts)


def model_activations(
    sae: SAE[Any],
    *,
    model: ModelLike | None = None,
    dataset: DatasetLike | None = None,
    n_tokens: int = DEFAULT_N_TOKENS,
    hook_name: str | None = None,
    context_size: int | None = None,
    prepend_bos: bool | None = None,
    exclude_special_tokens: Sequence[str | int] | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device = "cpu",
    backend: Backend | None = None,
    show_progress: bool | None = None,
) -> ModelActivations:
    """The activations ``sae`` reads, ``n_tokens`` of them, from ``model`` run over
    ``dataset`` (both default to the SAE's ``cfg.metadata``: model_name, dataset_path; also
    hook_name, context_size, prepend_bos and exclude_special_tokens), cached on disk.

    ``model``: see :func:`load_language_model`. ``dataset``: a path, a dataset name or a
    tensor of token ids (see the module's docstring). ``batch_size`` counts sequences.
    With ``use_cache`` (default) a file already made for the same model, hook, dataset and
    settings with at least ``n_tokens`` tokens is read instead of running the model.

    Raises :class:`~sae_lens_stitch.errors.InvalidModelError` (a model that cannot be loaded,
    a hook it does not have), :class:`~sae_lens_stitch.errors.InvalidDatasetError` (a dataset
    that cannot be read) and :class:`~sae_lens_stitch.errors.InvalidActivationsError` (no
    token at all, or activations whose width is not the SAE's ``d_in``); warns when the model
    is not the one in the metadata or the dataset holds fewer tokens than asked (and uses those).
    """
    if n_tokens < 1:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    meta = sae.cfg.metadata
    hook = hook_name or getattr(meta, "hook_name", None)
    if not hook:
        raise InvalidModelError("the SAE's cfg.metadata has no hook_name; pass hook_name=")
    dataset = dataset if dataset is not None else getattr(meta, "dataset_path", None)
    if dataset is None or (isinstance(dataset, str) and not dataset):
        raise InvalidDatasetError("no dataset given and the SAE's cfg.metadata has no dataset_path")
    context = context_size or getattr(meta, "context_size", None) or DEFAULT_CONTEXT_SIZE
    if context < 2:
        raise ValueError(f"context_size must be at least 2, got {context}")
    bos = prepend_bos if prepend_bos is not None else getattr(meta, "prepend_bos", None)
    bos = True if bos is None else bool(bos)
    lm = load_language_model(model, sae=sae, backend=backend, device=device)
    excluded = _excluded_ids(lm, exclude_special_tokens, meta)
    d_in = int(sae.cfg.d_in)
    key_fields = {
        "model": lm.key,
        "backend": lm.backend,
        "hook": hook,
        "dataset": _dataset_key(dataset),
        "context_size": context,
        "prepend_bos": bos,
        "excluded": excluded,
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    stem = f"{_slug('/'.join(Path(lm.name).parts[-2:]))}__{_slug(hook)}__{key}"
    if use_cache and folder.is_dir():
        hit = _cache_lookup(folder, stem, n_tokens)
        if hit is not None:
            path, source = hit
            array = np.load(str(path), mmap_mode="r")[:n_tokens]
            acts = torch.from_numpy(np.array(array, dtype=np.float32))
            _check_width(acts, d_in, lm, hook)
            if acts.shape[0] < n_tokens:
                _warn_fewer(dataset, acts.shape[0], n_tokens)
            source = source.model_copy(
                update={"n_tokens": int(acts.shape[0]), "n_tokens_requested": n_tokens}
            )
            return ModelActivations(acts, path, source, True)
    seqs = _sequences(dataset, lm, context, bos)
    acts = _run_model(
        lm,
        hook,
        seqs,
        n_tokens=n_tokens,
        excluded=excluded,
        batch_size=batch_size,
        context_size=context,
        show_progress=show_progress,
    )
    if acts.shape[0] == 0:
        raise InvalidActivationsError(
            f"dataset {_dataset_name(dataset)!r} gave no tokens at hook {hook!r} of model "
            f"{lm.name!r} (empty, or every token excluded); asked for {n_tokens}"
        )
    _check_width(acts, d_in, lm, hook)
    if acts.shape[0] < n_tokens:
        _warn_fewer(dataset, acts.shape[0], n_tokens)
    source = ActivationsSource(
        model=lm.name,
        backend=lm.backend,
        hook_name=hook,
        dataset=_dataset_name(dataset),
        n_tokens_requested=n_tokens,
        n_tokens=int(acts.shape[0]),
        d_in=d_in,
        context_size=context,
        prepend_bos=bos,
        excluded_token_ids=excluded,
        key=key,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}_{n_tokens}.npy"
    with atomic_path(path) as tmp:
        np.save(str(tmp), acts.numpy())
    atomic_write_text(path.with_suffix(".json"), source.model_dump_json(indent=2) + "\n")
    return ModelActivations(acts, path, source, False)


def _check_width(acts: torch.Tensor, d_in: int, lm: LanguageModel, hook: str) -> None:
    if acts.shape[-1] != d_in:
        raise InvalidActivationsError(
            f"activations at hook {hook!r} of model {lm.name!r} have width {acts.shape[-1]}; "
            f"the SAE has d_in {d_in}"
        )


def _warn_fewer(dataset: Any, got: int, asked: int) -> None:
    warnings.warn(
        f"dataset {_dataset_name(dataset)!r} holds only {got} usable tokens; asked for {asked} "
        f"(using the {got})",
        UserWarning,
        stacklevel=3,
    )


# ------------------------------------------------------------------------------ LM metrics


def model_tokens(
    model: ModelLike,
    dataset: DatasetLike,
    *,
    n_tokens: int,
    context_size: int = DEFAULT_CONTEXT_SIZE,
    prepend_bos: bool = True,
    sae: SAE[Any] | None = None,
) -> torch.Tensor:
    """[n_seq, context_size] token ids from ``dataset`` (tokenized as for
    :func:`model_activations`): enough full-length sequences to cover ``n_tokens`` tokens
    (a shorter last sequence is dropped unless it is the only one)."""
    lm = load_language_model(model, sae=sae)
    rows: list[torch.Tensor] = []
    total = 0
    for seq in _sequences(dataset, lm, context_size, prepend_bos):
        if rows and seq.shape[0] != rows[0].shape[0]:
            continue  # a shorter last sequence
        rows.append(seq)
        total += seq.shape[0]
        if total >= n_tokens:
            break
    if not rows:
        raise InvalidDatasetError(f"dataset {_dataset_name(dataset)!r} holds no tokens")
    return torch.stack(rows)


def language_model_metrics(
    saes: Sequence[SAE[Any]],
    *,
    model: ModelLike | None = None,
    dataset: DatasetLike | None = None,
    n_tokens: int = 16_384,
    context_size: int | None = None,
    prepend_bos: bool | None = None,
    hook_name: str | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    show_progress: bool | None = None,
) -> list[ModelMetrics]:
    """:class:`~sae_lens_stitch.evaluation.metrics.ModelMetrics` (CE loss clean / with the SAE /
    zero-ablated, loss recovered, KL) of every SAE spliced into one transformer-lens language
    model over the same ``n_tokens`` tokens of ``dataset`` (defaults from the first SAE's
    metadata), through :func:`~sae_lens_stitch.evaluation.metrics.evaluate_with_model`.
    A model without a language-model head (the transformers backend) is an
    :class:`~sae_lens_stitch.errors.InvalidModelError`."""
    from sae_lens_stitch.evaluation.metrics import evaluate_with_model

    if not saes:
        raise ValueError("no SAE to evaluate")
    meta = saes[0].cfg.metadata
    lm = load_language_model(model, sae=saes[0], device=device)
    if lm.backend != "transformer_lens":
        raise InvalidModelError(
            f"language-model metrics (CE loss, loss recovered, KL) need a transformer-lens "
            f"language model (HookedTransformer); {lm.name!r} was loaded with transformers "
            "and has no language-model head"
        )
    dataset = dataset if dataset is not None else getattr(meta, "dataset_path", None)
    if dataset is None:
        raise InvalidDatasetError("no dataset given and the SAE's cfg.metadata has no dataset_path")
    context = context_size or getattr(meta, "context_size", None) or DEFAULT_CONTEXT_SIZE
    bos = prepend_bos if prepend_bos is not None else getattr(meta, "prepend_bos", None)
    tokens = model_tokens(
        lm,
        dataset,
        n_tokens=n_tokens,
        context_size=context,
        prepend_bos=True if bos is None else bos,
    )
    results = []
    for sae in saes:
        hook = hook_name or sae.cfg.metadata.hook_name
        _check_hook(lm, hook)
        results.append(
            evaluate_with_model(
                sae,
                lm.module,
                tokens,
                batch_size=batch_size,
                hook_name=hook,
                show_progress=show_progress,
            )
        )
    return results
