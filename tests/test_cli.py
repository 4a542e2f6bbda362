"""The ``sae-stitch`` command line, driven as a user would: the console script in a subprocess
for help, argument errors and one full command, and ``main(argv)`` (the same code path, no
interpreter start-up) for every subcommand on small SAEs saved to disk."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_sae, related_pair
from sae_lens import SAE
from safetensors.torch import save_file

from sae_lens_stitch import classify_features, get_provenance, load_sae
from sae_lens_stitch.cli import CLIError, main, parse_indices
from sae_lens_stitch.errors import InvalidIndicesError

EXE = Path(sys.executable).parent / "sae-stitch"


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "sae_lens_stitch.cli"]
    full_env = {**os.environ, "SAE_STITCH_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run(
        [*cmd, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=full_env,
        timeout=300,
    )


def call(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def saes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Small, large and a third width saved to disk, plus a mismatched SAE and activations."""
    root = tmp_path_factory.mktemp("cli")
    small, large = related_pair("standard", n_small=12, n_novel=5, children=2, d_in=16)
    bigger = make_sae("standard", 48, 16, seed=7)
    with torch.no_grad():
        bigger.W_dec[:29] = large.W_dec
    other = make_sae("standard", 20, 8, seed=3)
    paths = {}
    for name, sae in (("small", small), ("large", large), ("bigger", bigger), ("other", other)):
        sae.save_model(root / name)
        paths[name] = str(root / name)
    acts = torch.randn(512, 16)
    save_file({"activations": acts}, str(root / "acts.safetensors"))
    torch.save(acts, root / "acts.pt")
    paths["acts_st"] = str(root / "acts.safetensors")
    paths["acts_pt"] = str(root / "acts.pt")
    paths["root"] = str(root)
    return {"paths": paths, "small": small, "large": large}


# ----------------------------------------------------------------- subprocess: the real script


