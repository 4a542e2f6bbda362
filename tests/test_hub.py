"""push_to_hub against a loopback stand-in for the Hub, driven by the real huggingface_hub
client; loading back with plain SAE-Lens in a subprocess that never imports sae_lens_stitch."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import related_pair
from hub_server import HubServer, front_matter
from huggingface_hub import HfApi, constants
from safetensors.torch import load_file, save_file

from sae_lens_stitch import (
    InvalidDestinationError,
    MissingTokenError,
    OfflineError,
    PathExistsError,
    Provenance,
    PushResult,
    RoundTripMismatchError,
    SourceNotFoundError,
    SourceSAE,
    get_provenance,
    push_to_hub,
    stitch,
)
from sae_lens_stitch.io import publish as publish_mod
from sae_lens_stitch.io.sparsity import get_log_sparsity, set_log_sparsity
from sae_lens_stitch.provenance import set_provenance

TOKEN = "hf_test_token_do_not_log"
REPO = "tester/stitched-saes"
SHA_S = "a" * 40
SHA_L = "b" * 40


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    """A running stand-in Hub; in-process uploads use LFS (not Xet) and are online."""
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with HubServer(token=TOKEN, max_lifetime_s=300) as server:
        yield server


def _parents() -> tuple[Any, Any]:
    small, large = related_pair()
    for sae, sae_id, sha in ((small, "small_24", SHA_S), (large, "large_58", SHA_L)):
        set_provenance(
            sae,
            Provenance.identity(
                SourceSAE(
                    release="toy-release",
                    sae_id=sae_id,
                    repo_id="toy/repo",
                    folder=sae_id,
                    revision=sha,
                    architecture="standard",
                    d_sae=sae.cfg.d_sae,
                )
            ),
        )
        set_log_sparsity(
            sae,
            -torch.rand(sae.cfg.d_sae, generator=torch.Generator().manual_seed(sae.cfg.d_sae)) * 3,
        )
    return small, large


@pytest.fixture
def stitched():
    small, large = _parents()
    return stitch(small, large)


def _push(hub: HubServer, sae: Any, **kwargs: Any) -> PushResult:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("endpoint", hub.url)
    return push_to_hub(sae, kwargs.pop("repo_id", REPO), **kwargs)


def _card(hub: HubServer, repo: str = REPO) -> tuple[dict[str, Any], str]:
    text = hub.files(repo)["README.md"].decode()
    data = front_matter(text)
    assert data is not None
    return data, text


PLAIN_LOADER = textwrap.dedent(
    """
    import json, sys
    import torch
    from safetensors.torch import load_file, save_file
    from sae_lens import SAE

    repo, path, x_file, out_file = sys.argv[1:5]
    sae, cfg, log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(repo, path)
    x = load_file(x_file)["x"]
    with torch.no_grad():
        out = {"encode": sae.encode(x).contiguous(), "forward": sae(x).contiguous()}
    if log_sparsity is not None:
        out["sparsity"] = log_sparsity.contiguous()
    save_file(out, out_file)
    print(json.dumps({
        "class": type(sae).__name__,
        "metadata": sae.cfg.metadata.sae_lens_stitch,
        "stitch_imported": any(m.startswith("sae_lens_stitch") for m in sys.modules),
    }))
    """
)


def _subprocess_env(hub: HubServer, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_CACHE=str(cache),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="0",
        PYTHONPATH="",
    )
    return env


def test_push_then_plain_sae_lens_loads_identically(hub: HubServer, stitched: Any, tmp_path: Path):
    result = _push(hub, stitched, path_in_repo="layer0/stitched")
    assert result.commit_sha == hub.head(REPO)
    assert result.commit_url.endswith(result.commit_sha)
    assert set(result.files) == {
        "layer0/stitched/cfg.json",
        "layer0/stitched/sae_weights.safetensors",
        "layer0/stitched/sparsity.safetensors",
        "README.md",
    }
    assert result.round_trip_max_abs_diff <= 1e-6

    x = torch.randn(64, stitched.cfg.d_in, generator=torch.Generator().manual_seed(3))
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    script = tmp_path / "plain_load.py"
    script.write_text(PLAIN_LOADER)
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            REPO,
            "layer0/stitched",
            str(tmp_path / "x.safetensors"),
            str(tmp_path / "out.safetensors"),
        ],
        env=_subprocess_env(hub, tmp_path / "cache"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["stitch_imported"] is False
    assert report["class"] == type(stitched).__name__
    assert Provenance.from_metadata(report["metadata"]) == get_provenance(stitched)
    out = load_file(str(tmp_path / "out.safetensors"))
    with torch.no_grad():
        assert torch.equal(out["encode"], stitched.encode(x))
        assert torch.equal(out["forward"], stitched(x))
    sparsity = get_log_sparsity(stitched)
    assert sparsity is not None and torch.equal(out["sparsity"], sparsity)


def test_card_yaml_lists_parents_revisions_and_how_to_load(hub: HubServer, stitched: Any):
    _push(hub, stitched, path_in_repo="s1", metrics={"fvu": 0.25, "l0": 12.5})
    data, text = _card(hub)
    assert data["library_name"] == "saelens"
    assert "saelens" in data["tags"] and "sae-lens-stitch" in data["tags"]
    (entry,) = data["sae_lens_stitch"]["saes"]
    assert entry["path"] == "s1"
    assert entry["hook_name"] == "blocks.0.hook_resid_pre"
    assert entry["model_name"] == "tiny-model"
    assert entry["d_sae"] == stitched.cfg.d_sae
    revisions = {p["sae_id"]: p["revision"] for p in entry["parents"]}
    assert revisions == {"small_24": SHA_S, "large_58": SHA_L}
    counts = {p["sae_id"]: p["n_latents"] for p in entry["parents"]}
    assert counts["small_24"] == 24 and sum(counts.values()) == stitched.cfg.d_sae
    assert entry["operations"][-1]["operation"] == "stitch"
    assert entry["operations"][-1]["threshold"] == pytest.approx(0.7)
    assert entry["metrics"] == {"fvu": 0.25, "l0": 12.5}
    assert f'SAE.from_pretrained("{REPO}", "s1")' in text
    assert f"| `toy-release` / `small_24` | `{SHA_S[:12]}` | 24 |" in text
    # the stand-in's model info serves the same card data to the client
    info = HfApi(endpoint=hub.url, token=TOKEN).model_info(REPO)
    assert info.card_data is not None and info.card_data.get("library_name") == "saelens"


def test_second_push_to_same_path_fails_and_changes_nothing(hub: HubServer, stitched: Any):
    _push(hub, stitched, path_in_repo="same")
    head, files = hub.head(REPO), hub.files(REPO)
    n_requests = len(hub.state.requests)
    with pytest.raises(PathExistsError, match="overwrite=True"):
        _push(hub, stitched, path_in_repo="same")
    assert hub.head(REPO) == head and hub.files(REPO) == files
    assert not any("/commit/" in p or "lfs" in p for _, p in hub.state.requests[n_requests:])

    # overwrite=True replaces the folder; a file the new SAE lacks (sparsity) is deleted
    set_log_sparsity(stitched, None)
    result = _push(hub, stitched, path_in_repo="same", overwrite=True)
    assert result.deleted == ["same/sparsity.safetensors"]
    assert "same/sparsity.safetensors" not in hub.files(REPO)
    data, _ = _card(hub)
    assert [e["path"] for e in data["sae_lens_stitch"]["saes"]] == ["same"]


def test_several_saes_are_all_listed_and_foreign_card_content_kept(
    hub: HubServer, stitched: Any, tmp_path: Path
):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO)
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: mit\ntags:\n- mine\n---\n# My SAEs\n\nHand-written notes.\n")
    api.upload_file(path_or_fileobj=str(readme), path_in_repo="README.md", repo_id=REPO)
    small, _ = _parents()
    _push(hub, stitched, path_in_repo="b_stitched")
    _push(hub, small, path_in_repo="a_small")
    data, text = _card(hub)
    assert [e["path"] for e in data["sae_lens_stitch"]["saes"]] == ["a_small", "b_stitched"]
    assert data["license"] == "mit" and "mine" in data["tags"] and "saelens" in data["tags"]
    assert "Hand-written notes." in text
    assert text.count('SAE.from_pretrained("') == 2
    assert text.count("sae-lens-stitch:begin") == 1


def test_round_trip_mismatch_refuses_before_touching_the_hub(
    hub: HubServer, stitched: Any, monkeypatch: pytest.MonkeyPatch
):
    real_reload = publish_mod._reload

    def perturbed(folder: Path, device: str) -> Any:
        sae = real_reload(folder, device)
        with torch.no_grad():
            sae.W_dec[0] += 0.01
        return sae

    monkeypatch.setattr(publish_mod, "_reload", perturbed)
    with pytest.raises(RoundTripMismatchError, match="refusing to upload"):
        _push(hub, stitched, path_in_repo="x")
    assert hub.state.requests == []


def test_typed_errors_and_token_never_shown(
    hub: HubServer,
    stitched: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(publish_mod, "get_token", lambda: None)
    with pytest.raises(MissingTokenError, match="HF_TOKEN"):
        push_to_hub(stitched, REPO, endpoint=hub.url)
    bad = "hf_wrong_secret_value_123"
    with pytest.raises(MissingTokenError) as wrong:
        push_to_hub(stitched, REPO, endpoint=hub.url, token=bad)
    with pytest.raises(InvalidDestinationError):
        _push(hub, stitched, repo_id="no-owner")
    with pytest.raises(InvalidDestinationError):
        _push(hub, stitched, path_in_repo="../up")
    with pytest.raises(SourceNotFoundError, match="create_branch"):
        _push(hub, stitched, path_in_repo="p", revision="no-such-branch")
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match="unreachable"):
        _push(hub, stitched, endpoint="http://127.0.0.1:9")
    assert time.monotonic() - t0 < 10
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        _push(hub, stitched)
    shown = capsys.readouterr()
    for secret in (TOKEN, bad):
        assert secret not in caplog.text
        assert secret not in shown.out + shown.err
        assert secret not in str(wrong.value)


def test_create_pr_leaves_main_untouched(hub: HubServer, stitched: Any):
    _push(hub, stitched, path_in_repo="first")
    head = hub.head(REPO)
    result = _push(hub, stitched, path_in_repo="proposed", create_pr=True)
    assert result.pr_url is not None
    assert hub.head(REPO) == head
    assert "proposed/cfg.json" in hub.files(REPO, "refs/pr/1")


LOAD_SAE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import torch
    from sae_lens_stitch import load_sae, get_provenance
    from sae_lens_stitch.io.sparsity import get_log_sparsity
    out = {}
    for name, source in json.loads(sys.argv[1]).items():
        sae = load_sae(source)
        prov = get_provenance(sae)
        out[name] = {
            "sources": {k: v.model_dump() for k, v in prov.sources.items()},
            "n_ops": len(prov.operations),
            "w_dec_sum": float(sae.W_dec.sum()),
            "has_sparsity": get_log_sparsity(sae) is not None,
        }
    print(json.dumps(out))
    """
)


