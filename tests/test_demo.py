"""The embedded demo: the shipped family, the synthetic ground truth and its scoring, the
training recipe, and ``sae-stitch demo --quick`` end to end as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sae_lens import SAE

from sae_lens_stitch.demo.data import FAMILY_DIR, load_family, read_manifest
from sae_lens_stitch.demo.scoring import score_novelty
from sae_lens_stitch.demo.synthetic import HierarchicalFeatures, make_hierarchical_features
from sae_lens_stitch.demo.train import TrainingRecipe, train_family

EXE = Path(sys.executable).parent / "sae-stitch"


def test_shipped_family_loads_with_plain_sae_lens() -> None:
    manifest = read_manifest()
    widths = [e["width"] for e in manifest["saes"]]
    assert len(widths) >= 4 and widths == sorted(widths)
    total = sum(f.stat().st_size for f in FAMILY_DIR.rglob("*") if f.is_file())
    assert total < 5_000_000
    for entry in manifest["saes"]:
        sae = SAE.load_from_disk(FAMILY_DIR / entry["folder"])
        assert sae.cfg.d_sae == entry["width"]
        assert sae.cfg.metadata.model_name == "synthetic-hierarchy"
        assert sae.cfg.metadata.hook_name == "blocks.0.hook_resid_pre"
        assert sae.cfg.architecture() == "standard"


def test_ground_truth_round_trip_and_hierarchy(tmp_path: Path) -> None:
    truth = make_hierarchical_features(
        d_in=12, n_parents=2, children_per_parent=3, n_singles=4, seed=3
    )
    truth.save(tmp_path)
    again = HierarchicalFeatures.load(tmp_path)
    torch.testing.assert_close(again.directions_FD, truth.directions_FD)
    assert again.parent_F.tolist() == truth.parent_F.tolist()
    feats = truth.sample_features(4096, generator=torch.Generator().manual_seed(0))
    on = feats != 0
    for parent in truth.parents().tolist():
        kids = truth.children_of(parent)
        # exactly one child fires with its parent, never without it
        assert torch.equal(on[:, kids].sum(-1), on[:, parent].long())
    torch.testing.assert_close(truth.sample(100, seed=5), truth.sample(100, seed=5))
    assert truth.sample(100, seed=5).shape == (100, 12)


class _Rows:
    def __init__(self, rows: torch.Tensor):
        self.W_dec = rows


def test_score_novelty_on_known_case() -> None:
    truth = make_hierarchical_features(d_in=32, n_parents=0, n_singles=6, seed=0)
    dirs = truth.directions_FD
    small = _Rows(dirs[:3])
    # large: features 0-2 again (not novel), 3-4 (novel), and a random direction (untracked)
    junk = torch.linalg.qr(torch.cat([dirs, torch.randn(1, 32)]).T)[0][:, -1:].T
    large = _Rows(torch.cat([dirs[:5], junk]))
    mask = torch.tensor([False, False, True, True, False, True])
    s = score_novelty(small, large, mask, truth)
    assert (s.n_truly_novel, s.n_classified_novel, s.true_positives, s.n_untracked) == (2, 3, 1, 1)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 2)
    assert s.n_new_features == 2 and s.feature_recall == pytest.approx(1 / 2)


def test_family_shows_the_phenomenon() -> None:
    """Wider SAEs represent more ground-truth features and split parents into children."""
    from sae_lens_stitch import classify_features, feature_families
    from sae_lens_stitch.demo.scoring import represented

    fam = load_family()
    counts = [int(represented(s, fam.truth).sum()) for s in fam.saes]
    assert counts == sorted(counts) and counts[-1] > 2 * counts[0]
    small, large = fam.saes[-2], fam.saes[-1]
    cls = classify_features(small, large)
    assert 0.1 < cls.summary.novel_fraction < 0.9
    splits = [
        f
        for f in feature_families(small, large)
        if len(f.small_indices) == 1 and len(f.large_indices) > 1
    ]
    assert len(splits) >= 3


def test_recipe_trains_a_loadable_family(tmp_path: Path) -> None:
    recipe = TrainingRecipe(
        widths=[8, 16], steps=30, n_train=4096, batch_size=512, n_singles=10, n_parents=2
    )
    manifest = train_family(tmp_path / "fam", recipe, show_progress=False)
    assert [e.width for e in manifest.saes] == [8, 16]
    for entry in manifest.saes:
        sae = SAE.load_from_disk(tmp_path / "fam" / entry.folder)
        assert sae.cfg.d_sae == entry.width
        norms = sae.W_dec.norm(dim=-1)
        torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-4, rtol=0)
    assert json.loads((tmp_path / "fam" / "family.json").read_text())["recipe"]["steps"] == 30
    # deterministic
    again = train_family(tmp_path / "fam2", recipe, show_progress=False)
    assert again.saes[0].mse == pytest.approx(manifest.saes[0].mse, rel=1e-5)


def test_demo_retrain_with_tiny_recipe(tmp_path: Path) -> None:
    from sae_lens_stitch.demo.pipeline import run_demo

    recipe = TrainingRecipe(
        widths=[8, 12, 16, 24], steps=40, n_train=4096, batch_size=512, n_singles=12, n_parents=2
    )
    result = run_demo(tmp_path / "out", retrain=True, quick=True, recipe=recipe)
    assert result.widths == [8, 12, 16, 24]
    assert Path(result.family_dir) == (tmp_path / "out" / "family").absolute()
    assert len(result.pairs) == 3


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo") / "run"
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "sae_lens_stitch.cli"]
    res = subprocess.run(
        [*cmd, "demo", "--quick", "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SAE_STITCH_NO_PROGRESS": "1"},
        timeout=600,
    )
    return res, out


def test_demo_cli_end_to_end(demo_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    res, out = demo_run
    assert res.returncode == 0, res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    assert data == json.loads((out / "demo.json").read_text())
    assert data["widths"] == sorted(data["widths"]) and len(data["widths"]) >= 4
    assert len(data["pairs"]) == len(data["widths"]) - 1
    for pair in data["pairs"]:
        assert 0 < pair["classification"]["novel_fraction"] < 1
        assert 0 <= pair["sign_agreement"] <= 1
        assert pair["ground_truth"]["precision"] is not None
        assert isinstance(pair["swap_monotone"], bool)
        assert pair["d_sae_stitched"] == pair["small"] + pair["classification"]["n_novel"]
    claims = {c["claim"]: c for c in data["claims"]}
    assert len(claims) >= 6 and all(c["measured"] for c in claims.values())
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).is_file()
    pngs = list((out / "steps").glob("*/*.png"))  # the demo is a study: plots by step
    assert len(pngs) >= 4
    assert {"evaluate", "classify", "effects", "stitch", "curves", "frankenstein", "assemble"} <= {
        p.name for p in (out / "steps").iterdir()
    }
    report = json.loads((out / "report.json").read_text())
    assert report["frankenstein"]["points"] and report["classifications"]
    assert len(report["agreements"]) == len(data["pairs"])
    # the publish-ready folder loads with plain SAE-Lens and is the Frankenstein SAE
    sae = SAE.load_from_disk(out / "frankenstein_sae")
    assert sae.cfg.d_sae == data["frankenstein"]["d_sae"]
    assert "sae_lens_stitch" in sae.cfg.metadata.to_dict()


def test_demo_missing_out_parent_fails_fast(tmp_path: Path) -> None:
    from sae_lens_stitch.cli import main

    assert main(["demo", "--out", str(tmp_path / "a" / "b")]) == 1
    assert not (tmp_path / "a").exists()


def test_demo_push_to_stand_in_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub_server import HubServer
    from huggingface_hub import constants

    from sae_lens_stitch.cli import main

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    token = "hf_test_token_demo"
    with HubServer(token=token, max_lifetime_s=300) as hub:
        monkeypatch.setenv("HF_TOKEN", token)
        code = main(
            [
                "demo",
                "--quick",
                "--out",
                str(tmp_path / "d"),
                "--push",
                "me/demo",
                "--endpoint",
                hub.url,
            ]
        )
        assert code == 0
        data = json.loads((tmp_path / "d" / "demo.json").read_text())
        assert data["pushed"]["repo_id"] == "me/demo"
        files = hub.files("me/demo")
        assert "README.md" in files and any(f.endswith("sae_weights.safetensors") for f in files)
