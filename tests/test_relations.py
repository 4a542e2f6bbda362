"""Relating latents beyond decoder cosine: activation correlation (exact against a dense float64
computation), the agreement of the two views, one-to-one matching (scipy's optimum) and
meta-SAE decomposition (reproducible, saved and loaded by SAE-Lens), and their commands."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import data_for, make_sae, related_pair
from sae_lens import SAE
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from sae_lens_stitch import (
    correlate_features,
    decompose,
    match_features,
    one_to_one_summary,
    view_agreement,
)
from sae_lens_stitch.analysis.correlate import coactivation_stats, top_correlations
from sae_lens_stitch.analysis.match import order_by_match
from sae_lens_stitch.cli import main
from sae_lens_stitch.errors import InvalidActivationsError, InvalidSettingError


@pytest.fixture(scope="module")
def pair() -> tuple[SAE[Any], SAE[Any], torch.Tensor]:
    small, large = related_pair(n_small=12, n_novel=6, d_in=16, seed=3)
    with torch.no_grad():  # large latent 5 and small latent 2 never fire
        for sae, dead in ((large, 5), (small, 2)):
            sae.W_enc[:, dead] = 0.0
            sae.b_enc[dead] = -1.0
    x = data_for(large, n=700, seed=1)
    return small, large, x


def dense_correlation(a_NS: torch.Tensor, b_NT: torch.Tensor) -> np.ndarray:
    a = a_NS.double().numpy()
    b = b_NT.double().numpy()
    a, b = a - a.mean(0), b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a.T @ b) / np.outer(np.sqrt((a * a).sum(0)), np.sqrt((b * b).sum(0)))


@pytest.mark.parametrize("dense_bytes", [0, 2**30])
def test_correlation_is_exact_against_dense_float64(pair: Any, dense_bytes: int) -> None:
    small, large, x = pair
    with torch.no_grad():
        corr = dense_correlation(large.encode(x), small.encode(x))
    k = 3
    m = correlate_features(large, small, x, k=k, batch_size=64, dense_bytes=dense_bytes)
    assert m.weights == "activation" and m.n_tokens == 700
    assert m.values.shape == (large.cfg.d_sae, k) and m.indices.shape == (large.cfg.d_sae, k)
    assert m.dead_source is not None and m.dead_target is not None
    assert m.dead_source.nonzero().flatten().tolist() == [5]
    assert m.dead_target.nonzero().flatten().tolist() == [2]
    # the dead large latent has no correlation: NaN and -1, never 0
    assert torch.isnan(m.values[5]).all() and (m.indices[5] == -1).all()
    masked = np.where(np.isnan(corr), -np.inf, corr)
    for i in range(large.cfg.d_sae):
        if i == 5:
            continue
        expected = np.sort(masked[i])[::-1][:k]
        assert np.allclose(m.values[i].double().numpy(), expected, atol=1e-6)
        # the indices attain the values (ties aside), and never the dead small latent
        assert np.allclose(masked[i, m.indices[i].numpy()], expected, atol=1e-6)
        assert 2 not in m.indices[i].tolist()


def test_correlation_streams_batches_and_swaps_direction(pair: Any) -> None:
    small, large, x = pair
    batches = [x[:123], x[123:400].reshape(277, 1, 16), x[400:]]
    stats = coactivation_stats(large, small, iter(batches), batch_size=50)
    assert stats.n_tokens == 700
    fwd = top_correlations(stats)
    whole = correlate_features(large, small, x)
    assert torch.equal(fwd.indices, whole.indices)
    assert torch.allclose(fwd.values, whole.values, equal_nan=True)
    bwd = top_correlations(stats.transposed())
    direct = correlate_features(small, large, x)
    assert torch.equal(bwd.indices, direct.indices)
    assert torch.allclose(bwd.values, direct.values, atol=1e-6, equal_nan=True)


def test_correlation_bad_input(pair: Any) -> None:
    small, large, x = pair
    with pytest.raises(InvalidActivationsError, match=r"\[\.\.\., 16\]"):
        correlate_features(large, small, torch.randn(10, 15))
    bad = x.clone()
    bad[40, 3] = float("nan")
    with pytest.raises(InvalidActivationsError, match=r"non-finite.*token 40"):
        correlate_features(large, small, bad, batch_size=32)
    with pytest.raises(InvalidActivationsError, match=r"at least 2 tokens.*hold 1"):
        correlate_features(large, small, x[:1])
    with pytest.raises(InvalidSettingError, match="got 13"):
        correlate_features(large, small, x, k=13)
    with pytest.raises(InvalidSettingError, match="got 0"):
        correlate_features(large, small, x, k=0)
    with pytest.raises(InvalidActivationsError, match="15"):
        correlate_features(large, small, iter([torch.randn(10, 15)]))


def _dense_cosine(a: SAE[Any], b: SAE[Any]) -> np.ndarray:
    wa = a.W_dec.detach().double()
    wb = b.W_dec.detach().double()
    wa = wa / wa.norm(dim=-1, keepdim=True)
    wb = wb / wb.norm(dim=-1, keepdim=True)
    return (wa @ wb.T).numpy()


@pytest.mark.parametrize("wide_source", [True, False])
def test_one_to_one_attains_scipys_optimum(wide_source: bool) -> None:
    small, large = related_pair(n_small=20, n_novel=9, d_in=16, seed=5)
    source, target = (large, small) if wide_source else (small, large)
    one = match_features(source, target, one_to_one=True, chunk_size=7)
    assert one.one_to_one and one.values.shape == (source.cfg.d_sae, 1)
    cos = _dense_cosine(source, target)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    matched = one.indices[:, 0] >= 0
    assert int(matched.sum()) == min(source.cfg.d_sae, target.cfg.d_sae)
    # distinct partners, values are the cosines, objective equal to scipy's optimum
    partners = one.indices[matched, 0]
    assert partners.unique().numel() == partners.numel()
    assert np.allclose(
        one.values[matched, 0].double().numpy(),
        cos[matched.nonzero().flatten().numpy(), partners.numpy()],
        atol=1e-6,
    )
    assert float(one.values[matched, 0].double().sum()) == pytest.approx(
        cos[rows, cols].sum(), abs=1e-5
    )
    assert torch.isnan(one.values[~matched]).all() and (one.indices[~matched] == -1).all()
    many = match_features(source, target)
    s = one_to_one_summary(many, one)
    assert s.n_matched + s.n_unmatched == source.cfg.d_sae
    assert s.mean_matched_cosine.value <= s.mean_max_cosine_matched.value + 1e-9
    changed = matched & (one.indices[:, 0] != many.indices[:, 0])
    assert s.n_changed_partner == int(changed.sum())
    order = order_by_match(one)
    assert sorted(order) == list(range(source.cfg.d_sae))
    assert all(not matched[i] for i in order[s.n_matched :])


def test_one_to_one_brute_force_and_errors() -> None:
    a = make_sae(d_sae=4, d_in=6, seed=1)
    b = make_sae(d_sae=6, d_in=6, seed=2)
    cos = _dense_cosine(a, b)
    best = max(sum(cos[i, p[i]] for i in range(4)) for p in itertools.permutations(range(6), 4))
    one = match_features(a, b, one_to_one=True)
    assert float(one.values.double().sum()) == pytest.approx(best, abs=1e-5)
    with pytest.raises(ValueError, match="k must be 1, got 2"):
        match_features(a, b, one_to_one=True, k=2)
    with pytest.raises(ValueError, match="one-to-one matches"):
        one_to_one_summary(one, one)


def _auroc_by_pairs(score: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = score[positive], score[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_view_agreement_numbers(pair: Any) -> None:
    small, large, x = pair
    cos = match_features(large, small)
    corr = correlate_features(large, small, x)
    a = view_agreement(cos, corr, threshold=0.7, correlation_thresholds=(0.2, 0.5))
    live = ~torch.isnan(corr.best_values)
    assert a.n_dead == 1 and a.n_latents == int(live.sum()) == large.cfg.d_sae - 1
    assert a.d_sae_small == small.cfg.d_sae and a.d_sae_large == large.cfg.d_sae
    same = (cos.best_indices[live] == corr.best_indices[live]).double().mean()
    assert a.best_partner_agreement.value == pytest.approx(float(same))
    cv, rv = cos.best_values[live].double().numpy(), corr.best_values[live].double().numpy()
    assert a.rank_correlation.value == pytest.approx(spearmanr(cv, rv).statistic)
    for at in a.aurocs:
        positive = rv >= at.correlation_threshold
        assert at.n_positive == int(positive.sum())
        if at.auroc is not None:
            assert at.auroc.value == pytest.approx(_auroc_by_pairs(cv, positive))
    assert a.bins == ["< 0.2", "0.2 to 0.5", ">= 0.5"]
    assert sum(r.n_latents for r in a.crosstab) == a.n_latents
    for row in a.crosstab:
        assert sum(row.counts) == row.n_latents
    recon = cv >= 0.7
    assert a.crosstab[1].n_latents == int(recon.sum())
    assert a.crosstab[1].counts[2] == int((recon & (rv >= 0.5)).sum())
    json.loads(a.model_dump_json())  # stable JSON, NaN allowed
    with pytest.raises(ValueError, match="cosine matches first"):
        view_agreement(corr, cos)


def test_decompose_reproducible_saved_and_explained(tmp_path: Path) -> None:
    small, large = related_pair(n_small=16, n_novel=8, children=3, d_in=16, seed=7)
    one = decompose(large, width=12, k=2, steps=60, lr=1e-2, seed=4, other=small)
    two = decompose(large, width=12, k=2, steps=60, lr=1e-2, seed=4)
    other_seed = decompose(large, width=12, k=2, steps=60, lr=1e-2, seed=5)
    s = one.summary
    assert s.explained_variance.value == two.summary.explained_variance.value
    assert torch.equal(one.sae.W_dec, two.sae.W_dec)
    assert s.explained_variance.value != other_seed.summary.explained_variance.value
    # the figure is 1 - SSE / centred SS of the unit rows, through SAE-Lens's own forward
    rows = large.W_dec.detach() / large.W_dec.detach().norm(dim=-1, keepdim=True)
    with torch.no_grad():
        acts = one.sae.encode(rows)
        sse = (one.sae.decode(acts) - rows).double().pow(2).sum()
    total = (rows.double() - rows.double().mean(0)).pow(2).sum()
    assert s.explained_variance.value == pytest.approx(float(1 - sse / total), abs=1e-6)
    assert s.explained_variance.value > 0.5 and one.loss_curve[-1] < one.loss_curve[0]
    assert one.meta_indices.shape == (large.cfg.d_sae, 2)
    for i in (0, 5, 40):
        assert set(one.meta_latents_of(i)) == set(acts[i].nonzero().flatten().tolist())
    # children of one small latent are near copies: they share meta-latents far above chance
    fam = s.family_agreement
    assert fam is not None and fam.n_pairs == 16 * 3 and fam.n_families == 16
    assert fam.shared_in_family.value > fam.shared_at_random.value
    assert fam.lift.value > 1.5
    # a saved-and-loadable SAE-Lens SAE over the decomposed SAE's inputs
    one.sae.save_model(str(tmp_path / "meta"))
    loaded = SAE.load_from_disk(str(tmp_path / "meta"))
    assert loaded.cfg.d_in == large.cfg.d_in and loaded.cfg.d_sae == 12
    assert torch.allclose(loaded.encode(rows), acts)
    json.loads(s.model_dump_json())


def test_decompose_bad_settings() -> None:
    sae = make_sae(d_sae=10, d_in=8)
    with pytest.raises(InvalidSettingError, match="width must be at least 1, got 0"):
        decompose(sae, width=0, k=1)
    with pytest.raises(InvalidSettingError, match="meta width 4, got 5"):
        decompose(sae, width=4, k=5)
    with pytest.raises(InvalidSettingError, match="got 0"):
        decompose(sae, width=4, k=0)
    with pytest.raises(InvalidSettingError, match="10 latents"):
        decompose(sae, width=20, k=10)
    with pytest.raises(InvalidSettingError, match="lr"):
        decompose(sae, width=4, k=2, lr=0.0)


# ----------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, pair: Any) -> dict[str, str]:
    small, large, x = pair
    root = tmp_path_factory.mktemp("relations")
    small.save_model(str(root / "small"))
    large.save_model(str(root / "large"))
    np.save(root / "acts.npy", x.numpy())
    np.save(root / "bad.npy", np.full((4, 16), np.nan, dtype=np.float32))
    return {"small": str(root / "small"), "large": str(root / "large"), "root": str(root)}


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def agreement_run(
    capsys: pytest.CaptureFixture[str],
    saved: dict[str, str],
    pair: Any,
    out_dir: Path,
    command: str,
    *options: str,
) -> dict[str, Any]:
    """Run ``command`` with ``options`` and the activations; check its agreement is the
    library's; return the JSON."""
    small, large, x = pair
    code, out, err = call(
        capsys,
        command,
        saved["small"],
        saved["large"],
        *options,
        "--activations",
        f"{saved['root']}/acts.npy",
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    expected = view_agreement(match_features(large, small), correlate_features(large, small, x))
    got = data["agreement"]
    assert got["rank_correlation"]["value"] == pytest.approx(expected.rank_correlation.value)
    assert got["best_partner_agreement"]["value"] == pytest.approx(
        expected.best_partner_agreement.value
    )
    assert got["n_dead"] == 1
    assert data["correlation_large_to_small"]["n_dead"] == 1
    assert data["correlation_small_to_large"]["n_dead"] == 1
    assert (out_dir / f"{command}_agreement.png").stat().st_size > 1000
    return data


def test_cli_compare_by_activation(
    saved: dict[str, str], pair: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = pair[0]
    data = agreement_run(
        capsys, saved, pair, tmp_path / "c", "compare", "--by", "activation", "--one-to-one"
    )
    assert data["one_to_one"]["n_matched"] == small.cfg.d_sae
    code, _, err = call(capsys, "compare", saved["small"], saved["large"], "--by", "activation")
    assert code == 1 and "--activations" in err
    code, _, err = call(
        capsys,
        "compare",
        saved["small"],
        saved["large"],
        "--by",
        "activation",
        "--activations",
        f"{saved['root']}/bad.npy",
        "--out",
        str(tmp_path / "bad"),
    )
    assert code == 1 and "non-finite" in err


def test_cli_decompose(
    saved: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "d"
    code, out, err = call(
        capsys,
        "decompose",
        saved["large"],
        "--width",
        "4,8",
        "--k",
        "1,2",
        "--steps",
        "20",
        "--other",
        saved["small"],
        "--out",
        str(out_dir),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert [(r["width"], r["k"]) for r in data["runs"]] == [(4, 1), (4, 2), (8, 1), (8, 2)]
    assert all(r["family_agreement"] is not None for r in data["runs"])
    assert (out_dir / "decompose_curve.png").stat().st_size > 1000
    meta = SAE.load_from_disk(str(out_dir / "meta_w8_k2"))
    assert meta.cfg.d_in == 16 and meta.cfg.d_sae == 8
    code, _, err = call(
        capsys,
        "decompose",
        saved["large"],
        "--width",
        "4",
        "--k",
        "9",
        "--out",
        str(tmp_path / "e"),
    )
    assert code == 1 and "got 9" in err
    code, _, err = call(capsys, "decompose", saved["large"], "--width", "0")
    assert code == 1 and "--width" in err


def test_report_has_the_agreement_section(pair: Any, tmp_path: Path) -> None:
    from sae_lens_stitch import StitchReport, write_report

    small, large, x = pair
    a = view_agreement(match_features(large, small), correlate_features(large, small, x))
    report = StitchReport(agreements=[a])
    write_report(report, tmp_path / "r")
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Cosine against activation correlation" in text
    assert f"{a.best_partner_agreement.value:.1%}" in text
    back = StitchReport.model_validate_json((tmp_path / "r" / "report.json").read_text())
    assert back.agreements[0].n_latents == a.n_latents


def test_one_to_one_pairs_drive_swaps_and_curves() -> None:
    from sae_lens_stitch import swap, swap_curve
    from sae_lens_stitch.analysis.families import pair_families

    small, large = related_pair(n_small=10, n_novel=4, d_in=16, seed=11)
    x = data_for(large, n=400, seed=2)
    one = match_features(large, small, one_to_one=True)
    fams = pair_families(one, min_value=0.7)
    assert fams and all(len(f.small_indices) == len(f.large_indices) == 1 for f in fams)
    assert [f.max_cosine for f in fams] == sorted((f.max_cosine for f in fams), reverse=True)
    assert len({f.small_indices[0] for f in fams}) == len(fams)
    swapped = swap(small, large, fams)
    assert swapped.cfg.d_sae == small.cfg.d_sae  # one out, one in, per pair
    curve = swap_curve(small, large, x, families=fams)
    assert len(curve.points) == len(fams) + 1
    with pytest.raises(ValueError, match="one-to-one"):
        pair_families(match_features(large, small))


def test_cli_classify_agreement(
    saved: dict[str, str], pair: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = agreement_run(capsys, saved, pair, tmp_path / "c", "classify", "--agreement")
    assert data["summary"]["n_dead"] == 1
    code, _, err = call(capsys, "classify", saved["small"], saved["large"], "--agreement")
    assert code == 1 and "--activations" in err
