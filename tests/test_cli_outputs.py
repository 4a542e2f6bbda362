"""Names, structured indices, --top-k-by-effect, --json beside the summary, and the warning
when a produced SAE reconstructs worse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import data_for, related_pair

from sae_lens_stitch import display_name, load_sae, set_display_name
from sae_lens_stitch.cli import main
from sae_lens_stitch.errors import InvalidNameError


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
    code = main(
        [
            "--no-progress",
            "compare",
            pair["small"],
            pair["large"],
            "--name",
            "S",
            "--name",
            "L",
            "--out",
            str(tmp_path / "c"),
            "--json",
        ]
    )
    cap = capsys.readouterr()
    assert code == 0
    data = json.loads(cap.out)
    assert (data["small"], data["large"]) == ("S", "L")
    assert data["small_source"].startswith("sha256:")  # identity stays in the record
    assert "large -> small: mean max cosine" in cap.err  # the summary still shows
    code = main(
        [
            "--no-progress",
            "evaluate",
            pair["small"],
            "--activations",
            pair["acts"],
            "--out",
            str(tmp_path / "e"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("small_sae: d_sae 12") and "sha256" not in out
    assert (
        main(
            [
                "compare",
                pair["small"],
                pair["large"],
                "--name",
                "a",
                "--name",
                "b",
                "--name",
                "c",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 1
    )
    assert "3 --name given for 2 SAE(s)" in capsys.readouterr().err


def test_indices_from_previous_output_and_top_k_by_effect(
    pair: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "--no-progress",
                "classify",
                pair["small"],
                pair["large"],
                "--out",
                str(tmp_path / "cl"),
            ]
        )
        == 0
    )
    novel = json.loads((tmp_path / "cl" / "classification.json").read_text())["novel_indices"]
    capsys.readouterr()
    ref = f"@{tmp_path / 'cl' / 'classification.json'}:novel_indices"
    assert (
        main(
            [
                "--no-progress",
                "stitch",
                pair["small"],
                pair["large"],
                "--indices",
                ref,
                "--out",
                str(tmp_path / "st"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n_inserted"] == len(novel)
    assert (
        main(
            [
                "stitch",
                pair["small"],
                pair["large"],
                "--indices",
                f"@{tmp_path / 'cl' / 'classification.json'}:summary.n_novel",
                "--out",
                str(tmp_path / "st2"),
            ]
        )
        == 1
    )
    assert "is not a list of integers" in capsys.readouterr().err
    assert (
        main(
            [
                "--no-progress",
                "stitch",
                pair["small"],
                pair["large"],
                "--top-k-by-effect",
                "3",
                "--activations",
                pair["acts"],
                "--out",
                str(tmp_path / "top"),
                "--json",
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    data = json.loads(cap.out)
    assert data["n_inserted"] == 3
    assert data["metrics"]["fvu"]["better"] == "lower"
    assert "on --activations: FVU" in cap.err
    assert (
        main(
            [
                "stitch",
                pair["small"],
                pair["large"],
                "--top-k-by-effect",
                "3",
                "--out",
                str(tmp_path / "top2"),
            ]
        )
        == 1
    )
    assert "needs --activations" in capsys.readouterr().err


def test_worse_result_warns(
    pair: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the donor's reconstruction latents duplicate the base's: inserting all of them hurts
    assert (
        main(
            [
                "--no-progress",
                "stitch",
                pair["small"],
                pair["large"],
                "--indices",
                "0-23",
                "--activations",
                pair["acts"],
                "--out",
                str(tmp_path / "bad"),
                "--json",
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert json.loads(cap.out)["worse_than_start"] is True
    assert "sae-stitch: warning: the stitched SAE reconstructs worse than small_sae" in cap.err
