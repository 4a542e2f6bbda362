"""load_sae / save_sae: source strings, local folders, corrupt files, and loading a release from
a pre-populated Hub cache with HF_HUB_OFFLINE=1 (in subprocesses, since huggingface_hub reads
its environment at import)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_sae, related_pair
from safetensors.torch import save_file

from sae_lens_stitch import (
    CorruptSAEError,
    PathExistsError,
    SourceNotFoundError,
    get_provenance,
    load_sae,
    parse_source,
    save_sae,
    stitch,
)
from sae_lens_stitch.io.sparsity import get_log_sparsity, set_log_sparsity

RELEASE = "gpt2-small-res-jb-feature-splitting"
REPO = "jbloom/GPT2-Small-Feature-Splitting-Experiment-Layer-8"
SAE_ID = "blocks.8.hook_resid_pre_768"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


# --- source strings -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (f"{RELEASE}:{SAE_ID}", {"kind": "release", "release": RELEASE, "sae_id": SAE_ID}),
        (f"{RELEASE}:{SAE_ID}@v1", {"kind": "release", "sae_id": SAE_ID, "revision": "v1"}),
        ((RELEASE, SAE_ID), {"kind": "release", "release": RELEASE, "sae_id": SAE_ID}),
        ("hf://owner/repo", {"kind": "hub", "repo_id": "owner/repo", "folder": "."}),
        (
            "hf://owner/repo/a/b@abc",
            {"kind": "hub", "repo_id": "owner/repo", "folder": "a/b", "revision": "abc"},
        ),
        ("./some/folder", {"kind": "local", "path": "some/folder"}),
        ("/abs/folder", {"kind": "local", "path": "/abs/folder"}),
        ("file://rel/f", {"kind": "local", "path": "rel/f"}),
        (Path("p/q"), {"kind": "local", "path": "p/q"}),
    ],
)
def test_parse_source_forms(source: Any, expected: dict[str, str]):
    parsed = parse_source(source)
    for key, value in expected.items():
        assert getattr(parsed, key) == value
    if parsed.kind != "local":
        assert parse_source(str(parsed)) == parsed


@pytest.mark.parametrize(
    "bad", ["", "no-colon-no-folder", "hf://only-owner", "hf://o/r/../x", ":id", "rel:", ("a",), 3]
)
def test_parse_source_rejects_with_the_forms(bad: Any):
    with pytest.raises(SourceNotFoundError, match="Accepted forms"):
        parse_source(bad)


def test_revision_given_twice_must_agree():
    assert parse_source("hf://o/r@x", revision="x").revision == "x"
    with pytest.raises(SourceNotFoundError, match="twice"):
        parse_source("hf://o/r@x", revision="y")


def test_sources_module_has_no_heavy_imports():
    tree = ast.parse(
        Path(__file__).parents[1].joinpath("sae_lens_stitch/io/sources.py").read_text()
    )
    imported = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= {
        "__future__",
        "os",
        "re",
        "dataclasses",
        "pathlib",
        "typing",
        "sae_lens_stitch",
    }


# --- local folders --------------------------------------------------------------------------
def test_save_then_load_keeps_outputs_provenance_and_sparsity(tmp_path: Path):
    small, large = related_pair()
    set_log_sparsity(small, -torch.linspace(0.5, 3, small.cfg.d_sae))
    set_log_sparsity(large, -torch.linspace(1, 4, large.cfg.d_sae))
    sae = stitch(small, large)
    expected = torch.cat([get_log_sparsity(small), get_log_sparsity(large)[-10:]])  # type: ignore[list-item]
    folder = save_sae(sae, tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == [
        "cfg.json",
        "sae_weights.safetensors",
        "sparsity.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left
    cfg = json.loads((folder / "cfg.json").read_text())
    assert "sae_lens_stitch" in cfg["metadata"]

    loaded = load_sae(folder)
    x = torch.randn(32, sae.cfg.d_in)
    with torch.no_grad():
        assert torch.equal(loaded(x), sae(x))
    prov = get_provenance(loaded)
    assert prov.model_copy(update={"loaded_from": None}) == get_provenance(sae)
    assert prov.loaded_from is not None and prov.loaded_from.path == str(folder.resolve())
    sparsity = get_log_sparsity(loaded)
    assert sparsity is not None
    novel = sae.cfg.d_sae - small.cfg.d_sae
    assert torch.equal(sparsity[: small.cfg.d_sae], expected[: small.cfg.d_sae])
    assert sparsity.shape == (small.cfg.d_sae + novel,)
    assert load_sae(str(folder), dtype=torch.float64).W_dec.dtype == torch.float64


def test_unstitched_local_sae_gets_path_and_hash_identity(tmp_path: Path):
    sae = make_sae()
    sae.save_model(tmp_path / "plain")  # plain SAE-Lens, no provenance
    loaded = load_sae(f"file://{tmp_path / 'plain'}")
    (source,) = get_provenance(loaded).sources.values()
    assert source.path == str((tmp_path / "plain").resolve())
    assert source.content_hash is not None and source.d_sae == sae.cfg.d_sae


def test_save_refuses_existing_and_creates_missing_parents(tmp_path: Path):
    sae = make_sae()
    first = save_sae(sae, tmp_path / "s")
    before = (first / "sae_weights.safetensors").read_bytes()
    with pytest.raises(PathExistsError, match="overwrite=True"):
        save_sae(make_sae(seed=5), tmp_path / "s")
    assert (first / "sae_weights.safetensors").read_bytes() == before
    save_sae(make_sae(seed=5), tmp_path / "s", overwrite=True)
    assert (first / "sae_weights.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    nested = save_sae(sae, tmp_path / "missing" / "deeper" / "s")
    assert nested == tmp_path / "missing" / "deeper" / "s"
    assert (nested / "cfg.json").is_file()
    modes = {p.name: p.stat().st_mode & 0o777 for p in nested.iterdir()}
    assert len(set(modes.values())) == 1, modes  # weights as readable as cfg.json
    assert sorted(p.name for p in (tmp_path / "missing" / "deeper").iterdir()) == ["s"]


def test_missing_and_corrupt_local_sources(tmp_path: Path):
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        load_sae(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceNotFoundError, match=r"cfg\.json"):
        load_sae(tmp_path / "empty")
    with pytest.raises(SourceNotFoundError, match="not in SAE-Lens"):
        load_sae("no-such-release:some-id")
    with pytest.raises(SourceNotFoundError, match="not in release"):
        load_sae(f"{RELEASE}:blocks.8.hook_resid_pre_7")

    folder = save_sae(make_sae(), tmp_path / "sae")
    weights = folder / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptSAEError, match="corrupt"):
        load_sae(folder)
    weights.write_bytes(b"\x00" * 16)
    with pytest.raises(CorruptSAEError):
        load_sae(folder)
    weights.write_bytes(data)
    (folder / "cfg.json").write_text("{not json")
    with pytest.raises(CorruptSAEError):
        load_sae(folder)


# --- release from a pre-populated cache, offline ----------------------------------------------
OFFLINE_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from huggingface_hub import constants
    from sae_lens_stitch import get_provenance, load_sae, OfflineError
    from sae_lens_stitch.io.sparsity import get_log_sparsity

    release, sae_id, other_id = sys.argv[1:4]
    result = {}
    # HF_HUB_OFFLINE=1 at import; then offline mode off with the endpoint unreachable
    for mode in ("offline", "unreachable"):
        constants.HF_HUB_OFFLINE = mode == "offline"
        out = result[mode] = {}
        # failures first: the first is cold (SAE-Lens's release list not parsed yet)
        for name, source in {"release": f"{release}:{other_id}", "hub": "hf://nobody/nothing/x"}.items():
            t0 = time.monotonic()
            try:
                load_sae(source)
                out[name] = "loaded?!"
            except OfflineError as err:
                out[name] = {"seconds": time.monotonic() - t0, "message": str(err)}
        sae = load_sae(f"{release}:{sae_id}")
        (source,) = get_provenance(sae).sources.values()
        out["source"] = source.model_dump()
        out["sparsity"] = get_log_sparsity(sae).tolist()[:3]
        out["pair_same"] = get_provenance(load_sae((release, sae_id))) == get_provenance(sae)
    print(json.dumps(result))
    """
)