def test_load_sae_from_hub_records_commit_and_pins_revision(
    hub: HubServer, stitched: Any, tmp_path: Path
):
    small, _ = related_pair()
    # a plain SAE-Lens folder (no provenance) uploaded twice: load_sae must record the commit
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("tester/plain")
    plain = tmp_path / "plain"
    small.save_model(plain)
    api.upload_folder(folder_path=str(plain), path_in_repo="sae", repo_id="tester/plain")
    first = hub.head("tester/plain")
    with torch.no_grad():
        small.W_dec.mul_(2)
    small.save_model(plain)
    api.upload_folder(folder_path=str(plain), path_in_repo="sae", repo_id="tester/plain")
    second = hub.head("tester/plain")
    _push(hub, stitched, path_in_repo="st")

    sources = {
        "latest": "hf://tester/plain/sae",
        "pinned": f"hf://tester/plain/sae@{first}",
        "stitched": f"hf://{REPO}/st",
    }
    script = tmp_path / "load.py"
    script.write_text(LOAD_SAE_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(sources)],
        env=_subprocess_env(hub, tmp_path / "cache"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    (latest,) = out["latest"]["sources"].values()
    (pinned,) = out["pinned"]["sources"].values()
    assert latest["repo_id"] == "tester/plain" and latest["folder"] == "sae"
    assert latest["revision"] == second and pinned["revision"] == first
    assert out["latest"]["w_dec_sum"] == pytest.approx(2 * out["pinned"]["w_dec_sum"], rel=1e-5)
    # a stitched SAE keeps its own provenance, parents and their revisions
    st = out["stitched"]
    assert st["n_ops"] == 1 and st["has_sparsity"]
    assert {s["revision"] for s in st["sources"].values()} == {SHA_S, SHA_L}


@pytest.mark.live
@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("SAE_STITCH_LIVE_REPO")),
    reason="live Hub test: set HF_TOKEN and SAE_STITCH_LIVE_REPO (a repo you may write to)",
)
def test_live_push_and_load_back(stitched: Any):
    from sae_lens_stitch import load_sae

    repo = os.environ["SAE_STITCH_LIVE_REPO"]
    path = f"test-{uuid.uuid4().hex[:8]}"
    result = push_to_hub(stitched, repo, path_in_repo=path, token=os.environ["HF_TOKEN"])
    loaded = load_sae(f"hf://{repo}/{path}@{result.commit_sha}")
    x = torch.randn(16, stitched.cfg.d_in)
    with torch.no_grad():
        assert torch.equal(loaded(x), stitched(x))
    assert get_provenance(loaded) == get_provenance(stitched)
    assert yaml.safe_load is not None


