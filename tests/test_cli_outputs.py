"""Names, structured indices, --top-k-by-effect, --json beside the summary, and the warning
when a produced SAE reconstructs worse."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch
from conftest import data_for, related_pair

from sae_lens_stitch import display_name, load_sae, set_display_name
from sae_lens_stitch.cli import main
from sae_lens_stitch.errors import InvalidNameError


def cli(line: str, **paths: object) -> int:
    """Run the command line ``line`` (``{name}`` filled from ``paths``) in this process."""
    return main(shlex.split(line.format(**paths)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pair")
    small, large = related_pair("standard", n_small=12, n_novel=5, children=2, d_in=16)
    small.save_model(root / "small_sae")
    large.save_model(root / "large_sae")
    torch.save(data_for(large, n=400), root / "acts.pt")
    return {
        "small": str(root / "small_sae"),
        "large": str(root / "large_sae"),
        "acts": str(root / "acts.pt"),
    }


def test_display_names(pair: dict[str, str]) -> None:
    sae = load_sae(pair["small"])
    assert display_name(sae) == "small_sae"
    assert display_name(load_sae(pair["small"], name="my SAE")) == "my SAE"
    set_display_name(sae, "renamed")
    assert display_name(sae) == "renamed"
    with pytest.raises(InvalidNameError, match="one non-empty line"):
        set_display_name(sae, "two\nlines")
    with pytest.raises(InvalidNameError):
        load_sae(pair["small"], name="  ")


def test_cli_names_and_json_beside_summary(
    pair: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = {**pair, "t": tmp_path}
    assert (
        cli("--no-progress compare {small} {large} --name S --name L --out {t}/c --json", **p) == 0
    )
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert (data["small"], data["large"]) == ("S", "L")
    assert data["small_source"].startswith("sha256:")  # identity stays in the record
    assert "large -> small: mean max cosine" in cap.err  # the summary still shows
    assert cli("--no-progress evaluate {small} --activations {acts} --out {t}/e", **p) == 0
    out = capsys.readouterr().out
    assert out.startswith("small_sae: d_sae 12") and "sha256" not in out
    assert cli("compare {small} {large} --name a --name b --name c --out {t}/d", **p) == 1
    assert "3 --name given for 2 SAE(s)" in capsys.readouterr().err


def test_indices_from_previous_output_and_top_k_by_effect(
    pair: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = {**pair, "t": tmp_path, "cls": tmp_path / "cl" / "classification.json"}
    assert cli("--no-progress classify {small} {large} --out {t}/cl", **p) == 0
    novel = json.loads(p["cls"].read_text())["novel_indices"]
    capsys.readouterr()
    line = "--no-progress stitch {small} {large} --indices @{cls}:novel_indices --out {t}/st --json"
    assert cli(line, **p) == 0
    assert json.loads(capsys.readouterr().out)["n_inserted"] == len(novel)
    assert cli("stitch {small} {large} --indices @{cls}:summary.n_novel --out {t}/st2", **p) == 1
    assert "is not a list of integers" in capsys.readouterr().err
    line = "--no-progress stitch {small} {large} --top-k-by-effect 3 --activations {acts} "
    assert cli(line + "--out {t}/top --json", **p) == 0
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert data["n_inserted"] == 3
    assert data["metrics"]["fvu"]["better"] == "lower"
    assert "on --activations: FVU" in cap.err
    assert cli("stitch {small} {large} --top-k-by-effect 3 --out {t}/top2", **p) == 1
    assert "needs --activations" in capsys.readouterr().err


def test_worse_result_warns(
    pair: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the donor's reconstruction latents duplicate the base's: inserting all of them hurts
    line = "--no-progress stitch {small} {large} --indices 0-23 --activations {acts} --out {t}/bad"
    assert cli(line + " --json", **pair, t=tmp_path) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["worse_than_start"] is True
    assert "sae-stitch: warning: the stitched SAE reconstructs worse than small_sae" in cap.err