def _write_cached_sae(cache: Path) -> torch.Tensor:
    """A Hub cache holding the release's 768 SAE: models--o--n/snapshots/<sha>/<folder>/..."""
    sae = make_sae(
        d_sae=768, d_in=768, model_name="gpt2-small", hook_name="blocks.8.hook_resid_pre"
    )
    repo_dir = cache / f"models--{REPO.replace('/', '--')}"
    folder = repo_dir / "snapshots" / SNAPSHOT / SAE_ID
    sae.save_model(folder)
    sparsity = -torch.rand(768) * 4
    save_file({"sparsity": sparsity}, str(folder / "sparsity.safetensors"))
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT)
    return sparsity


def _run_offline(cache: Path) -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()
    }
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # would fail if anything went online
    )
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, RELEASE, SAE_ID, "blocks.8.hook_resid_pre_1536"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_release_from_offline_cache_records_revision_and_missing_fails_fast(tmp_path: Path):
    """With HF_HUB_OFFLINE=1, and with the Hub unreachable: a cached SAE loads and records the
    cached commit; a missing one fails in under 2 s (not after the client's retries)."""
    sparsity = _write_cached_sae(tmp_path / "hub")
    result = _run_offline(tmp_path / "hub")
    for mode, why in (
        ("offline", "not in the local Hub cache"),
        ("unreachable", "could not be reached"),
    ):
        out = result[mode]
        source = out["source"]
        assert source["release"] == RELEASE and source["sae_id"] == SAE_ID
        assert source["repo_id"] == REPO and source["folder"] == SAE_ID
        assert source["revision"] == SNAPSHOT
        assert source["neuronpedia_id"] == "gpt2-small/8-res_fs768-jb"
        assert out["sparsity"] == pytest.approx(sparsity[:3].tolist())
        assert out["pair_same"] is True
        for name in ("release", "hub"):
            assert out[name]["seconds"] < 2.0, (mode, out[name])
            assert "HF_HUB_OFFLINE" in out[name]["message"] and why in out[name]["message"]


