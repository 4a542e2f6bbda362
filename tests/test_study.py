"""The study: shared encodings are exact, every step runs, the run resumes, bad input is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_sae
from sae_lens import SAE
from test_assembly import acts_for, family

from sae_lens_stitch import insert_effects, stitch
from sae_lens_stitch.cli import main
from sae_lens_stitch.errors import StudyError
from sae_lens_stitch.evaluation.metrics import evaluate
from sae_lens_stitch.study import SharedEncodings, StudyConfig, load_config, run_study


@pytest.fixture(scope="module")
def fam() -> list[SAE[Any]]:
    return family("standard")


@pytest.fixture(scope="module")
def acts(fam: list[SAE[Any]]) -> torch.Tensor:
    return acts_for(fam, n=800)


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "gated"])
def test_shared_encodings_equal_their_own_passes(arch: str) -> None:
    saes = family(arch)
    x = acts_for(saes, n=500)
    shared = SharedEncodings.build(saes, x[:200], x[200:])
    ev = x[200:]
    for k, sae in enumerate(saes):
        want = evaluate(sae, ev)
        got = shared.trained_metrics(k)
        assert got.mse.value == pytest.approx(want.mse.value, rel=1e-5)
        assert got.l0.value == pytest.approx(want.l0.value)
        assert torch.equal(shared.firing_counts(k) == 0, want_dead(sae, ev))
    delta, base_sse = shared.insert_delta_sse(0, 2)
    eff = insert_effects(saes[0], saes[2], ev)
    assert base_sse == pytest.approx(eff.summary.base_mse.value * ev.shape[0], rel=1e-5)
    torch.testing.assert_close(delta, eff.delta_sse, rtol=1e-4, atol=1e-6 * base_sse)
    chosen = torch.tensor([0, 3, 5, 11])
    st = stitch(saes[0], saes[2], chosen)
    union = torch.cat([shared.union(0), shared.union(2, chosen)])
    assert shared.metrics(union, saes[0].b_dec.detach().double()).mse.value == pytest.approx(
        evaluate(st, ev).mse.value, rel=1e-5
    )


def want_dead(sae: SAE[Any], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return (sae.encode(x) != 0).sum(0) == 0


def test_study_runs_every_step_and_resumes(
    fam: list[SAE[Any]], acts: torch.Tensor, tmp_path: Path
) -> None:
    out = tmp_path / "study"
    warnings: list[str] = []
    res = run_study(list(reversed(fam)), acts, out, on_warning=warnings.append)
    assert res.widths == sorted(s.cfg.d_sae for s in fam)
    assert res.steps_run == list(StudyConfig().steps()) and not res.steps_reused
    assert res.warnings == warnings
    for name in res.steps_run:
        assert (out / "steps" / name / "result.json").is_file()
    for f in ("report.html", "report.md", "report.json", "study.json"):
        assert (out / f).is_file()
    assert "sha256" not in (out / "report.md").read_text()
    # produced SAEs are saved, loadable SAE-Lens folders
    stitched = json.loads((out / "steps" / "stitch" / "result.json").read_text())
    folder = stitched["pairs"][0]["variants"][0]["folder"]
    loaded = SAE.load_from_disk(out / "steps" / "stitch" / folder)
    assert loaded.cfg.d_sae == fam[0].cfg.d_sae + stitched["pairs"][0]["variants"][0]["n_inserted"]
    assert res.report == str(out / "report.html")
    # a finished step is not recomputed; an interrupted one (temporary folder left) is redone
    (out / "steps" / ".curves.tmp-study-x").mkdir()
    for f in (out / "steps" / "curves").iterdir():
        f.unlink()
    (out / "steps" / "curves").rmdir()
    again = run_study(fam, acts, out)
    assert again.steps_run == ["curves", "report"]
    assert "curves" not in again.steps_reused and "assemble" in again.steps_reused
    assert not (out / "steps" / ".curves.tmp-study-x").exists()
    assert again.findings == res.findings
    # a partial rerun keeps the findings and warnings of every finished step
    partial = run_study(fam, acts, out, config=StudyConfig(only=["effects"]))
    assert partial.steps_run == [] and partial.findings == res.findings
    assert partial.warnings == res.warnings
    assert any("only 400 evaluation tokens" in w for w in res.warnings)


def test_study_refuses_another_studys_folder_and_mixed_hooks(
    fam: list[SAE[Any]], acts: torch.Tensor, tmp_path: Path
) -> None:
    out = tmp_path / "s"
    run_study(fam[:2], acts, out, config=StudyConfig(only=["evaluate"]))
    with pytest.raises(StudyError, match="holds a study of other"):
        run_study(fam[:2], acts, out, config=StudyConfig(only=["evaluate"], threshold=0.5))
    other = make_sae("standard", 20, 16, seed=9, hook_name="blocks.3.hook_resid_pre")
    with pytest.raises(StudyError, match=r"blocks\.3\.hook_resid_pre"):
        run_study([fam[0], other], acts, tmp_path / "t")
    with pytest.raises(StudyError, match="two or more"):
        run_study(fam[:1], acts, tmp_path / "u")
    assert not (tmp_path / "t").exists() and not (tmp_path / "u").exists()


def test_study_config_file_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "study.toml"
    toml.write_text('[study]\nthreshold = 0.6\nskip = ["curves"]\n')
    cfg = load_config(toml, eval_fraction=0.3)
    assert (cfg.threshold, cfg.eval_fraction) == (0.6, 0.3)
    assert "curves" not in cfg.steps()
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = 3\n")
    with pytest.raises(StudyError, match="threshold"):
        load_config(bad)
    bad.write_text("only = ['nope']\n")
    with pytest.raises(StudyError, match="nope"):
        load_config(bad)


def test_study_cli_end_to_end(
    fam: list[SAE[Any]], acts: torch.Tensor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folders = []
    for sae in fam:
        folder = tmp_path / f"sae_{sae.cfg.d_sae}"
        sae.save_model(folder)
        folders.append(str(folder))
    torch.save(acts, tmp_path / "acts.pt")
    argv = ["--no-progress", "study", *folders, "--activations", str(tmp_path / "acts.pt")]
    code = main([*argv, "--skip", "assemble,curves", "--out", str(tmp_path / "st")])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "study of sae_8 (8), sae_14 (14), sae_22 (22)" in cap.out
    assert "sha256" not in cap.out
    assert f"report: {tmp_path / 'st' / 'report.html'}" in cap.out
    code = main([*argv, "--only", "bogus", "--out", str(tmp_path / "st2")])
    assert code == 1 and "unknown step(s) ['bogus']" in capsys.readouterr().err
    assert not (tmp_path / "st2").exists()


def test_pareto_from_objectives_equals_its_own_passes(
    fam: list[SAE[Any]], acts: torch.Tensor
) -> None:
    from sae_lens_stitch.assembly.pareto import pareto

    fit, ev = acts[:400], acts[400:]
    shared = SharedEncodings.build(fam, fit, ev)
    slow = pareto(fam, fit, ev)
    fast = pareto(fam, fit, ev, objectives=(shared.fit, shared.eval))
    assert [p.label for p in fast.points] == [p.label for p in slow.points]
    for a, b in zip(fast.points, slow.points, strict=True):
        assert (a.width, a.refit) == (b.width, b.refit)
        assert a.fvu == pytest.approx(b.fvu, rel=1e-4), a.label
        assert a.l0 == pytest.approx(b.l0, rel=1e-6), a.label


@pytest.mark.parametrize("arch", ["standard", "jumprelu"])
def test_swap_curve_from_shared_encodings_equals_its_own_encode(arch: str) -> None:
    from sae_lens_stitch import swap_curve

    saes = family(arch)
    x = acts_for(saes, n=500)
    shared = SharedEncodings.build(saes, x[:200], x[200:])
    ev = x[200:]
    slow = swap_curve(saes[0], saes[2], ev, include_novel=True)
    fast = swap_curve(saes[0], saes[2], ev, include_novel=True, encoded=shared.pair(0, 2, ev))
    assert [p.label for p in fast.points] == [p.label for p in slow.points]
    for a, b in zip(fast.points, slow.points, strict=True):
        assert (a.n_latents, a.added, a.removed, a.family) == (
            b.n_latents,
            b.added,
            b.removed,
            b.family,
        )
        assert a.mse == pytest.approx(b.mse, rel=1e-4, abs=1e-6)
        assert a.l0 == pytest.approx(b.l0)


def test_a_failing_step_leaves_no_half_written_folder_and_the_rerun_resumes(
    fam: list[SAE[Any]], acts: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sae_lens_stitch.study import run as study_run

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed in the middle of the curves")

    out = tmp_path / "s"
    config = StudyConfig(skip=["assemble"])
    monkeypatch.setattr(study_run, "_step_curves", boom)
    with pytest.raises(RuntimeError, match="killed"):
        run_study(fam, acts, out, config=config)
    steps = sorted(p.name for p in (out / "steps").iterdir())
    assert steps == ["classify", "compare", "effects", "evaluate", "stitch"]  # whole or absent
    monkeypatch.undo()
    again = run_study(fam, acts, out, config=config)
    assert again.steps_reused == ["evaluate", "compare", "classify", "effects", "stitch"]
    assert again.steps_run == ["curves", "frankenstein", "report"]


def test_a_topk_family_runs_every_step_by_its_own_passes(tmp_path: Path) -> None:
    """TopK stitching is not exact: no shared encodings, assembly skipped with the reason."""
    from conftest import related_pair

    small, large = related_pair("topk", n_small=8, n_novel=6, d_in=16, k=3)
    mid = make_sae("topk", 14, 16, seed=7, k=3)
    x = acts_for([small, mid, large], n=600)
    res = run_study([small, mid, large], x, tmp_path / "topk")
    assert res.steps_run == list(StudyConfig().steps())
    assert any(
        f.startswith("assembly skipped: assembly needs exact stitching") for f in res.findings
    )
    stitched = json.loads((tmp_path / "topk" / "steps" / "stitch" / "result.json").read_text())
    variant = stitched["pairs"][0]["variants"][0]
    block = SAE.load_from_disk(tmp_path / "topk" / "steps" / "stitch" / variant["folder"])
    assert variant["metrics"]["mse"]["value"] == pytest.approx(
        evaluate(block, x[res.n_fit_tokens :]).mse.value, rel=1e-5
    )