def test_base_model_only_when_every_sae_maps_to_one_hub_model() -> None:
    from sae_lens_stitch.io.model_card import update_card

    gpt2 = {"path": "a", "model_name": "gpt2-small"}
    card = update_card(None, REPO, gpt2)
    assert front_matter(card)["base_model"] == "gpt2"  # type: ignore[index]
    mixed = update_card(card, REPO, {"path": "b", "model_name": "synthetic-hierarchy"})
    assert "base_model" not in front_matter(mixed)  # type: ignore[operator]
    assert len(front_matter(mixed)["sae_lens_stitch"]["saes"]) == 2  # type: ignore[index]
    alone = update_card(None, REPO, {"path": "b", "model_name": "synthetic-hierarchy"})
    assert "base_model" not in front_matter(alone)  # type: ignore[operator]
    # a base_model the owner wrote that no SAE maps to is left alone
    own = "---\nbase_model: someone/custom-model\n---\nnotes\n"
    kept = update_card(own, REPO, {"path": "c", "model_name": "gpt2-small"})
    kept = update_card(kept, REPO, {"path": "d", "model_name": "synthetic-hierarchy"})
    assert front_matter(kept)["base_model"] == "someone/custom-model"  # type: ignore[index]


def test_card_renders_metrics_as_a_table(stitched: Any) -> None:
    from sae_lens_stitch.evaluation.metrics import evaluate
    from sae_lens_stitch.io.model_card import card_entry, update_card

    metrics = evaluate(stitched, torch.randn(64, stitched.cfg.d_in))
    text = update_card(None, REPO, card_entry(stitched, "s", metrics=metrics))
    assert "| metric | value | better |" in text
    assert f"| fvu | {metrics.fvu.value:.4g} | lower |" in text
    assert f"| explained_variance | {metrics.explained_variance.value:.4g} | higher |" in text
    assert f"| d_sae | {stitched.cfg.d_sae} | - |" in text
    assert '{"value"' not in text


