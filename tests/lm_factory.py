"""A tiny transformer-lens language model with a character-level tokenizer, built locally
(no download): the model factory the activations tests name as ``FILE:make_model``."""

from __future__ import annotations

import string
import tempfile
import warnings
from typing import Any

D_MODEL = 16
CHARS = string.ascii_lowercase + string.digits + " .,;:!?'-"
SPECIALS = ("<bos>", "<pad>", "<unk>")


def make_tokenizer() -> Any:
    """A character-level tokenizer (``tokenizers`` WordLevel), as a transformers tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate((*SPECIALS, *CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<bos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    # transformer-lens reloads a tokenizer by its name_or_path: give it a folder
    with tempfile.TemporaryDirectory() as folder:
        fast.save_pretrained(folder)
        return AutoTokenizer.from_pretrained(folder)


def make_model(n_layers: int = 3, seed: int = 0) -> Any:
    """A tiny HookedTransformer (d_model 16, 3 layers) with the character tokenizer."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = make_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=D_MODEL,
        d_head=4,
        n_heads=4,
        d_mlp=32,
        n_ctx=64,
        d_vocab=len(tok.get_vocab()),
        act_fn="gelu",
        seed=seed,
        model_name="tiny-char-lm",
    )
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as folder:
        warnings.simplefilter("ignore", DeprecationWarning)
        tok.save_pretrained(folder)
        from transformers import AutoTokenizer

        model = HookedTransformer(cfg, tokenizer=AutoTokenizer.from_pretrained(folder))
    return model.eval()