def test_help_is_light_and_lists_every_subcommand() -> None:
    code = (
        "import sys\n"
        "from sae_lens_stitch.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        "heavy = [m for m in ('sae_lens', 'torch', 'transformer_lens', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    for cmd in (
        "compare",
        "classify",
        "families",
        "stitch",
        "swap",
        "frankenstein",
        "evaluate",
        "assemble",
        "refit",
        "push",
        "demo",
    ):
        assert cmd in res.stdout
    res = run_cli("--help")
    assert res.returncode == 0 and "sae-stitch" in res.stdout


def test_argument_errors_are_light_and_one_line(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from sae_lens_stitch.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "assert 'sae_lens' not in sys.modules and 'torch' not in sys.modules\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "classify", "not-a-source", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not-a-source" in lines[0] and "Traceback" not in res.stderr
    res = run_cli("stitch", "a", "b")  # missing --out: argparse usage error
    assert res.returncode == 2 and "--out" in res.stderr
    res = run_cli("bogus")
    assert res.returncode == 2


def test_subprocess_classify_json_and_errors(saes: dict[str, Any], tmp_path: Path) -> None:
    p = saes["paths"]
    res = run_cli("classify", p["small"], p["large"], "--out", str(tmp_path / "c"), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["summary"]["n_novel"] == len(data["novel_indices"]) >= 5
    assert json.loads((tmp_path / "c" / "classification.json").read_text()) == data
    # mismatched SAEs: one line, exit 1, traceback only with --debug
    res = run_cli("classify", p["small"], p["other"], "--out", str(tmp_path / "m"))
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "d_in" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("--debug", "classify", p["small"], p["other"], "--out", str(tmp_path / "m"))
    assert res.returncode == 1 and "Traceback" in res.stderr


# ----------------------------------------------------------------- every subcommand (in-process)


def test_compare(saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = saes["paths"]
    code, out, _ = call(
        capsys, "compare", p["small"], p["large"], "--out", str(tmp_path / "o"), "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["d_sae_small"] == 12 and data["d_sae_large"] == 29
    assert sum(data["histogram_large_to_small"]["counts"]) == 29
    assert sum(data["histogram_small_to_large"]["counts"]) == 12
    # 24 of 29 large latents are noisy copies of small rows
    assert data["large_to_small"]["fraction_at_or_above_threshold"] == pytest.approx(24 / 29)
    assert (tmp_path / "o" / "compare_histogram.png").stat().st_size > 1000


def test_classify_matches_library(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sae_lens_stitch import classify_features, load_sae

    p = saes["paths"]
    code, out, _ = call(
        capsys, "classify", p["small"], p["large"], "--out", str(tmp_path), "--threshold", "0.8"
    )
    assert code == 0 and "novel" in out
    data = json.loads((tmp_path / "classification.json").read_text())
    ref = classify_features(load_sae(p["small"]), load_sae(p["large"]), threshold=0.8)
    assert data["novel_indices"] == ref.novel_indices.tolist()
    assert data["summary"]["threshold"] == 0.8
    # with activations, never-firing latents become dead
    code, _, _ = call(
        capsys,
        "classify",
        p["small"],
        p["large"],
        "--out",
        str(tmp_path / "d"),
        "--activations",
        p["acts_pt"],
    )
    assert code == 0
    assert "n_dead" in json.loads((tmp_path / "d" / "classification.json").read_text())["summary"]


def test_families(saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = saes["paths"]
    code, out, _ = call(
        capsys, "families", p["small"], p["large"], "--out", str(tmp_path), "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["n_families"] == 12 and data["kinds"] == {"1->2": 12}


def test_stitch_saves_loadable_sae(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    dest = tmp_path / "st"
    code, out, _ = call(
        capsys,
        "stitch",
        p["small"],
        p["large"],
        "--indices",
        "0,3,25-27",
        "--out",
        str(dest),
        "--json",
    )
    assert code == 0
    assert json.loads(out)["n_inserted"] == 5
    sae = SAE.load_from_disk(dest)
    assert sae.cfg.d_sae == 17
    assert [o.index for o in get_provenance(sae).latents[12:]] == [0, 3, 25, 26, 27]
    # default: the novel latents; existing output refused without --overwrite
    code, _, err = call(capsys, "stitch", p["small"], p["large"], "--out", str(dest))
    assert code == 1 and "--overwrite" in err
    code, _, _ = call(capsys, "stitch", p["small"], p["large"], "--out", str(dest), "--overwrite")
    assert code == 0 and SAE.load_from_disk(dest).cfg.d_sae == 12 + 5
    # indices from a file
    (tmp_path / "idx.json").write_text("[1, 2]")
    code, _, _ = call(
        capsys,
        "stitch",
        p["small"],
        p["large"],
        "--indices",
        f"@{tmp_path / 'idx.json'}",
        "--out",
        str(tmp_path / "f"),
    )
    assert code == 0 and SAE.load_from_disk(tmp_path / "f").cfg.d_sae == 14


def test_swap(saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = saes["paths"]
    code, out, _ = call(
        capsys, "swap", p["small"], p["large"], "--out", str(tmp_path / "all"), "--json"
    )
    assert code == 0
    assert json.loads(out)["d_sae"] == 24  # every small latent replaced by its two children
    code, _, _ = call(
        capsys, "swap", p["small"], p["large"], "--families", "0,1", "--out", str(tmp_path / "two")
    )
    assert code == 0 and SAE.load_from_disk(tmp_path / "two").cfg.d_sae == 12 - 2 + 4


def test_frankenstein(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    code, out, _ = call(
        capsys,
        "frankenstein",
        p["bigger"],
        p["small"],
        p["large"],
        "--out",
        str(tmp_path / "fr"),
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["operations"][-1]["details"]["widths"] == [12, 29, 48]
    assert SAE.load_from_disk(tmp_path / "fr").cfg.d_sae == data["d_sae"] > 12


def test_evaluate_file_and_synthetic(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    code, out, _ = call(
        capsys,
        "evaluate",
        p["small"],
        p["large"],
        "--activations",
        p["acts_st"],
        "--out",
        str(tmp_path),
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert [r["metrics"]["d_sae"] for r in data["results"]] == [12, 29]
    assert data["results"][0]["metrics"]["n_tokens"] == 512
    assert data["results"][0]["metrics"]["fvu"]["better"] == "lower"
    from sae_lens_stitch.demo.data import FAMILY_DIR

    demo_sae = str(FAMILY_DIR / "width_16")
    code, out, _ = call(
        capsys,
        "evaluate",
        demo_sae,
        "--synthetic",
        "--n-tokens",
        "2048",
        "--out",
        str(tmp_path / "syn"),
        "--json",
    )
    assert code == 0
    m = json.loads(out)["results"][0]["metrics"]
    assert m["n_tokens"] == 2048 and 0 < m["fvu"]["value"] < 1
    # the synthetic generator does not fit other SAEs; evaluate needs activations
    code, _, err = call(capsys, "evaluate", p["small"], "--synthetic", "--out", str(tmp_path / "x"))
    assert code == 1 and "d_in" in err
    code, _, err = call(capsys, "evaluate", p["small"], "--out", str(tmp_path / "x"))
    assert code == 1 and "activations" in err
    code, _, err = call(
        capsys,
        "evaluate",
        p["small"],
        "--activations",
        str(tmp_path / "nope.pt"),
        "--out",
        str(tmp_path / "x"),
    )
    assert code == 1 and "nope.pt" in err


def test_push_to_stand_in_hub(
    saes: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from hub_server import HubServer
    from huggingface_hub import constants

    p = saes["paths"]
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    token = "hf_test_token_cli"
    with HubServer(token=token, max_lifetime_s=120) as hub:
        monkeypatch.setenv("HF_TOKEN", token)
        code, out, err = call(
            capsys, "stitch", p["small"], p["large"], "--out", str(tmp_path / "st")
        )
        assert code == 0, err
        code, out, err = call(
            capsys, "push", str(tmp_path / "st"), "me/stitched", "--endpoint", hub.url, "--json"
        )
        assert code == 0, err
        result = json.loads(out)
        assert result["repo_id"] == "me/stitched"
        assert any(f.endswith("cfg.json") for f in hub.files("me/stitched"))
        # a second push to the same folder names the CLI's options
        code, _, err = call(
            capsys, "push", str(tmp_path / "st"), "me/stitched", "--endpoint", hub.url
        )
        assert code == 1 and err.count("\n") == 1
        assert "--overwrite" in err and "--path-in-repo" in err and "overwrite=True" not in err
        # metrics from a multi-SAE 'evaluate' output: this SAE's entry only, as a table
        code, _, err = call(
            capsys,
            "evaluate",
            p["small"],
            str(tmp_path / "st"),
            "--activations",
            p["acts_pt"],
            "--out",
            str(tmp_path / "ev"),
        )
        assert code == 0, err
        for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "SAE_STITCH_NO_PROGRESS"):
            monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
        code, out, err = call(
            capsys,
            "push",
            str(tmp_path / "st"),
            "me/stitched",
            "--endpoint",
            hub.url,
            "--path-in-repo",
            "with_metrics",
            "--metrics",
            str(tmp_path / "ev" / "evaluation.json"),
            "--no-progress",
        )
        assert code == 0, err
        from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars

        assert are_progress_bars_disabled()
        enable_progress_bars()
        card = hub.files("me/stitched")["README.md"].decode()
        st_d_sae = SAE.load_from_disk(tmp_path / "st").cfg.d_sae
        assert f"| d_sae | {st_d_sae} | - |" in card and "| fvu | " in card
        assert "| metric | value | better |" in card and '"results"' not in card
        code, _, err = call(
            capsys,
            "evaluate",
            p["small"],
            p["large"],
            "--activations",
            p["acts_pt"],
            "--out",
            str(tmp_path / "ev2"),
        )
        assert code == 0, err
        code, _, err = call(
            capsys,
            "push",
            str(tmp_path / "st"),
            "me/stitched",
            "--endpoint",
            hub.url,
            "--path-in-repo",
            "other",
            "--metrics",
            str(tmp_path / "ev2" / "evaluation.json"),
        )
        assert code == 1 and "no entry for the SAE" in err and err.count("\n") == 1
        # token errors never suggest a token on the command line
        monkeypatch.setenv("HF_TOKEN", "hf_wrong")
        code, _, err = call(
            capsys,
            "push",
            str(tmp_path / "st"),
            "me/stitched",
            "--endpoint",
            hub.url,
            "--overwrite",
        )
        assert code == 1 and err.count("\n") == 1
        assert "token=" not in err and "hf auth login" in err
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr("sae_lens_stitch.io.publish.get_token", lambda: None)
        code, _, err = call(capsys, "push", str(tmp_path / "st"), "me/x", "--endpoint", hub.url)
        assert code == 1 and "token=" not in err and "HF_TOKEN" in err and "hf auth login" in err


# ----------------------------------------------------------------- bad input


def test_bad_input_messages(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    cases = [
        (
            ("classify", "./no/such/folder", p["large"], "--out", str(tmp_path / "a")),
            "no/such/folder",
        ),
        (("classify", p["small"], p["other"], "--out", str(tmp_path / "b")), "incompatible"),
        (
            ("classify", "no-such-release:x", p["large"], "--out", str(tmp_path / "a")),
            "no-such-release",
        ),
        (
            ("stitch", p["small"], p["large"], "--indices", "3,99", "--out", str(tmp_path / "c")),
            "99",
        ),
        (
            ("stitch", p["small"], p["large"], "--indices", "3,x", "--out", str(tmp_path / "c")),
            "'x'",
        ),
        (
            ("swap", p["small"], p["large"], "--families", "40", "--out", str(tmp_path / "d")),
            "out of range",
        ),
        (
            ("classify", p["small"], p["large"], "--out", str(tmp_path / "missing" / "deeper")),
            "parent folder",
        ),
        (
            ("stitch", p["small"], p["large"], "--out", str(tmp_path / "missing" / "deeper")),
            "parent folder",
        ),
        (("classify", p["small"], p["large"], "--threshold", "3"), "threshold"),
        (("frankenstein", p["small"], "--out", str(tmp_path / "e")), "at least two"),
    ]
    for argv, needle in cases:
        code, _, err = call(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("sae-stitch: error:") and err.count("\n") == 1, err
        assert needle in err, (argv, err)
    assert not (tmp_path / "missing").exists()


def test_parse_indices() -> None:
    assert parse_indices("3,5,10-12") == [3, 5, 10, 11, 12]
    assert parse_indices(" 1 , 2 ") == [1, 2]
    for bad in ("", "a", "5-2", "1.5"):
        with pytest.raises((CLIError, InvalidIndicesError)):
            parse_indices(bad)


# ----------------------------------------------------------------- new-user trial fixes


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sae-stitch: error:"), res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def test_bad_options_fail_before_loading_with_one_line(
    saes: dict[str, Any], tmp_path: Path
) -> None:
    """Checks that need no SAE: device, explicit empty lists, duplicate families, empty
    path-in-repo, bad activation files; --no-progress is accepted after the subcommand."""
    p = saes["paths"]
    torch.save(torch.tensor([[float("nan"), 1.0], [float("inf"), 2.0]]), tmp_path / "nan.pt")
    (tmp_path / "garbage.pt").write_text("definitely not a torch file")
    (tmp_path / "garbage.safetensors").write_text("nor a safetensors one")
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "empty.json").write_text("[]")
    out = str(tmp_path / "o")
    pair = (p["small"], p["large"])
    cases: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("classify", *pair, "--device", "banana", "--out", out), ("invalid --device", "banana")),
        (("stitch", *pair, "--indices", "", "--out", out, "--no-progress"), ("no indices",)),
        (("swap", *pair, "--families", "", "--out", out), ("no indices",)),
        (
            ("stitch", *pair, "--indices", f"@{tmp_path / 'empty.txt'}", "--out", out),
            ("empty.txt", "empty"),
        ),
        (
            ("stitch", *pair, "--indices", f"@{tmp_path / 'empty.json'}", "--out", out),
            ("empty.json", "empty list"),
        ),
        (("swap", *pair, "--families", "2,2,3,0-3", "--out", out), ("[2, 3]", "more than once")),
        (("push", p["large"], "me/repo", "--path-in-repo", ""), ("--path-in-repo", "empty")),
        (
            ("evaluate", p["small"], "--activations", str(tmp_path / "nan.pt"), "--out", out),
            ("nan.pt", "2 non-finite"),
        ),
        (
            ("evaluate", p["small"], "--activations", str(tmp_path / "garbage.pt"), "--out", out),
            ("garbage.pt", "not a PyTorch file"),
        ),
        (
            (
                "evaluate",
                p["small"],
                "--activations",
                str(tmp_path / "garbage.safetensors"),
                "--out",
                out,
            ),
            ("garbage.safetensors", "not a valid safetensors file"),
        ),
        (("demo", "--overwrite"), ("--push",)),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (("classify", *pair, "--device", "cuda", "--out", out), ("'cuda'", "not available"))
        )
    for argv, needles in cases:
        res = run_cli(*argv)
        assert res.returncode == 1, (argv, res.stderr)
        line = _one_error_line(res)
        assert "corrupt or truncated" not in line
        for needle in needles:
            assert needle in line, (argv, line)
    assert not Path(out).exists()


def test_topk_stitch_notes_block_topk_and_json_stays_clean(tmp_path: Path) -> None:
    small, large = related_pair("topk", n_small=6, n_novel=3, d_in=8)
    small.save_model(tmp_path / "small")
    large.save_model(tmp_path / "large")
    res = run_cli(
        "stitch",
        str(tmp_path / "small"),
        str(tmp_path / "large"),
        "--out",
        str(tmp_path / "st"),
        "--json",
        "--no-progress",
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["architecture"] == "block_topk"
    notes = [line for line in res.stderr.splitlines() if line.startswith("sae-stitch: note")]
    assert len(notes) == 1 and "import sae_lens_stitch.block_topk" in notes[0]
    # --json adds the JSON on stdout; the human summary still shows, on stderr
    assert "stitched 3 donor latents" in res.stderr


def test_closed_stdout_exits_quietly(saes: dict[str, Any], tmp_path: Path) -> None:
    """``sae-stitch ... --json | head -1``: the reader goes away; no error message."""
    p = saes["paths"]
    cmd = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "sae_lens_stitch.cli"]
    proc = subprocess.Popen(
        [*cmd, "families", p["small"], p["large"], "--out", str(tmp_path), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SAE_STITCH_NO_PROGRESS": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command writes anything
    err = proc.stderr.read()
    code = proc.wait(timeout=300)
    assert code == 141, (code, err)
    assert "error" not in err and "Traceback" not in err, err  # only the summary (on stderr)


def test_families_numbers_and_swap_weights_agree(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sae_lens_stitch import feature_families, load_sae

    p = saes["paths"]
    code, out, _ = call(
        capsys, "families", p["small"], p["large"], "--weights", "encoder", "--out", str(tmp_path)
    )
    assert code == 0
    listed = json.loads((tmp_path / "families.json").read_text())["families"]
    assert [f["family"] for f in listed] == list(range(len(listed)))
    last = len(listed) - 1
    code, out, err = call(
        capsys,
        "swap",
        p["small"],
        p["large"],
        "--weights",
        "encoder",
        "--families",
        str(last),
        "--out",
        str(tmp_path / "sw"),
        "--json",
    )
    assert code == 0, err
    small, large = load_sae(p["small"]), load_sae(p["large"])
    ref = feature_families(small, large, weights="encoder")[last]
    assert ref != feature_families(small, large)[last]  # the choice of weights matters here
    assert ref.small_indices == listed[last]["small_indices"]
    d_sae = json.loads(out)["d_sae"]
    assert d_sae == 12 - len(ref.small_indices) + len(ref.large_indices)


def test_demo_push_refuses_existing_folder_without_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub_server import HubServer
    from huggingface_hub import HfApi, constants

    from sae_lens_stitch import frankenstein
    from sae_lens_stitch.demo.data import load_family
    from sae_lens_stitch.io.publish import default_path_in_repo

    folder = default_path_in_repo(frankenstein(load_family().saes))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    token = "hf_test_token_demo_overwrite"
    with HubServer(token=token, max_lifetime_s=300) as hub:
        monkeypatch.setenv("HF_TOKEN", token)
        api = HfApi(endpoint=hub.url, token=token)
        api.create_repo("me/demo")
        api.upload_file(path_or_fileobj=b"{}", path_in_repo=f"{folder}/cfg.json", repo_id="me/demo")
        code, _, err = call(
            capsys,
            "demo",
            "--quick",
            "--out",
            str(tmp_path / "d"),
            "--push",
            "me/demo",
            "--endpoint",
            hub.url,
        )
        assert code == 1 and err.count("\n") == 1, err
        assert folder in err and "--overwrite" in err and "overwrite=True" not in err
        assert hub.files("me/demo")[f"{folder}/cfg.json"] == b"{}"


def test_cli_wording_names_options_never_a_token_argument() -> None:
    from sae_lens_stitch.cli import cli_wording

    text = cli_wording(
        "me/r already has 'x' at main (1 file(s), e.g. x/cfg.json); pass overwrite=True to "
        "replace it or choose another path_in_repo"
    )
    assert "--overwrite" in text and "--path-in-repo" in text and "overwrite=True" not in text
    for message in (
        "pushing needs a Hugging Face token with write access: pass token=..., set HF_TOKEN, "
        "or run `hf auth login`",
        "cannot push to x: the Hub rejected the token (401); pass a valid token "
        "(token=... or HF_TOKEN / `hf auth login`)",
        "cannot load x: the repo does not exist or is private; check the repo id, "
        "or pass a token with access (token=... or HF_TOKEN)",
    ):
        text = cli_wording(message)
        assert "token=" not in text and "HF_TOKEN" in text and "hf auth login" in text


def test_stitch_and_frankenstein_skip_latents_dead_on_the_activations(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    small, large = saes["small"], saes["large"]
    novel = classify_features(small, large).novel_indices.tolist()
    dead_large = copy.deepcopy(large)
    with torch.no_grad():
        dead_large.b_enc[novel[0]] = -1e6  # never fires
    dead_large.save_model(tmp_path / "dead_large")
    for command, sources in (
        ("stitch", [p["small"], str(tmp_path / "dead_large")]),
        ("frankenstein", [p["small"], str(tmp_path / "dead_large")]),
    ):
        dest = tmp_path / command
        code, _, err = call(
            capsys, command, *sources, "--activations", p["acts_pt"], "--out", str(dest)
        )
        assert code == 0, err
        origins = get_provenance(load_sae(str(dest))).latents[small.cfg.d_sae :]
        assert [o.index for o in origins] == novel[1:]


def test_assemble_and_refit_commands(
    saes: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = saes["paths"]
    gen = torch.Generator().manual_seed(0)
    large: SAE[Any] = saes["large"]
    coef = torch.rand(800, large.cfg.d_sae, generator=gen) * (
        torch.rand(800, large.cfg.d_sae, generator=gen) < 0.1
    )
    with torch.no_grad():
        acts = coef @ large.W_dec + 0.2 * torch.randn(800, 16, generator=gen)
    import numpy as np

    np.save(tmp_path / "acts.npy", acts.numpy())
    out = tmp_path / "asm"
    code, stdout, err = call(
        capsys, "assemble", p["small"], p["large"], p["bigger"], "--activations",
        str(tmp_path / "acts.npy"), "--width", "20", "--start", "0", "--out", str(out), "--json",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(stdout)
    result = json.loads((out / "assembly.json").read_text())
    assert result == payload["assembly"]
    assert result["width_budget"] == 20 and result["n_eval_tokens"] == 200
    sae = load_sae(str(out / "sae"))
    assert sae.cfg.d_sae <= 20
    assert (out / "pareto.png").is_file() and (out / "pareto.svg").is_file()
    kinds = {pt["kind"] for pt in json.loads((out / "pareto.json").read_text())["points"]}
    assert kinds == {"trained", "stitch_all_novel", "frankenstein", "assembled"}
    # an existing OUT/sae is refused without --overwrite, before any work
    code, _, err = call(
        capsys, "assemble", p["small"], p["large"], "--activations", str(tmp_path / "acts.npy"),
        "--width", "20", "--out", str(out),
    )  # fmt: skip
    assert code == 1 and "--overwrite" in err

    code, stdout, err = call(
        capsys, "refit", p["large"], "--activations", str(tmp_path / "acts.npy"),
        "--out", str(tmp_path / "refit"), "--json",
    )  # fmt: skip
    assert code == 0, err
    payload = json.loads(stdout)
    assert payload["eval_after"]["mse"]["value"] <= payload["eval_before"]["mse"]["value"] * 1.05
    assert payload["eval_after"]["l0"]["value"] == pytest.approx(
        payload["eval_before"]["l0"]["value"]
    )
    assert get_provenance(load_sae(str(tmp_path / "refit"))).operations[-1].operation == "refit"


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ([], "needs a budget"),
        (["--width", "0"], "--width must be an integer 1 or more; got 0"),
        (["--l0", "-1"], "--l0 must be a positive"),
        (["--width", "5", "--start", "4"], "--start 4"),
        (["--width", "5", "--eval-fraction", "1"], "--eval-fraction"),
    ],
)
def test_assemble_option_errors(
    saes: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragment: str,
) -> None:
    p = saes["paths"]
    code, _, err = call(
        capsys, "assemble", p["small"], p["large"], "--activations", p["acts_pt"],
        "--out", str(tmp_path / "x"), *extra,
    )  # fmt: skip
    assert code == 1 and fragment in err and "\n" not in err.strip()
    assert not (tmp_path / "x").exists()