def test_empty_path_in_repo_is_refused(hub: HubServer, stitched: Any) -> None:
    with pytest.raises(InvalidDestinationError, match="path_in_repo ''"):
        _push(hub, stitched, path_in_repo="")
    assert not hub.state.requests or all("/commit/" not in p for _, p in hub.state.requests)


def test_assembled_sae_pushes_with_budgets_on_the_card(hub: HubServer) -> None:
    from sae_lens_stitch import assemble

    small, large = _parents()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(600, large.cfg.d_sae, generator=gen) * (
        torch.rand(600, large.cfg.d_sae, generator=gen) < 0.1
    )
    with torch.no_grad():
        x = x @ large.W_dec + 0.1 * torch.randn(600, large.cfg.d_in, generator=gen)
    built = assemble([small, large], x, width=small.cfg.d_sae + 6, start=0)
    result = _push(hub, built.sae, path_in_repo="layer0/assembled")
    assert result.round_trip_max_abs_diff <= 1e-6
    data, text = _card(hub)
    entry = next(e for e in data["sae_lens_stitch"]["saes"] if e["path"] == "layer0/assembled")
    op = entry["operations"][-1]
    assert op["operation"] == "assemble"
    assert op["budgets"]["width_budget"] == small.cfg.d_sae + 6 and op["budgets"]["refit"] is True
    assert "width budget" in text
