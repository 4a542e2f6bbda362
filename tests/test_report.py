"""Plots are written (PNG and SVG, non-empty); the report round-trips and renders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import data_for, related_pair

from sae_lens_stitch import classify_features
from sae_lens_stitch.analysis.effects import insert_effects
from sae_lens_stitch.evaluation.curves import frankenstein_plane, insertion_curve, swap_curve
from sae_lens_stitch.evaluation.metrics import evaluate
from sae_lens_stitch.report.document import StitchReport, write_report


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory):
    from sae_lens_stitch.report import plots

    small, large = related_pair("standard", n_small=8, n_novel=5, d_in=16)
    _, larger = related_pair("standard", n_small=20, n_novel=6, d_in=16, seed=4)
    x = data_for(large, n=150)
    cls = classify_features(small, large, activations=x)
    eff = insert_effects(small, large, x, max_cosine=cls.max_cosine)
    curves = [
        insertion_curve(small, large, x, category="novel"),
        insertion_curve(small, large, x, category="reconstruction"),
        swap_curve(small, large, x),
    ]
    plane = frankenstein_plane([small, large, larger], x)
    plot_dir = tmp_path_factory.mktemp("plots")
    files = {
        "max_cosine": plots.plot_max_cosine_histograms(
            {"8 -> 21": cls, "8 -> 46": classify_features(small, larger)}, plot_dir / "hist"
        ),
        "insert_effects": plots.plot_insert_effects(eff, plot_dir / "effects"),
        "curves": plots.plot_curves(curves, plot_dir / "curves"),
        "frankenstein": plots.plot_frankenstein_plane(plane, plot_dir / "plane"),
    }
    report = StitchReport(
        threshold=0.7,
        classifications=[cls.summary],
        metrics={"small": evaluate(small, x), "large": evaluate(large, x)},
        insert_effects=[eff.summary],
        curves=curves,
        frankenstein=plane,
        plots=files,
        notes=["synthetic test data"],
    )
    return report, files


def test_plot_files_non_empty(experiment) -> None:
    _, files = experiment
    for f in files.values():
        png, svg = Path(f.png), Path(f.svg)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
        assert b"<svg" in svg.read_bytes()[:2000]
        assert f.caption


def test_report_round_trip_and_files(experiment, tmp_path: Path) -> None:
    report, _ = experiment
    assert StitchReport.model_validate_json(report.model_dump_json()) == report
    out = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["plots", "report.html", "report.json", "report.md"]
    again = StitchReport.model_validate_json((out / "report.json").read_text())
    assert again.metrics == report.metrics and again.curves == report.curves
    assert again.insert_effects[0].proxy == report.insert_effects[0].proxy
    # plot paths are now relative to the report folder and the files were copied there
    for plot in again.plots.values():
        assert not Path(plot.png).is_absolute() and (out / plot.png).is_file()
    md = (out / "report.md").read_text()
    assert (
        "## Reconstruction metrics" in md and "fvu ↓" in md and "![curves](plots/curves.png)" in md
    )
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4
    assert "Insert effects and the cosine proxy" in page
    json.loads((out / "report.json").read_text())
    # writing again into the same folder replaces the files; no temporary leftovers
    write_report(again, out)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_missing_plot_file_is_an_error(tmp_path: Path) -> None:
    report = StitchReport(plots={"x": {"png": str(tmp_path / "no.png"), "svg": "no.svg"}})  # type: ignore[dict-item]
    with pytest.raises(FileNotFoundError, match=r"no\.png"):
        write_report(report, tmp_path / "out")


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, sae_lens_stitch; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_curve_labels_tell_width_pairs_apart(experiment) -> None:
    from sae_lens_stitch.report.plots import _curve_labels, _phase_changes

    report, _ = experiment
    swap = next(c for c in report.curves if c.kind == "swap_families")
    assert (swap.base_d_sae, swap.donor_d_sae) == (8, 21)
    pairs = [swap, swap.model_copy(update={"base_d_sae": 21, "donor_d_sae": 46})]
    labels = _curve_labels(pairs)
    assert labels[0].startswith("8 → 21: swap families") and labels[1].startswith("21 → 46:")
    # the same widths twice (or widths missing): short SAE names instead, still "base → donor"
    same = _curve_labels(report.curves)
    assert len(set(same)) == len(same) and all(" → " in label for label in same)
    old = swap.model_copy(update={"base_d_sae": None, "donor_d_sae": None})
    assert " → " in _curve_labels([old])[0]
    # a swap curve followed by novel insertions is marked where the novel latents begin
    assert _phase_changes(swap) == []
    mixed = swap.model_copy(
        update={
            "points": [*swap.points, swap.points[-1].model_copy(update={"label": "+L3 (novel)"})]
        }
    )
    assert _phase_changes(mixed) == [len(swap.points) - 1]