@pytest.mark.parametrize("architecture", ["standard", "jumprelu", "gated", "topk", "abstopk"])
def test_stitched_saes_of_every_architecture_round_trip(tmp_path: Path, architecture: str):
    """What push_to_hub checks before uploading: SAE-Lens reloads the saved folder exactly
    (TopK parents stitch into block_topk, registered with SAE-Lens by this package)."""
    from sae_lens_stitch.io.publish import check_round_trip
    from sae_lens_stitch.io.save import write_sae_files

    small, large = related_pair(architecture)
    sae = stitch(small, large, list(range(48, 58)))
    (tmp_path / "f").mkdir()
    write_sae_files(sae, tmp_path / "f")
    assert check_round_trip(sae, tmp_path / "f") <= 1e-6
    assert type(load_sae(tmp_path / "f")) is type(sae)


def test_round_trip_check_handles_hook_z_and_leaves_the_sae_as_it_was(tmp_path: Path):
    from sae_lens_stitch.io.publish import check_round_trip
    from sae_lens_stitch.io.save import write_sae_files

    sae = make_sae(reshape_activations="hook_z", hook_name="blocks.0.attn.hook_z")
    write_sae_files(sae, tmp_path)
    assert check_round_trip(sae, tmp_path) == 0.0
    x = torch.randn(3, 4, 4)  # (tokens, heads, d_head) with heads * d_head = d_in
    with torch.no_grad():
        assert sae(x).shape == x.shape


def test_parse_source_imports_nothing_heavy():
    code = (
        "import sys; from sae_lens_stitch.io.sources import parse_source; "
        "parse_source('r:i'); "
        "print([m for m in ('torch', 'sae_lens', 'huggingface_hub') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_round_trip_check_of_a_transcoder_with_another_output_size(tmp_path: Path) -> None:
    from sae_lens.saes import Transcoder, TranscoderConfig

    from sae_lens_stitch.io.publish import check_round_trip

    tc = Transcoder(TranscoderConfig(d_in=12, d_sae=16, d_out=10, apply_b_dec_to_input=False))
    save_sae(tc, tmp_path / "tc")
    assert check_round_trip(tc, tmp_path / "tc") == 0.0
